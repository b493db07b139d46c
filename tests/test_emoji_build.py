"""The bundled emoji set (data/emoji/) and its build script (jsdlib/data/build_emoji.py).

The first tests check the committed artefact; the rebuild test checks that it is what the script
produces. The rebuild needs the two Debian packages in the folder $JSDLIB_DEBS (`make debs` / `.ci/run`
download them with `apt-get download` before the tests; the tests themselves never touch the network); it
is skipped, saying why, when they are not there.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from jsdlib.data import build_emoji as eb
from jsdlib.data import build_io, cldr, emoji_glyphs, emoji_records, emoji_sources
from jsdlib.data.debs import find_debs

DATA = Path(__file__).resolve().parents[1] / "data" / "emoji"
JSON_PATH = DATA / "dataset_emoji.json"
SAMPLE = 50  # images the rebuild test re-renders and compares byte for byte


@pytest.fixture(scope="module")
def dataset():
    """The committed dataset_emoji.json."""
    if not JSON_PATH.is_file():
        pytest.fail(f"{JSON_PATH} is missing; build it with `python -m jsdlib.data.build_emoji --out data/emoji`")
    return json.loads(JSON_PATH.read_text(encoding="utf-8"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------- committed artefact
def test_has_enough_images_with_files(dataset):
    images = dataset["images"]
    assert dataset["dataset"] == "emoji"
    assert len(images) >= 3000
    names = [im["filename"] for im in images]
    assert len(set(names)) == len(names), "duplicate filenames"
    missing = [n for n in names if not (DATA / "images" / n).is_file()]
    assert not missing, f"{len(missing)} image files missing, e.g. {missing[:3]}"
    assert sorted(p.name for p in (DATA / "images").glob("*.png")) == sorted(names), "stray image files"


def test_two_nonempty_captions_of_both_kinds(dataset):
    for im in dataset["images"]:
        sentences = im["sentences"]
        assert sorted(s["kind"] for s in sentences) == ["keywords", "name"], im["filename"]
        for s in sentences:
            assert s["raw"] and s["raw"] == s["raw"].strip(), (im["filename"], s["raw"])
            assert s["tokens"] and s["tokens"] == re.findall(r"\w+", s["raw"].lower())
            assert s["imgid"] == im["imgid"]
        assert im["sentids"] == [s["sentid"] for s in sentences]


def test_ids_and_order(dataset):
    images = dataset["images"]
    assert [im["imgid"] for im in images] == list(range(len(images)))
    assert [sid for im in images for sid in im["sentids"]] == list(range(2 * len(images)))
    keys = [tuple(int(c, 16) for c in im["codepoints"].split("_")) for im in images]
    assert keys == sorted(keys)
    for im in images[:50]:
        assert cldr.codepoints(im["emoji"]) == im["codepoints"]
        assert im["filename"] == f"emoji_u{im['codepoints']}.png"


def test_splits(dataset):
    counts = Counter(im["split"] for im in dataset["images"])
    assert set(counts) == {"train", "val", "test"}
    assert counts["test"] == dataset["build"]["n_test"] == 500
    assert counts["val"] == dataset["build"]["n_val"] == 500
    assert counts["train"] == len(dataset["images"]) - 1000


def test_base_and_unseen_concept(dataset):
    images = dataset["images"]
    for im in images:
        assert im["base"] == cldr.codepoints(cldr.base_sequence(im["emoji"])), im["filename"]
    train_bases = {im["base"] for im in images if im["split"] == "train"}
    for im in images:
        expected = im["split"] == "test" and im["base"] not in train_bases
        assert im["unseen_concept"] is expected, im["filename"]
    n_unseen = sum(im["unseen_concept"] for im in images)
    assert 0 < n_unseen < 500
    assert n_unseen == dataset["build"]["counts"]["unseen_concept_test"]


def test_dog_face(dataset):
    dog = [im for im in dataset["images"] if im["codepoints"] == "1f436"]
    assert len(dog) == 1
    captions = {s["kind"]: s["raw"] for s in dog[0]["sentences"]}
    assert captions == {"name": "dog face", "keywords": "dog, face, pet"}
    assert dog[0]["emoji"] == "\U0001F436" and dog[0]["filename"] == "emoji_u1f436.png"


def test_images_are_small_rgb_pngs(dataset):
    from PIL import Image

    size = dataset["build"]["image_size"]
    for im in dataset["images"][::97]:
        with Image.open(DATA / "images" / im["filename"]) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (size, size)


def test_card_licences_and_attribution():
    card = (DATA / "DATACARD.md").read_text(encoding="utf-8")
    for needle in (emoji_sources.FONT_PACKAGE, cldr.CLDR_PACKAGE, "unseen_concept", "straddle", "Base rule"):
        assert needle in card
    licences = {p.name: p.read_text(encoding="utf-8") for p in (DATA / "LICENSES").glob("*.txt")}
    assert set(licences) == {"Apache-2.0.txt", "OFL-1.1.txt", "Unicode-DFS-2016.txt"}
    assert "Apache License" in licences["Apache-2.0.txt"]
    assert "END OF TERMS AND CONDITIONS" in licences["Apache-2.0.txt"]
    assert "SIL OPEN FONT LICENSE Version 1.1" in licences["OFL-1.1.txt"]
    assert "Permission is hereby granted" in licences["Unicode-DFS-2016.txt"]
    assert "Apache" in (DATA / "ATTRIBUTION.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------- unit rules
@pytest.mark.parametrize("seq, base", [
    ("\U0001F436", "1f436"),                                     # dog face: itself
    ("\U0001F469\U0001F3FD\u200d\U0001F373", "1f9d1_200d_1f373"),  # woman cook, medium skin -> cook
    ("\U0001F646\u200d\u2642\uFE0F", "1f646"),                   # man gesturing OK -> person gesturing OK
    ("\U0001F44D\U0001F3FF", "1f44d"),                           # thumbs up, dark skin
    ("\U0001F468", "1f468"),                                     # man alone stays man
    ("\U0001F3FB", "1f3fb"),                                     # lone skin-tone swatch: its own base
])
def test_base_rule(seq, base):
    assert cldr.codepoints(cldr.base_sequence(seq)) == base


def test_candidate_forms_try_fe0f():
    assert emoji_glyphs.candidate_forms("\u2601") == ["\u2601", "\u2601\uFE0F"]
    assert emoji_glyphs.candidate_forms("\u2601\uFE0F") == ["\u2601\uFE0F"]


def test_split_is_seeded():
    a = emoji_records.assign_splits(100, seed=3, n_test=10, n_val=20)
    assert a == emoji_records.assign_splits(100, seed=3, n_test=10, n_val=20)
    assert Counter(a) == {"train": 70, "val": 20, "test": 10}
    with pytest.raises(ValueError):
        emoji_records.assign_splits(10, seed=0, n_test=5, n_val=5)


def test_missing_sources_name_the_packages(tmp_path, capsys):
    rc = eb.main(["--out", str(tmp_path / "out"), "--font", str(tmp_path / "nope.ttf"),
                  "--cldr", str(tmp_path / "nope"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert emoji_sources.FONT_PACKAGE in err and cldr.CLDR_PACKAGE in err and "--debs" in err


def test_without_apt_the_debs_are_named(tmp_path, monkeypatch, capsys):
    """No .deb in --debs and no apt-get: one line naming both packages and the two ways out."""
    monkeypatch.setattr("jsdlib.data.debs.shutil.which", lambda name: None)
    rc = eb.main(["--out", str(tmp_path / "out"), "--debs", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "apt-get/dpkg not found" in err
    assert emoji_sources.FONT_PACKAGE in err and cldr.CLDR_PACKAGE in err and "--debs" in err and "--font" in err


def test_sample_evenly_and_remove_stale(tmp_path):
    """The image sample keeps the first and last record; a full write deletes exactly the PNGs not in the set."""
    items = list(range(10))
    assert build_io.sample_evenly(items, None) is items
    assert build_io.sample_evenly(items, 3) == [0, 4, 9]   # linspace 0, 4.5, 9 rounded half to even
    assert build_io.sample_evenly(items, 50) == items
    (tmp_path / "sub").mkdir()
    files = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "sub" / "c.png", tmp_path / "notes.txt"]
    for f in files:
        f.write_bytes(b"x")
    build_io.remove_stale(tmp_path, {files[0], files[2]})
    assert [f.exists() for f in files] == [True, False, True, True]


# --------------------------------------------------------------------------------------- rebuild
@pytest.fixture(scope="module")
def debs() -> Path:
    """The folder $JSDLIB_DEBS with the two .deb files, or skip saying why (no download from a test)."""
    if shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("rebuild check needs dpkg/dpkg-deb (a Debian-based system) to unpack the packages")
    env_dir = os.environ.get("JSDLIB_DEBS")
    if not env_dir or len(find_debs(Path(env_dir), emoji_sources.PACKAGES)) != len(emoji_sources.PACKAGES):
        pytest.skip(f"rebuild check needs {', '.join(emoji_sources.PACKAGES)} .deb files in $JSDLIB_DEBS "
                    "(run `make debs`, which sets it for `make test`)")
    return Path(env_dir)


def test_rebuild_matches_committed(dataset, debs, tmp_path):
    """Rebuilding (the full JSON and a sample of images) gives the committed artefact."""
    out = tmp_path / "out"
    summary = eb.build_emoji(out, work_dir=tmp_path / "work", debs_dir=debs, progress=False,
                             image_sample=SAMPLE)
    rebuilt = json.loads((out / "dataset_emoji.json").read_text(encoding="utf-8"))
    assert rebuilt["images"] == dataset["images"]
    assert rebuilt["build"]["debian_packages"] == dataset["build"]["debian_packages"]
    assert rebuilt["build"]["sha256"] == dataset["build"]["sha256"]
    written = sorted((out / "images").glob("*.png"))
    assert len(written) == summary["images_written"] == SAMPLE
    same_renderer = rebuilt["build"]["renderer"] == dataset["build"]["renderer"]
    for path in written:
        committed = DATA / "images" / path.name
        if same_renderer:
            assert _sha256(path) == _sha256(committed), path.name
        else:  # another Pillow/FreeType may anti-alias slightly differently
            import numpy as np
            from PIL import Image

            diff = np.abs(np.asarray(Image.open(path), float) - np.asarray(Image.open(committed), float))
            assert diff.mean() < 2.0, path.name
    for name in ("OFL-1.1.txt", "Unicode-DFS-2016.txt"):
        assert (out / "LICENSES" / name).read_bytes() == (DATA / "LICENSES" / name).read_bytes()
