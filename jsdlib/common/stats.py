"""Statistics over runs and queries: mean and standard deviation over seeds, paired significance tests."""
from __future__ import annotations

from typing import Sequence

import numpy as np

_CHUNK_ELEMENTS = 1 << 22  # bootstrap resamples drawn ~4M values at a time


def mean_std(values: Sequence[float]) -> dict:
    """``{"mean", "std"}`` of ``values`` (e.g. one metric over seeds); ``std`` with ddof=1, 0.0 for one value."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"mean_std needs a non-empty 1-D sequence of numbers, got shape {v.shape}")
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def paired_test(a, b, method: str = "t", n_boot: int = 10000, seed: int = 0) -> float:
    """Two-sided p-value that paired per-query values ``a`` and ``b`` have the same mean.

    ``"t"``: paired t-test (``scipy.stats.ttest_rel``); 1.0 when all differences are zero, 0.0 when they
    are all equal and non-zero. ``"bootstrap"``: paired bootstrap of the mean difference, centred under
    the null: p = (1 + #{|mean_b* - mean| >= |mean|}) / (1 + n_boot).
    """
    a, b = _as_float64(a), _as_float64(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired_test needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("paired_test needs at least one pair")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired_test: values contain NaN")
    d = a - b
    if np.all(d == 0):
        return 1.0
    if method == "t":
        if np.all(d == d[0]):  # zero variance, non-zero mean: t is infinite
            return 0.0
        from scipy import stats  # noqa: PLC0415 (seconds to import; only the t-test needs it)

        return float(stats.ttest_rel(a, b).pvalue)
    if method == "bootstrap":
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1, got {n_boot}")
        obs = d.mean()
        means = _resampled_means(d, np.ones_like(d), n_boot, np.random.default_rng(seed))
        return float((int(np.sum(np.abs(means - obs) >= abs(obs))) + 1) / (n_boot + 1))
    raise ValueError(f"unknown method {method!r}; use 't' or 'bootstrap'")


def bootstrap_ci(d, groups=None, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of paired per-query differences ``d`` (e.g. sparse hit minus dense
    hit per caption).

    ``groups`` (one label per query, e.g. ``caption_to_image``): a cluster bootstrap that resamples whole groups,
    since the captions of one image are not independent draws; each resample's mean is ``sum d / count`` over the
    drawn groups. Returns ``(lo, hi)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled
    means.
    """
    d = _as_float64(d)
    if d.ndim != 1 or d.size == 0 or np.isnan(d).any():
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D array without NaN, got shape {d.shape}")
    if not 0 < level < 1 or n_boot < 1:
        raise ValueError(f"bootstrap_ci needs 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    if groups is None:
        sums, counts = d, np.ones_like(d)
    else:
        g = np.asarray(groups)
        if g.shape != d.shape:
            raise ValueError(f"groups must give one label per value: {g.shape} != {d.shape}")
        _, inv = np.unique(g, return_inverse=True)
        sums, counts = np.bincount(inv, weights=d), np.bincount(inv).astype(np.float64)
    means = _resampled_means(sums, counts, n_boot, np.random.default_rng(seed))
    qs = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(qs[0]), float(qs[1])


def _resampled_means(sums: np.ndarray, counts: np.ndarray, n_boot: int, rng) -> np.ndarray:
    """``n_boot`` bootstrap means: each draws ``len(sums)`` units with replacement and returns
    ``sum sums / sum counts`` over them (one value per unit: counts of 1), ~4M draws at a time."""
    n = sums.size
    step, means = max(1, _CHUNK_ELEMENTS // n), []
    for lo in range(0, n_boot, step):
        idx = rng.integers(0, n, size=(min(step, n_boot - lo), n))
        means.append(sums[idx].sum(axis=1) / counts[idx].sum(axis=1))
    return np.concatenate(means)


def _as_float64(x) -> np.ndarray:
    """numpy float64 of an array, a list or a torch tensor (no torch import here)."""
    if hasattr(x, "detach"):  # torch tensor (bfloat16 has no numpy dtype)
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


__all__ = ["bootstrap_ci", "mean_std", "paired_test"]
