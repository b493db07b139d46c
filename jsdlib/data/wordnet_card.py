"""The WordNet sense-linking set's data card (Markdown), generated from the build's own numbers."""
from __future__ import annotations

from collections import Counter


def _tables(meta: dict) -> tuple[str, str, str]:
    """(domain rows, split rows, part-of-speech mix per split) of the data card."""
    c = meta["counts"]
    rows = "\n".join(f"| {d} | {v['split']} | {v['entities']:,} | {v['mentions']:,} | {v['polysemous_mentions']:,} |"
                     for d, v in sorted(meta["domains"].items(), key=lambda kv: (("train", "val", "test").index(
                         kv[1]["split"]), kv[0])))
    split_rows = "\n".join(f"| {s} | {v['domains']} | {v['entities']:,} | {v['mentions']:,} | "
                           f"{100 * v['mentions'] / c['mentions']:.1f} % |" for s, v in c["splits"].items())
    pos_mix = "; ".join(
        f"{sp} " + ", ".join(f"{p} {100 * n / v['mentions']:.1f} %" for p, n in sorted(Counter(
            {pp: sum(x["mentions"] for d, x in meta["domains"].items() if x["split"] == sp and d.startswith(pp))
             for pp in ("noun", "verb", "adj", "adv")}).items()) if n)
        for sp, v in c["splits"].items())
    return rows, split_rows, pos_mix


def datacard(meta: dict, mentions: list[dict], documents: dict, contexts: list[dict]) -> str:
    """The data card (Markdown), generated from the build's own numbers."""
    c = meta["counts"]
    rows, split_rows, pos_mix = _tables(meta)
    ex = next(m for m in mentions if m["label_document_id"] == "02084071-n")
    dog = next(d for d in documents["noun.animal"] if d["document_id"] == "02084071-n")
    ctx = next(x for x in contexts if x["document_id"] == ex["context_document_id"])
    big = meta["domains"]["adj.all"]
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


__all__ = ["datacard"]
