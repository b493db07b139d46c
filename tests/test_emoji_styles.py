"""The multi-style emoji set (data/emoji_styles/) and its builder (jsdlib/data/emoji_styles.py).

The first tests check the committed artefact and its split design; the fixture test runs the whole builder
on tiny hand-made archives; the rebuild test checks that the committed JSON and a sample of images are what
the builder makes from the pinned npm archives in $JSDLIB_NPM (`make emoji-styles` fetches them with
`npm pack`; tests never download) and the CLDR .deb in $JSDLIB_DEBS. It is skipped, saying why, without them.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from jsdlib.data import build_io, emoji_records, raster, styles_card, styles_sources, styles_split
from jsdlib.data import emoji_styles as es
from jsdlib.data.cldr import ANNOTATION_FILES, CLDR_PACKAGE, captions_of, load_annotations
from jsdlib.data.debs import find_debs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "emoji_styles"
JSON_PATH = DATA / "dataset_emoji_styles.json"
NOTO_JSON = ROOT / "data" / "emoji" / "dataset_emoji.json"
SAMPLE = 6  # images per style the rebuild test renders and compares byte for byte


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset():
    if not JSON_PATH.is_file():
        pytest.fail(f"{JSON_PATH} is missing; build it with `make emoji-styles`")
    return json.loads(JSON_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def noto():
    return json.loads(NOTO_JSON.read_text(encoding="utf-8"))["images"]


# ------------------------------------------------------------------------------- committed artefact
def test_noto_entries_unchanged(dataset, noto):
    """Every Noto entry (val/test above all) keeps its keys and values; only style/subset are added."""
    mine = [im for im in dataset["images"] if im["style"] == "noto"]
    assert len(mine) == len(noto) == 3635
    for new, old in zip(mine, noto):
        assert {k: v for k, v in new.items() if k not in ("filepath", "style", "subset")} == old
        assert new["filepath"] == "emoji/images" and new["style"] == "noto"
        assert ("subset" in new) == (old["split"] in ("val", "test"))
    assert Counter(im["split"] for im in mine) == {"train": 2635, "val": 500, "test": 500}
    assert es.image_path(ROOT / "data", mine[0]) == ROOT / "data/emoji/images" / mine[0]["filename"]


def test_split_design(dataset):
    images = dataset["images"]
    subsets = dataset["build"]["concept_subsets"]
    unseen = {b for b, s in subsets.items() if s == "unseen"}
    cross = {b for b, s in subsets.items() if s == "cross-style"}
    train_by_style = {s: {im["base"] for im in images if im["style"] == s and im["split"] == "train"}
                      for s in styles_split.STYLES}
    # no OpenMoji in train; OpenMoji is the unseen-style gallery of val/test
    assert not train_by_style["openmoji"]
    assert {im["subset"] for im in images if im["style"] == "openmoji"} == {"unseen-style"}
    # no unseen concept in any training style
    for style, bases in train_by_style.items():
        assert not bases & unseen, (style, sorted(bases & unseen)[:3])
    # cross-style concepts: absent from Noto train, present in another training style's train
    assert not cross & train_by_style["noto"]
    other = train_by_style["twemoji"] | train_by_style["fluent-flat"] | train_by_style["fluent-modern"]
    assert not cross - other, f"cross-style concepts in no other training style: {sorted(cross - other)[:5]}"
    # subsets of Noto val/test follow the concept: seen iff a Noto training image has the base
    for im in images:
        if im["style"] == "noto" and im["split"] in ("val", "test"):
            expected = "seen" if im["base"] in train_by_style["noto"] else subsets[im["base"]]
            assert im["subset"] == expected, im["filename"]
    # a fixed half of the unseen concepts, none of the pinned five
    assert not unseen & set(styles_split.PINNED)
    assert abs(len(unseen) - len(cross)) <= 10
    test = Counter(im["subset"] for im in images if im["style"] == "noto" and im["split"] == "test")
    assert test["seen"] == 280 and test["seen"] + test["cross-style"] + test["unseen"] == 500
    assert abs(test["unseen"] - 110) <= 10


def test_pinned_concepts(dataset):
    by_cp = {im["codepoints"]: im for im in dataset["images"] if im["style"] == "noto"}
    assert by_cp["1f431"]["subset"] == by_cp["1f419"]["subset"] == by_cp["1f382"]["subset"] == "cross-style"
    for cp in ("1f431", "1f419", "1f382"):  # cat face, octopus, birthday cake: trained only in other styles
        assert any(im["base"] == cp and im["split"] == "train" and im["style"] != "noto"
                   for im in dataset["images"])


def test_files_ids_and_images(dataset):
    from PIL import Image

    images = dataset["images"]
    assert dataset["dataset"] == "emoji_styles"
    assert [im["imgid"] for im in images] == list(range(len(images)))
    assert [s for im in images for s in im["sentids"]] == list(range(2 * len(images)))
    paths = [es.image_path(ROOT / "data", im) for im in images]
    assert len(set(paths)) == len(paths)
    assert not [p for p in paths if not p.is_file()], "image files missing"
    assert sorted(DATA.joinpath("images").rglob("*.png")) == sorted(p for im, p in zip(images, paths)
                                                                    if im["style"] != "noto"), "stray image files"
    for im in images[::211]:
        with Image.open(es.image_path(ROOT / "data", im)) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (64, 64), im["filename"]
        assert [s["kind"] for s in im["sentences"]] == ["name", "keywords"]


def test_loader_reads_it(dataset):
    from jsdlib.data.karpathy import load_emoji

    test = es.load("test")
    styles = Counter(m["style"] for m in test.image_meta)
    assert styles == {"noto": 500, "openmoji": dataset["build"]["counts"]["openmoji"]["test"]["images"]}
    noto, old = es.load("test", style="noto"), load_emoji("test")
    assert noto.captions == old.captions and noto.image_ids == old.image_ids
    assert [p.resolve() for p in noto.image_paths] == [p.resolve() for p in old.image_paths]
    with pytest.raises(ValueError, match="valid styles"):
        es.load("test", style="apple")


def test_card_and_licences(dataset):
    card = (DATA / "DATACARD.md").read_text(encoding="utf-8")
    for needle in ("make emoji-styles", "CC-BY 4.0", "CC BY-SA 4.0", "MIT", "cross-style", "unseen-style"):
        assert needle in card, needle
    lic = {p.name: p.read_text(encoding="utf-8") for p in (DATA / "LICENSES").glob("*.txt")}
    assert "Attribution 4.0 International" in lic["CC-BY-4.0.txt"]
    assert "Attribution-ShareAlike 4.0 International" in lic["CC-BY-SA-4.0-openmoji.txt"]
    assert "MIT License" in lic["MIT-fluentui-emoji.txt"]
    assert {"Apache-2.0.txt", "OFL-1.1.txt", "Unicode-DFS-2016.txt"} <= set(lic)
    assert "stay under" in (DATA / "ATTRIBUTION.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------- unit rules
def test_sequence_from_hex_and_slug():
    assert styles_sources.sequence_from_hex("00a9-fe0f") == "\u00a9"
    assert styles_sources.sequence_from_hex("1F468-200D-1F373") == "\U0001F468\u200d\U0001F373"
    assert styles_sources.slug("Japanese “here” button") == "japanese-here-button"
    assert styles_sources.slug("piñata") == "pinata"
    assert styles_sources.slug("A button (blood type)") == "a-button-blood-type"


def test_fluent_names_map_through_cldr():
    ann = {"\U0001F436": {"name": "dog face", "keywords": ["dog"]},
           "\U0001F44D": {"name": "thumbs up", "keywords": ["up"]},
           "\U0001F44D\U0001F3FB": {"name": "thumbs up: light skin tone", "keywords": ["up"]},
           "\U0001F468\U0001F3FF\u200d\U0001F9B2": {"name": "man: dark skin tone, bald", "keywords": ["bald"]},
           "\U0001F468\u200d\U0001F9B2": {"name": "man: bald", "keywords": ["bald"]}}
    idx = styles_sources.fluent_index(ann)
    assert styles_sources.fluent_sequence("dog-face", idx, ann) == "\U0001F436"
    assert styles_sources.fluent_sequence("thumbs-up-default", idx, ann) == "\U0001F44D"
    assert styles_sources.fluent_sequence("thumbs-up-light", idx, ann) == "\U0001F44D\U0001F3FB"
    assert styles_sources.fluent_sequence("man-bald-dark", idx, ann) == "\U0001F468\U0001F3FF\u200d\U0001F9B2"
    assert styles_sources.fluent_sequence("thumbs-up-dark", idx, ann) is None      # CLDR lacks it
    assert styles_sources.fluent_sequence("hugging-face", idx, ann) is None


def _noto_record(i, cp, split):
    seq = "".join(chr(int(h, 16)) for h in cp.split("_"))
    rec = emoji_records.image_record(i, seq, split, {"name": f"n{i}", "keywords": f"k{i}"}, 2 * i)
    return rec


def test_concept_subsets_seeded_half_never_pinned():
    cps = ["1f431", "1f419", "1f382"] + [f"{0x1f680 + i:x}" for i in range(20)]
    noto = [_noto_record(i, cp, "test" if i < 13 else "val") for i, cp in enumerate(cps)]
    noto.append(_noto_record(len(noto), "1f600", "train"))
    a = styles_split.concept_subsets(noto, seed=0)
    assert a == styles_split.concept_subsets(noto, seed=0) and a != styles_split.concept_subsets(noto, seed=1)
    assert set(a) == set(cps)
    assert all(a[p] == "cross-style" for p in ("1f431", "1f419", "1f382"))
    assert Counter(a[cp] for cp in cps[3:13]) == {"unseen": 5, "cross-style": 5}
    assert Counter(a[cp] for cp in cps[13:]) == {"unseen": 5, "cross-style": 5}
    # a concept no other training style draws is unseen whichever half it fell in (pinned ones excepted)
    moved = next(cp for cp in cps[3:] if a[cp] == "cross-style")
    b = styles_split.concept_subsets(noto, seed=0, rendered=set(cps) - {cps[0], moved})
    assert b[cps[0]] == "cross-style" and b[moved] == "unseen"
    assert {cp: s for cp, s in b.items() if cp != moved} == {cp: s for cp, s in a.items() if cp != moved}


# --------------------------------------------------------------------------- whole build on a fixture
SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="12" '
       'fill="#{c}"/></svg>')
CLDR_XML = """<?xml version="1.0" encoding="UTF-8" ?>
<ldml><annotations>
<annotation cp="🐶">dog | face | pet</annotation><annotation cp="🐶" type="tts">dog face</annotation>
<annotation cp="🐱">cat | face | pet</annotation><annotation cp="🐱" type="tts">cat face</annotation>
<annotation cp="🐙">octopus</annotation><annotation cp="🐙" type="tts">octopus</annotation>
<annotation cp="🚀">rocket | space</annotation><annotation cp="🚀" type="tts">rocket</annotation>
<annotation cp="🚁">helicopter</annotation><annotation cp="🚁" type="tts">helicopter</annotation>
</annotations></ldml>
"""


def _png(color) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGBA", (64, 64), color).save(buf, format="PNG")
    return buf.getvalue()


def _tgz(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def fixture_sources(tmp_path):
    """Tiny stand-ins: three npm archives, a CLDR folder and a Noto set of 5 images."""
    pytest.importorskip("cairosvg")
    npm = tmp_path / "npm"
    npm.mkdir()
    lic = {"package/LICENSE": b"MIT License\n", "package/LICENSE.txt": b"Attribution-ShareAlike 4.0 International\n"}
    _tgz(npm / styles_sources.archive_name("emoji-datasource-twitter"),
         {**lic, **{f"package/img/twitter/64/{cp}.png": _png((255, 0, i * 40, 255))
                    for i, cp in enumerate(["1f436", "1f431", "1f419", "1f680", "1f681", "1f9ff"])}})
    _tgz(npm / styles_sources.archive_name("fluentui-emoji"),
         {**lic, **{f"package/icons/{k}/{n}.svg": SVG.format(c="3366aa").encode()
                    for k in ("flat", "modern") for n in ("dog-face", "cat-face", "rocket", "no-such-emoji")}})
    _tgz(npm / styles_sources.archive_name("openmoji"),
         {**lic, **{f"package/color/svg/{cp.upper()}.svg": SVG.format(c="aa3366").encode()
                    for cp in ("1f436", "1f431", "1f419", "1f680", "1f681")}})
    cldr = tmp_path / "cldr"
    for rel in ANNOTATION_FILES:
        (cldr / rel).parent.mkdir(parents=True, exist_ok=True)
        (cldr / rel).write_text(CLDR_XML if rel.startswith("common/annotations/") else
                                '<?xml version="1.0"?><ldml><annotations/></ldml>', encoding="utf-8")
    noto_dir = tmp_path / "noto"
    (noto_dir / "images").mkdir(parents=True)
    (noto_dir / "LICENSES").mkdir()
    for name in styles_card.NOTO_LICENSES:
        (noto_dir / "LICENSES" / name).write_text(name, encoding="utf-8")
    ann = load_annotations(cldr)
    splits = {"1f436": "train", "1f431": "test", "1f419": "val", "1f680": "test", "1f681": "test"}
    records = []
    for i, (cp, split) in enumerate(splits.items()):
        seq = chr(int(cp, 16))
        records.append(emoji_records.image_record(i, seq, split, captions_of(ann[seq]), 2 * i))
        records[-1]["unseen_concept"] = split == "test"
        (noto_dir / "images" / records[-1]["filename"]).write_bytes(_png((0, 255, i, 255)))
    build_io.write_dataset_json(noto_dir / "dataset_emoji.json", {"dataset": "emoji", "images": records, "build": {}})
    return npm, cldr, noto_dir


def test_build_on_fixture_is_deterministic(fixture_sources, tmp_path):
    npm, cldr, noto_dir = fixture_sources
    outs = []
    for name in ("a", "b"):
        es.build_emoji_styles(tmp_path / name, npm, cldr_dir=cldr, noto_dir=noto_dir, progress=False)
        outs.append(tmp_path / name)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    for rel in files:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes(), rel
    data = json.loads((outs[0] / "dataset_emoji_styles.json").read_text(encoding="utf-8"))
    by = {(im["style"], im["codepoints"]): im for im in data["images"]}
    # cat face and octopus were unseen concepts in the test split: pinned -> cross-style (trained elsewhere)
    assert by[("noto", "1f431")]["subset"] == by[("noto", "1f419")]["subset"] == "cross-style"
    assert by[("twemoji", "1f431")]["split"] == "train" and by[("fluent-flat", "1f431")]["split"] == "train"
    assert ("noto", "1f431") in by and not [im for im in data["images"] if im["style"] == "noto" and
                                            im["codepoints"] == "1f431" and im["split"] == "train"]
    # rocket and helicopter: the two non-pinned unseen test concepts -> one held out everywhere, one cross-style
    subsets = data["build"]["concept_subsets"]
    assert sorted(subsets[cp] for cp in ("1f680", "1f681")) == ["cross-style", "unseen"]
    for cp in ("1f680", "1f681"):
        trained = {im["style"] for im in data["images"] if im["codepoints"] == cp and im["split"] == "train"}
        assert trained == (set() if subsets[cp] == "unseen" else {"twemoji"}), (cp, trained)
        assert by[("noto", cp)]["subset"] == subsets[cp]
    # OpenMoji: only the val/test sequences, never train
    assert {(im["codepoints"], im["split"]) for im in data["images"] if im["style"] == "openmoji"} == \
        {("1f431", "test"), ("1f419", "val"), ("1f680", "test"), ("1f681", "test")}
    assert data["build"]["fluent_unmapped"] == 1 and data["build"]["unmapped_files"]["twemoji"] == 1
    from PIL import Image

    assert {im["filepath"] for im in data["images"]} == {"emoji/images"} | {
        f"emoji_styles/images/{s}" for s in styles_split.STYLES[1:]}
    assert not (outs[0] / "images" / "noto").exists() and not list((outs[0] / "images").glob("*.png"))
    with Image.open(outs[0] / "images/fluent-flat/emoji_u1f436.png") as img:
        assert img.mode == "RGB" and img.size == (64, 64)
        assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((32, 32)) != (255, 255, 255)


def test_svg_without_cairosvg_says_what_to_install(monkeypatch):
    """cairosvg (an optional engine) is imported in one helper; without it the error says what to install."""
    monkeypatch.setitem(sys.modules, "cairosvg", None)   # makes `import cairosvg` raise ImportError
    with pytest.raises(RuntimeError, match="pip install cairosvg"):
        raster.render_file(b"<svg/>", ".svg", 64)


def test_missing_archives_say_how_to_fetch(tmp_path, capsys):
    assert es.main(["--npm", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "make emoji-styles" in err and "openmoji@17.0.0" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------- rebuild
@pytest.fixture(scope="module")
def sources():
    npm, debs = os.environ.get("JSDLIB_NPM"), os.environ.get("JSDLIB_DEBS")
    if not npm or len(styles_sources.find_archives(Path(npm))) != len(styles_sources.NPM_PACKAGES):
        pytest.skip("rebuild check needs the npm archives " + ", ".join(styles_sources.archive_name(p) for p in styles_sources.NPM_PACKAGES)
                    + " in $JSDLIB_NPM (run `make emoji-styles`, which fetches them with `npm pack`)")
    if not debs or CLDR_PACKAGE not in find_debs(Path(debs), (CLDR_PACKAGE,)):
        pytest.skip(f"rebuild check needs the {CLDR_PACKAGE} .deb in $JSDLIB_DEBS (run `make debs`)")
    pytest.importorskip("cairosvg")
    return Path(npm), Path(debs)


def test_rebuild_matches_committed(dataset, sources, tmp_path):
    npm, debs = sources
    out = tmp_path / "out"
    summary = es.build_emoji_styles(out, npm, debs_dir=debs, image_sample=SAMPLE, progress=False)
    rebuilt = json.loads((out / "dataset_emoji_styles.json").read_text(encoding="utf-8"))
    assert rebuilt["images"] == dataset["images"]
    assert rebuilt["build"] == dataset["build"]
    written = sorted((out / "images").rglob("*.png"))
    assert len(written) == summary["images_written"] == SAMPLE * (len(styles_split.STYLES) - 1)
    for path in written:
        assert _sha256(path) == _sha256(DATA / path.relative_to(out)), path
