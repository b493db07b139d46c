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
        rng = np.random.default_rng(seed)
        n, obs = d.size, d.mean()
        step = max(1, _CHUNK_ELEMENTS // n)
        extreme = 0
        for lo in range(0, n_boot, step):
            m = min(step, n_boot - lo)
            means = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
            extreme += int(np.sum(np.abs(means - obs) >= abs(obs)))
        return float((extreme + 1) / (n_boot + 1))
    raise ValueError(f"unknown method {method!r}; use 't' or 'bootstrap'")


def _as_float64(x) -> np.ndarray:
    """numpy float64 of an array, a list or a torch tensor (no torch import here)."""
    if hasattr(x, "detach"):  # torch tensor (bfloat16 has no numpy dtype)
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


__all__ = ["mean_std", "paired_test"]
