"""Retrieval metrics (and the statistics of jsdlib.common.stats) against slow, obvious pure-Python versions, plus
hand-made cases."""
import numpy as np
import pytest
import torch

from jsdlib.common import metrics as M
from jsdlib.common import stats as S


# ------------------------------------------------------------------ slow, obvious reference versions
def slow_rank(row, relevant):
    """Sort the items by score, best first, breaking ties against the relevant items; 0-based position."""
    relevant = set(relevant)
    order = sorted(range(len(row)), key=lambda j: (-row[j], j in relevant))
    for pos, j in enumerate(order):
        if j in relevant:
            return pos


def slow_count_rank(row, relevant):
    """Count non-relevant items scoring >= the best relevant item."""
    best = max(row[j] for j in relevant)
    return sum(1 for j, v in enumerate(row) if j not in relevant and v >= best)


def slow_metrics(scores, relevant_lists, ks=(1, 5, 10)):
    rs = [slow_rank(list(row), rel) for row, rel in zip(scores.tolist(), relevant_lists)]
    out = {f"R@{k}": 100.0 * sum(r < k for r in rs) / len(rs) for k in ks}
    out["MRR@10"] = 100.0 * sum((1.0 / (r + 1)) if r < 10 else 0.0 for r in rs) / len(rs)
    return out, rs


def random_set(seed, n_images=17, per_image=3, tied=True):
    rng = np.random.default_rng(seed)
    c2i = np.repeat(np.arange(n_images), per_image)
    rng.shuffle(c2i)
    i2c = [list(np.flatnonzero(c2i == i)) for i in range(n_images)]
    if tied:  # small integer range: many ties
        scores = rng.integers(0, 4, size=(len(c2i), n_images)).astype(np.float32)
    else:
        scores = rng.standard_normal((len(c2i), n_images))
    return scores, c2i, i2c


# --------------------------------------------------------------------------------- cross-checks
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tied", [True, False])
def test_t2i_matches_slow_version(seed, tied):
    scores, c2i, _ = random_set(seed, tied=tied)
    ref, ref_ranks = slow_metrics(scores, [[i] for i in c2i])
    assert M.ranks(scores, c2i).tolist() == ref_ranks
    got = M.t2i_metrics(scores, c2i)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == pytest.approx(ref[k])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tied", [True, False])
def test_i2t_any_hit_matches_slow_version(seed, tied):
    scores, c2i, i2c = random_set(seed, tied=tied)
    ref, ref_ranks = slow_metrics(scores.T, i2c)
    assert M.ranks(scores.T, i2c).tolist() == ref_ranks
    assert ref_ranks == [slow_count_rank(row, rel) for row, rel in zip(scores.T.tolist(), i2c)]
    got = M.i2t_metrics(scores.T, i2c)
    assert set(got) == {"R@1", "R@5", "R@10"}
    for k in got:
        assert got[k] == pytest.approx(ref[k])


def test_chunking_gives_same_ranks(monkeypatch):
    scores, c2i, i2c = random_set(3, n_images=40, per_image=5)
    full = M.ranks(scores, c2i), M.ranks(scores.T, i2c)
    monkeypatch.setattr(M, "_CHUNK_ELEMENTS", 7)  # a few rows per chunk, odd boundaries
    assert np.array_equal(M.ranks(scores, c2i), full[0])
    assert np.array_equal(M.ranks(scores.T, i2c), full[1])


def test_torch_inputs():
    scores, c2i, i2c = random_set(1)
    ref = M.retrieval_metrics(scores, c2i, i2c)
    got = M.retrieval_metrics(torch.from_numpy(scores).to(torch.bfloat16), torch.from_numpy(c2i), i2c)
    assert got == ref  # small integers are exact in bfloat16
    assert M.success_at_k(torch.tensor([0, 3]), 1) == 50.0


# ------------------------------------------------------------------------------- hand-made cases
def test_perfect_and_worst():
    n = 12
    c2i = np.arange(n)
    perfect = np.eye(n)
    m = M.retrieval_metrics(perfect, c2i, [[i] for i in range(n)])
    assert m["t2i"] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0, "MRR@10": 100.0}
    assert m["i2t"] == {"R@1": 100.0, "R@5": 100.0, "R@10": 100.0}
    assert m["rsum"] == 600.0 and m["n_images"] == n and m["n_captions"] == n
    worst = 1.0 - np.eye(n)  # the relevant image is always last (rank 11)
    assert M.ranks(worst, c2i).tolist() == [n - 1] * n
    assert M.t2i_metrics(worst, c2i) == {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0, "MRR@10": 0.0}


