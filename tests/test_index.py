"""Exact inverted index, dense / hybrid search and the engine back ends (spec jsd.md §6-7)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from jsdlib import index as ix
from jsdlib.apps.emoji_index import emoji_vectors
from jsdlib.cli.main import main
from jsdlib.index import (BruteForceBackend, ExactBackend, FaissBackend, HybridWeights, InvertedIndex, MilvusBackend,
                          SeismicBackend, Vectors, brute_force_dense, brute_force_sparse, topk_rows)
from jsdlib.index.milvus import quiet_unimplemented_rpcs
from jsdlib.jsd.efficiency import efficiency
from jsdlib.jsd.evaluate import score_matrices
from jsdlib.jsd.efficiency import flops
from jsdlib.jsd.io import JSD_ASSET


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------
def _random_sparse(n, V, density, seed, integer=False):
    rng = np.random.default_rng(seed)
    mask = rng.random((n, V)) < density
    vals = rng.integers(1, 4, (n, V)).astype(np.float32) if integer else rng.gamma(1.5, 0.7, (n, V)).astype(np.float32)
    return sp.csr_matrix(mask * vals)


def _random_dense(n, d, seed):
    X = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def rand():
    D = _random_sparse(2000, 300, 0.04, 0)
    keep = np.ones(60)
    keep[5] = 0  # query 5 has no active term
    Q = sp.csr_matrix(sp.diags(keep) @ _random_sparse(60, 300, 0.05, 1))
    Q.eliminate_zeros()
    return Q, D


@pytest.fixture(scope="module")
def emoji():
    """The bundled JSD model's vectors on the emoji test split (500 images, 1,000 captions)."""
    if not JSD_ASSET.is_file():
        pytest.skip(f"bundled JSD model not present at {JSD_ASSET}")
    torch.set_num_threads(1)
    docs, queries, hw, es = emoji_vectors("test")
    return docs, queries, hw, es


def assert_same_topk(ids, ref_ids, full_scores, tol):
    """Top-k lists equal, except that documents whose exact scores are within ``tol`` may swap (float ties)."""
    ids, ref_ids = np.asarray(ids), np.asarray(ref_ids)
    assert ids.shape == ref_ids.shape
    for r in range(len(ids)):
        if np.array_equal(ids[r], ref_ids[r]):
            continue
        s = full_scores[r]
        # rank by rank: where the lists differ, the two documents' exact scores must agree within tol
        assert np.allclose(s[ids[r]], s[ref_ids[r]], atol=tol, rtol=0), (r, ids[r], ref_ids[r])


# ----------------------------------------------------------------------------------------------
# topk and the tie order
# ----------------------------------------------------------------------------------------------
def test_topk_rows_matches_a_stable_full_sort():
    rng = np.random.default_rng(3)
    S = rng.integers(0, 5, (40, 30)).astype(np.float64)  # many ties
    ids, scores = topk_rows(S, 7)
    ref = np.argsort(-S, axis=1, kind="stable")[:, :7]  # stable: ties keep ascending column order
    np.testing.assert_array_equal(ids, ref)
    np.testing.assert_array_equal(scores, np.take_along_axis(S, ref, 1))
    assert topk_rows(S, 100)[0].shape == (40, 30)  # k > N -> N results
    with pytest.raises(ValueError, match="positive integer"):
        topk_rows(S, 0)
    with pytest.raises(ValueError, match="2-D"):
        topk_rows(S[0], 3)


# ----------------------------------------------------------------------------------------------
# the inverted index equals brute force
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("k", [1, 10, 57])
def test_exact_index_equals_brute_force_random(rand, engine, k):
    Q, D = rand
    idx = InvertedIndex.build(D, engine=engine)
    got, ref = idx.search(Q, k), brute_force_sparse(Q, D, k)
    np.testing.assert_array_equal(got.ids, ref.ids)
    np.testing.assert_array_equal(got.scores, ref.scores)  # same float64 summation order: bit for bit
    # the empty query: every document scores 0 -> the first k ids
    np.testing.assert_array_equal(got.ids[5], np.arange(k))
    assert (got.scores[5] == 0).all() and got.work[5] == 0


