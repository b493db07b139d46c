"""Issue 15's CMC options: the input scale (``CMCConfig.input_scale``) and the selection key (``select_on``);
their defaults keep jsdlib's earlier behaviour and config digests."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch

from jsdlib import cmc
from jsdlib.cmc.config import CMCConfig
from jsdlib.cmc.data import RerankData
from jsdlib.cmc.model import CMC, scale_inputs
from jsdlib.cmc.rerank import selection_metrics
from jsdlib.cmc.train import train_cmc
from jsdlib.common.metrics import linking_accuracy, list_ranks


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def synthetic(n=40, m=120, d=16, k=100, seed=0, noise=1.5) -> RerankData:
    g = torch.Generator().manual_seed(seed)
    C = torch.nn.functional.normalize(torch.randn(m, d, generator=g), dim=1)
    gold = torch.randint(0, m, (n,), generator=g)
    Q = torch.nn.functional.normalize(C[gold] + noise * torch.randn(n, d, generator=g) / d ** 0.5, dim=1)
    S = Q @ C.T
    sc, top = torch.sort(S, dim=1, descending=True, stable=True)
    dom = [("a", "b", "c")[i % 3] if i % 4 else "a" for i in range(n)]   # domains of unequal size
    return RerankData(Q, C, top[:, :k].contiguous(), sc[:, :k].contiguous(), gold, S[torch.arange(n), gold], dom,
                      name=f"syn{seed}")


def tiny(**kw):
    return CMCConfig(**(dict(lr=3e-3, epochs=3, batch_size=8, eval_k=100, n_hard=7, n_random=8, pool=100,
                             dropout=0.0) | kw))


def _digest_before_the_options(cfg: CMCConfig) -> str:
    """CMCConfig.digest as jsdlib computed it before issue 15 (the fields of that time only)."""
    later = ("device", "input_scale", "select_on", "decay_groups", "patience", "encoder_lr", "warm_start")
    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in later}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def test_defaults_keep_the_digest_and_every_preset():
    for name, cfg in cmc.PRESETS.items():
        if name in ("cpu-authors", "cpu-authors-ft"):   # issue 15's presets use the options (new with them)
            assert (cfg.select_on, cfg.decay_groups) == ("macro_unnorm", True)
            continue
        assert cfg.input_scale == "unit" and cfg.select_on == "micro_top1", name
        assert cfg.digest() == _digest_before_the_options(cfg), name      # resumable runs stay resumable
    base = cmc.get_cmc_preset("cpu-frozen")
    digests = {base.digest(), base.replace(input_scale="layernorm").digest(),
               base.replace(select_on="macro_unnorm").digest()}
    assert len(digests) == 3                                                 # a non-default option is a new run
    with pytest.raises(ValueError, match="input_scale"):
        CMCConfig(input_scale="raw")
    with pytest.raises(ValueError, match="select_on"):
        CMCConfig(select_on="macro_norm")


def test_emoji_preset_is_cpu_frozen_at_the_lr_its_validation_sweep_chose():
    """The main job's cmc_emoji step trains cpu-frozen-emoji: cpu-frozen but for the lr, which is the best mean of
    the committed three-seed emoji validation sweep (and first or tied first at every seed)."""
    import dataclasses
    import json
    from pathlib import Path

    from jsdlib.experiments.reproduce import CMC_PRESETS
    emoji, frozen = cmc.get_cmc_preset("cpu-frozen-emoji"), cmc.get_cmc_preset("cpu-frozen")
    assert CMC_PRESETS == cmc.TASK_PRESETS == {"wordnet": "cpu-frozen", "emoji": "cpu-frozen-emoji"}
    assert dataclasses.replace(emoji, name="cpu-frozen", lr=frozen.lr) == frozen and emoji.lr != frozen.lr
    sweep = json.loads((Path(__file__).parents[1] / "notebooks" / "results" / "cmc_lr_sweep_emoji_styles.json")
                       .read_text())["summary"]
    best = max(sweep, key=lambda lr: sweep[lr]["mean"])
    assert float(best) == emoji.lr
    per_seed = [sweep[lr]["val_acc_per_seed"] for lr in sweep]
    assert all(sweep[best]["val_acc_per_seed"][i] >= max(r[i] for r in per_seed) for i in range(3))


def test_cmc_compare_cli_trains_the_task_preset_unless_told(monkeypatch, tmp_path):
    """`jsdlib cmc compare` without --preset trains what the main job's step for that task trains."""
    import jsdlib.cli.cmc as cli_cmc
    from jsdlib.cli.main import build_parser
    seen = []

    def fake_compare(task, seeds, preset, **kw):
        seen.append(preset)
        raise SystemExit(0)
    monkeypatch.setattr(cli_cmc, "compare", fake_compare)
    for argv, want in ((["--task", "emoji"], "cpu-frozen-emoji"), (["--task", "wordnet"], "cpu-frozen"),
                       (["--task", "emoji", "--preset", "cpu-fast"], "cpu-fast")):
        a = build_parser().parse_args(["cmc", "compare", "--seeds", "0", *argv])
        with pytest.raises(SystemExit):
            a.func(a)
    assert seen == ["cpu-frozen-emoji", "cpu-frozen", "cpu-fast"]


