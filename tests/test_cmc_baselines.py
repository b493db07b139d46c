"""The reranker comparison (issue 15): poly-encoder and sum-of-max rerankers, their trainer and pipelines."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from jsdlib import cmc
from jsdlib.cli.cmc import _extra_lr, _names
from jsdlib.cli.main import build_parser
from jsdlib.cmc.baselines import PolyEncoder, SumOfMax, TokenStates, baseline_rerank, sum_of_max
from jsdlib.cmc.baselines_train import make_reranker, train_reranker
from jsdlib.cmc.config import CMCConfig
from jsdlib.cmc.data import RerankData
from jsdlib.cmc.pipelines import EXTRA_PIPELINES, PIPELINES, pipeline_tests, run_pipelines
from jsdlib.cmc.rerank import top1_accuracy
from jsdlib.experiments import cmc_compare
from jsdlib.experiments.cmc_compare import compare

KEY_TOKENS = 6   # query tokens that carry the gold's key (sum-of-max's score range grows with them)
D = 16   # token width of the toy states (the first 8 dims carry the item's key, the last 8 are loud noise)


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def tiny_bert(hidden=D):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from jsdlib.common.paths import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    return BertModel(cfg), tok


def toy(n=60, m=60, seed=0, tokens: TokenStates | None = None) -> RerankData:
    """A task the frozen token states can solve only after training: an item's key sits in dims 0-7 of its
    tokens, dims 8-15 hold noise 3x louder, so untrained (identity) projections rank mostly by noise; a
    projection that drops dims 8-15 ranks by the keys. One catalogue for every ``seed`` (the queries differ).
    The toy's token states are written into ``tokens``' cache (the tiny BERT never runs on them). The retriever
    sees the key plus noise (an imperfect teacher)."""
    gc = torch.Generator().manual_seed(100)
    keys = torch.nn.functional.normalize(torch.randn(m, 8, generator=gc), dim=1) * 2
    cand = torch.cat([keys, 3 * torch.randn(m, 8, generator=gc)], 1)     # the candidate vectors (poly's side)
    ct = [f"item {i}" for i in range(m)]
    if tokens is not None:
        for i in range(m):
            tokens.cache[ct[i]] = torch.cat([cand[i:i + 1], torch.cat([0.2 * torch.randn(2, 8, generator=gc),
                                                                       3 * torch.randn(2, 8, generator=gc)], 1)]).half()
    g = torch.Generator().manual_seed(seed)
    noise = lambda *s: 3 * torch.randn(*s, 8, generator=g)  # noqa: E731
    gold = torch.randint(0, m, (n,), generator=g)
    qv = torch.cat([keys[gold] + 0.7 * torch.randn(n, 8, generator=g), torch.zeros(n, 8)], 1)
    S = qv[:, :8] @ keys.T                                   # the retriever: noisy key . key
    sc, top = torch.sort(S, dim=1, descending=True, stable=True)
    qt = [f"toy{seed} query {i}" for i in range(n)]
    if tokens is not None:
        for i in range(n):
            key_tok = torch.cat([keys[gold[i]].expand(KEY_TOKENS, 8) + 0.2 * torch.randn(KEY_TOKENS, 8, generator=g),
                                 noise(KEY_TOKENS)], 1)
            tokens.cache[qt[i]] = torch.cat([key_tok, torch.cat([0.2 * torch.randn(2, 8, generator=g),
                                                                 noise(2)], 1)]).half()
    return RerankData(qv, cand, top.contiguous(), sc.contiguous(), gold, S[torch.arange(n), gold],
                      ["a" if i % 3 else "b" for i in range(n)], qt, ct, name=f"toy{seed}")


@pytest.fixture()
def tokens():
    bert, tok = tiny_bert()
    return TokenStates(bert, tok, max_len=16)


def cfg(**kw):
    base = dict(lr=3e-2, epochs=4, batch_size=8, eval_k=60, n_hard=7, n_random=8, pool=60, dropout=0.0,
                warmup_frac=0.0)
    return CMCConfig(**(base | kw))


# ------------------------------------------------------------------------------------------ formulas and shapes
def test_sum_of_max_equals_a_hand_computation():
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]])               # third query token is padding
    qm = torch.tensor([[True, True, False]])
    d = torch.tensor([[[[0.5, 0.2], [0.1, 0.9], [7.0, 7.0]],               # candidate 0 (third token padding)
                       [[-1.0, 2.0], [3.0, -1.0], [0.0, 0.0]]]])           # candidate 1 (all real)
    dm = torch.tensor([[[True, True, False], [True, True, True]]])
    # candidate 0: max(0.5, 0.1) + max(0.2, 0.9) = 1.4; candidate 1: max(-1, 3, 0) + max(2, -1, 0) = 5
    torch.testing.assert_close(sum_of_max(q, qm, d, dm), torch.tensor([[1.4, 5.0]]))
    # SumOfMax = the same over unit-length projected tokens (identity projection at init)
    m = SumOfMax.__new__(SumOfMax)
    torch.nn.Module.__init__(m)
    m.W, m.normalize = torch.nn.Linear(2, 2, bias=False), True
    with torch.no_grad():
        m.W.weight.copy_(torch.eye(2))
    n = torch.nn.functional.normalize
    torch.testing.assert_close(m(q, qm, d, dm), sum_of_max(n(q, dim=-1), qm, n(d, dim=-1), dm))
    m.normalize = False                                                     # raw dot products (the authors')
    torch.testing.assert_close(m(q, qm, d, dm), torch.tensor([[1.4, 5.0]]))


def test_poly_encoder_formula_and_shapes(tokens):
    torch.manual_seed(0)
    p = PolyEncoder(tokens, cand_dim=12, n_codes=3)
    h, hm, c = torch.randn(2, 5, D), torch.ones(2, 5, dtype=torch.bool), torch.randn(2, 7, 12)
    hm[1, 3:] = False
    s = p(h, hm, c)
    assert s.shape == (2, 7)
    # by hand for query 1, candidate 4 (its padding never attended to)
    hp, yc = p.W_q(h[1, :3]), p.W_c(c[1, 4])
    y = torch.stack([torch.softmax(hp @ code, 0) @ hp for code in p.codes])       # y^i_ctxt
    w = torch.softmax(y @ yc, 0)
    torch.testing.assert_close(s[1, 4], (w @ y) @ yc, rtol=1e-5, atol=1e-5)
    h2 = h.clone()
    h2[1, 3:] = 100.0
    torch.testing.assert_close(p(h2, hm, c), s)


def test_both_are_permutation_equivariant_and_pairwise(tokens):
    d = toy(n=6, tokens=tokens)
    torch.manual_seed(1)
    for model in (make_reranker("poly", d, tokens, n_codes=4), make_reranker("sum_of_max", d, tokens, dim=8)):
        rows = d.topk[:4, :20]
        perm = torch.randperm(20)
        s = model.score(d, [0, 1, 2, 3], rows)
        assert s.shape == (4, 20)
        torch.testing.assert_close(model.score(d, [0, 1, 2, 3], rows[:, perm]), s[:, perm])
        # pairwise: a candidate's score does not depend on the others in the list (unlike CMC)
        torch.testing.assert_close(model.score(d, [0], rows[:1, :5]), s[:1, :5])


def test_token_states_cache_and_mask(tokens):
    h, m = tokens(["a dog", "a much longer sentence about a dog", "a dog"])
    assert h.shape[0] == 3 and h.shape[2] == D and m.dtype == torch.bool
    assert m[0].sum() < m[1].sum() and torch.equal(h[0], h[2]) and (h[0][~m[0]] == 0).all()
    assert len(tokens.cache) == 2 and tokens.cache["a dog"].dtype == torch.float16


def test_rerank_is_a_permutation_and_skips_padding(tokens):
    d = toy(n=8, tokens=tokens)
    valid = torch.ones_like(d.topk, dtype=torch.bool)
    valid[:2, 30:] = False
    d = RerankData(d.query_emb, d.cand_emb, d.topk, d.scores, d.gold, d.gold_score, d.domain, d.query_texts,
                   d.cand_texts, valid=valid)
    torch.manual_seed(0)
    model = make_reranker("sum_of_max", d, tokens)
    rows, sc = baseline_rerank(model, d, k=40, batch=3)
    assert rows.shape == (8, 40) and (sc[2:, :-1] >= sc[2:, 1:]).all()
    for q in range(8):
        kk = 30 if q < 2 else 40
        assert sorted(rows[q, :kk].tolist()) == sorted(d.topk[q, :kk].tolist())
    assert torch.equal(rows[:2, 30:], d.topk[:2, 30:40]) and torch.isinf(sc[:2, 30:]).all()
    with pytest.raises(ValueError, match="query_texts"):
        baseline_rerank(model, RerankData(d.query_emb, d.cand_emb, d.topk, d.scores, d.gold, d.gold_score))


# ------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("kind,kw,lr", [("poly", {"n_codes": 4}, 3e-2), ("sum_of_max", {}, 1e-1)])
def test_learnable_toy_case(kind, kw, lr, tokens):
    """Untrained, the loud noise dims decide; trained as CMC is (sampling, CE + KL, AdamW, selection on val),
    the loss falls and validation accuracy rises well above where it started."""
    tr, va = toy(n=120, seed=0, tokens=tokens), toy(n=40, seed=1, tokens=tokens)
    torch.manual_seed(0)
    model = make_reranker(kind, tr, tokens, **kw)
    before = top1_accuracy(baseline_rerank(model, va, 60)[0], va.gold)
    res = train_reranker(model, tr, va, cfg(lr=lr, epochs=6), progress=False, log=lambda *a: None)
    h = res["history"]
    assert res["kind"] == kind and len(h) == 6 and h[-1]["loss"] < 0.7 * h[0]["loss"]
    assert res["best"]["val_acc"] == max(r["val_acc"] for r in h)
    # measured (seed 0): poly 2.5 -> 92.5 %, sum-of-max 2.5 -> 92.5 % (40 validation queries, 60 candidates)
    assert res["best"]["val_acc"] >= before + 50, (before, [r["val_acc"] for r in h])


def test_training_resumes_bit_for_bit_and_refuses_cmc_only_options(tokens, tmp_path):
    tr, va = toy(n=40, seed=0, tokens=tokens), toy(n=16, seed=1, tokens=tokens)
    runs = {}
    for name, stop in (("a", None), ("b", 1)):
        torch.manual_seed(0)
        m = make_reranker("poly", tr, tokens, n_codes=2)
        runs[name] = train_reranker(m, tr, va, cfg(epochs=2), run_dir=tmp_path / name, progress=False,
                                    stop_after_epoch=stop, log=lambda *a: None)
    assert runs["b"]["stopped_at"] == 1
    torch.manual_seed(0)
    resumed = train_reranker(make_reranker("poly", tr, tokens, n_codes=2), tr, va, cfg(epochs=2),
                             run_dir=tmp_path / "b", progress=False, log=lambda *a: None)
    for k, v in runs["a"]["model"].state_dict().items():
        assert torch.equal(v, resumed["model"].state_dict()[k]), k
    assert not any(k.startswith("tokens") for k in resumed["model"].state_dict())   # frozen MiniLM not saved
    with pytest.raises(ValueError, match="input_scale"):
        train_reranker(resumed["model"], tr, va, cfg(input_scale="layernorm"), progress=False)


# ------------------------------------------------------------------------------------------ pipelines
def test_extra_pipelines_by_name_only(tokens):
    assert PIPELINES == ("be", "be_ce", "be_cmc", "be_cmc_ce", "cmc_final")      # the default set is unchanged
    assert set(EXTRA_PIPELINES) == {"be_poly", "be_sum_of_max"} and not set(EXTRA_PIPELINES) & set(PIPELINES)
    d = toy(n=10, tokens=tokens)
    torch.manual_seed(0)
    rr = {"poly": make_reranker("poly", d, tokens), "sum_of_max": make_reranker("sum_of_max", d, tokens)}
    out = run_pipelines(d, cmc.CMC(D).eval(), None, k=40, k_ce=8, names=("be", "be_cmc", "be_poly",
                                                                          "be_sum_of_max"), rerankers=rr)
    assert list(out) == ["be", "be_cmc", "be_poly", "be_sum_of_max"]
    for name in ("be_poly", "be_sum_of_max"):
        assert out[name]["R@64"] == pytest.approx(out["be"]["R@64"]) and out[name]["n_reranked"] == 40
        assert out[name]["ms_per_query"] > out["be"]["ms_per_query"]
        want = top1_accuracy(baseline_rerank(rr[EXTRA_PIPELINES[name]], d, 40)[0], d.gold)
        assert out[name]["R@1"] == pytest.approx(want)
    assert {"be_cmc_vs_be_poly_R@1", "be_cmc_vs_be_sum_of_max_R@16"} <= set(pipeline_tests([out]))
    # k_extra: rerank only the top-20 (the authors' final rerankers read the top-64); the rest keeps the BE's order
    short = run_pipelines(d, None, None, k=40, names=("be", "be_poly"), rerankers=rr, k_extra=20)
    assert short["be_poly"]["n_reranked"] == 20 and short["be_poly"]["R@32"] == pytest.approx(short["be"]["R@32"])
    assert short["be_poly"]["R@1"] == pytest.approx(top1_accuracy(baseline_rerank(rr["poly"], d, 20)[0], d.gold))
    with pytest.raises(ValueError, match="rerankers="):
        run_pipelines(d, None, None, k=40, names=("be", "be_poly"))
    with pytest.raises(ValueError, match="unknown pipelines"):
        run_pipelines(d, None, None, k=40, names=("be", "be_mlp"))


def test_compare_trains_and_reports_the_extra_rerankers(tokens):
    data = {"train": toy(n=40, seed=0, tokens=tokens), "val": toy(n=12, seed=1, tokens=tokens),
            "test": toy(n=12, seed=2, tokens=tokens)}
    cmc.PRESETS["tiny-test"] = cfg(name="tiny-test", epochs=1, lr=1e-3)
    try:
        res = compare("emoji", [0], preset="tiny-test", names=("be", "be_cmc", "be_poly", "be_sum_of_max"),
                      data=data, n_eval=None, log=lambda *a: None, tokens=tokens, reranker_overrides={"lr": 3e-2})
    finally:
        del cmc.PRESETS["tiny-test"]
    assert set(res["pipelines"]) == {"be", "be_cmc", "be_poly", "be_sum_of_max"}
    info = res["seed_info"][0]
    assert info["poly"]["lr"] == 3e-2 and len(info["sum_of_max"]["val_history"]) == 1
    assert "be_cmc_vs_be_poly_R@16" in res["tests"]


def test_each_reranker_gets_its_own_config():
    """Per-kind overrides (each reranker's lr chosen on validation) beside flat ones shared by every kind."""
    from jsdlib.experiments.cmc_compare import reranker_configs

    base = cfg(name="tiny-test", lr=1e-5)
    got = reranker_configs(["poly", "sum_of_max"], base, {"epochs": 2, "poly": {"lr": 1e-3}})
    assert (got["poly"].lr, got["poly"].epochs) == (1e-3, 2) and (got["sum_of_max"].lr, got["sum_of_max"].epochs) == (1e-5, 2)
    assert reranker_configs(["poly"], base, None)["poly"] == base
    with pytest.raises(ValueError, match="must be dicts"):
        reranker_configs(["poly"], base, {"poly": 1e-3})


def test_cli_adds_the_extra_rows_by_name():
    a = build_parser().parse_args(["cmc", "compare", "--task", "wordnet", "--extra", "be_poly", "be_sum_of_max",
                                   "--extra-lr", "1e-3", "--k-extra", "64"])
    assert _names(a) == ("be", "be_ce", "be_cmc", "be_cmc_ce", "cmc_final", "be_poly", "be_sum_of_max")
    assert _extra_lr(a.extra_lr) == {"lr": 1e-3} and a.k_extra == 64
    c = build_parser().parse_args(["cmc", "compare", "--task", "wordnet", "--extra", "be_poly", "be_sum_of_max",
                                   "--extra-lr", "poly=1e-3", "sum_of_max=3e-4"])
    assert _extra_lr(c.extra_lr) == {"poly": {"lr": 1e-3}, "sum_of_max": {"lr": 3e-4}}
    with pytest.raises(SystemExit, match="KIND=LR"):
        _extra_lr(["cmc=1e-3"])
    b = build_parser().parse_args(["cmc", "compare", "--task", "emoji", "--extra", "be_poly"])
    assert _names(b) == ("be", "be_cmc", "cmc_final", "be_poly") and b.extra_lr is None
    assert _names(build_parser().parse_args(["cmc", "compare", "--task", "wordnet"])) is None   # default unchanged
    with pytest.raises(SystemExit):
        build_parser().parse_args(["cmc", "compare", "--task", "wordnet", "--extra", "be_mlp"])


def test_reranker_sweep_chooses_each_rerankers_lr_on_validation(tokens):
    """`jsdlib cmc sweep --rerankers`: each reranker trained at every lr, scored on validation only; the best lr
    per kind (on the toy, an lr too small to move the projections in 3 epochs loses)."""
    from jsdlib.experiments.cmc_compare import reranker_sweep

    tr, va = toy(n=120, seed=0, tokens=tokens), toy(n=40, seed=1, tokens=tokens)
    small = dict(epochs=3, batch_size=8, eval_k=60, n_hard=7, n_random=8, pool=60, dropout=0.0, warmup_frac=0.0)
    res = reranker_sweep("toy", ["poly", "sum_of_max"], [1e-6, 3e-2], data={"train": tr, "val": va},
                         tokens=tokens, log=lambda *a: None, **small)
    assert [(r["kind"], r["lr"]) for r in res["rows"]] == [("poly", 1e-6), ("poly", 3e-2),
                                                           ("sum_of_max", 1e-6), ("sum_of_max", 3e-2)]
    assert res["best"]["poly"]["lr"] == res["best"]["sum_of_max"]["lr"] == 3e-2
    assert all(set(r) == {"kind", "lr", "val_acc", "best_epoch", "history", "train_time_s"} for r in res["rows"])
    assert res["n_val_queries"] == 40 and res["n_train_queries"] == 120
    with pytest.raises(ValueError, match="kinds must be among"):
        reranker_sweep("toy", ["cmc"], [1e-3], data={"train": tr, "val": va}, tokens=tokens)
    args = build_parser().parse_args(["cmc", "sweep", "--task", "wordnet", "--lrs", "1e-3", "--rerankers", "poly"])
    assert args.rerankers == ["poly"]


# ------------------------------------------------------------------------------------------ issue 15's opt-in step
def test_prefill_encodes_a_set_in_one_canonical_order():
    """A text's states depend on its batch (padded to the longest): encoded by prefill they depend only on the set,
    so two processes (or a resumed run) that prefill the same texts in any order read the same numbers."""
    bert, tok = tiny_bert()
    texts = [f"word {'x ' * (i % 7)}{i}" for i in range(150)]            # lengths vary: padding matters
    a, b = TokenStates(bert, tok, max_len=16, batch=8), TokenStates(bert, tok, max_len=16, batch=8)
    assert a.prefill(texts) == 150
    b(texts[100:120])                                                      # b had encoded other texts before
    b.cache.clear()
    assert b.prefill(list(reversed(texts)) + texts[:5]) == 150            # order and duplicates do not matter
    assert all(torch.equal(a.cache[t], b.cache[t]) for t in texts)
    assert a.prefill(texts) == 0                                           # nothing left to encode
    s, m = a(texts[:3])
    assert s.shape[0] == 3 and m.sum(1).tolist() == [len(a.cache[t]) for t in texts[:3]]


def test_reranker_texts_cover_what_the_rerankers_read(tokens):
    from jsdlib.experiments.cmc_compare import reranker_texts

    data = {"train": toy(n=20, seed=0, tokens=tokens), "val": toy(n=8, seed=1, tokens=tokens),
            "test": toy(n=8, seed=2, tokens=tokens)}
    t = set(reranker_texts(data, data["test"], 5))
    assert set(data["train"].query_texts) | set(data["val"].cand_texts) | set(data["test"].query_texts) <= t
    top5 = {data["test"].cand_texts[i] for i in data["test"].topk[:, :5].flatten().tolist()}
    assert top5 <= t
    assert set(reranker_texts(data, data["test"], None)) >= t


def _cmc_fidelity_ctx(tmp_path, tokens, data):
    from jsdlib.experiments import cmc_fidelity, reproduce

    args = {"task": "emoji", "preset": "tiny-test", "names": ("be", "be_cmc", "cmc_final", "be_poly", "be_sum_of_max"),
            "reranker_overrides": {"poly": {"lr": 3e-2}, "sum_of_max": {"lr": 3e-2, "epochs": 1}},
            "k_extra": 20, "k_final": 20}
    step = reproduce.Step("cmc_fidelity", "cmc", compare, reproduce.cmc_fidelity.run, args, options=("settings",))
    ctx = reproduce.Context(tmp_path, "cpu", (0, 1), False, lambda *a: None)
    cmc_fidelity._DATA[cmc_fidelity.data_key(step.resolved())] = (data, tokens)
    return ctx, step


def test_cmc_fidelity_is_opt_in_and_a_helping_lane_changes_no_number(tmp_path, tokens):
    """`cmc_fidelity` runs only when named; its units (a CMC head or a reranker, per seed) trained by a helper from
    the end give the same table as the owner alone; the report has the reranker comparison."""
    import json

    from jsdlib.experiments import cmc_fidelity, lanes, reproduce
    from jsdlib.experiments.report import report_sections
    from jsdlib.experiments.tables import reranker_table

    assert "cmc_fidelity" not in {s.name for s in reproduce.cpu_steps()}
    assert [s.name for s in reproduce.cpu_steps(["cmc_fidelity"])] == ["cmc_fidelity"]
    assert "cmc_fidelity" in lanes.HELPABLE and reproduce.HELPERS["cmc_fidelity"] == "help_cmc_fidelity"
    data = {"train": toy(n=40, seed=0, tokens=tokens), "val": toy(n=12, seed=1, tokens=tokens),
            "test": toy(n=12, seed=2, tokens=tokens)}
    cmc.PRESETS["tiny-test"] = cfg(name="tiny-test", epochs=2, lr=1e-3, select_on="macro_unnorm", patience=1)
    try:
        ctx, step = _cmc_fidelity_ctx(tmp_path / "helped", tokens, data)
        a = step.resolved()
        assert cmc_fidelity.units(ctx, a) == [("cmc", 0), ("cmc", 1), ("poly", 0), ("poly", 1),
                                              ("sum_of_max", 0), ("sum_of_max", 1)]
        assert reproduce.help_cmc_fidelity(ctx, step) == 6                 # alone, the helper trains every unit
        assert reproduce.help_cmc_fidelity(ctx, step) == 0
        helped = reproduce.cmc_fidelity.run(ctx, a)
        alone_ctx, _ = _cmc_fidelity_ctx(tmp_path / "alone", tokens, data)
        alone = reproduce.cmc_fidelity.run(alone_ctx, a)
    finally:
        del cmc.PRESETS["tiny-test"]
        cmc_fidelity.reset_cache()
    drop = lambda r: {k: v for k, v in r.items() if k != "seed_info"}      # noqa: E731 (train times differ)
    strip_ms = lambda r: json.dumps({n: {k: v for k, v in m.items() if k != "ms_per_query"}    # noqa: E731
                                     for n, m in drop(r)["pipelines"].items()}, sort_keys=True)
    assert strip_ms(helped) == strip_ms(alone) and helped["tests"] == alone["tests"]
    assert [i["val_acc"] for i in helped["seed_info"]] == [i["val_acc"] for i in alone["seed_info"]]
    assert helped["k_final"] == 20 and helped["pipelines"]["cmc_final"]["n_reranked"] == 20
    assert helped["pipelines"]["be_sum_of_max"]["n_reranked"] == 20
    assert "cmc_final_vs_be_poly_R@1" in helped["tests"] and "cmc_final_vs_be_sum_of_max_R@1" in helped["tests"]
    assert helped["seed_info"][0]["sum_of_max"]["lr"] == 3e-2 and len(helped["seed_info"][0]["sum_of_max"]["val_history"]) == 1
    t = reranker_table(helped)
    assert list(t.index) == ["BE (no reranking)", "CMC", "poly-encoder", "sum-of-max (ColBERT)"]
    assert t.loc["CMC", "reranks"] == "top-20" and "of 2 seeds" in t.loc["poly-encoder", "CMC minus it, R@1"]
    sec = report_sections({"results": {"cmc_fidelity": helped}})
    assert len(sec) == 1 and "The reranker comparison" in sec[0] and "CMC over the top-20, the CE" not in sec[0]


def test_cmc_fidelity_settings_run_beside_the_main_table(tmp_path, tokens):
    """A setting of `cmc_fidelity` (issue 15: CMC over the fine-tuned BE) is one more unit per seed, trained from the
    end by a helper, and one more compare over its own data; the report shows the settings side by side."""
    from jsdlib.experiments import cmc_fidelity, reproduce
    from jsdlib.experiments.report import report_sections
    from jsdlib.experiments.tables import settings_table

    data = {"train": toy(n=40, seed=0, tokens=tokens), "val": toy(n=12, seed=1, tokens=tokens),
            "test": toy(n=12, seed=2, tokens=tokens)}
    other = {"train": toy(n=40, seed=3), "val": toy(n=12, seed=4), "test": toy(n=12, seed=5)}
    cmc.PRESETS["tiny-test"] = cfg(name="tiny-test", epochs=2, lr=1e-3, select_on="macro_unnorm", patience=1)
    try:
        ctx, step = _cmc_fidelity_ctx(tmp_path, tokens, data)
        step.args["settings"] = {"finetuned_be": {"preset": "tiny-test", "be_kind": "finetuned"}}
        step.args["names"] = ("be", "be_cmc", "cmc_final", "be_poly")
        a = step.resolved()
        cmc_fidelity._DATA[cmc_fidelity.data_key(a)] = (data, tokens)
        cmc_fidelity._DATA[("emoji", "be", "finetuned")] = other
        assert cmc_fidelity.units(ctx, a)[-2:] == [("finetuned_be", 0), ("finetuned_be", 1)]
        assert reproduce.help_cmc_fidelity(ctx, step) == 6
        assert (ctx.run_root("cmc_fidelity") / "finetuned_be" /
                f"emoji-tiny-test-seed1-{cmc_compare.folder_key(other)}").is_dir()
        res = cmc_fidelity.run(ctx, a)
    finally:
        del cmc.PRESETS["tiny-test"]
        cmc_fidelity.reset_cache()
    st = res["settings"]["finetuned_be"]
    assert st["be_kind"] == "finetuned" and st["names"] == ["be", "be_cmc", "cmc_final"]    # no comparison rerankers
    assert (st["data"], st["train_data"], res["data"]) == ("toy5", "toy3", "toy2")         # its own BE lists
    t = settings_table(res)
    assert list(t.index) == ["frozen encoders, as-is BE (the table above)", "frozen encoders, fine-tuned BE"]
    assert "of 2 seeds" in t.iloc[1]["gain over BE"] and t.iloc[1]["BE-CE R@1"] == "—"
    sec = report_sections({"results": {"cmc_fidelity": res}})
    assert "Fine-tuned encoders, and the fine-tuned BE" in sec[0]


def test_compare_refuses_a_cross_encoder_of_another_config(tokens):
    from jsdlib.cmc.cross_encoder import CEConfig

    data = {"train": toy(n=20, seed=0, tokens=tokens), "val": toy(n=8, seed=1, tokens=tokens),
            "test": toy(n=8, seed=2, tokens=tokens)}
    wrong = {"model": None, "config": dataclasses.asdict(CEConfig(max_train_queries=7, seed=0))}
    with pytest.raises(ValueError, match="another config"):
        compare("wordnet", [0], names=("be", "be_ce"), data=data, ce_cfg=CEConfig(max_train_queries=8),
                ce_result=wrong, log=lambda *a: None)
