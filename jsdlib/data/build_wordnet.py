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
  The loader (:func:`jsdlib.data.datasets.load_zeshel`) builds the query window from ``context_document_id`` +
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
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import string
import subprocess
import sys
import tempfile
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from jsdlib.common.paths import REPO_ROOT

PACKAGE = "wordnet-base"
WORDNET_REL = Path("usr/share/wordnet")
COPYRIGHT_REL = Path("usr/share/doc/wordnet-base/copyright")
POS_FILES = ("noun", "verb", "adj", "adv")
SPLIT_SEED = 0
TEST_SHARE, VAL_SHARE = 0.25, 0.125     # target shares of all mentions in the test / val domains
CONTEXT_WORLD = "wordnet_examples"      # pseudo-world holding the example sentences (context documents)
FORMAT_VERSION = 1

# lexnames(5WN): lex_filenum -> lexicographer file name
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)
_PUNCT = set(string.punctuation)
_ADJ_MARKER = re.compile(r"\((a|p|ip)\)$")


# --------------------------------------------------------------------------------------- sources
def find_deb(debs_dir: Path) -> Path | None:
    """The newest-named ``wordnet-base_*.deb`` in ``debs_dir`` (apt names it ``wordnet-base_1%3a3.0-37_all.deb``)."""
    debs = sorted(Path(debs_dir).glob(f"{PACKAGE}_*.deb"))
    return debs[-1] if debs else None


def _fetch_help(reason: str) -> str:
    return (f"cannot get the Debian package {PACKAGE} ({reason}). Either run, on a Debian/Ubuntu machine, "
            f"`apt-get download {PACKAGE}` (or `make debs`) and pass the folder with `--debs DIR`, or install it "
            f"(`apt-get install {PACKAGE}`) and pass `--wordnet /{WORDNET_REL}`.")


def fetch_deb(work_dir: Path, debs_dir: Path | None = None) -> Path:
    """The .deb: from ``debs_dir`` if it has one, else ``apt-get download`` into ``work_dir/debs``."""
    if debs_dir is not None and find_deb(Path(debs_dir)) is not None:
        return find_deb(Path(debs_dir))
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise RuntimeError(_fetch_help("apt-get/dpkg not found: not a Debian-based system"))
    dest = Path(work_dir) / "debs"
    dest.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", PACKAGE], cwd=dest, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(_fetch_help(f"`apt-get download` failed: {e.stderr.strip()[-500:]}")) from e
    deb = find_deb(dest)
    if deb is None:
        raise RuntimeError(_fetch_help("`apt-get download` gave no .deb"))
    return deb


def unpack_deb(deb: Path, work_dir: Path) -> tuple[Path, Path, str]:
    """(WordNet dict folder, copyright file, package version) of a ``dpkg -x``-unpacked .deb."""
    root = Path(work_dir) / "root"
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True, text=True)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()
    return root / WORDNET_REL, root / COPYRIGHT_REL, version


# --------------------------------------------------------------------------------------- parsing
def tokenize(text: str) -> list[str]:
    """ZeSHEL-style whitespace tokens: split on whitespace, then peel punctuation off each word's edges.

    ``'"she was able to swim," he said.'`` -> ``['"', 'she', ..., 'swim', ',', '"', 'he', 'said', '.']``.
    """
    out: list[str] = []
    for word in text.split():
        lead, trail = [], []
        while word and word[0] in _PUNCT:
            lead.append(word[0])
            word = word[1:]
        while word and word[-1] in _PUNCT:
            trail.append(word[-1])
            word = word[:-1]
        out += lead + ([word] if word else []) + trail[::-1]
    return out


def lemma_name(word: str) -> str:
    """A data-file word as text: adjective marker dropped, ``_`` -> space (``dead-on(a)`` -> ``dead-on``)."""
    return _ADJ_MARKER.sub("", word).replace("_", " ")