def test_exact_index_threads_give_the_same_result(rand):
    Q, D = rand
    idx = InvertedIndex.build(D)
    a, b = idx.search(Q, 10, threads=1), idx.search(Q, 10, threads=2)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.work, b.work)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_ties_are_broken_by_document_id(engine):
    D = _random_sparse(1500, 80, 0.03, 7, integer=True)  # integer weights: many exactly equal scores
    Q = _random_sparse(50, 80, 0.05, 8, integer=True)
    got, ref = InvertedIndex.build(D, engine=engine).search(Q, 25), brute_force_sparse(Q, D, 25)
    np.testing.assert_array_equal(got.ids, ref.ids)
    np.testing.assert_array_equal(got.scores, ref.scores)
    n_tied = 0
    for i, s in zip(got.ids, got.scores):
        assert np.all(np.diff(s) <= 0)
        same = np.diff(s) == 0
        n_tied += int(same.sum())
        assert np.all(np.diff(i)[same] > 0)  # equal scores: ascending ids
    assert n_tied > 100  # the test really exercises ties


def test_unsorted_input_is_not_modified(rand):
    Q, D = rand
    assert not Q.has_sorted_indices  # the fixture's product leaves indices unsorted
    before = (Q.indices.copy(), Q.data.copy())
    a = InvertedIndex.build(D).search(Q, 10)
    b = brute_force_sparse(Q, D, 10)
    np.testing.assert_array_equal(Q.indices, before[0])
    np.testing.assert_array_equal(Q.data, before[1])
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.ids[:, 0], [(Q @ D.T).toarray()[i].argmax() if Q[i].nnz else 0
                                                 for i in range(Q.shape[0])])


def test_index_accepts_torch_and_single_vectors(rand):
    Q, D = rand
    idx = InvertedIndex.build(torch.from_numpy(D.toarray()))
    one = idx.search(torch.from_numpy(Q[0].toarray()[0]), 5)
    np.testing.assert_array_equal(one.ids[0], brute_force_sparse(Q[0], D, 5).ids[0])
    d_ids, w = idx.postings(7)
    col = D[:, 7].toarray()[:, 0]
    np.testing.assert_array_equal(d_ids, np.flatnonzero(col))
    np.testing.assert_allclose(w, col[col != 0])
    assert idx.n_docs == 2000 and idx.vocab_size == 300 and idx.nnz == D.nnz


def test_measured_work_is_the_d2s_flops(rand):
    Q, D = rand
    res = InvertedIndex.build(D).search(Q, 10)
    expect = flops(torch.from_numpy(Q.toarray()), torch.from_numpy(D.toarray()))
    assert res.flops == pytest.approx(expect, rel=1e-12)
    assert InvertedIndex.build(D).expected_flops(Q) == pytest.approx(expect, rel=1e-12)
    # postings touched by a query = sum of the posting-list lengths of its terms
    df = np.diff(D.tocsc().indptr)
    np.testing.assert_array_equal(res.work, [df[Q[i].indices].sum() for i in range(Q.shape[0])])


def test_index_errors(rand, tmp_path):
    Q, D = rand
    idx = InvertedIndex.build(D)
    with pytest.raises(ValueError, match="dimension mismatch: queries span 299 terms, the index's vocabulary has 300"):
        idx.search(Q[:, :299], 10)
    with pytest.raises(ValueError, match="positive integer"):
        idx.search(Q, 0)
    with pytest.raises(ValueError, match="finite"):
        InvertedIndex.build(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="engine must be"):
        InvertedIndex.build(D, engine="gpu")
    with pytest.raises(FileNotFoundError, match="no index file"):
        InvertedIndex.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a jsdlib-inverted-index-v1 file"):
        InvertedIndex.load(tmp_path / "other.npz")


