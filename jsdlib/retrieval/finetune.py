"""Fine-tuning the bi-encoder on the train domains with in-batch + hard negatives, and loading its weights.

For a batch of B mentions, the candidates are the B golds plus one hard negative per mention -- another sense of
the mention's lemma in its domain (an entity whose title lists the mention's surface form) when there is one,
else a random entity of the domain -- and the loss (:func:`in_batch_loss`) is the softmax cross-entropy of each
mention over all 2B candidates (in-batch negatives, Gillick et al. 2019; BLINK). AdamW, linear warm-up/decay,
seeded, resumable after every epoch (:func:`jsdlib.common.fit.fit`), model selection on validation R@64
(then MRR@10).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from jsdlib.common.fit import FitConfig, Task, fit
from jsdlib.common.integrity import file_sha256
from jsdlib.common.io import atomic_path
from jsdlib.common.paths import cache_dir
from jsdlib.common.schedule import warmup_decay
from jsdlib.common.seeding import generator, seeded
from jsdlib.data.zeshel import ZeshelSet, load_zeshel
from jsdlib.data.paths import wordnet_dir
from jsdlib.retrieval.biencoder import SCALE, BiEncoder
from jsdlib.retrieval.topk import retrieval_metrics, retrieve


@dataclass
class FinetuneConfig:
    """Fine-tuning of the BE on the train domains (defaults: the documented CPU subset)."""

    n_train: int | None = 1024        # train mentions (seeded subset; CPU budget); None = all 24,162
    epochs: int = 2
    batch_size: int = 16              # mentions per step (+ as many golds and hard negatives as candidates)
    lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    clip: float = 1.0
    scale: float = SCALE
    seed: int = 0
    val_domains: tuple | None = None  # None: the val domains whose catalogue has < val_max_entities entities
    val_max_entities: int = 1000      # WordNet: 7 val domains, 3,023 entities, 1,020 mentions
    n_val: int | None = 400           # val mentions for model selection (seeded subset)

    def ident(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=list).encode()).hexdigest()[:16]


def sibling_rows(zset: ZeshelSet) -> list[list[int]]:
    """Per mention: rows of its domain's other entities whose title lists the mention's surface form (lower-case).

    In WordNet these are the other senses of the mention's lemma in its domain (the polysemy the task is about).
    """
    index: dict[tuple[str, str], list[int]] = {}
    for world, docs in zset.documents.items():
        for r, d in enumerate(docs):
            for name in {n.strip().lower() for n in d["title"].split(",")}:
                index.setdefault((world, name), []).append(r)
    out = []
    for i, m in enumerate(zset.mentions):
        world, gold = zset.gold(i)
        out.append([r for r in index.get((world, m["text"].lower()), []) if r != gold])
    return out


def default_val_domains(max_entities: int = 1000, root: Path | None = None) -> list[str]:
    """The val domains of the WordNet set whose catalogue has fewer than ``max_entities`` entities (build.json)."""
    meta = json.loads((Path(root or wordnet_dir()) / "build.json").read_text(encoding="utf-8"))
    return sorted(d for d, v in meta["domains"].items()
                  if v["split"] == "val" and v["mentions"] and v["entities"] < max_entities)


def in_batch_loss(q: torch.Tensor, c: torch.Tensor, same: torch.Tensor, scale: float) -> torch.Tensor:
    """Softmax cross-entropy of each of the B mentions over the 2B candidates (golds first, in batch order)::

        L = - 1/B sum_i log [ exp(scale * q_i . c_{g(i)}) / sum_j exp(scale * q_i . c_j) ]

    ``same`` (B, 2B): True where candidate j is mention i's gold entity but not its own slot (another mention's
    gold equal to it, or its hard negative drawn as its gold): masked out, not a negative.
    """
    logits = scale * q @ c.T                                            # (B, 2B)
    return F.cross_entropy(logits.masked_fill(same, -1e4), torch.arange(len(q)))


class FinetuneTask(Task):
    """The BE's fine-tuning as a :class:`jsdlib.common.fit.Task`."""

    def __init__(self, be: BiEncoder, cfg: FinetuneConfig, train: ZeshelSet, val: ZeshelSet):
        self.model, self.cfg, self.train, self.val = be, cfg, train, val
        self.params = list(be.parameters())
        self.queries = [train.query_text(i) for i in range(len(train))]
        self.golds = [train.gold(i) for i in range(len(train))]
        self.siblings = sibling_rows(train)
        self.steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        self.start_id = hashlib.sha256(be.weights_id.encode()).hexdigest()[:8]   # encode-cache keys of val epochs

    def batches(self, epoch, gen):
        perm = torch.randperm(len(self.train), generator=gen).tolist()
        bs = self.cfg.batch_size
        return [perm[s * bs:(s + 1) * bs] for s in range(self.steps_per_epoch)]

    def _hard_negative(self, i: int, gen: torch.Generator) -> tuple[str, int]:
        """Another sense of mention ``i``'s lemma in its domain, else a random other entity of the domain."""
        world, row = self.golds[i]
        pool = self.siblings[i]
        if pool:
            return world, pool[int(torch.randint(len(pool), (1,), generator=gen))]
        neg = int(torch.randint(len(self.train.documents[world]) - 1, (1,), generator=gen))
        return world, neg + (neg >= row)

    def loss(self, idx, step, gen):
        keys = [self.golds[i] for i in idx] + [self._hard_negative(i, gen) for i in idx]
        texts = [self.train.candidate_text(self.train.documents[w][r]) for w, r in keys]
        q = self.model.embed(self.model.query_encoder, [self.queries[i] for i in idx])
        c = self.model.embed(self.model.cand_encoder, texts)
        same = torch.tensor([[keys[j] == self.golds[i] for j in range(len(keys))] for i in idx])
        own = torch.arange(len(idx))
        same[own, own] = False                       # a repeated gold elsewhere is not a negative
        loss = in_batch_loss(q, c, same, self.cfg.scale)
        return loss, {"loss": loss}

    def epoch_means(self, parts, n_batches):
        return {k: float(np.mean(v)) for k, v in parts.items()}

    def validate(self, epoch):
        self.model.eval()
        self.model.weights_id = f"ft:{self.cfg.ident()}:{self.start_id}:e{epoch}"
        m = retrieval_metrics(retrieve(self.model, self.val, k=64, progress=False), ks=(1, 16, 64))
        return {"val": m}, (m["R@64"], m["MRR@10"])

    def epoch_line(self, row):
        m = row["val"]
        return (f"epoch {row['epoch']}: loss {row['loss']:.4f}  val R@1 {m['R@1']:.2f} R@64 {m['R@64']:.2f} "
                f"MRR@10 {m['MRR@10']:.2f}  ({row['epoch_s']:.0f} s)")


