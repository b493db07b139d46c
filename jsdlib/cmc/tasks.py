"""CMC's two tasks as :class:`jsdlib.cmc.data.RerankData`: WordNet sense linking (the MiniLM bi-encoder's top-K)
and emoji text -> image (the bundled JSD model's top-K); :data:`TASKS` holds each task's evaluation settings."""
from __future__ import annotations

import json

import numpy as np
import torch

from jsdlib.cmc.cross_encoder import CEConfig
from jsdlib.cmc.data import RerankData
from jsdlib.data.karpathy import load_emoji
from jsdlib.data.zeshel import load_zeshel
from jsdlib.data.paths import wordnet_dir
from jsdlib.jsd.evaluate import encode, score_matrices
from jsdlib.jsd.io import load_jsd
from jsdlib.jsd.presets import get_preset
from jsdlib.retrieval.finetune import load_biencoder
from jsdlib.retrieval.topk import retrieve
from jsdlib.vlp.features import cached_features
from jsdlib.vlp.standin import load_standin


def emoji_task(split: str, k: int = 1024, score: str = "integrated", jsd=None, meta: dict | None = None,
               progress: bool = False) -> RerankData:
    """Text -> image over one emoji split: JSD retrieval (``score``: sparse / dense / integrated) -> RerankData.

    CMC's vectors are the JSD **dense** vectors ``d_t`` (captions) and ``d_i`` (images), 256-d and normalised:
    the retriever's own embedding space (as CMC's encoders start from the BE checkpoint). The CE reads the
    caption text and the image's pre-projection feature ``h_i``. Catalogue = the split's images.
    """
    if jsd is None:
        jsd, meta = load_jsd()
    cfg = get_preset((meta or {}).get("preset", "cpu-emoji"))
    sp = load_emoji(split)
    feats = cached_features(load_standin(), sp, progress=progress)
    enc = encode(jsd, feats)
    S = score_matrices(enc, float(jsd.tau.detach()), cfg.w1, cfg.w2)[score]
    k = min(k, S.shape[1])
    sc, top = torch.sort(S, dim=1, descending=True, stable=True)
    gold = torch.as_tensor(np.asarray(feats.caption_to_image), dtype=torch.long)
    return RerankData(enc["D_t"], enc["D_i"], top[:, :k].contiguous(), sc[:, :k].contiguous(), gold,
                      S[torch.arange(len(gold)), gold], ["emoji"] * len(gold), list(sp.captions), None,
                      feats.image.float(), name=f"emoji-{split}-{score}")


WORDNET_TRAIN_MAX_ENTITIES = 4000   # CMC trains on the train domains with at most this many entities (CPU budget)
WORDNET_VAL_MAX_ENTITIES = 1000     # model selection on the small val domains (the BE's own choice)


def wordnet_domains(split: str, max_entities: int | None) -> list[str] | None:
    """The ``split`` domains of the WordNet set with at most ``max_entities`` entities (None: all domains).

    Train (<= 4,000): 12 of the 16 train domains, 17,235 entities, 6,018 mentions (adj.all, noun.artifact,
    noun.animal and noun.plant are left out: encoding their 41,561 entities would take most of an hour here).
    Val (<= 1,000): the 7 val domains the bi-encoder also selects on (3,023 entities, 1,020 mentions).
    """
    if max_entities is None:
        return None
    meta = json.loads((wordnet_dir() / "build.json").read_text(encoding="utf-8"))
    return sorted(d for d, v in meta["domains"].items()
                  if v["split"] == split and v["mentions"] and v["entities"] <= max_entities)


def wordnet_task(split: str, be_kind: str = "asis", k: int = 1024, domains="default",
                 max_mentions: int | None = None, progress: bool = False) -> RerankData:
    """WordNet sense linking (the ZeSHEL-format set) with the MiniLM bi-encoder's top-``k`` per mention.

    ``domains="default"``: train and val use the documented subsets of :func:`wordnet_domains`, test uses all
    15 test domains. CMC's frozen vectors are the BE's (mean-pooled, unit-norm) query and candidate vectors;
    the teacher is ``softmax(20 * cos)``, the BE's own training logits.
    """
    if domains == "default":
        domains = {"train": wordnet_domains("train", WORDNET_TRAIN_MAX_ENTITIES),
                   "val": wordnet_domains("val", WORDNET_VAL_MAX_ENTITIES)}.get(split)
    zset = load_zeshel(wordnet_dir(), split, domains=domains, max_mentions=max_mentions)
    be = load_biencoder(be_kind, train_if_missing=False) if be_kind == "finetuned" else load_biencoder(be_kind)
    ret = retrieve(be, zset, k=k, progress=progress)
    return RerankData.from_retrieval(ret, zset, name=f"wordnet-{split}-be_{be_kind}")


TASKS = {
    # eval subsets: the CE costs ~k_ce MiniLM passes per query, so test metrics use the first n_eval queries
    # of a seeded permutation (the same queries for every pipeline and seed)
    "wordnet": {"k": 512, "k_ce": 16, "n_eval": 300, "ce": CEConfig(max_len=64)},
    # emoji: no cross-encoder pipelines by default (no image CE trainable on a CPU reranked above chance:
    # docs/decisions.md, "Image cross-encoder"); names=PIPELINES (`jsdlib cmc compare --task emoji
    # --with-ce`) still runs the CE rows with this config.
    "emoji": {"k": 512, "k_ce": 16, "n_eval": 300, "ce": CEConfig(max_len=32, lr=3e-4, max_train_queries=6000,
                                                                    epochs=3),
              "names": ("be", "be_cmc", "cmc_final"),
              "ce_note": "no cross-encoder rows: no image CE trainable in the CPU budget reranks above chance "
                         "(see docs/decisions.md)"},
}


def load_task(task: str, split: str, progress: bool = False, **kw) -> RerankData:
    """``split`` of ``task`` ("wordnet" or "emoji") as :class:`RerankData` (``kw`` go to the task's builder)."""
    if task == "emoji":
        return emoji_task(split, progress=progress, **kw)
    if task == "wordnet":
        return wordnet_task(split, progress=progress, **kw)
    raise ValueError(f"unknown task {task!r}; use 'wordnet' or 'emoji'")
