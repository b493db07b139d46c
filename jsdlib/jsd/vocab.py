"""Token <-> term: reading a sparse vector ``z`` as a weighted bag of words (arXiv 2508.16707).

Every dimension of ``z`` is a token of the text tower's vocabulary. :class:`Vocabulary` prints token ids as
readable terms for WordPiece (BERT, ``##`` pieces) and byte-level BPE (CLIP, ``</w>`` word ends) vocabularies;
:func:`top_terms` lists a vector's heaviest terms. :func:`caption_token_ids` and :func:`bag_mask` give each
caption's own tokens, which D2S's expansion control masks ``z`` to (:mod:`jsdlib.jsd.train`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from jsdlib.vlp.minilm import minilm_tokenizer


@dataclass
class Vocabulary:
    """The tokens behind the dimensions of ``z`` and how to print them as words.

    ``kind``: ``"wordpiece"`` (BERT: ``##`` marks a piece that continues the previous one),
    ``"bpe"`` (CLIP: ``</w>`` ends a word; tokens are byte-level unicode) or ``"plain"``.
    :meth:`term` prints whole words as they are and marks a word *piece* with a hyphen on the side where
    the word goes on: WordPiece ``##ing`` -> ``-ing``, BPE ``sel`` (no ``</w>``) -> ``sel-``.
    """

    tokens: list[str]
    kind: str = "plain"
    special_ids: list[int] = field(default_factory=list)
    byte_decoder: dict | None = None

    def __post_init__(self):
        if self.kind not in ("wordpiece", "bpe", "plain"):
            raise ValueError(f"Vocabulary kind must be 'wordpiece', 'bpe' or 'plain', got {self.kind!r}")

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_hf(cls, tokenizer) -> "Vocabulary":
        """From a Hugging Face tokenizer (WordPiece if its tokens use ``##``, else plain)."""
        vocab = tokenizer.get_vocab()
        n = max(vocab.values()) + 1
        tokens = [""] * n
        for tok, i in vocab.items():
            tokens[i] = tok
        kind = "wordpiece" if any(t.startswith("##") for t in tokens[:n]) else "plain"
        return cls(tokens, kind, sorted(set(int(i) for i in tokenizer.all_special_ids)))

    @classmethod
    def from_open_clip(cls, tokenizer=None) -> "Vocabulary":
        """From open_clip's ``SimpleTokenizer`` (CLIP BPE, 49,408 tokens); a new one if none is given."""
        if tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer
            tokenizer = SimpleTokenizer()
        dec = tokenizer.decoder
        tokens = [dec[i] for i in range(len(dec))]
        special = [i for i, t in enumerate(tokens) if t.startswith("<start_of_text") or t.startswith("<end_of_text")]
        return cls(tokens, "bpe", special, dict(tokenizer.byte_decoder))

    @classmethod
    def from_minilm(cls) -> "Vocabulary":
        """The stand-in's vocabulary: MiniLM's BERT-uncased WordPiece (30,522 tokens)."""
        return cls.from_hf(minilm_tokenizer())

    @classmethod
    def coerce(cls, obj) -> "Vocabulary":
        """A Vocabulary from a Vocabulary, a HF tokenizer, an open_clip SimpleTokenizer or a token list."""
        if isinstance(obj, Vocabulary):
            return obj
        if hasattr(obj, "get_vocab") and hasattr(obj, "all_special_ids"):
            return cls.from_hf(obj)
        if hasattr(obj, "decoder") and hasattr(obj, "byte_decoder"):
            return cls.from_open_clip(obj)
        if hasattr(obj, "tokenizer") and hasattr(obj.tokenizer, "get_vocab"):  # open_clip HFTokenizer wrapper
            return cls.from_hf(obj.tokenizer)
        if isinstance(obj, (list, tuple)) and all(isinstance(t, str) for t in obj):
            kind = ("wordpiece" if any(t.startswith("##") for t in obj)
                    else "bpe" if any(t.endswith("</w>") for t in obj) else "plain")
            return cls(list(obj), kind)
        raise TypeError(f"cannot build a Vocabulary from {type(obj).__name__}; pass a Hugging Face tokenizer, "
                        "open_clip's SimpleTokenizer, a list of token strings or a Vocabulary")

    def _bytes_to_text(self, tok: str) -> str:
        if self.byte_decoder is None:
            return tok
        try:
            return bytearray(self.byte_decoder[c] for c in tok).decode("utf-8", errors="replace")
        except KeyError:
            return tok

    def term(self, i: int) -> str:
        """Token ``i`` as a readable term (see the class docstring for how pieces are marked)."""
        if not 0 <= i < len(self.tokens):
            raise IndexError(f"token id {i} out of range for a vocabulary of {len(self.tokens)}")
        tok = self.tokens[i]
        if i in self.special_ids:
            return tok
        if self.kind == "wordpiece":
            return "-" + tok[2:] if tok.startswith("##") and len(tok) > 2 else tok
        if self.kind == "bpe":
            if tok.endswith("</w>"):
                return self._bytes_to_text(tok[:-4])
            return self._bytes_to_text(tok) + "-"
        return tok


def top_terms(z: torch.Tensor, k: int, vocab, keep=None) -> list:
    """The ``k`` heaviest non-zero terms of ``z`` as ``[(term, weight), ...]``, heaviest first.

    ``z``: one vector (|V|,) or a batch (B, |V|) (then one list per row). ``vocab``: a :class:`Vocabulary`
    or anything :meth:`Vocabulary.coerce` accepts. ``keep``: a predicate on the printed term (e.g.
    :func:`jsdlib.jsd.words.is_alpha_word`); then the ``k`` heaviest terms that pass it (the others are skipped).
    """
    vocab = Vocabulary.coerce(vocab)
    if int(k) != k or k < 1:
        raise ValueError(f"top_terms: k must be a positive integer, got {k!r}")
    if z.dim() == 2:
        return [top_terms(row, k, vocab, keep) for row in z]
    if z.dim() != 1:
        raise ValueError(f"top_terms expects a (|V|,) or (B, |V|) tensor, got shape {tuple(z.shape)}")
    if z.shape[0] != len(vocab):
        raise ValueError(f"top_terms: z has {z.shape[0]} dimensions but the vocabulary has {len(vocab)} tokens")
    z = z.detach().float().cpu()
    nonzero = int((z != 0).sum())
    n = min(int(k), nonzero) if keep is None else nonzero
    if n == 0:
        return []
    w, idx = torch.topk(z, n)
    terms = [(vocab.term(int(i)), float(v)) for v, i in zip(w, idx) if v != 0]
    return terms if keep is None else [(t, v) for t, v in terms if keep(t)][:int(k)]


def caption_token_ids(captions: Sequence[str], tokenizer, drop_special: bool = True) -> list[torch.Tensor]:
    """Token ids of each caption under a HF tokenizer (for D2S's expansion control: z masked to these)."""
    enc = tokenizer(list(captions), add_special_tokens=not drop_special, truncation=True)["input_ids"]
    return [torch.as_tensor(sorted(set(ids)), dtype=torch.long) for ids in enc]


def bag_mask(token_ids: Sequence[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """(B, |V|) 0/1 float mask with ones at each row's token ids."""
    mask = torch.zeros(len(token_ids), vocab_size)
    for r, ids in enumerate(token_ids):
        if len(ids):
            mask[r, ids] = 1.0
    return mask


__all__ = ["Vocabulary", "top_terms", "caption_token_ids", "bag_mask"]