def split_gloss(gloss: str) -> tuple[str, list[str]]:
    """(definition, quoted examples) of a gloss.

    The examples are the ``"..."`` segments; the definition is what is left once they, and the
    attributions that follow some of them (``"..."- John Galsworthy``), are removed.
    """
    examples = [e.strip() for e in re.findall(r'"([^"]*)"', gloss)]
    rest = re.sub(r'"[^"]*"', "\x00", gloss)
    parts = []
    for part in rest.split(";"):
        part = part.strip()
        if "\x00" in part or not part or part.startswith("-"):
            continue
        parts.append(part)
    return "; ".join(parts), [e for e in examples if e]


def parse_data_file(path: Path) -> list[dict]:
    """Synsets of one ``data.<pos>`` file: {id, lex, lemmas, definition, examples} in file order.

    Line format (wndb(5WN)): ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt ... | gloss``;
    ``w_cnt`` is two hex digits. Lines starting with two spaces are the licence header.
    """
    synsets = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            head, _, gloss = line.partition(" | ")
            f = head.split()
            offset, lex, ss_type, w_cnt = f[0], int(f[1]), f[2], int(f[3], 16)
            lemmas = [lemma_name(f[4 + 2 * i]) for i in range(w_cnt)]
            definition, examples = split_gloss(gloss.strip())
            synsets.append({"id": f"{offset}-{ss_type}", "lex": LEXNAMES[lex], "lemmas": lemmas,
                            "definition": definition, "examples": examples})
    return synsets


def find_span(tokens: list[str], lemmas: list[str]) -> tuple[int, int, str] | None:
    """(start, end inclusive, lemma) of the longest lemma that occurs as a token sequence, earliest first."""
    low = [t.lower() for t in tokens]
    best = None
    for lemma in lemmas:
        lt = [t.lower() for t in tokenize(lemma)]
        n = len(lt)
        if n == 0:
            continue
        for s in range(len(low) - n + 1):
            if low[s:s + n] == lt:
                if best is None or n > best[1] - best[0] + 1 or (n == best[1] - best[0] + 1 and s < best[0]):
                    best = (s, s + n - 1, lemma)
                break
    return best


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


def _jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_gz(path: Path, raw: bytes) -> None:
    """gzip with no file name and mtime 0 in the header, level 9: the same bytes give the same file."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def wordnet_licence(copyright_path: Path) -> str:
    """The ``License: WordNet3.0`` paragraph of the Debian copyright file, de-indented."""
    lines = Path(copyright_path).read_text(encoding="utf-8").splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("License: WordNet"))
    body = []
    for ln in lines[start + 1:]:
        if not ln.startswith(" "):
            break
        body.append("" if ln.strip() == "." else ln[1:])
    return "\n".join(body).strip() + "\n"


def build_wordnet(out: Path, work_dir: Path | None = None, debs_dir: Path | None = None,
                  wordnet_dir: Path | None = None, quiet: bool = False) -> dict:
    """Build the set into ``out`` (see the module docstring); returns the ``build.json`` content."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir) if work_dir else Path(tmp)
        if wordnet_dir is not None:
            dict_dir, version = Path(wordnet_dir), "unknown"
            copyright_path = Path("/usr/share/doc") / PACKAGE / "copyright"
        else:
            dict_dir, copyright_path, version = unpack_deb(fetch_deb(work, debs_dir), work)
        missing = [p for p in POS_FILES if not (dict_dir / f"data.{p}").is_file()]
        if missing:
            raise RuntimeError(_fetch_help(f"data.{missing[0]} not found in {dict_dir}"))
        if not copyright_path.is_file():
            raise RuntimeError(_fetch_help(f"licence file not found: {copyright_path}"))
        source_sha = {f"data.{p}": hashlib.sha256((dict_dir / f"data.{p}").read_bytes()).hexdigest()
                      for p in POS_FILES}
        synsets = [s for p in POS_FILES for s in parse_data_file(dict_dir / f"data.{p}")]
        licence = wordnet_licence(copyright_path)

    documents, contexts, mentions, stats = build_records(synsets)
    per_domain = Counter(m["corpus"] for m in mentions)
    split = split_domains(per_domain)
    files: dict[str, bytes] = {}
    for d in LEXNAMES:
        files[f"documents/{d}.json"] = _jsonl_bytes(documents.get(d, []))
    files[f"documents/{CONTEXT_WORLD}.json"] = _jsonl_bytes(contexts)
    for name in ("train", "val", "test"):
        files[f"mentions/{name}.json"] = _jsonl_bytes([m for m in mentions if split[m["corpus"]] == name])
    if out.exists():
        for old in list(out.glob("documents/*.json.gz")) + list(out.glob("mentions/*.json.gz")):
            old.unlink()
    for rel, raw in files.items():
        write_gz(out / (rel + ".gz"), raw)

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
    meta = {
        "dataset": "wordnet_zeshel", "format_version": FORMAT_VERSION,
        "source": {"debian_package": PACKAGE, "version": version, "sha256": source_sha},
        "split_rule": {"seed": SPLIT_SEED, "test_share": TEST_SHARE, "val_share": VAL_SHARE},
        "counts": counts, "domains": domains, "context_world": CONTEXT_WORLD,
        "gzip": {"compresslevel": 9, "mtime": 0, "zlib": zlib.ZLIB_RUNTIME_VERSION},
        "sha256_uncompressed": {rel + ".gz": hashlib.sha256(raw).hexdigest() for rel, raw in sorted(files.items())},
    }
    (out / "build.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    (out / "LICENSE").write_text(
        f"WordNet 3.0 licence, as shipped by the Debian package {PACKAGE} ({version}) in "
        f"/{COPYRIGHT_REL}.\nThe data in this folder is derived from WordNet 3.0.\n\n" + licence, encoding="utf-8")
    (out / "DATACARD.md").write_text(datacard(meta, mentions, documents, contexts), encoding="utf-8")
    if not quiet:
        c = counts["splits"]
        print(f"wrote {out}: {counts['synsets']} synsets, {counts['mentions']} mentions of {counts['examples']} "
              f"examples; train {c['train']['mentions']} / val {c['val']['mentions']} / test {c['test']['mentions']} "
              "mentions")
    return meta


