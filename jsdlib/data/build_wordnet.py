"""Build the bundled WordNet sense-linking set (``data/wordnet_zeshel/``) in ZeSHEL's layout.

Source: WordNet 3.0, Debian package ``wordnet-base`` (``usr/share/wordnet/data.{noun,verb,adj,adv}``)::

    python -m jsdlib.data.build_wordnet --out data/wordnet_zeshel            # apt-get download wordnet-base
    python -m jsdlib.data.build_wordnet --out data/wordnet_zeshel --debs DIR # a folder with wordnet-base_*.deb
    jsdlib data build-wordnet [--debs DIR]                              # the same

What becomes what (ZeSHEL's zero-shot entity linking, Logeswaran et al. 2019, with WordNet in it):

- **entity = synset**: ``document_id`` = ``<offset>-<ss_type>`` (e.g. ``02084071-n``, the offset-pos id of
  WordNet tools), ``title`` = its lemma names (``_`` -> space, adjective markers such as ``(a)`` dropped)
  joined with ", ", ``text`` = its definition (the gloss without its quoted examples and their attributions).
- **domain (ZeSHEL "world") = lexicographer file** (``lex_filenum`` of a synset line: ``noun.animal``,
  ``verb.motion``, ... 45 files). ``documents/<domain>.json.gz`` holds *every* synset of the file, so the
  other senses of a polysemous lemma are in the catalogue a mention is linked against.
- **mention = a quoted example sentence of a synset that contains one of the synset's lemmas verbatim**
  (case-insensitive, as whole tokens). The sentence is tokenised ZeSHEL-style: split on whitespace, then
  punctuation at a word's edges becomes its own token (``"dog,"`` -> ``"dog" ","``). Lemmas are tokenised the
  same way and matched as a token sequence; the longest matching lemma wins, then the earliest position.
  ``start_index`` / ``end_index`` are the inclusive whitespace-token span in the context document and
  ``text`` is exactly ``" ".join(tokens[start_index:end_index + 1])``.
- **context document**: ZeSHEL mentions point (``context_document_id``) into a document of their world. Here
  each example sentence is a context document of its own, kept in the pseudo-world file
  ``documents/wordnet_examples.json.gz`` (ids ``ctx:<synset id>:<k>``), so the sentences are never candidates.
  The loader (:func:`jsdlib.data.zeshel.load_zeshel`) builds the query window from ``context_document_id`` +
  ``start_index`` / ``end_index`` exactly as for real ZeSHEL.
- ``category`` (ZeSHEL: LOW_OVERLAP, ...) = ``polysemous`` if the matched lemma names more than one synset of
  the domain, else ``monosemous``.
- **split**: the 45 domains are balanced greedily over train / val / test (target shares 62.5 / 12.5 / 25 % of
  mentions, largest domain first, seeded shuffle for ties; :func:`split_domains`). Test senses are therefore
  never seen in training (zero-shot, as ZeSHEL's worlds).

Everything is written as gzip-compressed JSON lines (gzip mtime 0, no file name in the header, level 9),
sorted, so two builds are byte-identical; ``build.json`` records the counts, the split, the source package and
the sha256 of every file's *uncompressed* content. ``DATACARD.md`` and ``LICENSE`` (the WordNet 3.0 licence from
the package's ``debian/copyright``) are written by the same build.

The data files are parsed in ``wordnet_parse``, the data card is written by ``wordnet_card``; fetching the .deb and
writing the gzip files are shared with the emoji builders (``debs``, ``build_io``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from jsdlib.common.cliargs import OneLineParser, check_output
from jsdlib.common.io import atomic_write
from jsdlib.common.paths import REPO_ROOT
from jsdlib.data.build_io import jsonl_bytes, sha256_file, write_gz
from jsdlib.data.debs import deb_license_text, deb_version, extract_deb, fetch_debs
from jsdlib.data.wordnet_card import datacard
from jsdlib.data.wordnet_parse import LEXNAMES, find_span, parse_data_file, tokenize

PACKAGE = "wordnet-base"
WORDNET_REL = Path("usr/share/wordnet")
COPYRIGHT_REL = Path("usr/share/doc/wordnet-base/copyright")
POS_FILES = ("noun", "verb", "adj", "adv")
SPLIT_SEED = 0
TEST_SHARE, VAL_SHARE = 0.25, 0.125     # target shares of all mentions in the test / val domains
CONTEXT_WORLD = "wordnet_examples"      # pseudo-world holding the example sentences (context documents)
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------- sources
def _fetch_help(reason: str) -> str:
    return (f"cannot get the Debian package {PACKAGE} ({reason}). Either run, on a Debian/Ubuntu machine, "
            f"`apt-get download {PACKAGE}` (or `make debs`) and pass the folder with `--debs DIR`, or install it "
            f"(`apt-get install {PACKAGE}`) and pass `--wordnet /{WORDNET_REL}`.")


def read_sources(work_dir: Path, debs_dir: Path | None = None,
                 wordnet_dir: Path | None = None) -> tuple[list[dict], dict, str, str]:
    """(synsets, sha256 of the data files, the WordNet licence text, package version).

    From ``wordnet_dir`` (an installed/unpacked ``usr/share/wordnet``) if given, else from the .deb in
    ``debs_dir`` or downloaded with ``apt-get download`` into ``work_dir``, unpacked with ``dpkg -x``.
    """
    if wordnet_dir is not None:
        dict_dir, version = Path(wordnet_dir), "unknown"
        copyright_path = Path("/usr/share/doc") / PACKAGE / "copyright"
    else:
        deb = fetch_debs(work_dir, (PACKAGE,), debs_dir, _fetch_help)[PACKAGE]
        root = Path(work_dir) / "root"
        extract_deb(deb, root)
        dict_dir, copyright_path, version = root / WORDNET_REL, root / COPYRIGHT_REL, deb_version(deb)
    missing = [p for p in POS_FILES if not (dict_dir / f"data.{p}").is_file()]
    if missing:
        raise RuntimeError(_fetch_help(f"data.{missing[0]} not found in {dict_dir}"))
    if not copyright_path.is_file():
        raise RuntimeError(_fetch_help(f"licence file not found: {copyright_path}"))
    source_sha = {f"data.{p}": sha256_file(dict_dir / f"data.{p}") for p in POS_FILES}
    synsets = [s for p in POS_FILES for s in parse_data_file(dict_dir / f"data.{p}")]
    return synsets, source_sha, deb_license_text(copyright_path, "WordNet3.0"), version


# ----------------------------------------------------------------------------------------- build
def split_domains(mentions_per_domain: dict[str, int], seed: int = SPLIT_SEED) -> dict[str, str]:
    """domain -> train/val/test, a seeded greedy balance of mentions over the 45 lexicographer files.

    The files are shuffled with ``numpy.random.default_rng(seed)``, stably sorted by mention count (largest
    first; the shuffle breaks ties), and each in turn goes to the split furthest below its target share of all
    mentions (test 25 %, val 12.5 %, train the rest). Largest-first keeps the shares close to the targets even
    though one file (adj.all) holds ~45 % of the mentions; a plain shuffle-and-cut could put it in val or test.
    """
    total = sum(mentions_per_domain.values())
    target = {"train": (1 - TEST_SHARE - VAL_SHARE) * total, "val": VAL_SHARE * total, "test": TEST_SHARE * total}
    shuffled = [LEXNAMES[i] for i in np.random.default_rng(seed).permutation(len(LEXNAMES))]
    order = sorted(shuffled, key=lambda d: -mentions_per_domain.get(d, 0))
    out, have = {}, {"train": 0, "val": 0, "test": 0}
    for d in order:
        s = max(("test", "val", "train"), key=lambda k: target[k] - have[k])   # ties: test, then val
        out[d] = s
        have[s] += mentions_per_domain.get(d, 0)
    return out


def build_records(synsets: list[dict]) -> tuple[dict, list[dict], list[dict], Counter]:
    """(domain -> entity documents, context documents, mentions without split, example counts)."""
    documents: dict[str, list[dict]] = defaultdict(list)
    lemma_senses: dict[tuple[str, str], int] = Counter()
    for s in synsets:
        documents[s["lex"]].append({"document_id": s["id"], "title": ", ".join(s["lemmas"]),
                                    "text": s["definition"]})
        for lemma in {m.lower() for m in s["lemmas"]}:
            lemma_senses[(s["lex"], lemma)] += 1
    contexts, mentions, stats = [], [], Counter()
    for s in synsets:
        for k, example in enumerate(s["examples"]):
            stats["examples"] += 1
            tokens = tokenize(example)
            span = find_span(tokens, s["lemmas"])
            if span is None:
                continue
            start, end, lemma = span
            ctx_id = f"ctx:{s['id']}:{k}"
            contexts.append({"document_id": ctx_id, "title": "", "text": " ".join(tokens)})  # no title: no label leak
            mentions.append({
                "mention_id": f"{s['id']}:{k}", "context_document_id": ctx_id, "corpus": s["lex"],
                "start_index": start, "end_index": end, "text": " ".join(tokens[start:end + 1]),
                "label_document_id": s["id"],
                "category": "polysemous" if lemma_senses[(s["lex"], lemma.lower())] > 1 else "monosemous"})
    stats["mentions"] = len(mentions)
    return dict(documents), contexts, mentions, stats


def build_meta(synsets: list[dict], stats: Counter, documents: dict, mentions: list[dict], split: dict,
               files: dict[str, bytes], version: str, source_sha: dict) -> dict:
    """The ``build.json`` content: source, split rule, counts per split and per domain, sha256 of every file."""
    per_domain = Counter(m["corpus"] for m in mentions)
    domains = {d: {"split": split[d], "entities": len(documents.get(d, [])), "mentions": per_domain.get(d, 0),
                   "polysemous_mentions": sum(1 for m in mentions if m["corpus"] == d
                                              and m["category"] == "polysemous")}
               for d in LEXNAMES}
    counts = {
        "synsets": len(synsets), "examples": stats["examples"], "mentions": stats["mentions"],
        "splits": {s: {"domains": sum(v["split"] == s for v in domains.values()),
                       "entities": sum(v["entities"] for v in domains.values() if v["split"] == s),
                       "mentions": sum(v["mentions"] for v in domains.values() if v["split"] == s)}
                   for s in ("train", "val", "test")},
    }
    return {
        "dataset": "wordnet_zeshel", "format_version": FORMAT_VERSION,
        "source": {"debian_package": PACKAGE, "version": version, "sha256": source_sha},
        "split_rule": {"seed": SPLIT_SEED, "test_share": TEST_SHARE, "val_share": VAL_SHARE},
        "counts": counts, "domains": domains, "context_world": CONTEXT_WORLD,
        "gzip": {"compresslevel": 9, "mtime": 0, "zlib": zlib.ZLIB_RUNTIME_VERSION},
        "sha256_uncompressed": {rel + ".gz": hashlib.sha256(raw).hexdigest() for rel, raw in sorted(files.items())},
    }


def build_wordnet(out: Path, work_dir: Path | None = None, debs_dir: Path | None = None,
                  wordnet_dir: Path | None = None, quiet: bool = False) -> dict:
    """Build the set into ``out`` (see the module docstring); returns the ``build.json`` content."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        synsets, source_sha, licence, version = read_sources(Path(work_dir) if work_dir else Path(tmp), debs_dir,
                                                             wordnet_dir)
    documents, contexts, mentions, stats = build_records(synsets)
    split = split_domains(Counter(m["corpus"] for m in mentions))
    files: dict[str, bytes] = {}
    for d in LEXNAMES:
        files[f"documents/{d}.json"] = jsonl_bytes(documents.get(d, []))
    files[f"documents/{CONTEXT_WORLD}.json"] = jsonl_bytes(contexts)
    for name in ("train", "val", "test"):
        files[f"mentions/{name}.json"] = jsonl_bytes([m for m in mentions if split[m["corpus"]] == name])
    if out.exists():
        for old in list(out.glob("documents/*.json.gz")) + list(out.glob("mentions/*.json.gz")):
            old.unlink()
    for rel, raw in files.items():
        write_gz(out / (rel + ".gz"), raw)
    meta = build_meta(synsets, stats, documents, mentions, split, files, version, source_sha)
    atomic_write(out / "build.json", json.dumps(meta, indent=1) + "\n")
    atomic_write(out / "LICENSE", f"WordNet 3.0 licence, as shipped by the Debian package {PACKAGE} ({version}) in "
                 f"/{COPYRIGHT_REL}.\nThe data in this folder is derived from WordNet 3.0.\n\n" + licence)
    atomic_write(out / "DATACARD.md", datacard(meta, mentions, documents, contexts))
    if not quiet:
        c = meta["counts"]
        print(f"wrote {out}: {c['synsets']} synsets, {c['mentions']} mentions of {c['examples']} examples; train "
              f"{c['splits']['train']['mentions']} / val {c['splits']['val']['mentions']} / test "
              f"{c['splits']['test']['mentions']} mentions")
    return meta


def main(argv=None) -> int:
    """Command line: ``jsdlib data build-wordnet [--debs DIR | --wordnet DIR] [--out DIR]``."""
    p = OneLineParser(prog="jsdlib data build-wordnet", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO_ROOT / "data" / "wordnet_zeshel"))
    p.add_argument("--debs", help="folder with wordnet-base_*.deb (default: apt-get download)")
    p.add_argument("--wordnet", help="an installed/unpacked WordNet dict folder (usr/share/wordnet) instead")
    p.add_argument("--work-dir", help="keep the unpacked package here (default: a temporary folder)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    check_output(args.out, "folder", "--out")
    try:
        build_wordnet(Path(args.out), work_dir=args.work_dir, debs_dir=args.debs, wordnet_dir=args.wordnet,
                      quiet=args.quiet)
    except RuntimeError as e:
        print(f"jsdlib: data build-wordnet: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
