"""MaxScore (dynamic pruning) returns exactly the top-k of term-at-a-time and of brute force, ties included."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from jsdlib.index import inverted
from jsdlib.index.inverted import InvertedIndex
from jsdlib.index.maxscore import maxscore_search, term_max_weights
from jsdlib.index.reference import brute_force_sparse

pytestmark = pytest.mark.skipif(inverted.numba is None, reason="MaxScore runs in numba")


def _random_sparse(n, V, density, seed, integer=False, skew=False):
    rng = np.random.default_rng(seed)
    p = np.full(V, density)
    if skew:  # a few very common terms and many rare ones, as in learned sparse vectors
        p = np.clip(density * 8 * rng.pareto(1.5, V) / 3, 0, 0.9)
    mask = rng.random((n, V)) < p
    vals = rng.integers(1, 4, (n, V)).astype(np.float32) if integer else rng.gamma(1.5, 0.7, (n, V)).astype(np.float32)
    return sp.csr_matrix(mask * vals)


@pytest.mark.parametrize("k", [1, 10, 57])
@pytest.mark.parametrize("skew", [False, True])
def test_maxscore_equals_brute_force_random(k, skew):
    D = _random_sparse(3000, 300, 0.04, 0, skew=skew)
    Q = _random_sparse(80, 300, 0.05, 1, skew=skew)
    Q = sp.csr_matrix(sp.diags(np.r_[np.ones(5), 0, np.ones(74)]) @ Q)    # query 5: no active term
    Q.eliminate_zeros()
    idx = InvertedIndex.build(D)
    got, ref, taat = maxscore_search(idx, Q, k), brute_force_sparse(Q, D, k), idx.search(Q, k)
    np.testing.assert_array_equal(got.ids, ref.ids)
    np.testing.assert_array_equal(got.scores, ref.scores)     # summed in the query's term order: bit for bit
    np.testing.assert_array_equal(got.ids, taat.ids)
    np.testing.assert_array_equal(got.ids[5], np.arange(k))   # the empty query: every score 0 -> first k ids
    assert got.work[5] == 0
    if k == 10:  # it prunes: fewer postings scored than term-at-a-time's every posting
        assert got.work.sum() < 0.9 * taat.work.sum()


def test_maxscore_ties_few_matches_and_fallback():
    D = _random_sparse(1500, 80, 0.03, 7, integer=True)       # integer weights: many exactly equal scores
    Q = _random_sparse(50, 80, 0.05, 8, integer=True)
    idx = InvertedIndex.build(D)
    for k in (25, 1500):                                       # k = N: documents scoring 0 fill the list by id
        got, ref = maxscore_search(idx, Q, k), brute_force_sparse(Q, D, k)
        np.testing.assert_array_equal(got.ids, ref.ids)
        np.testing.assert_array_equal(got.scores, ref.scores)
    # a negative query value: that query goes through term-at-a-time, still exact
    Qn = Q.copy().astype(np.float32)
    Qn.data[0] = -Qn.data[0]
    got, ref = maxscore_search(idx, Qn, 10), brute_force_sparse(Qn, D, 10)
    np.testing.assert_array_equal(got.ids, ref.ids)
    assert term_max_weights(idx).shape == (80,)