def test_ties_are_pessimistic():
    # query 0: the relevant item 0 ties with items 1 and 2 at the top -> rank 2, not 0
    scores = np.array([[5.0, 5.0, 5.0, 1.0],
                       [0.0, 0.0, 0.0, 0.0]])  # constant row: rank = n_items - 1
    assert M.ranks(scores, [0, 3]).tolist() == [2, 3]
    assert M.success_at_k(M.ranks(scores, [0, 3]), 1) == 0.0
    assert M.success_at_k(M.ranks(scores, [0, 3]), 3) == 50.0
    # a tie between two relevant items costs nothing
    assert M.ranks(np.array([[2.0, 2.0, 1.0]]), [[0, 1]]).tolist() == [0]


def test_any_hit_with_several_captions():
    # 2 images, captions 0,1 -> image 0 and 2,3 -> image 1; rows of i2t = images, columns = captions
    i2c = [[0, 1], [2, 3]]
    s_i2t = np.array([[0.1, 0.9, 0.5, 0.2],    # image 0: its caption 1 is top -> rank 0
                      [0.8, 0.7, 0.1, 0.6]])   # image 1: best own caption (3, 0.6) has 2 above it -> rank 2
    assert M.ranks(s_i2t, i2c).tolist() == [0, 2]
    assert M.i2t_metrics(s_i2t, i2c, ks=(1, 3)) == {"R@1": 50.0, "R@3": 100.0}


def test_mrr_and_reciprocal_ranks():
    r = np.array([0, 1, 3, 9, 10, 50])
    rr = M.reciprocal_ranks(r, k=10)
    assert rr.tolist() == pytest.approx([1, 0.5, 0.25, 0.1, 0, 0])
    assert M.mrr_at_k(r, 10) == pytest.approx(100 * rr.mean())
    assert M.mrr_at_k(r, 1) == pytest.approx(100 / 6)
    assert M.success_at_k(r, 10) == pytest.approx(400 / 6)


def test_rsum_is_sum_of_six_recalls():
    scores, c2i, i2c = random_set(7, tied=False)
    m = M.retrieval_metrics(scores, c2i, i2c)
    six = [m["t2i"][f"R@{k}"] for k in (1, 5, 10)] + [m["i2t"][f"R@{k}"] for k in (1, 5, 10)]
    assert m["rsum"] == pytest.approx(sum(six))
    assert m["i2t"] == M.i2t_metrics(scores.T, i2c)


# --------------------------------------------------------------------------------- paired tests
@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_paired_test(method):
    rng = np.random.default_rng(0)
    a = rng.random(200)
    assert S.paired_test(a, a, method=method) == 1.0
    noise = a + rng.normal(0, 0.01, 200)
    p_same = S.paired_test(a, noise, method=method, n_boot=2000)
    assert 0.0 <= p_same <= 1.0
    p_shift = S.paired_test(a + 0.1 + rng.normal(0, 0.05, 200), a, method=method, n_boot=2000)
    assert 0.0 <= p_shift < 0.01
    assert S.paired_test(a, a + 0.1 + rng.normal(0, 0.05, 200), method=method, n_boot=2000) < 0.01