def finetune(cfg: FinetuneConfig | None = None, root: Path | None = None, run_dir: Path | None = None,
             resume: bool = True, progress: bool = True, be: BiEncoder | None = None, log=print) -> tuple[BiEncoder, dict]:
    """Fine-tune the BE on the train domains; returns (best BE by val R@64, then MRR@10; history).

    Resumable: after every epoch the full state (weights, AdamW, schedule, RNGs, history) is saved in
    ``run_dir`` (default: under the cache, keyed by the config) with the best weights; a rerun continues where
    it stopped. The history is ``{"epochs": [rows], "best_epoch", "best": [R@64, MRR@10]}``.
    """
    cfg = cfg or FinetuneConfig()
    root = Path(root or wordnet_dir())
    train = load_zeshel(root, "train", max_mentions=cfg.n_train, seed=cfg.seed)
    val_domains = list(cfg.val_domains) if cfg.val_domains else default_val_domains(cfg.val_max_entities, root)
    val = load_zeshel(root, "val", domains=val_domains, max_mentions=cfg.n_val, seed=cfg.seed)
    be = be if be is not None else BiEncoder()
    ident = f"{cfg.ident()}:{be.weights_id}:{len(train)}:{len(val)}"
    run_dir = Path(run_dir or cache_dir() / "biencoder_runs" / cfg.ident())
    task = FinetuneTask(be, cfg, train, val)
    with seeded(cfg.seed):                      # dropout draws from torch's global RNG
        opt = torch.optim.AdamW(task.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = warmup_decay(opt, cfg.epochs * task.steps_per_epoch, cfg.warmup_frac, "linear", "nearest")
        res = fit(task, opt, sched, generator(cfg.seed), FitConfig(cfg.epochs, grad_clip=cfg.clip, global_rng=True),
                  ident=ident, run_dir=run_dir, resume=resume, progress=progress, log=log, desc="BE")
    best_epoch = res["best"]["epoch"] if res["best"] is not None else None
    be.kind = "finetuned"
    be.weights_id = f"ft:{cfg.ident()}:best{best_epoch}"
    return be, {"epochs": res["history"], "best_epoch": best_epoch, "best": res["best_key"]}


def finetuned_path(cfg: FinetuneConfig | None = None) -> Path:
    """Where the fine-tuned BE of ``cfg`` (default: :class:`FinetuneConfig`'s defaults) is cached (safetensors)."""
    cfg = cfg or FinetuneConfig()
    return cache_dir() / "biencoder_models" / f"be-finetuned-{cfg.ident()}.safetensors"


def save_biencoder(be: BiEncoder, path: Path, meta: dict | None = None) -> None:
    """Both towers' weights as safetensors (atomic), with ``meta`` (config, history) and the weights id."""
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in be.state_dict().items()}, str(tmp),
                  metadata={"meta": json.dumps(meta or {}), "weights_id": be.weights_id})


def load_biencoder(kind: str = "asis", cfg: FinetuneConfig | None = None, path: Path | None = None,
                   train_if_missing: bool = True, progress: bool = True) -> BiEncoder:
    """"asis": pretrained all-MiniLM-L6-v2 in both towers. "finetuned": the cached fine-tuned weights of ``cfg``
    (or ``path``), trained with :func:`finetune` first when missing (unless ``train_if_missing=False``)."""
    if kind == "asis":
        be = BiEncoder()
        be.eval()
        return be
    if kind != "finetuned":
        raise ValueError(f"unknown bi-encoder kind {kind!r}; use 'asis' or 'finetuned'")
    cfg = cfg or FinetuneConfig()
    path = Path(path or finetuned_path(cfg))
    if not path.is_file():
        if not train_if_missing:
            raise FileNotFoundError(f"no fine-tuned bi-encoder at {path}; run `jsdlib.retrieval.finetune.finetune` "
                                    "(or load_biencoder('finetuned') with train_if_missing=True)")
        be, hist = finetune(cfg, progress=progress)
        save_biencoder(be, path, {"config": asdict(cfg), "history": hist})
    be = BiEncoder(kind="finetuned", weights_id="ft-file:" + file_sha256(path)[:16])
    be.load_state_dict(load_file(str(path)))
    with safe_open(str(path), framework="pt") as fh:
        be.meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
    be.eval()
    return be


__all__ = ["FinetuneConfig", "FinetuneTask", "finetune", "in_batch_loss", "sibling_rows", "default_val_domains",
           "finetuned_path", "save_biencoder", "load_biencoder"]