# ------------------------------------------------------------------------------------------ input scale
def test_scale_inputs_formula():
    x = torch.randn(3, 5, 16)
    assert scale_inputs(x, "unit") is x
    y = scale_inputs(x, "layernorm")
    torch.testing.assert_close(y.norm(dim=-1), torch.full((3, 5), 4.0))       # sqrt(16)
    torch.testing.assert_close(torch.nn.functional.normalize(y, dim=-1), torch.nn.functional.normalize(x, dim=-1))
    with pytest.raises(ValueError, match="input_scale"):
        scale_inputs(x, "raw")


def test_the_head_receives_the_scaled_vectors():
    torch.manual_seed(0)
    seen = []
    q = torch.nn.functional.normalize(torch.randn(2, 16), dim=1)
    c = torch.nn.functional.normalize(torch.randn(2, 7, 16), dim=2)
    for scale in ("unit", "layernorm"):
        torch.manual_seed(0)
        m = CMC(16, input_scale=scale).eval()
        h = m.head.register_forward_pre_hook(lambda mod, args: seen.append(args))
        s = m(q, c)
        h.remove()
        hq, hc = seen[-1]
        if scale == "unit":                                  # today's behaviour: the head reads the vectors as given
            assert hq is q and hc is c and torch.equal(s, m.head(q, c))
        else:
            torch.testing.assert_close(hq.norm(dim=1), torch.full((2,), 4.0))
            torch.testing.assert_close(hc.norm(dim=2), torch.full((2, 7), 4.0))
            torch.testing.assert_close(s, m.head(4.0 * q, 4.0 * c))
    with pytest.raises(ValueError, match="input_scale"):
        CMC(16, input_scale="raw")


def test_training_builds_saves_and_checks_the_scale(tmp_path):
    tr, va = synthetic(n=80, seed=0), synthetic(n=30, seed=5)
    res = train_cmc(tr, va, tiny(input_scale="layernorm", epochs=2), progress=False, log=lambda *a: None)
    assert res["model"].input_scale == "layernorm" and res["config"]["input_scale"] == "layernorm"
    ref = train_cmc(tr, va, tiny(epochs=2), progress=False, log=lambda *a: None)
    assert ref["model"].input_scale == "unit"
    assert any(not torch.equal(v, ref["model"].state_dict()[k]) for k, v in res["model"].state_dict().items())
    m2, _ = cmc.load_cmc(cmc.save_cmc(res["model"], tmp_path / "h.safetensors", half=False))
    assert m2.input_scale == "layernorm"
    torch.testing.assert_close(m2(va.query_emb[:2], va.cand_emb[va.topk[:2, :9]]),
                               res["model"](va.query_emb[:2], va.cand_emb[va.topk[:2, :9]]))
    with pytest.raises(ValueError, match="input_scale"):
        train_cmc(tr, va, tiny(input_scale="layernorm"), model=CMC(16), progress=False)


# ------------------------------------------------------------------------------------------ selection key
def test_selection_key_per_domain_by_hand():
    # ranked lists of 3 candidates; gold first = correct. Domain x: 3 of 3 correct; y: 0 of 1; z: 1 of 2.
    ranked = torch.tensor([[5, 1, 2], [6, 1, 2], [7, 1, 2], [1, 8, 2], [9, 1, 2], [1, 2, 3]])
    gold = torch.tensor([5, 6, 7, 8, 9, 4])             # query 3's gold at rank 1, query 5's gold not in the list
    dom = ["x", "x", "x", "y", "z", "z"]
    fields, key = selection_metrics(ranked, gold, dom, 3)
    assert key == pytest.approx(100 * 4 / 6) and fields == {"val_acc": key}              # micro: 4 / 6
    fields, key = selection_metrics(ranked, gold, dom, 3, "macro_unnorm")
    assert key == pytest.approx(100 * (1.0 + 0.0 + 0.5) / 3)                             # macro: mean of 100, 0, 50
    assert fields == {"val_acc": pytest.approx(100 * 4 / 6), "val_macro_unnorm": key}
    with pytest.raises(ValueError, match="select_on"):
        selection_metrics(ranked, gold, dom, 3, "macro_norm")


def test_training_selects_on_the_chosen_key():
    tr, va = synthetic(n=120, seed=0), synthetic(n=40, seed=5)
    micro = train_cmc(tr, va, tiny(epochs=3), progress=False, log=lambda *a: None)
    macro = train_cmc(tr, va, tiny(epochs=3, select_on="macro_unnorm"), progress=False, log=lambda *a: None)
    assert all(set(r) >= {"val_acc", "val_macro_unnorm"} for r in macro["history"])
    assert not any("val_macro_unnorm" in r for r in micro["history"])          # the default rows are unchanged
    assert macro["best"]["val_macro_unnorm"] == max(r["val_macro_unnorm"] for r in macro["history"])
    for a, b in zip(micro["history"], macro["history"]):                        # same training, other key
        assert a["loss"] == b["loss"] and a["val_acc"] == b["val_acc"]
    ranked, _ = cmc.cmc_rerank(macro["model"], va, 100)
    want = linking_accuracy(list_ranks(ranked, va.gold), 100, va.domain)["macro"]["acc_unnorm"]
    assert macro["best"]["val_macro_unnorm"] == pytest.approx(want)