def test_bootstrap_ci_covers_the_mean_and_clusters_widen_it():
    rng = np.random.default_rng(1)
    d = rng.normal(0.3, 1.0, 400)
    lo, hi = S.bootstrap_ci(d, n_boot=4000)
    se = d.std(ddof=1) / np.sqrt(d.size)                        # the normal interval: mean +- 1.96 se
    assert lo < d.mean() < hi and (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert S.bootstrap_ci(d, n_boot=4000) == (lo, hi)            # seeded
    pairs = np.repeat(d[:200], 2)                                 # every value twice: one cluster per pair
    naive = S.bootstrap_ci(pairs, n_boot=4000)
    clustered = S.bootstrap_ci(pairs, np.repeat(np.arange(200), 2), n_boot=4000)
    assert (clustered[1] - clustered[0]) > 1.3 * (naive[1] - naive[0])   # ~sqrt(2) wider: 200 draws, not 400
    assert S.bootstrap_ci([1.0, 1.0, 1.0], n_boot=50) == (1.0, 1.0)
    with pytest.raises(ValueError, match="one label per value"):
        S.bootstrap_ci(d, groups=[0, 1])
    with pytest.raises(ValueError, match="level"):
        S.bootstrap_ci(d, level=1.0)


def test_paired_test_edge_cases():
    assert S.paired_test([1, 0, 1], [0, -1, 0], method="t") == 0.0  # constant non-zero difference
    assert S.paired_test([1, 2], [1, 2], method="bootstrap", n_boot=10) == 1.0
    p = S.paired_test([1, 0, 1, 1, 0], [0, 0, 1, 0, 1], method="bootstrap", n_boot=500, seed=3)
    assert p == S.paired_test([1, 0, 1, 1, 0], [0, 0, 1, 0, 1], method="bootstrap", n_boot=500, seed=3)
    with pytest.raises(ValueError, match="equal length"):
        S.paired_test([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="unknown method"):
        S.paired_test([1, 2], [2, 1], method="wilcoxon")
    with pytest.raises(ValueError, match="NaN"):
        S.paired_test([1, np.nan], [2, 1])
    with pytest.raises(ValueError, match="at least one"):
        S.paired_test([], [])


# ----------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise():
    s = np.zeros((4, 3))
    with pytest.raises(ValueError, match="4 query rows but caption_to_image has 3"):
        M.t2i_metrics(s, [0, 1, 2])
    with pytest.raises(ValueError, match="3 image columns but image_to_captions has 2"):
        M.retrieval_metrics(s, [0, 1, 2, 0], [[0, 3], [1]])
    with pytest.raises(IndexError, match="relevant index 3 out of range for 3 items"):
        M.ranks(s, [0, 1, 2, 3])
    with pytest.raises(IndexError, match="out of range"):
        M.ranks(s, [0, 1, 2, -1])
    with pytest.raises(ValueError, match="NaN"):
        M.ranks(np.array([[0.0, np.nan]]), [0])
    with pytest.raises(ValueError, match="empty"):
        M.ranks(np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match="2-D"):
        M.ranks(np.zeros(3), [0])
    with pytest.raises(ValueError, match="query 1 has no relevant item"):
        M.ranks(np.zeros((2, 3)), [[0], []])
    with pytest.raises(ValueError, match="2 entries but scores has 4"):
        M.ranks(s, [[0], [1]])
    with pytest.raises(TypeError, match="integers"):
        M.ranks(s, [0.5, 1, 2, 0])
    with pytest.raises(ValueError, match="non-empty"):
        M.success_at_k(np.array([]), 1)
    with pytest.raises(ValueError, match="positive integer"):
        M.success_at_k([0, 1], 0)


def test_format_table():
    rows = {"dense": {"R@1": 57.04, "R@5": 82.0}, "JSD sparse": {"R@1": 57.6, "n": 5}}
    t = M.format_table(rows, digits=1)
    assert t.splitlines() == [
        "| method | R@1 | R@5 | n |",
        "|---|---|---|---|",
        "| dense | 57.0 | 82.0 | — |",
        "| JSD sparse | 57.6 | — | 5 |",
    ]
    nested = M.format_table({"x": {"t2i": {"R@1": 1.234}, "rsum": 2.0}}, keys=["t2i R@1"], digits=2)
    assert nested.splitlines()[-1] == "| x | 1.23 |"


def test_paired_test_takes_torch_tensors_even_bfloat16():
    a, b = torch.tensor([1.0, 0.5, 0.25, 1.0]), torch.tensor([0.0, 0.5, 0.0, 0.5])
    assert S.paired_test(a.bfloat16(), b.bfloat16()) == S.paired_test(a.numpy(), b.numpy()) < 1.0


def test_one_name_per_quantity():
    assert not hasattr(M, "recall_at_k") and not hasattr(M, "paired_test")  # one name each: success_at_k, stats.paired_test


# --------------------------------------------------------------------------------- mean and std over seeds
def test_mean_std_against_the_textbook_formula():
    v = [71.5, 70.25, 73.0]
    mean = sum(v) / 3
    std = (sum((x - mean) ** 2 for x in v) / 2) ** 0.5                 # ddof = 1: the sample std over seeds
    out = S.mean_std(v)
    assert out == {"mean": pytest.approx(mean, abs=1e-12), "std": pytest.approx(std, abs=1e-12)}
    assert S.mean_std([42.0]) == {"mean": 42.0, "std": 0.0}             # one seed: no spread, not NaN
    assert S.mean_std(np.array([1, 3])) == {"mean": 2.0, "std": pytest.approx(2 ** 0.5)}
    with pytest.raises(ValueError, match="non-empty 1-D"):
        S.mean_std([])
