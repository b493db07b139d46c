"""ZeSHEL-format entity-linking sets: real ZeSHEL and the bundled WordNet sense-linking set.

ZeSHEL (Logeswaran et al. 2019, https://github.com/lajanugen/zeshel) ships JSON lines in two folders:
    documents/<world>.json     {"document_id", "title", "text"}           (one world = one domain)
    mentions/<split>.json      {"mention_id", "context_document_id", "corpus", "start_index",
                                "end_index", "text", "label_document_id", "category"}
``start_index`` / ``end_index`` are an *inclusive* span of whitespace tokens of the context document's
``text``; ``corpus`` is the mention's world, whose documents are its candidates. Files may also be gzip
compressed (``.json.gz``, the bundled WordNet set). The bundled set keeps its context documents (one example
sentence each) in the pseudo-world ``documents/wordnet_examples.json.gz``; the loader finds a context document
in the mention's own world first (real ZeSHEL) and otherwise in the other world files.

Marker tokens. Queries are ``left context  [unused0] mention [unused1]  right context`` and candidates are
``title [unused2] text`` (BLINK's layout; BLINK adds new tokens [START_ENT]/[END_ENT]/[ENT]). We use three of
BERT-uncased's reserved ``[unusedN]`` vocabulary entries instead, so MiniLM needs no new embedding rows: a
tokenizer must treat them as special tokens (``jsdlib.vlp.minilm.minilm_tokenizer(markers=True)`` does), otherwise WordPiece
splits "[unused0]" into "[", "unused", "##0", "]".
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jsdlib.data.errors import DataFormatError, DatasetNotFoundError, UnknownDomainError, UnknownSplitError
from jsdlib.data.paths import wordnet_dir
from jsdlib.data.split import SPLITS

ZESHEL_URL = "https://github.com/lajanugen/zeshel"
MENTION_START, MENTION_END, TITLE_SEP = "[unused0]", "[unused1]", "[unused2]"
MARKER_TOKENS = (MENTION_START, MENTION_END, TITLE_SEP)
ZESHEL_MENTION_KEYS = ("mention_id", "context_document_id", "corpus", "start_index", "end_index", "text",
                       "label_document_id")          # "category" is optional
ZESHEL_DOCUMENT_KEYS = ("document_id", "title", "text")
DEFAULT_QUERY_WINDOW = 32   # whitespace tokens of context kept on each side of the mention


def _zeshel_help() -> str:
    return (f"ZeSHEL: download it from {ZESHEL_URL} (documents/ and mentions/ folders); the bundled WordNet set "
            "is data/wordnet_zeshel/ (rebuild: `jsdlib data build-wordnet`).")


def _zeshel_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.json`` or ``folder/stem.json.gz``, whichever exists (plain first)."""
    for name in (f"{stem}.json", f"{stem}.json.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict]:
    """JSON lines of a (possibly gzip-compressed) file; every record must have ``keys``."""
    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}, line {n}: not valid JSON ({e.msg})") from e
            if not isinstance(rec, dict):
                raise DataFormatError(f"{path}, line {n}: expected a JSON object, got {type(rec).__name__}")
            missing = [k for k in keys if k not in rec]
            if missing:
                raise DataFormatError(f"{path}, line {n}: missing key(s) {missing} (ZeSHEL format needs {list(keys)})")
            out.append(rec)
    return out


def _world_stem(path: Path) -> str:
    return path.name[:-len(".json.gz")] if path.name.endswith(".json.gz") else path.name[:-len(".json")]


