"""Link one mention: the bundled pipeline bi-encoder -> CMC over one WordNet-set domain (notebook 00)."""
from __future__ import annotations

import torch

from jsdlib.cmc.checkpoint import load_bundled
from jsdlib.cmc.data import RerankData
from jsdlib.cmc.rerank import cmc_rerank
from jsdlib.data.zeshel import MENTION_END, MENTION_START, load_zeshel
from jsdlib.data.paths import wordnet_dir
from jsdlib.retrieval.finetune import load_biencoder
from jsdlib.retrieval.topk import retrieve


class Linker:
    """Link mentions of one WordNet-set domain: the MiniLM bi-encoder's top-``k`` senses, reranked by CMC.

    ``linker = Linker("noun.shape")`` encodes the domain's senses once with the as-is bi-encoder (cached), and
    loads the committed CMC head (``jsdlib/assets/cmc_wordnet.safetensors``, frozen encoders, trained on the
    train domains). ``linker.link(i)`` ranks the senses for mention ``i``: first by the bi-encoder's
    ``cos(q, c_k)`` of mean-pooled MiniLM vectors, then by CMC's ``s_k = X^(2)_0 . X^(2)_k`` over
    ``[q; c_1..c_K]`` read jointly.
    ``data_dir`` reads any ZeSHEL-format folder (real ZeSHEL included) instead of the bundled set.
    """

    def __init__(self, domain: str, split: str = "test", k: int = 64, data_dir=None, model=None, be=None,
                 progress: bool = False):
        self.zset = load_zeshel(data_dir or wordnet_dir(), split, domains=[domain])
        if not len(self.zset):
            raise ValueError(f"domain {domain!r} has no {split} mentions")
        ret = retrieve(be or load_biencoder("asis"), self.zset, k=k, progress=progress)
        self.data = RerankData.from_retrieval(ret, self.zset, name=f"{domain}-{split}")
        docs = [self.zset.document(w, c) for w, c in zip(ret.cand_domain, ret.cand_ids)]
        # senses can share a title (WordNet's "take" has dozens): label each with the start of its gloss
        self.titles = [f"{d['title']} ({' '.join(d['text'].split()[:6])}...)" for d in docs]
        self.model, self.meta = (model, {}) if model is not None else load_bundled()
        self.k = self.data.k

    def __len__(self) -> int:
        return len(self.zset)

    def mention(self, i: int) -> str:
        """Mention ``i`` in its context window, the mention itself in ``[[ ]]``."""
        return self.zset.query_text(i).replace(MENTION_START, "[[").replace(MENTION_END, "]]")

    @torch.no_grad()
    def link(self, i: int, top: int = 5) -> dict:
        """``{"mention", "gold", "be": [(title, score)], "cmc": [(title, score)], "be_rank", "cmc_rank"}``.

        Ranks are 1-based positions of the gold (``None`` when it is outside the bi-encoder's top-``k``).
        """
        if not 0 <= i < len(self):
            raise IndexError(f"mention {i} outside [0, {len(self)})")
        one = self.data.subset([i])
        rows, scores = cmc_rerank(self.model, one, self.k)
        be_rows, be_scores = one.topk[0][one.valid[0]], one.scores[0][one.valid[0]]
        gold = int(one.gold[0])
        rank = lambda r: (r.tolist().index(gold) + 1) if gold in r.tolist() else None  # noqa: E731
        keep = torch.isfinite(scores[0])
        return {"mention": self.mention(i), "gold": self.titles[gold],
                "be": [(self.titles[r], float(s)) for r, s in zip(be_rows[:top].tolist(), be_scores[:top])],
                "cmc": [(self.titles[r], float(s)) for r, s in zip(rows[0][keep][:top].tolist(),
                                                                    scores[0][keep][:top])],
                "be_rank": rank(be_rows), "cmc_rank": rank(rows[0][keep])}
