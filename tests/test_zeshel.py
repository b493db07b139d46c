"""The ZeSHEL-format loader (jsdlib.data.zeshel) on a fixture in real ZeSHEL's exact layout and on
the bundled WordNet set."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

import jsdlib.data as D

FIXTURE = Path(__file__).parent / "fixtures" / "zeshel_mini"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def copy(tmp_path) -> Path:
    """A writable copy of the fixture."""
    dst = tmp_path / "zeshel"
    shutil.copytree(FIXTURE, dst)
    return dst


# ------------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("split, worlds, n", [("train", ["starfleet_wiki"], 3), ("val", ["brickworld"], 2),
                                              ("test", ["cardgame"], 1)])
def test_fixture_round_trip(split, worlds, n):
    z = D.load_zeshel(FIXTURE, split)
    assert len(z) == n and z.split == split and z.domains == worlds
    assert z.mentions == _lines(FIXTURE / "mentions" / f"{split}.json")    # every field, file order
    for w in worlds:
        assert z.documents[w] == _lines(FIXTURE / "documents" / f"{w}.json")
    for i, m in enumerate(z.mentions):
        world, row = z.gold(i)
        assert world == m["corpus"] and z.documents[world][row]["document_id"] == m["label_document_id"]
        assert " ".join(z.mention_tokens(i)) == m["text"]
        assert z.contexts[m["context_document_id"]]["document_id"] == m["context_document_id"]


def test_gzip_files_read_the_same(copy):
    for path in list((copy / "documents").glob("*.json")) + list((copy / "mentions").glob("*.json")):
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(path.read_bytes())
        path.unlink()
    for split in D.SPLITS:
        a, b = D.load_zeshel(FIXTURE, split), D.load_zeshel(copy, split)
        assert a.mentions == b.mentions and a.documents == b.documents and a.contexts == b.contexts


def test_query_window_with_markers():
    z = D.load_zeshel(FIXTURE, "val")
    # context "castle set 42 contains a baseplate , a drawbridge and many red brick pieces ." span 11..12
    assert z.query_text(0, window=2) == "and many [unused0] red brick [unused1] pieces ."
    assert z.query_text(0, window=0) == "[unused0] red brick [unused1]"
    assert z.query_text(0) == ("castle set 42 contains a baseplate , a drawbridge and many "
                               "[unused0] red brick [unused1] pieces .")
    assert z.query_texts(window=0) == ["[unused0] red brick [unused1]"] * 2
    with pytest.raises(ValueError, match="window"):
        z.query_text(0, window=-1)


def test_candidate_text():
    z = D.load_zeshel(FIXTURE, "test")
    doc = z.document("cardgame", "2C3D4E5F60718293")
    assert z.candidate_text(doc) == ("Blue Dragon [unused2] blue dragon is a level eight monster card with three "
                                     "thousand attack points .")


def test_markers_are_single_minilm_tokens():
    from jsdlib.vlp.minilm import minilm_tokenizer

    tok = minilm_tokenizer(markers=True)
    pieces = tok.tokenize(f"many {D.MENTION_START} red brick {D.MENTION_END} . x {D.TITLE_SEP} y")
    assert pieces == ["many", "[unused0]", "red", "brick", "[unused1]", ".", "x", "[unused2]", "y"]
    ids = tok.convert_tokens_to_ids(list(D.MARKER_TOKENS))
    assert ids == [1, 2, 3] and max(ids) < tok.vocab_size      # existing rows: no new embeddings


def test_domains_and_subset():
    z = D.load_zeshel(FIXTURE, "train", domains="starfleet_wiki")
    assert len(z) == 3
    a = D.load_zeshel(FIXTURE, "train", max_mentions=2, seed=1)
    b = D.load_zeshel(FIXTURE, "train", max_mentions=2, seed=1)
    assert len(a) == 2 and a.mentions == b.mentions
    ids = [m["mention_id"] for m in D.load_zeshel(FIXTURE, "train").mentions]
    assert [ids.index(m["mention_id"]) for m in a.mentions] == sorted(ids.index(m["mention_id"]) for m in a.mentions)
    with pytest.raises(ValueError, match="max_mentions"):
        D.load_zeshel(FIXTURE, "train", max_mentions=0)


# ----------------------------------------------------------------------------------------------- errors
def test_missing_folder_and_files(tmp_path, copy):
    with pytest.raises(D.DatasetNotFoundError, match="ZeSHEL folder not found"):
        D.load_zeshel(tmp_path / "nope", "test")
    (copy / "mentions" / "test.json").unlink()
    with pytest.raises(D.DatasetNotFoundError, match=r"no mentions file for split 'test'.*zeshel"):
        D.load_zeshel(copy, "test")
    (copy / "documents" / "brickworld.json").unlink()
    with pytest.raises(D.DatasetNotFoundError, match="no document file for world 'brickworld'"):
        D.load_zeshel(copy, "val")


def test_unknown_split_and_domain():
    with pytest.raises(D.UnknownSplitError, match="unknown split 'dev'"):
        D.load_zeshel(FIXTURE, "dev")
    with pytest.raises(D.UnknownDomainError, match=r"\['lego'\] have no mention"):
        D.load_zeshel(FIXTURE, "train", domains=["lego"])


def _rewrite_mention(copy: Path, split: str, **changes) -> None:
    path = copy / "mentions" / f"{split}.json"
    ms = _lines(path)
    ms[0].update(changes)
    path.write_text("".join(json.dumps(m) + "\n" for m in ms), encoding="utf-8")


def test_mention_pointing_to_unknown_documents(copy):
    _rewrite_mention(copy, "test", label_document_id="FFFFFFFFFFFFFFFF")
    with pytest.raises(D.DataFormatError, match="C0000000000000F1 .* unknown document 'FFFFFFFFFFFFFFFF'"):
        D.load_zeshel(copy, "test")
    _rewrite_mention(copy, "test", label_document_id="2C3D4E5F60718293", context_document_id="EEEE")
    with pytest.raises(D.DataFormatError, match="unknown context document 'EEEE'"):
        D.load_zeshel(copy, "test")


def test_span_outside_context_and_bad_records(copy):
    _rewrite_mention(copy, "test", start_index=5, end_index=99)
    with pytest.raises(D.DataFormatError, match=r"span 5\.\.99 .* outside"):
        D.load_zeshel(copy, "test")
    (copy / "mentions" / "val.json").write_text('{"mention_id": "x"}\n', encoding="utf-8")
    with pytest.raises(D.DataFormatError, match=r"line 1: missing key"):
        D.load_zeshel(copy, "val")
    (copy / "mentions" / "val.json").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(D.DataFormatError, match="line 1: not valid JSON"):
        D.load_zeshel(copy, "val")


def test_context_in_another_world_file(copy):
    """A context document outside the mention's world (the WordNet set's pseudo-world) is found."""
    (copy / "documents" / "contexts.json").write_text(json.dumps(
        {"document_id": "CTX1", "title": "", "text": "the blue one attacked ."}) + "\n", encoding="utf-8")
    _rewrite_mention(copy, "test", context_document_id="CTX1", start_index=1, end_index=1, text="blue")
    z = D.load_zeshel(copy, "test")
    assert z.domains == ["cardgame"] and "contexts" not in z.documents
    assert z.query_text(0) == "the [unused0] blue [unused1] one attacked ."


# ------------------------------------------------------------------------------------- the WordNet set
def test_wordnet_set_loads_in_zeshel_format():
    z = D.load_wordnet("test", domains=["noun.motive", "adj.ppl"])
    assert D.wordnet_dir().name == "wordnet_zeshel"
    assert z.domains == ["adj.ppl", "noun.motive"] and len(z) == 12 + 45
    assert "wordnet_examples" not in z.documents
    for i, m in enumerate(z.mentions):
        assert " ".join(z.mention_tokens(i)) == m["text"]
        q = z.query_text(i)
        assert q.count(D.MENTION_START) == 1 and f"{D.MENTION_START} {m['text']} {D.MENTION_END}" in q
        world, _ = z.gold(i)
        assert world == m["corpus"] and m["category"] in ("polysemous", "monosemous")
    doc = z.document("noun.motive", z.mentions[0]["label_document_id"])
    assert z.candidate_text(doc).startswith(doc["title"] + " [unused2] ")