def test_index_save_load_roundtrip(rand, tmp_path):
    Q, D = rand
    idx = InvertedIndex.build(D)
    idx.save(tmp_path / "ix.npz")
    again = InvertedIndex.load(tmp_path / "ix.npz")
    a, b = idx.search(Q, 10), again.search(Q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


# ----------------------------------------------------------------------------------------------
# dense, hybrid and the back-end interface
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rand_docs(rand):
    Q, D = rand
    return Vectors(_random_dense(D.shape[0], 16, 2), D), Vectors(_random_dense(Q.shape[0], 16, 3), Q)


def test_dense_exact_and_faiss(rand_docs):
    docs, queries = rand_docs
    ref = brute_force_dense(queries.dense, docs.dense, 10)
    ex = ExactBackend.build(docs).search(queries, 10, "dense")
    np.testing.assert_array_equal(ex.ids, ref.ids)
    fa = FaissBackend.build(docs).search(queries, 10)
    S = queries.dense @ docs.dense.T
    assert_same_topk(fa.ids, ref.ids, S, 1e-5)
    np.testing.assert_allclose(fa.scores, ref.scores, atol=1e-5)
    assert ex.flops == 16.0 and fa.flops == 16.0  # dense: dim multiply-adds per pair


def test_hybrid_equals_ranking_by_S_x(rand_docs):
    docs, queries = rand_docs
    hw = HybridWeights(w1=0.7, w2=1.3, tau=0.05)
    enc = {"D_t": torch.from_numpy(queries.dense), "D_i": torch.from_numpy(docs.dense),
           "Z_t": torch.from_numpy(queries.sparse.toarray()), "Z_i": torch.from_numpy(docs.sparse.toarray())}
    S_x = score_matrices(enc, hw.tau, hw.w1, hw.w2)["integrated"].double().numpy()
    for b in (ExactBackend.build(docs), BruteForceBackend.build(docs)):
        res = b.search(queries, 10, "hybrid", hybrid=hw)
        assert_same_topk(res.ids, topk_rows(S_x, 10)[0], S_x, 1e-4)
        np.testing.assert_allclose(res.scores, np.take_along_axis(S_x, res.ids, 1), rtol=1e-5)
    # the brute-force back end and the index agree exactly with each other
    a = ExactBackend.build(docs).search(queries, 10, "hybrid", hybrid=hw)
    b = BruteForceBackend.build(docs).search(queries, 10, "hybrid", hybrid=hw)
    np.testing.assert_array_equal(a.ids, b.ids)


def test_backend_errors(rand_docs, tmp_path):
    docs, queries = rand_docs
    ex = ExactBackend.build(docs)
    with pytest.raises(ValueError, match="dimension mismatch: dense queries have 8 dimensions, the index holds 16-d"):
        ex.search(Vectors(dense=queries.dense[:, :8]), 10, "dense")
    with pytest.raises(ValueError, match="needs hybrid=HybridWeights"):
        ex.search(queries, 10, "hybrid")
    with pytest.raises(ValueError, match="mode 'sparse' needs sparse query vectors"):
        ex.search(Vectors(dense=queries.dense), 10, "sparse")
    with pytest.raises(ValueError, match="not supported"):
        FaissBackend.build(docs).search(queries, 10, "sparse")
    with pytest.raises(ValueError, match="unknown back end 'lucene'"):
        ix.build_backend("lucene", docs)
    with pytest.raises(FileNotFoundError, match="no saved index"):
        ix.open_backend("exact", tmp_path / "nothing")
    with pytest.raises(ValueError, match="tau must be > 0"):
        HybridWeights(1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="dense rows but"):
        Vectors(queries.dense, docs.sparse)


@pytest.mark.parametrize("name", ["exact", "brute", "faiss"])
def test_backends_survive_a_restart(rand_docs, tmp_path, name):
    docs, queries = rand_docs
    mode = "dense" if name == "faiss" else "sparse"
    b = ix.build_backend(name, docs, tmp_path / name)
    again = ix.open_backend(name, tmp_path / name)
    a, c = b.search(queries, 10, mode), again.search(queries, 10, mode)
    np.testing.assert_array_equal(a.ids, c.ids)
    np.testing.assert_array_equal(a.scores, c.scores)


# ----------------------------------------------------------------------------------------------
# real vectors: the bundled JSD model on the emoji test split
# ----------------------------------------------------------------------------------------------
def test_real_vectors_exact_index_equals_brute_force(emoji):
    docs, queries, hw, es = emoji
    got = InvertedIndex.build(docs.sparse).search(queries.sparse, 10)
    ref = brute_force_sparse(queries.sparse, docs.sparse, 10)
    np.testing.assert_array_equal(got.ids, ref.ids)
    np.testing.assert_array_equal(got.scores, ref.scores)
    assert got.flops == pytest.approx(efficiency(es.enc)["flops"], rel=1e-9)
    # and the same ranking as the library's own sparse scores (float32 torch product)
    S = es.enc["Z_t"] @ es.enc["Z_i"].T
    assert_same_topk(got.ids, topk_rows(S.numpy(), 10)[0], S.double().numpy(), 1e-4)


def test_real_vectors_hybrid_equals_S_x(emoji):
    docs, queries, hw, es = emoji
    S_x = score_matrices(es.enc, hw.tau, hw.w1, hw.w2)["integrated"].double().numpy()
    res = ExactBackend.build(docs).search(queries, 10, "hybrid", hybrid=hw)
    assert_same_topk(res.ids, topk_rows(S_x, 10)[0], S_x, 1e-3)
    # the ranking by S_x gives the model's integrated t2i R@1 as stored in the bundled metadata
    r1 = 100 * np.mean(res.ids[:, 0] == np.asarray(es.split.caption_to_image))
    assert r1 == pytest.approx(es.meta["test"]["integrated"]["R@1"], abs=0.11)


# ----------------------------------------------------------------------------------------------
# engines: Seismic and Milvus Lite
# ----------------------------------------------------------------------------------------------
def test_seismic_recall_and_restart(rand, tmp_path):
    Q, D = rand
    docs, queries = Vectors(sparse=D), Vectors(sparse=Q[Q.getnnz(axis=1) > 0])
    b = SeismicBackend.build(docs, tmp_path / "seismic", heap_factor=1.0, query_cut=100)
    res = b.search(queries, 10)
    exact = ExactBackend.build(docs).search(queries, 10)
    rec = ix.recall_at_k(res.ids, exact.ids, 10)
    assert rec >= 0.9, rec  # approximate, but close on a small corpus
    again = ix.open_backend("seismic", tmp_path / "seismic")
    np.testing.assert_array_equal(again.search(queries, 10).ids, res.ids)
    with pytest.raises(ValueError, match="dimension mismatch"):
        b.search(Vectors(sparse=Q[:, :10]), 10)


def test_milvus_bad_uri_gives_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="bad URI 'ftp://x': give a local Milvus Lite file ending in '.db'"):
        MilvusBackend.connect("ftp://x")
    with pytest.raises(ValueError, match="does not exist"):
        MilvusBackend.connect(str(tmp_path / "no" / "such" / "dir.db"))
    with pytest.raises(FileNotFoundError, match="no Milvus Lite file"):
        MilvusBackend.open(str(tmp_path / "missing.db"))
    with pytest.raises(ConnectionError, match="cannot connect to 'http://localhost:1'"):
        MilvusBackend.connect("http://localhost:1", timeout=2)


