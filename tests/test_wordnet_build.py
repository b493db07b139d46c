"""The bundled WordNet sense-linking set (data/wordnet_zeshel): the committed files, the build rules, and a
rebuild from the Debian package ``wordnet-base`` compared with the committed files.

The rebuild test reads the .deb from ``$JSDLIB_DEBS`` (``make debs`` downloads it with ``apt-get download``
before the tests; the tests never touch the network) and is skipped, saying why, when it is not there.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from jsdlib.data import build_wordnet as wb
from jsdlib.data import wordnet_parse
from jsdlib.data.debs import find_debs

DATA = Path(__file__).resolve().parents[1] / "data" / "wordnet_zeshel"


@pytest.fixture(scope="module")
def meta() -> dict:
    if not (DATA / "build.json").is_file():
        pytest.fail(f"{DATA}/build.json is missing; build it with `jsdlib data build-wordnet`")
    return json.loads((DATA / "build.json").read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()]


# ------------------------------------------------------------------------------------- committed files
def test_files_and_checksums(meta):
    files = sorted(str(p.relative_to(DATA)) for p in DATA.rglob("*.json.gz"))
    expected = sorted([f"documents/{d}.json.gz" for d in wordnet_parse.LEXNAMES] + [f"documents/{wb.CONTEXT_WORLD}.json.gz"]
                      + [f"mentions/{s}.json.gz" for s in ("train", "val", "test")])
    assert files == expected and len(wordnet_parse.LEXNAMES) == 45
    for rel, sha in meta["sha256_uncompressed"].items():
        assert hashlib.sha256(gzip.decompress((DATA / rel).read_bytes())).hexdigest() == sha, rel


def test_counts_split_and_labels(meta):
    c = meta["counts"]
    assert c["synsets"] == 117659 and c["examples"] == 48339
    docs = {d: _jsonl(DATA / "documents" / f"{d}.json.gz") for d in wordnet_parse.LEXNAMES}
    assert sum(len(v) for v in docs.values()) == c["synsets"]
    ids = {d: {x["document_id"] for x in v} for d, v in docs.items()}
    contexts = {x["document_id"]: x for x in _jsonl(DATA / "documents" / f"{wb.CONTEXT_WORLD}.json.gz")}
    n_mentions = 0
    for split in ("train", "val", "test"):
        ms = _jsonl(DATA / "mentions" / f"{split}.json.gz")
        n_mentions += len(ms)
        assert len(ms) == c["splits"][split]["mentions"]
        assert {m["corpus"] for m in ms} <= {d for d, v in meta["domains"].items() if v["split"] == split}
        for m in ms[::37]:
            assert m["label_document_id"] in ids[m["corpus"]]
            tokens = contexts[m["context_document_id"]]["text"].split()
            assert " ".join(tokens[m["start_index"]:m["end_index"] + 1]) == m["text"]
            assert contexts[m["context_document_id"]]["title"] == ""          # no label in the context
    assert n_mentions == c["mentions"] == len(contexts)
    assert 35000 < n_mentions < 42000                                          # data.md: about 39,000
    share = {s: c["splits"][s]["mentions"] / n_mentions for s in ("train", "val", "test")}
    assert abs(share["test"] - 0.25) < 0.02 and abs(share["val"] - 0.125) < 0.02
    assert Counter(v["split"] for v in meta["domains"].values()) == {s: c["splits"][s]["domains"] for s in share}


def test_dog_and_definitions():
    animals = {d["document_id"]: d for d in _jsonl(DATA / "documents" / "noun.animal.json.gz")}
    dog = animals["02084071-n"]
    assert dog["title"] == "dog, domestic dog, Canis familiaris"
    assert dog["text"].startswith("a member of the genus Canis") and '"' not in dog["text"]


def test_card_and_licence(meta):
    card = (DATA / "DATACARD.md").read_text(encoding="utf-8")
    for needle in ("wordnet-base", "Domain split", "wordnet_examples", "| test |", "Princeton", "LICENSE"):
        assert needle in card
    for d, v in meta["domains"].items():
        assert f"| {d} | {v['split']} |" in card
    lic = (DATA / "LICENSE").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in lic and "Permission to use, copy" in lic


# ------------------------------------------------------------------------------------------- build rules
def test_tokenize_peels_edge_punctuation():
    assert wordnet_parse.tokenize('"she was able, he said." (maybe)') == ['"', "she", "was", "able", ",", "he", "said", ".",
                                                              '"', "(", "maybe", ")"]
    assert wordnet_parse.tokenize("U.S. able-bodied don't") == ["U.S", ".", "able-bodied", "don't"]


def test_split_gloss_drops_examples_and_attributions():
    definition, examples = wordnet_parse.split_gloss('sparing in consumption; "never of much consequence"- John Galsworthy; '
                                          '"a spartan diet"')
    assert definition == "sparing in consumption"
    assert examples == ["never of much consequence", "a spartan diet"]
    assert wordnet_parse.split_gloss("no examples here") == ("no examples here", [])


def test_lemma_name_and_span():
    assert wordnet_parse.lemma_name("dead-on(a)") == "dead-on" and wordnet_parse.lemma_name("Canis_familiaris") == "Canis familiaris"
    toks = wordnet_parse.tokenize("The hot dog and the dog , hot dog !")
    assert wordnet_parse.find_span(toks, ["dog", "hot dog"]) == (1, 2, "hot dog")        # longest lemma wins
    assert wordnet_parse.find_span(toks, ["dog"]) == (2, 2, "dog")                       # earliest position
    assert wordnet_parse.find_span(wordnet_parse.tokenize("Dogs bark"), ["dog"]) is None            # verbatim whole tokens only


def test_split_rule_is_seeded_and_balanced():
    counts = {d: (i * 37) % 101 + 1 for i, d in enumerate(wordnet_parse.LEXNAMES)}
    a, b = wb.split_domains(counts, seed=3), wb.split_domains(counts, seed=3)
    assert a == b and set(a) == set(wordnet_parse.LEXNAMES)
    total = sum(counts.values())
    got = {s: sum(n for d, n in counts.items() if a[d] == s) / total for s in ("train", "val", "test")}
    assert abs(got["test"] - 0.25) < 0.03 and abs(got["val"] - 0.125) < 0.03


def test_missing_sources_name_the_package(tmp_path, capsys):
    rc = wb.main(["--out", str(tmp_path / "out"), "--wordnet", str(tmp_path / "nope"), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "wordnet-base" in err and "--debs" in err and "data.noun" in err


def test_without_apt_the_deb_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("jsdlib.data.debs.shutil.which", lambda name: None)
    rc = wb.main(["--out", str(tmp_path / "out"), "--debs", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and wb.PACKAGE in err and "--debs" in err and "--wordnet" in err


# ------------------------------------------------------------------------------------------------ rebuild
@pytest.fixture(scope="module")
def debs() -> Path:
    """$JSDLIB_DEBS with wordnet-base_*.deb, or skip saying why (no download from a test)."""
    if shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("rebuild check needs dpkg/dpkg-deb (a Debian-based system) to unpack wordnet-base")
    env_dir = os.environ.get("JSDLIB_DEBS")
    if not env_dir or wb.PACKAGE not in find_debs(Path(env_dir), (wb.PACKAGE,)):
        pytest.skip("rebuild check needs the wordnet-base .deb in $JSDLIB_DEBS (run `make debs`, which sets it "
                    "for `make test`)")
    return Path(env_dir)


def test_rebuild_matches_committed_and_is_deterministic(meta, debs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    wb.build_wordnet(a, debs_dir=debs, quiet=True)
    wb.build_wordnet(b, debs_dir=debs, quiet=True)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(DATA) for p in DATA.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"two builds differ: {rel}"
        new, old = (a / rel).read_bytes(), (DATA / rel).read_bytes()
        if rel.suffix == ".gz":
            assert gzip.decompress(new) == gzip.decompress(old), rel
            if meta["gzip"]["zlib"] == json.loads((a / "build.json").read_text())["gzip"]["zlib"]:
                assert new == old, rel
        elif rel.name == "build.json":
            x, y = json.loads(new), json.loads(old)
            x["gzip"].pop("zlib"), y["gzip"].pop("zlib")
            assert x == y
        else:
            assert new == old, rel


def test_cli_subcommand_reaches_the_build(tmp_path, capsys):
    from jsdlib.cli.main import main

    rc = main(["data", "build-wordnet", "--out", str(tmp_path / "o"), "--wordnet", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "wordnet-base" in err and err.startswith("jsdlib: data build-wordnet: ") and err.count("\n") == 1
