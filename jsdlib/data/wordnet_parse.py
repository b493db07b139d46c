"""WordNet 3.0's data files (wndb(5WN)) read into synsets, and ZeSHEL-style tokens and lemma spans.

Each ``data.<pos>`` line is ``offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt ... | gloss``; the
gloss holds the definition and the quoted example sentences that become mentions (:mod:`jsdlib.data.build_wordnet`).
"""
from __future__ import annotations

import re
import string
from pathlib import Path

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


__all__ = ["LEXNAMES", "tokenize", "lemma_name", "split_gloss", "parse_data_file", "find_span"]