_REOPEN = textwrap.dedent("""
    import json, sys
    import numpy as np, scipy.sparse as sp
    from jsdlib.index import MilvusBackend, Vectors, HybridWeights
    db, qpath, out, w1, w2, tau = sys.argv[1:7]
    f = np.load(qpath)
    q = Vectors(f["dense"], sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=tuple(f["shape"])))
    b = MilvusBackend.open(db)
    hw = HybridWeights(float(w1), float(w2), float(tau))
    res = {m: b.search(q, 10, m, hybrid=hw).ids.tolist() for m in ("sparse", "dense", "hybrid")}
    try:
        b.search(Vectors(dense=f["dense"][:, :5]), 10, "dense")
    except ValueError as e:
        res["error"] = str(e)
    b.close()
    json.dump(res, open(out, "w"))
""")


def test_milvus_lite_round_trip(emoji, tmp_path):
    """Insert the emoji test vectors, persist, reopen in a fresh process, search dense / sparse / hybrid."""
    docs, queries, hw, es = emoji
    _milvus_round_trip(docs, queries.rows(np.arange(0, 1000, 50)), hw, tmp_path)  # 20 captions


def test_milvus_lite_round_trip_random(rand_docs, tmp_path):
    docs, queries = rand_docs
    q = queries.rows(np.flatnonzero(queries.sparse.getnnz(axis=1) > 0)[:10])
    _milvus_round_trip(docs.rows(np.arange(400)), q, HybridWeights(0.5, 2.0, 0.1), tmp_path)