def datacard(meta: dict, mentions: list[dict], documents: dict, contexts: list[dict]) -> str:
    """The data card (Markdown), generated from the build's own numbers."""
    c = meta["counts"]
    rows = "\n".join(f"| {d} | {v['split']} | {v['entities']:,} | {v['mentions']:,} | {v['polysemous_mentions']:,} |"
                     for d, v in sorted(meta["domains"].items(), key=lambda kv: (("train", "val", "test").index(
                         kv[1]["split"]), kv[0])))
    split_rows = "\n".join(f"| {s} | {v['domains']} | {v['entities']:,} | {v['mentions']:,} | "
                           f"{100 * v['mentions'] / c['mentions']:.1f} % |" for s, v in c["splits"].items())
    ex = next(m for m in mentions if m["label_document_id"] == "02084071-n")
    dog = next(d for d in documents["noun.animal"] if d["document_id"] == "02084071-n")
    ctx = next(x for x in contexts if x["document_id"] == ex["context_document_id"])
    big = meta["domains"]["adj.all"]
    pos_mix = "; ".join(
        f"{sp} " + ", ".join(f"{p} {100 * n / v['mentions']:.1f} %" for p, n in sorted(Counter(
            {pp: sum(x["mentions"] for d, x in meta["domains"].items() if x["split"] == sp and d.startswith(pp))
             for pp in ("noun", "verb", "adj", "adv")}).items()) if n)
        for sp, v in c["splits"].items())
    return f"""# WordNet sense linking in ZeSHEL format (`data/wordnet_zeshel/`)

Zero-shot entity linking with WordNet 3.0 senses as the entities: link a word in an example sentence to its
synset, among all synsets of the same lexicographer file, with the files split so that no test sense (and no
test domain) is seen in training -- ZeSHEL's setting (Logeswaran et al. 2019), small and offline.
Built by `jsdlib data build-wordnet` (`jsdlib/data/build_wordnet.py`) from the Debian package
`{meta['source']['debian_package']}` {meta['source']['version']}; the build is deterministic and
`tests/test_wordnet_build.py` rebuilds it and compares with these files.

## Layout (exactly ZeSHEL's, gzip-compressed JSON lines)
    documents/<domain>.json.gz        one line per synset: {{"document_id", "title", "text"}}
    documents/{meta['context_world']}.json.gz   the context documents (one example sentence each)
    mentions/{{train,val,test}}.json.gz  {{"mention_id", "context_document_id", "corpus", "start_index",
                                       "end_index", "text", "label_document_id", "category"}}
    build.json                        counts, split, source package and sha256 of every file
    LICENSE                           the WordNet 3.0 licence

- **Entity** = synset. `document_id` = `<offset>-<ss_type>`, `title` = lemma names joined with ", "
  (`_` -> space, adjective markers `(a)`, `(p)`, `(ip)` dropped), `text` = the definition: the gloss without
  its quoted examples and the attributions after them. Example: `{dog['document_id']}` -> title
  "{dog['title']}", text "{dog['text']}".
- **Mention** = a quoted example sentence of a synset containing one of its lemmas verbatim (case-insensitive,
  whole tokens). The sentence is tokenised on whitespace with punctuation at word edges split off, and that
  token string is the context document's `text`; `start_index`..`end_index` (inclusive) is the lemma's span and
  `text` = the span's tokens joined by spaces. If several lemmas occur, the longest wins, then the earliest.
  Example: mention `{ex['mention_id']}` "{ex['text']}" (tokens {ex['start_index']}..{ex['end_index']}) in
  `{ex['context_document_id']}`: "{ctx['text']}".
- **Context documents**: ZeSHEL mentions point into a document of their world; here each example sentence is a
  context document of its own, in the pseudo-world file `{meta['context_world']}` (never a candidate). The
  loader builds the query window from `context_document_id` + the span, as for real ZeSHEL.
- `category` = `polysemous` if the matched lemma names more than one synset of the mention's domain, else
  `monosemous` (ZeSHEL uses this field for its overlap categories).
- `corpus` = the domain (lexicographer file). The candidate set of a mention is its domain's whole catalogue.

## Domain split (zero-shot)
The 45 lexicographer files are shuffled with `numpy.random.default_rng({meta['split_rule']['seed']})`, stably
sorted by mention count (largest first), and each in turn goes to the split furthest below its target share of
all mentions (test {meta['split_rule']['test_share']:.0%}, val {meta['split_rule']['val_share']:.1%}, train the
rest). Largest-first keeps the shares near the targets although adj.all alone holds ~45 % of the mentions.
A domain is in exactly one split, so no test sense is seen in training. Each domain's catalogue holds all
synsets of its file, so other senses of a polysemous lemma are candidates.

| split | domains | entities | mentions | share of mentions |
|---|---|---|---|---|
{split_rows}

{c['synsets']:,} synsets, {c['examples']:,} quoted examples, {c['mentions']:,} of which contain a lemma of
their synset verbatim and are mentions. The largest file, adj.all, holds {big['mentions']:,} mentions
({100 * big['mentions'] / c['mentions']:.0f} % of all; it is in {big['split']}). Mentions by part of speech
(the lexicographer file's prefix): {pos_mix}.

| domain | split | entities | mentions | polysemous mentions |
|---|---|---|---|---|
{rows}

## Licence and attribution
WordNet 3.0 Copyright 2006 by Princeton University. All rights reserved. The data here is derived from
WordNet 3.0 (Princeton University, https://wordnet.princeton.edu/) and redistributed under the WordNet 3.0
licence, whose full text is in `LICENSE` (taken from the Debian package's copyright file). Princeton
University makes no representations or warranties about this derived data.

Please cite: George A. Miller (1995). WordNet: A Lexical Database for English. Communications of the ACM
38(11): 39-41. Christiane Fellbaum (1998, ed.) WordNet: An Electronic Lexical Database. MIT Press.
The ZeSHEL layout: Logeswaran et al. (2019), Zero-Shot Entity Linking by Reading Entity Descriptions, ACL.
"""


def main(argv=None) -> int:
    from jsdlib.common.cliargs import OneLineParser, check_output

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
