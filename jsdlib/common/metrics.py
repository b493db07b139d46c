"""Retrieval metrics: R@k, MRR@10, any-hit image->text recall, RSUM (paired tests: :mod:`jsdlib.common.stats`).

Conventions (the JSD paper's evaluation protocol):

- ``scores`` is a (n_queries, n_items) matrix, higher = better. For text -> image the queries are the
  captions and the items the images (``scores_t2i``, shape (n_captions, n_images)); image -> text uses its
  transpose.
- **Ranks are 0-based and ties are pessimistic.** The rank of a query is the number of *non-relevant* items
  whose score is ``>=`` the score of the best-scored relevant item. A tie therefore counts against the
  relevant item: a query whose relevant image ties with 3 other images for the top score has rank 3, not 0,
  so a constant score matrix gets no credit at all. (Optimistic or random tie-breaking would reward
  degenerate, e.g. all-zero sparse, scores.)
- With several relevant items (image -> text: an image's ~5 captions), the best-scored one counts
  ("any hit": the image is a hit at k if any of its captions is in the top k).
- ``success_at_k`` (the papers' R@k) = 100 * share of queries with rank < k (percent).
- ``mrr_at_k`` = 100 * mean over queries of 1/(rank+1) if rank < k else 0. It is also reported in percent
  (so MRR@10 and R@k share one scale in tables); divide by 100 for the usual [0, 1] value.
- RSUM = R@1 + R@5 + R@10 for text -> image plus the same three for image -> text.

Everything accepts numpy arrays or torch tensors (converted to numpy; no torch import here).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


_CHUNK_ELEMENTS = 1 << 22  # ~4M scores per chunk: a 25k x 5k matrix is ranked in ~30 slices


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor (bfloat16 has no numpy dtype)
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _check_scores(scores) -> np.ndarray:
    s = _to_numpy(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n_queries, n_items) matrix, got shape {s.shape}")
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"scores is empty (shape {s.shape})")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)
            or s.dtype == bool):
        raise TypeError(f"scores must be numeric, got dtype {s.dtype}")
    return s


def _relevant_csr(relevant, n_q: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(row_ptr, cols): the relevant items of query q are cols[row_ptr[q]:row_ptr[q+1]]."""
    flat, lists = None, None
    if hasattr(relevant, "detach") or isinstance(relevant, np.ndarray):
        arr = _to_numpy(relevant)
        if arr.dtype == object or arr.ndim == 2:
            lists = arr.tolist()
        elif arr.ndim == 1:
            flat = arr
        else:
            raise ValueError(f"relevant must be 1-D (one item per query) or a list of lists, got shape {arr.shape}")
    else:
        lists = list(relevant)
        if all(np.ndim(r) == 0 for r in lists):  # a flat list of ints: one relevant item per query
            flat, lists = np.asarray(lists), None
    if flat is not None:
        if len(flat) != n_q:
            raise ValueError(f"relevant has {len(flat)} entries but scores has {n_q} query rows")
        row_ptr, cols = np.arange(n_q + 1, dtype=np.int64), flat
    else:
        if len(lists) != n_q:
            raise ValueError(f"relevant has {len(lists)} entries but scores has {n_q} query rows")
        lens = np.array([len(r) for r in lists], dtype=np.int64)
        if (lens == 0).any():
            q = int(np.flatnonzero(lens == 0)[0])
            raise ValueError(f"query {q} has no relevant item (every query needs at least one)")
        row_ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        cols = np.asarray([c for r in lists for c in r])
    if not np.issubdtype(cols.dtype, np.integer):
        if np.issubdtype(cols.dtype, np.floating) and np.all(cols == np.round(cols)):
            cols = cols.astype(np.int64)
        else:
            raise TypeError(f"relevant indices must be integers, got dtype {cols.dtype}")
    cols = cols.astype(np.int64)
    if cols.min() < 0 or cols.max() >= n_items:
        bad = cols[(cols < 0) | (cols >= n_items)][0]
        raise IndexError(f"relevant index {bad} out of range for {n_items} items")
    return row_ptr, cols


def ranks(scores, relevant) -> np.ndarray:
    """0-based rank of each query's best relevant item, ties pessimistic (see module docstring).

    ``relevant``: one int per query (e.g. ``caption_to_image``) or a list of lists (e.g.
    ``image_to_captions``). Works on row chunks, so the temporaries stay small for a 25k x 5k matrix.
    """
    s = _check_scores(scores)
    n_q, n_items = s.shape
    row_ptr, cols = _relevant_csr(relevant, n_q, n_items)
    out = np.empty(n_q, dtype=np.int64)
    step = max(1, _CHUNK_ELEMENTS // n_items)
    floating = np.issubdtype(s.dtype, np.floating)
    for lo in range(0, n_q, step):
        hi = min(n_q, lo + step)
        chunk = s[lo:hi]
        if floating and np.isnan(chunk).any():
            q = lo + int(np.flatnonzero(np.isnan(chunk).any(axis=1))[0])
            raise ValueError(f"scores contain NaN (first in query row {q})")
        a, b = row_ptr[lo], row_ptr[hi]
        local_rows = np.repeat(np.arange(hi - lo), np.diff(row_ptr[lo:hi + 1]))
        rel_cols = cols[a:b]
        rel_scores = chunk[local_rows, rel_cols]
        best = np.maximum.reduceat(rel_scores, row_ptr[lo:hi] - a)
        ge = chunk >= best[:, None]
        ge[local_rows, rel_cols] = False  # count only non-relevant items
        out[lo:hi] = ge.sum(axis=1)
    return out


def _check_ranks(r) -> np.ndarray:
    r = _to_numpy(r)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"ranks must be a non-empty 1-D array, got shape {r.shape}")
    return r