@dataclass(eq=False, repr=False)
class ZeshelSet:
    """One split of a ZeSHEL-format set.

    ``documents``: world -> its entity documents ``{"document_id", "title", "text"}`` (the candidate catalogue
    of every mention whose ``corpus`` is that world), for the worlds of the loaded mentions.
    ``mentions``: the ZeSHEL mention records, in file order. ``contexts``: context_document_id -> context
    document, for the loaded mentions.
    """

    documents: dict[str, list[dict]]
    mentions: list[dict]
    contexts: dict[str, dict] = field(default_factory=dict)
    root: Path | None = None
    split: str = ""

    def __post_init__(self):
        self._row = {w: {d["document_id"]: r for r, d in enumerate(docs)} for w, docs in self.documents.items()}

    def __len__(self) -> int:
        return len(self.mentions)

    def __repr__(self) -> str:
        n_docs = sum(len(d) for d in self.documents.values())
        return (f"ZeshelSet({self.split!r}: {len(self.mentions)} mentions, {len(self.documents)} domains, "
                f"{n_docs} entities, root={self.root})")

    @property
    def domains(self) -> list[str]:
        """The worlds of the loaded mentions (sorted)."""
        return sorted(self.documents)

    def context_tokens(self, i: int) -> list[str]:
        """The whitespace tokens of mention ``i``'s context document."""
        return self.contexts[self.mentions[i]["context_document_id"]]["text"].split()

    def mention_tokens(self, i: int) -> list[str]:
        """The tokens of mention ``i`` itself: ``tokens[start_index : end_index + 1]``."""
        m = self.mentions[i]
        return self.context_tokens(i)[m["start_index"]:m["end_index"] + 1]

    def query_text(self, i: int, window: int = DEFAULT_QUERY_WINDOW) -> str:
        """Mention ``i`` in its context window with markers: ``left [unused0] mention [unused1] right``.

        ``left`` / ``right`` are up to ``window`` whitespace tokens of the context document on each side of the
        inclusive span ``start_index..end_index`` (BLINK centres a window of word pieces the same way).
        """
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        m, tokens = self.mentions[i], self.context_tokens(i)
        s, e = m["start_index"], m["end_index"]
        left, right = tokens[max(0, s - window):s], tokens[e + 1:e + 1 + window]
        return " ".join(left + [MENTION_START] + tokens[s:e + 1] + [MENTION_END] + right)

    def query_texts(self, window: int = DEFAULT_QUERY_WINDOW) -> list[str]:
        """:meth:`query_text` of every mention."""
        return [self.query_text(i, window) for i in range(len(self.mentions))]

    @staticmethod
    def candidate_text(doc: dict) -> str:
        """A candidate entity as text: ``title [unused2] text``."""
        return f"{doc['title']} {TITLE_SEP} {doc['text']}"

    def gold(self, i: int) -> tuple[str, int]:
        """(world, row in ``documents[world]``) of mention ``i``'s gold entity."""
        m = self.mentions[i]
        return m["corpus"], self._row[m["corpus"]][m["label_document_id"]]

    def document(self, world: str, document_id: str) -> dict:
        """The entity document ``document_id`` of ``world``."""
        return self.documents[world][self._row[world][document_id]]


def _keep_mentions(mentions: list[dict], men_path: Path, domains, max_mentions: int | None,
                   seed: int) -> list[dict]:
    """The mentions of ``domains`` (all if None), then a seeded subset of ``max_mentions`` in file order."""
    if domains is not None:
        domains = [domains] if isinstance(domains, str) else list(domains)
        present = {m["corpus"] for m in mentions}
        unknown = [d for d in domains if d not in present]
        if unknown:
            raise UnknownDomainError(f"domain(s) {unknown} have no mention in {men_path}; its domains are "
                                     f"{sorted(present)}")
        keep = set(domains)
        mentions = [m for m in mentions if m["corpus"] in keep]
    if max_mentions is not None:
        if max_mentions < 1:
            raise ValueError(f"max_mentions must be >= 1, got {max_mentions}")
        if max_mentions < len(mentions):
            idx = np.sort(np.random.default_rng(seed).choice(len(mentions), max_mentions, replace=False))
            mentions = [mentions[i] for i in idx]
    return mentions


def _load_documents(mentions: list[dict], doc_dir: Path, men_path: Path) -> dict[str, list[dict]]:
    """world -> its entity documents, for the worlds of ``mentions``; every gold label must be among them."""
    documents: dict[str, list[dict]] = {}
    for world in sorted({m["corpus"] for m in mentions}):
        path = _zeshel_file(doc_dir, world)
        if path is None:
            raise DatasetNotFoundError(f"no document file for world {world!r} (corpus of mentions in {men_path}): "
                                       f"{doc_dir}/{world}.json[.gz]. " + _zeshel_help())
        documents[world] = _read_jsonl(path, ZESHEL_DOCUMENT_KEYS)
    ids = {w: {d["document_id"] for d in docs} for w, docs in documents.items()}
    for m in mentions:
        if m["label_document_id"] not in ids[m["corpus"]]:
            raise DataFormatError(f"mention {m['mention_id']} of {men_path} points to unknown document "
                                  f"{m['label_document_id']!r} (label_document_id) in world {m['corpus']!r}")
    return documents