def _milvus_round_trip(docs, q, hw, tmp_path):
    db = str(tmp_path / "jsd.db")
    b = MilvusBackend.build(docs, db)
    first = b.search(q, 10, "hybrid", hybrid=hw)
    b.close()
    qpath = tmp_path / "q.npz"
    np.savez(qpath, dense=q.dense, data=q.sparse.data, indices=q.sparse.indices, indptr=q.sparse.indptr,
             shape=np.array(q.sparse.shape))
    subprocess.run([sys.executable, "-c", _REOPEN, db, str(qpath), str(tmp_path / "out.json"),
                    str(hw.w1), str(hw.w2), str(hw.tau)], check=True, timeout=120)
    res = json.loads((tmp_path / "out.json").read_text())
    assert f"dimension mismatch: dense queries have 5 dimensions, the index holds {docs.dim}-d" in res["error"]
    enc = {"D_t": torch.from_numpy(q.dense), "Z_t": torch.from_numpy(q.sparse.toarray()),
           "D_i": torch.from_numpy(docs.dense), "Z_i": torch.from_numpy(docs.sparse.toarray())}
    S = score_matrices(enc, hw.tau, hw.w1, hw.w2)
    exact = ExactBackend.build(docs)
    for mode, key, tol in (("sparse", "sparse", 1e-4), ("dense", "dense", 1e-3), ("hybrid", "integrated", 1e-3)):
        ref = exact.search(q, 10, mode, hybrid=hw)
        full = S[key].double().numpy()
        assert_same_topk(np.array(res[mode]), ref.ids, full, tol)
    assert_same_topk(first.ids, np.array(res["hybrid"]), S["integrated"].double().numpy(), 1e-3)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


_UNIMPLEMENTED = "Exception calling application: Method not implemented!"


def test_quiet_unimplemented_rpcs_is_scoped():
    """The grpc filter drops only Milvus Lite's message, only inside the block, and is removed after an error too."""
    log = logging.getLogger("grpc._server")
    before, seen = list(log.filters), _Records()
    log.addHandler(seen)
    try:
        with quiet_unimplemented_rpcs():
            log.error(_UNIMPLEMENTED)
            log.error("another grpc error")
            assert len(log.filters) == len(before) + 1
        with pytest.raises(RuntimeError), quiet_unimplemented_rpcs():
            raise RuntimeError("boom")
        with quiet_unimplemented_rpcs(enabled=False):
            log.error(_UNIMPLEMENTED)
        log.error(_UNIMPLEMENTED)
    finally:
        log.removeHandler(seen)
    assert seen.messages == ["another grpc error", _UNIMPLEMENTED, _UNIMPLEMENTED]
    assert log.filters == before