def _check_k(k) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def success_at_k(ranks, k: int) -> float:
    """R@k of the papers: percent of queries whose (0-based) rank is < k (their relevant item is in the top k).

    Not :func:`jsdlib.index.types.recall_at_k`, the overlap of an approximate top-k with the exact one.
    """
    r, k = _check_ranks(ranks), _check_k(k)
    return float(100.0 * np.mean(r < k))


def reciprocal_ranks(ranks, k: int = 10) -> np.ndarray:
    """Per query: 1/(rank+1) if rank < k else 0 (in [0, 1]; for paired tests)."""
    r, k = _check_ranks(ranks), _check_k(k)
    return np.where(r < k, 1.0 / (r + 1.0), 0.0)


def mrr_at_k(ranks, k: int = 10) -> float:
    """MRR@k in percent: 100 * mean(reciprocal_ranks(ranks, k))."""
    return float(100.0 * np.mean(reciprocal_ranks(ranks, k)))


def _check_rows(n_rows: int, n_expected: int, what: str, direction: str):
    if n_rows != n_expected:
        raise ValueError(f"{direction}: scores has {n_rows} query rows but {what} has {n_expected} entries")


def t2i_metrics(scores_t2i, caption_to_image, ks: Sequence[int] = (1, 5, 10), mrr_k: int = 10) -> dict:
    """Text -> image: {"R@1", "R@5", "R@10", "MRR@10"} (percent); one relevant image per caption."""
    s = _check_scores(scores_t2i)
    c2i = _to_numpy(caption_to_image)
    if c2i.ndim != 1:
        raise ValueError(f"caption_to_image must be 1-D, got shape {c2i.shape}")
    _check_rows(s.shape[0], len(c2i), "caption_to_image", "t2i")
    r = ranks(s, c2i)
    out = {f"R@{k}": success_at_k(r, k) for k in ks}
    out[f"MRR@{mrr_k}"] = mrr_at_k(r, mrr_k)
    return out