def _load_contexts(mentions: list[dict], documents: dict, doc_dir: Path, men_path: Path) -> dict[str, dict]:
    """context_document_id -> context document: the mention's own world first (real ZeSHEL), then the other
    world files; every mention's span must lie inside its context."""
    need = {m["context_document_id"] for m in mentions}
    contexts = {d["document_id"]: d for docs in documents.values() for d in docs if d["document_id"] in need}
    if len(contexts) < len(need):
        for path in sorted(doc_dir.glob("*.json*")):
            if _world_stem(path) in documents or not path.name.endswith((".json", ".json.gz")):
                continue
            for d in _read_jsonl(path, ZESHEL_DOCUMENT_KEYS):
                if d["document_id"] in need:
                    contexts[d["document_id"]] = d
            if len(contexts) == len(need):
                break
    for m in mentions:
        ctx = contexts.get(m["context_document_id"])
        if ctx is None:
            raise DataFormatError(f"mention {m['mention_id']} of {men_path} points to unknown context document "
                                  f"{m['context_document_id']!r} (not in any file of {doc_dir})")
        s, e, n = m["start_index"], m["end_index"], len(ctx["text"].split())
        if not (isinstance(s, int) and isinstance(e, int) and 0 <= s <= e < n):
            raise DataFormatError(f"mention {m['mention_id']} of {men_path}: span {s}..{e} (inclusive) is outside "
                                  f"its context document {m['context_document_id']!r} of {n} tokens")
    return contexts


def load_zeshel(root, split: str, domains=None, max_mentions: int | None = None, seed: int = 0) -> ZeshelSet:
    """Read one split of a ZeSHEL-format set: ``root/mentions/<split>.json[.gz]`` + ``root/documents/*.json[.gz]``.

    ``domains``: keep only mentions of these worlds (each must have a mention in the split).
    ``max_mentions``: keep a seeded random subset of this many mentions (``numpy.random.default_rng(seed)``,
    file order kept), for fast runs. The catalogue of every world of the kept mentions is loaded whole.
    Errors: :class:`DatasetNotFoundError` (missing folder / file), :class:`UnknownSplitError`,
    :class:`UnknownDomainError`, :class:`DataFormatError` (bad record, span outside the context, or a mention
    pointing to a document that does not exist).
    """
    root = Path(root)
    if split not in SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; ZeSHEL splits are {list(SPLITS)}")
    doc_dir, men_dir = root / "documents", root / "mentions"
    for d in (root, doc_dir, men_dir):
        if not d.is_dir():
            raise DatasetNotFoundError(f"ZeSHEL folder not found: {d} (expected {root}/documents/ and "
                                       f"{root}/mentions/). " + _zeshel_help())
    men_path = _zeshel_file(men_dir, split)
    if men_path is None:
        raise DatasetNotFoundError(f"no mentions file for split {split!r}: {men_dir}/{split}.json[.gz]. "
                                   + _zeshel_help())
    mentions = _keep_mentions(_read_jsonl(men_path, ZESHEL_MENTION_KEYS), men_path, domains, max_mentions, seed)
    for m in mentions:  # a world names a file in documents/: it may not point anywhere else
        w = m["corpus"]
        if not isinstance(w, str) or not w or w in (".", "..") or "/" in w or "\\" in w or os.path.isabs(w):
            raise DataFormatError(f"mention {m['mention_id']} of {men_path} has corpus {w!r}, which is not a world "
                                  f"name (a file stem inside {doc_dir})")
    documents = _load_documents(mentions, doc_dir, men_path)
    contexts = _load_contexts(mentions, documents, doc_dir, men_path)
    return ZeshelSet(documents=documents, mentions=mentions, contexts=contexts, root=root, split=split)


def load_wordnet(split: str = "test", **kwargs) -> ZeshelSet:
    """One split of the bundled WordNet set (:func:`load_zeshel` on :func:`wordnet_dir`)."""
    return load_zeshel(wordnet_dir(), split, **kwargs)


__all__ = ["ZeshelSet", "load_zeshel", "load_wordnet", "MENTION_START", "MENTION_END", "TITLE_SEP",
           "MARKER_TOKENS", "DEFAULT_QUERY_WINDOW"]