def test_milvus_lite_leaves_the_grpc_logger_as_it_found_it(rand_docs, tmp_path):
    """Milvus Lite's "Method not implemented" records are hidden during its calls, and no filter stays behind."""
    docs, queries = rand_docs
    log = logging.getLogger("grpc._server")
    before, seen = list(log.filters), _Records()
    log.addHandler(seen)
    try:
        b = MilvusBackend.build(docs.rows(np.arange(50)), str(tmp_path / "g.db"))
        assert log.filters == before  # between calls: nothing installed
        b.search(queries.rows([0, 1]), 3, "hybrid", hybrid=HybridWeights(1.0, 1.0, 1.0))
        b.close()
        MilvusBackend.open(str(tmp_path / "g.db")).close()
        log.error(_UNIMPLEMENTED)  # outside a Milvus call the same record gets through: the filter is gone
    finally:
        log.removeHandler(seen)
    assert log.filters == before
    assert seen.messages == [_UNIMPLEMENTED]


# ----------------------------------------------------------------------------------------------
# synthetic corpora and the benchmark
# ----------------------------------------------------------------------------------------------
def test_synthetic_vectors_match_the_real_statistics(rand):
    Q, D = rand
    a = ix.synthetic_sparse(D, 4000, seed=5)
    b = ix.synthetic_sparse(D, 4000, seed=5)
    assert (a != b).nnz == 0  # deterministic
    assert a.shape == (4000, D.shape[1]) and a.has_sorted_indices
    assert a.getnnz(axis=1).mean() == pytest.approx(D.getnnz(axis=1).mean(), rel=0.05)
    real = InvertedIndex.build(D).expected_flops(Q)
    synth = InvertedIndex.build(a).expected_flops(Q)
    assert synth == pytest.approx(real, rel=0.2)
    assert set(np.unique(a.data)) <= set(np.unique(D.data))  # weights copied from real postings
    big = ix.corpus_of_size(Vectors(_random_dense(D.shape[0], 8, 0), D), 2500, seed=1)
    assert len(big) == 2500 and (big.sparse[:2000] != D).nnz == 0
    np.testing.assert_allclose(np.linalg.norm(big.dense, axis=1), 1, rtol=1e-5)


def test_benchmark_rows(rand_docs):
    docs, queries = rand_docs
    rows = ix.benchmark_backends(docs, queries, ["exact", "brute_sparse", "brute_dense", "faiss"], repeats=1,
                                 n_timed=10, log=lambda *a: None)
    assert [r["backend"] for r in rows] == ["exact", "brute_sparse", "brute_dense", "faiss"]
    for r in rows:
        assert set(r) == {"backend", "n", "build_s", "ms_per_query", "qps", "recall_at_10", "flops", "queries", "timed"}
        assert r["n"] == 2000 and r["ms_per_query"] > 0
    assert rows[0]["recall_at_10"] == 1.0 and rows[1]["recall_at_10"] == 1.0 and rows[3]["recall_at_10"] == 1.0
    assert rows[0]["flops"] == pytest.approx(InvertedIndex.build(docs.sparse).expected_flops(queries.sparse))
    assert rows[1]["flops"] == pytest.approx(rows[0]["flops"])  # the sparse product does the same multiply-adds
    assert rows[2]["flops"] == rows[3]["flops"] == 16.0
    table = ix.ratio_table(rows)
    assert table.count("\n") == 5 and "| 2,000 | exact |" in table and "| 1.00 |" in table
    with pytest.raises(ValueError, match="unknown back ends"):
        ix.benchmark_backends(docs, queries, ["annoy"])


def test_cli_index_build_and_search(emoji, tmp_path, capsys):
    docs, queries, hw, es = emoji
    assert main(["index", "build", "--backend", "exact", "--path", str(tmp_path / "ix"), "--threads", "1"]) == 0
    assert main(["index", "search", "--path", str(tmp_path / "ix"), "--query", "cat face", "--k", "3",
                 "--mode", "hybrid", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "exact: indexed 500 emoji test images" in out
    d, z = es.encode_query("cat face")
    top = ExactBackend.open(tmp_path / "ix").search(Vectors(d, z), 3, "hybrid", hybrid=hw).ids[0]
    assert f"  1  image {int(top[0]):4d}" in out and "cat face" in out.split("\n  2 ")[0]