def i2t_metrics(scores_i2t, image_to_captions, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Image -> text, any hit: an image is a hit at k if any of its captions is in the top k."""
    s = _check_scores(scores_i2t)
    i2c = list(image_to_captions)
    _check_rows(s.shape[0], len(i2c), "image_to_captions", "i2t")
    r = ranks(s, i2c)
    return {f"R@{k}": success_at_k(r, k) for k in ks}


def retrieval_metrics(scores_t2i, caption_to_image, image_to_captions) -> dict:
    """Both directions from one (n_captions, n_images) matrix, plus RSUM (sum of the six recalls)."""
    s = _check_scores(scores_t2i)
    n_captions, n_images = s.shape
    if len(image_to_captions) != n_images:
        raise ValueError(f"scores_t2i has {n_images} image columns but image_to_captions has "
                         f"{len(image_to_captions)} entries")
    t2i = t2i_metrics(s, caption_to_image)
    i2t = i2t_metrics(s.T, image_to_captions)
    rsum = sum(t2i[f"R@{k}"] for k in (1, 5, 10)) + sum(i2t[f"R@{k}"] for k in (1, 5, 10))
    return {"t2i": t2i, "i2t": i2t, "rsum": float(rsum), "n_images": n_images, "n_captions": n_captions}


def unseen_concept_queries(caption_to_image, image_meta) -> np.ndarray:
    """Indices of the captions whose image is flagged ``unseen_concept`` (its base emoji has no train variant)."""
    flags = np.array([bool(m.get("unseen_concept", False)) for m in image_meta])
    return np.flatnonzero(flags[_to_numpy(caption_to_image)])


def evaluate_split(scores_t2i, caption_to_image, image_to_captions, image_meta=None) -> dict:
    """:func:`retrieval_metrics` plus, where images carry ``unseen_concept`` flags, the t2i metrics of the
    captions of unseen-concept images, still ranked against the *whole* corpus (same candidates as the
    headline number, only the queries differ)."""
    s = _check_scores(scores_t2i)
    out = retrieval_metrics(s, caption_to_image, image_to_captions)
    if image_meta is not None and any("unseen_concept" in m for m in image_meta):
        q = unseen_concept_queries(caption_to_image, image_meta)
        n_unseen = int(sum(bool(m.get("unseen_concept", False)) for m in image_meta))
        c2i = _to_numpy(caption_to_image)
        out["unseen_concept"] = {"t2i": t2i_metrics(s[q], c2i[q]) if len(q) else None,
                                 "n_images": n_unseen, "n_captions": int(len(q))}
    return out


def report_rows(res: dict) -> dict:
    """Table rows of an :func:`evaluate_split` result: all queries (t2i, i2t, RSUM) and unseen-concept queries."""
    rows = {"all queries": {**{f"t2i {k}": v for k, v in res["t2i"].items()},
                            **{f"i2t {k}": v for k, v in res["i2t"].items()}, "RSUM": res["rsum"]}}
    if (res.get("unseen_concept") or {}).get("t2i"):
        rows["unseen-concept queries"] = {f"t2i {k}": v for k, v in res["unseen_concept"]["t2i"].items()}
    return rows


def _fmt(v, digits: int) -> str:
    if v is None:
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "—" if np.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def format_table(rows: dict, keys: Sequence[str] | None = None, digits: int = 1,
                 name_header: str = "method") -> str:
    """A Markdown table, one row per name: ``format_table({"dense": {"R@1": 57.0}, ...})``.

    ``keys`` picks and orders the columns (default: every key, in first-seen order); nested dicts such as
    ``retrieval_metrics``' ``{"t2i": {...}}`` are flattened to ``t2i R@1``. Missing values show as "—".
    """
    flat = {name: _flatten(r) for name, r in rows.items()}
    if keys is None:
        keys = list(dict.fromkeys(k for r in flat.values() for k in r))
    lines = ["| " + " | ".join([name_header, *keys]) + " |", "|" + "---|" * (len(keys) + 1)]
    for name, r in flat.items():
        lines.append("| " + " | ".join([str(name), *(_fmt(r.get(k), digits) for k in keys)]) + " |")
    return "\n".join(lines)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k} "))
        else:
            out[f"{prefix}{k}"] = v
    return out


__all__ = ["ranks", "success_at_k", "mrr_at_k", "reciprocal_ranks", "t2i_metrics", "i2t_metrics",
           "retrieval_metrics", "evaluate_split", "report_rows", "unseen_concept_queries", "format_table"]


# ----------------------------------------------------------------------------------------------
# Entity-linking metrics over ranked candidate lists (the CMC paper, arXiv 2405.12801)
# ----------------------------------------------------------------------------------------------
def list_ranks(ranked, gold) -> np.ndarray:
    """0-based position of ``gold[q]`` in row ``ranked[q]`` (candidate ids, best first); ``len(row)`` if absent.

    The rows are rankings already (no ties to break); an absent gold gets a rank past the list, so it is a
    miss at every k <= len(row).
    """
    r, g = _to_numpy(ranked), _to_numpy(gold)
    if r.ndim != 2 or g.ndim != 1 or r.shape[0] != g.shape[0]:
        raise ValueError(f"list_ranks: ranked must be (N, K) and gold (N,), got {r.shape} and {g.shape}")
    hit = r == g[:, None]
    return np.where(hit.any(1), hit.argmax(1), r.shape[1]).astype(np.int64)


def linking_accuracy(ranks, n_reranked: int, domains: Sequence[str] | None = None) -> dict:
    """Unnormalized and normalized top-1 accuracy (%), per domain, macro over domains and micro over queries.

    - unnormalized: correct top-1 / all mentions;
    - normalized: correct top-1 / mentions whose gold is among the ``n_reranked`` candidates the reranker saw
      (rank < n_reranked); ``nan`` for a domain where no gold was retrieved.

    Returns ``{"per_domain": {d: {"acc_unnorm", "acc_norm", "n", "n_in"}}, "macro": {...}, "micro": {...}}``;
    macro is the plain mean over domains (ZeSHEL's convention), micro pools all mentions.
    """
    r = _check_ranks(ranks)
    n_reranked = _check_k(n_reranked)
    domains = ["all"] * len(r) if domains is None else list(domains)
    if len(domains) != len(r):
        raise ValueError(f"linking_accuracy: {len(domains)} domain names for {len(r)} ranks")
    dom = np.asarray(domains, dtype=object)

    def acc(mask) -> dict:
        rr = r[mask]
        inside = rr < n_reranked
        correct = rr == 0
        return {"acc_unnorm": float(100.0 * correct.mean()),
                "acc_norm": float(100.0 * correct[inside].mean()) if inside.any() else float("nan"),
                "n": int(mask.sum()), "n_in": int(inside.sum())}

    per = {d: acc(dom == d) for d in sorted(set(domains))}
    macro = {k: float(np.nanmean([p[k] for p in per.values()])) if any(not np.isnan(p[k]) for p in per.values())
             else float("nan") for k in ("acc_unnorm", "acc_norm")}
    return {"per_domain": per, "macro": macro, "micro": acc(np.ones(len(r), dtype=bool))}


__all__ += ["list_ranks", "linking_accuracy"]
