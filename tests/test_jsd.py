"""JSD equations, model, trainer, baselines, presets (jsdlib.jsd.*) and the released-feature loader (jsdlib.data.released)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jsdlib.common.schedule import lr_factor, warmup_steps
from jsdlib.data.released import load_released_features
from jsdlib.jsd.batches import epoch_batches, steps_per_epoch
from jsdlib.jsd.evaluate import sparse_product
from jsdlib.jsd.losses import (d2s_loss, dense_score, info_nce, integrated_score, jsd_loss, kd_loss, sparse_score,
                               teachers)
from jsdlib.jsd.methods import METHODS, run_methods
from jsdlib.jsd.model import JSDModel, build_model
from jsdlib.jsd.presets import PAPER_PRESETS, JSDConfig, get_preset
from jsdlib.jsd.train import _pec_mask, pec_probability, train_d2s, train_jsd
from jsdlib.vlp.features import Features

V, e, D, DT, DV = 60, 8, 16, 12, 10
FIX = Path(__file__).parent / "fixtures" / "released_features"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_features(n_img=24, caps=2, seed=0) -> Features:
    """Random features where a caption is a noisy copy of its image's hidden concept (learnable)."""
    g = torch.Generator().manual_seed(seed)
    concept = torch.randn(n_img, 6, generator=g)
    A_t, A_v = torch.randn(6, DT, generator=g), torch.randn(6, DV, generator=g)
    c2i = np.repeat(np.arange(n_img), caps)
    text = concept[c2i] @ A_t + 0.3 * torch.randn(len(c2i), DT, generator=g)
    image = concept @ A_v + 0.3 * torch.randn(n_img, DV, generator=g)
    proj = {"W_t": torch.randn(D, DT, generator=g) * 0.3, "b_t": torch.zeros(D),
            "W_v": torch.randn(D, DV, generator=g) * 0.3, "b_v": torch.zeros(D)}
    i2c = [list(range(i * caps, (i + 1) * caps)) for i in range(n_img)]
    return Features(text, image, proj, c2i, i2c, key=f"tiny{seed}")


def tiny_cfg(**kw) -> JSDConfig:
    base = dict(name="tiny", lr=1e-2, w1=0.1, w2=0.2, lam1=0.7, lam2=0.7, eta_t=1e-3, eta_i=1e-3, batch_size=8,
                epochs=3, patience=5, seed=0, vocab_size=V, emb_dim=e)
    base.update(kw)
    return JSDConfig(**base)


def tiny_E(seed=1):
    return torch.randn(V, e, generator=torch.Generator().manual_seed(seed))


def batch_scores(model, feats, n=6):
    d_t, d_i, z_t, z_i = model(feats.text[:n * 2:2], feats.image[:n])
    return d_t, d_i, z_t, z_i, dense_score(d_i, d_t, model.tau), sparse_score(z_i, z_t)


LOSS_KW = dict(w1=0.1, w2=0.2, lam1=0.7, lam2=0.7, eta_t=1e-3, eta_i=2e-3)


# ------------------------------------------------------------------------------------------ equations
def test_model_shapes_and_non_negative():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(), tiny_E())
    d_t, d_i, z_t, z_i, S_d, S_s = batch_scores(m, feats)
    assert d_t.shape == (6, D) and d_i.shape == (6, D) and z_t.shape == (6, V) and z_i.shape == (6, V)
    torch.testing.assert_close(d_t.norm(dim=1), torch.ones(6))
    assert (z_t >= 0).all() and (z_i >= 0).all()
    assert S_d.shape == S_s.shape == (6, 6)
    torch.testing.assert_close(S_d, d_i @ d_t.T / 0.07)
    torch.testing.assert_close(integrated_score(S_d, S_s, 0.1, 0.2), 0.1 * S_d + 0.2 * S_s)


def test_projection_initialised_from_features():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(), tiny_E())
    d_t, d_i = feats.dense()
    torch.testing.assert_close(m.dense_text(feats.text), d_t)
    torch.testing.assert_close(m.dense_image(feats.image), d_i)
    assert float(m.tau.detach()) == pytest.approx(0.07)


def test_info_nce_and_kd_match_cross_entropy():
    S = torch.randn(4, 4)
    y = torch.arange(4)
    torch.testing.assert_close(info_nce(S), 0.5 * (F.cross_entropy(S, y) + F.cross_entropy(S.T, y)))
    P = torch.softmax(torch.randn(4, 4), dim=1)
    torch.testing.assert_close(kd_loss(S, P), F.cross_entropy(S, P))
    with pytest.raises(ValueError, match="square"):
        info_nce(torch.randn(3, 4))
    with pytest.raises(ValueError, match="differ in shape"):
        kd_loss(S, P[:3])


def test_teacher_orientation_hand_built_3x3():
    # rows = images, columns = captions
    S_x = torch.tensor([[3.0, 1.0, 0.0],
                        [0.0, 2.0, 5.0],
                        [1.0, 1.0, 4.0]])
    P_it, P_ti = teachers(S_x)
    for i in range(3):   # image i: distribution over captions = softmax of its row
        torch.testing.assert_close(P_it[i], torch.softmax(S_x[i, :], dim=0))
    for j in range(3):   # caption j: distribution over images = softmax of its column
        torch.testing.assert_close(P_ti[j], torch.softmax(S_x[:, j], dim=0))
    # caption 2 prefers image 1 (score 5) over image 2 (score 4)
    assert P_ti[2].argmax() == 1
    _, P_quirk = teachers(S_x, transpose_quirk=True)
    torch.testing.assert_close(P_quirk, P_it)
    assert not torch.allclose(P_quirk, P_ti)


def test_quirk_changes_exactly_the_t2i_kd_terms():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(), tiny_E())
    *_, z_t, z_i, S_d, S_s = batch_scores(m, feats)
    _, a = jsd_loss(S_d, S_s, z_t, z_i, **LOSS_KW)
    _, b = jsd_loss(S_d, S_s, z_t, z_i, teacher_transpose_quirk=True, **LOSS_KW)
    for k in ("L_dense", "L_sparse", "L_inter", "L", "KD_dense_it", "KD_sparse_it", "reg_t", "reg_i", "reg"):
        assert torch.equal(a[k], b[k]), k
    for k in ("KD_dense_ti", "KD_sparse_ti", "loss"):
        assert not torch.equal(a[k], b[k]), k


def test_loss_composition_and_no_self_kd():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(), tiny_E())
    *_, z_t, z_i, S_d, S_s = batch_scores(m, feats)
    loss, p = jsd_loss(S_d, S_s, z_t, z_i, **LOSS_KW)
    L = (0.7 * info_nce(S_d) + 0.7 * info_nce(S_s) + info_nce(0.1 * S_d + 0.2 * S_s)) / 2
    P_it, P_ti = teachers(0.1 * S_d + 0.2 * S_s)
    Lp = (0.7 * 0.5 * (kd_loss(S_d, P_it) + kd_loss(S_d.T, P_ti))
          + 0.7 * 0.5 * (kd_loss(S_s, P_it) + kd_loss(S_s.T, P_ti))) / 2
    reg = 0.5 * (1e-3 * z_t.sum(1).mean() + 2e-3 * z_i.sum(1).mean())
    torch.testing.assert_close(loss, 0.5 * (L + Lp) + reg)
    loss_nokd, q = jsd_loss(S_d, S_s, z_t, z_i, use_self_kd=False, **LOSS_KW)
    torch.testing.assert_close(loss_nokd, 0.5 * L + reg)
    assert "KD_dense_it" not in q


def test_detach_teacher_same_value_other_gradient():
    feats = tiny_features()
    grads = []
    for detach in (False, True):
        torch.manual_seed(0)
        m = build_model(feats, tiny_cfg(), tiny_E())
        *_, z_t, z_i, S_d, S_s = batch_scores(m, feats)
        loss, _ = jsd_loss(S_d, S_s, z_t, z_i, detach_teacher=detach, **LOSS_KW)
        loss.backward()
        grads.append((loss.item(), m.head.E.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0])
    assert not torch.allclose(grads[0][1], grads[1][1])


def test_gradients_reach_head_projections_and_tau():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(), tiny_E())
    *_, z_t, z_i, S_d, S_s = batch_scores(m, feats)
    jsd_loss(S_d, S_s, z_t, z_i, **LOSS_KW)[0].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_final_layers_get_no_gradient():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(freeze_final=True), tiny_E())
    *_, z_t, z_i, S_d, S_s = batch_scores(m, feats)
    jsd_loss(S_d, S_s, z_t, z_i, **LOSS_KW)[0].backward()
    for p in (*m.text_proj.parameters(), *m.image_proj.parameters()):
        assert not p.requires_grad and p.grad is None
    assert m.head.E.grad.abs().sum() > 0 and m.head.proj.weight.grad.abs().sum() > 0
    assert all(not n.startswith(("text_proj", "image_proj")) for n, p in m.named_parameters() if p.requires_grad)


def test_active_only_forward_gives_same_loss():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(), tiny_E())
    h_t, h_i = feats.text[:12:2], feats.image[:6]
    out = []
    for active in (False, True):
        d_t, d_i, z_t, z_i = m(h_t, h_i, active_only=active)
        out.append(jsd_loss(dense_score(d_i, d_t, m.tau), sparse_score(z_i, z_t), z_t, z_i, **LOSS_KW)[0])
    torch.testing.assert_close(out[0], out[1])


def test_efficiency_matches_sparse_module():
    from jsdlib.jsd.efficiency import active_terms, efficiency, flops

    Zt, Zi = torch.relu(torch.randn(7, 30)), torch.relu(torch.randn(5, 30) - 1)
    eff = efficiency({"Z_t": Zt, "Z_i": Zi})
    assert eff["terms_q"] == pytest.approx(active_terms(Zt)) and eff["terms_d"] == pytest.approx(active_terms(Zi))
    assert eff["flops"] == pytest.approx(flops(Zt, Zi))


def test_sparse_product_equals_dense_product():
    Zq, Zd = torch.relu(torch.randn(7, 30)), torch.relu(torch.randn(5, 30))
    Zq[:, :10] = 0
    torch.testing.assert_close(sparse_product(Zq, Zd), Zq @ Zd.T)


# ------------------------------------------------------------------------------------------ schedules, batches
def test_lr_schedule_and_pec_probability():
    total = 100
    W = warmup_steps(total, JSDConfig().warmup_frac)  # JSD's schedule: 20 % warm-up, floor
    assert [lr_factor(s, total, W) for s in (0, 9, 19, 20, 60, 99)] == pytest.approx([0.05, 0.5, 1.0, 1.0, 0.5, 1 / 80])
    assert lr_factor(0, 1, warmup_steps(1, 0.2)) == 1.0  # a one-step run still takes a full step
    assert pec_probability(0, 20) == 1.0 and pec_probability(19, 20) == 0.0
    assert pec_probability(10, 20) == pytest.approx(1 - 10 / 19)


def test_batches_have_each_image_once():
    feats = tiny_features(n_img=25)
    g = torch.Generator().manual_seed(0)
    batches = epoch_batches(feats, 8, g)
    assert len(batches) == steps_per_epoch(feats, tiny_cfg(batch_size=8)) == 3  # 25 = 8 + 8 + 9 (last 1 merged)
    imgs = torch.cat([b[1] for b in batches])
    assert sorted(imgs.tolist()) == list(range(25))
    for caps, im in batches:
        assert len(set(im.tolist())) == len(im)
        assert (torch.as_tensor(feats.caption_to_image)[caps] == im).all()


def test_caption_sampling_drops_duplicate_images():
    feats = tiny_features(n_img=6, caps=4)
    g = torch.Generator().manual_seed(0)
    for caps, im in epoch_batches(feats, 8, g, sampling="captions", drop_duplicates=True):
        assert len(set(im.tolist())) == len(im)
    kept = epoch_batches(feats, 8, torch.Generator().manual_seed(0), sampling="captions", drop_duplicates=False)
    assert sum(len(c) for c, _ in kept) == 24
    with pytest.raises(ValueError, match="sampling"):
        epoch_batches(feats, 8, g, sampling="pairs")


# ------------------------------------------------------------------------------------------ training
def test_training_improves_and_keeps_best(tmp_path):
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    res = train_jsd(tr, va, tiny_cfg(epochs=4), run_dir=tmp_path / "run", progress=False, E_init=tiny_E())
    hist = res["history"]
    assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"]
    assert res["best"]["val"]["sparse"]["R@1"] == max(h["val"]["sparse"]["R@1"] for h in hist)
    assert 1e-3 <= float(res["model"].tau.detach()) <= 0.5
    assert (tmp_path / "run" / "last.pt").exists() and (tmp_path / "run" / "best.pt").exists()


def test_sparsity_budget_selects_only_sparse_epochs():
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    res = train_jsd(tr, va, tiny_cfg(epochs=3, max_terms_q=0.0), progress=False, E_init=tiny_E(), log=lambda *a: None)
    assert not any(h["within_budget"] for h in res["history"]) and res["best"]["epoch"] == 3
    res = train_jsd(tr, va, tiny_cfg(epochs=3, max_terms_q=1e9, max_terms_d=1e9), progress=False, E_init=tiny_E())
    assert all(h["within_budget"] for h in res["history"])


def test_resume_after_kill_is_bit_identical(tmp_path):
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    cfg = tiny_cfg(epochs=4, patience=10)
    full = train_jsd(tr, va, cfg, run_dir=tmp_path / "a", progress=False, E_init=tiny_E())
    part = train_jsd(tr, va, cfg, run_dir=tmp_path / "b", progress=False, E_init=tiny_E(), stop_after_epoch=2)
    assert part["stopped_at"] == 2
    resumed = train_jsd(tr, va, cfg, run_dir=tmp_path / "b", progress=False, E_init=tiny_E(), log=lambda *a: None)
    sa, sb = full["model"].state_dict(), resumed["model"].state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    strip = lambda h: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in h]  # noqa: E731
    assert strip(full["history"]) == strip(resumed["history"])
    with pytest.raises(ValueError, match="another run"):
        train_jsd(tr, va, cfg.replace(lr=2e-2), run_dir=tmp_path / "b", progress=False, E_init=tiny_E())


@pytest.fixture
def bf16_env(monkeypatch):
    """Set ``$JSDLIB_CPU_BF16`` for one test (the detection is cached, so clear it before and after)."""
    from jsdlib.common import hardware

    def set_(value: str):
        monkeypatch.setenv("JSDLIB_CPU_BF16", value)
        hardware.native_bf16.cache_clear()

    yield set_
    monkeypatch.delenv("JSDLIB_CPU_BF16", raising=False)
    hardware.native_bf16.cache_clear()


def test_cpu_bf16_only_where_the_hardware_grants_it(bf16_env, tmp_path):
    """``cfg.cpu_bf16`` is a request: without native bf16 the trainer runs (bit for bit) the fp32 path."""
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    run = lambda cfg, **kw: train_jsd(tr, va, cfg, progress=False, E_init=tiny_E(), log=lambda *a: None, **kw)  # noqa: E731
    bf16_env("0")
    fp32 = run(tiny_cfg(epochs=2, cpu_bf16=False))
    denied = run(tiny_cfg(epochs=2, cpu_bf16=True))
    assert fp32["precision"] == denied["precision"] == "fp32"
    for k, v in fp32["model"].state_dict().items():
        assert torch.equal(v, denied["model"].state_dict()[k]), k
    bf16_env("1")
    granted = run(tiny_cfg(epochs=2, cpu_bf16=True))
    assert granted["precision"] == "bf16-autocast"
    assert not torch.equal(granted["model"].head.E.detach(), fp32["model"].head.E.detach())
    assert run(tiny_cfg(epochs=2, cpu_bf16=False))["precision"] == "fp32"     # not requested: never bf16
    run(tiny_cfg(epochs=2, cpu_bf16=True), run_dir=tmp_path / "bf16", stop_after_epoch=1)
    bf16_env("0")                                  # a bf16 checkpoint does not silently resume in fp32
    with pytest.raises(ValueError, match="JSDLIB_CPU_BF16=1"):
        run(tiny_cfg(epochs=2, cpu_bf16=True), run_dir=tmp_path / "bf16")


def test_d2s_trains_only_the_head():
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    cfg = tiny_cfg(epochs=2)
    torch.manual_seed(cfg.seed)
    m0 = build_model(tr, cfg, tiny_E())
    res = train_d2s(tr, va, cfg, progress=False, E_init=tiny_E())
    m = res["model"]
    for name in ("text_proj.weight", "text_proj.bias", "image_proj.weight", "image_proj.bias"):
        assert torch.equal(m.state_dict()[name], m0.state_dict()[name]), name
    assert float(m.tau.detach()) == pytest.approx(1e-3)
    assert not torch.equal(m.head.E, m0.head.E)


def test_d2s_loss_and_pec():
    S_s, S_d = torch.randn(4, 4), torch.randn(4, 4)
    Z = torch.relu(torch.randn(4, 5))
    loss, p = d2s_loss(S_s, S_d, 1e-3, Z, Z)
    T = S_d / 1e-3
    expected = 0.5 * (F.cross_entropy(S_s, torch.softmax(T, 1)) + F.cross_entropy(S_s.T, torch.softmax(T.T, 1)))
    torch.testing.assert_close(loss, expected)
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    ids = [torch.tensor([i % V, (3 * i) % V]) for i in range(len(tr.caption_to_image))]
    with pytest.raises(ValueError, match="caption_token_ids"):
        train_d2s(tr, va, tiny_cfg(pec=True, epochs=1), progress=False, E_init=tiny_E())
    res = train_d2s(tr, va, tiny_cfg(pec=True, epochs=2), progress=False, E_init=tiny_E(), caption_token_ids=ids)
    assert len(res["history"]) == 2


def test_pec_mask_keeps_only_caption_tokens():
    z = torch.rand(2, 4) + 0.1                      # two captions, active columns [1, 3, 5, 7] of a V=8 vocabulary
    cols = torch.tensor([1, 3, 5, 7])
    ids = [torch.tensor([3, 6]), torch.tensor([1, 5, 7])]
    g = torch.Generator().manual_seed(0)
    out = _pec_mask(z, cols, torch.tensor([0, 1]), ids, 1.0, g, 8)
    assert torch.equal(out != 0, torch.tensor([[False, True, False, False], [True, False, True, True]]))
    state = g.get_state()
    assert _pec_mask(z, cols, torch.tensor([0, 1]), ids, 0.0, g, 8) is z      # p = 0: untouched, nothing drawn
    assert torch.equal(g.get_state(), state)


def test_jsd_with_pec():
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    ids = [torch.tensor([i % V, (3 * i) % V]) for i in range(len(tr.caption_to_image))]
    with pytest.raises(ValueError, match="caption_token_ids"):
        train_jsd(tr, va, tiny_cfg(pec=True, epochs=1), progress=False, E_init=tiny_E())
    a = train_jsd(tr, va, tiny_cfg(pec=True, epochs=2), progress=False, E_init=tiny_E(), caption_token_ids=ids)
    b = train_jsd(tr, va, tiny_cfg(epochs=2), progress=False, E_init=tiny_E(), caption_token_ids=ids)
    assert len(a["history"]) == 2
    assert a["history"][0]["loss"] != b["history"][0]["loss"]            # the mask changed the training


def test_run_methods_all_rows():
    tr, va, te = tiny_features(seed=0), tiny_features(n_img=12, seed=0), tiny_features(n_img=10, seed=0)
    out = run_methods(METHODS, tr, va, te, tiny_cfg(epochs=1), seed=3, E_init=tiny_E(), log=lambda *a: None)
    assert list(out) == list(METHODS)
    for name, r in out.items():
        assert set(r["t2i"]) == {"R@1", "R@5", "R@10", "MRR@10"}, name
        assert r["rr"].shape == (20,) and r["flops"] >= 0 and r["terms_q"] >= 0, name
    assert out["dense_original"]["flops"] == D
    assert out["jsd_sparse"]["best_epoch"] == out["jsd_dense"]["best_epoch"]
    with pytest.raises(ValueError, match="unknown method"):
        run_methods(["bm25"], tr, va, te, tiny_cfg())


def test_mask_special_tokens_needs_ids():
    feats = tiny_features()
    with pytest.raises(ValueError, match="special_ids"):
        build_model(feats, tiny_cfg(mask_special_tokens=True), tiny_E())
    m = build_model(feats, tiny_cfg(mask_special_tokens=True), tiny_E(), special_ids=[0, 1])
    assert (m.head(torch.randn(5, D))[:, :2] == 0).all()


def test_model_input_errors():
    feats = tiny_features()
    m = build_model(feats, tiny_cfg(), tiny_E())
    with pytest.raises(ValueError, match="width"):
        m(feats.image[:2], feats.image[:2])
    with pytest.raises(KeyError):
        JSDModel({"W_t": torch.zeros(D, DT)}, V, e)
    with pytest.raises(ValueError, match="E_init"):
        build_model(feats, tiny_cfg(vocab_size=None, emb_dim=None))


# ------------------------------------------------------------------------------------------ presets
def test_paper_presets_verbatim():
    table = {  # spec jsd.md §4: lr, w1, w2, lam1, lam2, eta_t, eta_i
        "blip-coco": (5e-5, 0.1, 0.1, 0.9, 0.3, 5e-4, 3e-5),
        "blip-flickr": (1e-5, 0.1, 0.2, 0.7, 0.7, 1e-4, 2e-5),
        "albef-coco": (5e-5, 0.2, 0.5, 0.9, 0.3, 1e-5, 3e-5),
        "albef-flickr": (1e-5, 0.1, 0.2, 0.3, 0.3, 1e-4, 2e-5),
    }
    assert set(PAPER_PRESETS) == set(table)
    for name, row in table.items():
        c = get_preset(name)
        assert (c.lr, c.w1, c.w2, c.lam1, c.lam2, c.eta_t, c.eta_i) == row
        shared = (c.batch_size, c.epochs, c.patience, c.seed, c.weight_decay, c.grad_clip)
        assert shared == (256, 200, 20, 42, 0.05, 1.0)
        assert c.betas == (0.9, 0.999) and c.eps == 1e-8 and c.tau_init == 0.07
        assert not c.detach_teacher
        # run as the authors' code runs them: every caption pair per epoch, duplicates kept, untransposed teacher
        assert (c.sampling, c.drop_duplicates, c.teacher_transpose_quirk) == ("captions", False, True)
    cpu = get_preset("cpu-emoji")   # the committed CPU results were made with these: unchanged
    assert cpu.batch_size == 128 and (cpu.sampling, cpu.drop_duplicates, cpu.teacher_transpose_quirk) == \
        ("images", True, False)


def test_config_validation():
    with pytest.raises(ValueError, match="sampling"):
        tiny_cfg(sampling="pairs")
    with pytest.raises(ValueError, match="batch_size"):
        tiny_cfg(batch_size=1)
    with pytest.raises(TypeError, match="no field"):
        tiny_cfg().replace(learning_rate=1.0)
    with pytest.raises(KeyError, match="unknown preset"):
        get_preset("blip-xyz")
    assert tiny_cfg().digest() == tiny_cfg(device="cpu", threads=1).digest() != tiny_cfg(lr=1.0).digest()


# ------------------------------------------------------------------------------------------ released features
def released(split, **kw):
    return load_released_features(FIX / "text_embs_before_proj_blip.parquet", FIX / "img_embs_before_proj_blip.parquet",
                                  FIX / "dataset_meta.json", split, **kw)


def test_released_feature_loader_matches_ids():
    import pandas as pd

    tr = released("train")
    assert tr.text.shape == (10, 768) and tr.image.shape == (5, 768)  # 4 train + 1 restval images
    assert tr.proj["W_t"].shape == (256, 768) and "random" in tr.meta["projection"]
    df = pd.read_parquet(FIX / "img_embs_before_proj_blip.parquet")
    row = df[df["id"] == "2"].iloc[0]  # imgid 2 is the restval image, the 3rd train image
    torch.testing.assert_close(tr.image[2], torch.tensor(np.asarray(row["emb"], dtype=np.float32)))
    dt = pd.read_parquet(FIX / "text_embs_before_proj_blip.parquet")
    row = dt[dt["id"] == "105"].iloc[0]  # sentid 105: caption 1 of imgid 2
    torch.testing.assert_close(tr.text[5], torch.tensor(np.asarray(row["emb"], dtype=np.float32)))
    assert list(tr.caption_to_image) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    te = released("test", projection={"W_t": torch.eye(256, 768), "b_t": torch.zeros(256),
                                       "W_v": torch.eye(256, 768), "b_v": torch.zeros(256)})
    assert te.text.shape == (4, 768) and te.meta["projection"] == "given"
    with pytest.raises(ValueError, match="do not take"):
        released("test", projection={"W_t": torch.eye(256, 10), "b_t": torch.zeros(256),
                                     "W_v": torch.eye(256, 768), "b_v": torch.zeros(256)})


def test_one_training_step_of_a_paper_preset_on_released_features():
    tr, va = released("train"), released("test")
    cfg = get_preset("blip-flickr", epochs=1, batch_size=8, vocab_size=V, emb_dim=e)
    assert steps_per_epoch(tr, cfg) == 2    # 10 caption pairs / batch 8, rounded up
    torch.manual_seed(cfg.seed)
    m0 = build_model(tr, cfg, None)
    res = train_jsd(tr, va, cfg, progress=False)
    assert len(res["history"]) == 1 and np.isfinite(res["history"][0]["loss"])
    m = res["model"]
    assert not torch.equal(m.text_proj.weight, m0.text_proj.weight)
    assert not torch.equal(m.head.E, m0.head.E)


def test_training_leaves_global_state_alone():
    """train_jsd / train_d2s seed their own init and set their own threads, then give the caller's back."""
    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=0)
    threads = torch.get_num_threads()
    cfg = tiny_cfg(epochs=1, threads=threads + 1)
    for train in (train_jsd, train_d2s):
        weights = []
        for caller_seed in (123, 456):
            torch.manual_seed(caller_seed)
            before = torch.random.get_rng_state()
            res = train(tr, va, cfg, progress=False, E_init=tiny_E())
            assert torch.equal(torch.random.get_rng_state(), before), train.__name__
            assert torch.get_num_threads() == threads, train.__name__
            weights.append(res["model"].state_dict())
        for k in weights[0]:  # the caller's RNG does not change the run
            assert torch.equal(weights[0][k], weights[1][k]), (train.__name__, k)


# ------------------------------------------------------------------------------------------ issue 13: as the authors ran it
def test_paper_preset_epoch_has_one_step_per_batch_of_caption_pairs():
    """On the released-feature fixture (5 train images x 2 captions): a paper-preset epoch walks all 10 caption
    pairs (duplicate images kept), i.e. caption pairs / batch size steps; the old image epoch had half as many."""
    tr, va = released("train"), released("test")
    n_pairs = len(tr.caption_to_image)
    assert n_pairs == 10 and len(tr.image_to_captions) == 5
    for preset in PAPER_PRESETS:
        cfg = get_preset(preset, epochs=1, batch_size=5, vocab_size=V, emb_dim=e)
        assert steps_per_epoch(tr, cfg) == n_pairs // 5 == 2
        batches = epoch_batches(tr, 5, torch.Generator().manual_seed(0), cfg.sampling, cfg.drop_duplicates)
        assert sorted(torch.cat([c for c, _ in batches]).tolist()) == list(range(n_pairs))   # every pair once
        assert steps_per_epoch(tr, cfg.replace(sampling="images", drop_duplicates=True)) == 1
    res = train_jsd(tr, va, get_preset("blip-coco", epochs=1, batch_size=5, vocab_size=V, emb_dim=e), progress=False,
                    log=lambda *a: None)
    assert res["step"] == 2 and len(res["history"]) == 1     # the loop really took caption pairs / batch steps
    # duplicate images are kept: with one batch of all pairs every image appears twice
    (caps, imgs), = epoch_batches(tr, 10, torch.Generator().manual_seed(0), "captions", False)
    assert len(imgs) == 10 and len(set(imgs.tolist())) == 5


def test_d2s_own_recipe_optimiser_groups_and_no_clipping(monkeypatch):
    from jsdlib.jsd.presets import D2SRecipe
    from jsdlib.jsd.train import _D2SOwnTask, build_optimizer, train_d2s_own

    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=1)
    recipe = D2SRecipe()
    cfg = recipe.config(tiny_cfg(epochs=1))
    assert (cfg.batch_size, cfg.weight_decay, cfg.grad_clip, cfg.d2s_tau, cfg.d2s_eta_t, cfg.d2s_eta_i) == \
        (512, 0.0, None, 1e-3, 1e-3, 1e-3)
    assert (cfg.sampling, cfg.drop_duplicates) == ("captions", False)
    task = _D2SOwnTask(tr, va, cfg, tiny_E(), None, None, "fp32", recipe=recipe)
    opt = build_optimizer(task, cfg)
    h = task.model.head
    g_pre, g_new = opt.param_groups
    assert (g_pre["lr"], g_pre["weight_decay"], g_new["lr"], g_new["weight_decay"]) == (5e-5, 0.0, 1e-3, 0.0)
    assert {id(p) for p in g_pre["params"]} == {id(h.norm.weight), id(h.norm.bias), id(h.E)}
    assert {id(p) for p in g_new["params"]} == {id(h.proj.weight), id(h.proj.bias)}
    frozen = [*task.model.text_proj.parameters(), *task.model.image_proj.parameters(), task.model.tau]
    assert not any(p.requires_grad for p in frozen)
    # no gradient clipping in D2S's own recipe; JSD's recipe (train_d2s) clips
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(1))
    res = train_d2s_own(tr, va, tiny_cfg(epochs=1), progress=False, E_init=tiny_E(), log=lambda *a: None)
    assert calls == [] and res["step"] == 1 and abs(float(res["model"].tau) - 1e-3) < 1e-9
    train_d2s(tr, va, tiny_cfg(epochs=1), progress=False, E_init=tiny_E(), log=lambda *a: None)
    assert len(calls) == steps_per_epoch(tr, tiny_cfg())


def test_match_flops_brackets_then_bisects_to_within_tolerance():
    from jsdlib.jsd.matching import match_flops

    seen = []

    def probe(scale):       # FLOPs fall monotonically as the L1 weight grows
        seen.append(scale)
        return {"flops": 1000.0 / scale, "tag": scale}

    for target in (37.0, 5000.0, 1000.0):
        seen.clear()
        m = match_flops(probe, target, tol=0.15)
        assert m["matched"] and abs(m["flops"] / target - 1) <= 0.15
        assert m["result"]["tag"] == m["scale"] and [p["scale"] for p in m["probes"]] == seen
        assert len(seen) <= 8
    assert len(match_flops(probe, 1000.0)["probes"]) == 1          # start already matches: one probe
    step = match_flops(lambda s: 100.0 if s < 1 else 1.0, 50.0, max_probes=5)   # unreachable: closest, flagged
    assert not step["matched"] and len(step["probes"]) == 5 and step["flops"] in (100.0, 1.0)
    with pytest.raises(ValueError, match="target"):
        match_flops(probe, 0.0)


def test_match_flops_secant_lands_in_few_probes_on_a_power_law():
    """F(s) = c s^b: the log-log secant needs at most 3 probes for any exponent in the committed sweep's range,
    where bisection by x4 brackets needs more; each probe's row carries the probe's record (validation R@1)."""
    from jsdlib.jsd.matching import match_flops

    for b in (-0.5, -0.8, -1.0, -1.3):
        for target in (2.0, 5.8, 20.0, 0.05):
            m = match_flops(lambda s: {"flops": 8.0 * s ** b, "record": {"val_R@1": 40.0 + s}}, target, start=2.0)
            # far targets: steps of at most x4 (factor) until near, then the secant
            assert m["matched"] and len(m["probes"]) <= (3 if target > 1 else 8), (b, target, m["probes"])
            assert all(p["val_R@1"] == 40.0 + p["scale"] for p in m["probes"])
    # a noisy probe (x1 reads 9, below x1.5's 13.3) that breaks the monotone trend: the search still brackets
    # (x1.5 too many FLOPs, x6 too few) and lands between them
    m = match_flops(lambda s: 9.0 if s == 1.0 else 20.0 / s, 6.0, max_probes=6)
    assert m["matched"] and 1.5 < m["scale"] < 6.0 and len(m["probes"]) <= 4
    with pytest.raises(ValueError, match="slope0"):
        match_flops(lambda s: 1.0, 1.0, slope0=0.5)


def test_match_d2s_l1_probes_real_trainings():
    from jsdlib.jsd.matching import match_d2s_l1

    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=1)
    cfg, quiet = tiny_cfg(epochs=1), (lambda *a: None)
    ref = train_d2s(tr, va, cfg.replace(d2s_eta_t=cfg.eta_t * 4, d2s_eta_i=cfg.eta_i * 4), progress=False,
                    E_init=tiny_E(), log=quiet)
    target = float(ref["best"]["val"]["flops"])
    m = match_d2s_l1(tr, va, cfg, target, E_init=tiny_E(), progress=False, log=quiet)
    assert m["probes"][0]["scale"] == 1.0 and m["matched"]
    assert abs(m["flops"] / target - 1) <= 0.15 and m["result"]["flops"] == m["flops"]
    assert (m["eta_t"], m["eta_i"]) == (cfg.eta_t * m["scale"], cfg.eta_i * m["scale"])


def test_flops_band_selects_the_best_epoch_inside_it_and_drives_the_own_recipe_match():
    """``flops_band`` changes selection only: the same training, the best validation R@1 among the epochs whose
    FLOPs lie in the band; none in the band keeps the last epoch. ``match_d2s_l1(select_in_band=True)`` matches in
    one probe when the first probe's run passes through the band at any epoch."""
    from jsdlib.jsd.matching import match_d2s_l1

    tr, va = tiny_features(seed=0), tiny_features(n_img=12, seed=1)
    cfg, quiet = tiny_cfg(epochs=4, patience=10), (lambda *a: None)
    c4 = cfg.replace(d2s_eta_t=cfg.eta_t * 4, d2s_eta_i=cfg.eta_i * 4)
    free = train_d2s(tr, va, c4, progress=False, E_init=tiny_E(), log=quiet)
    flops = [r["val"]["flops"] for r in free["history"]]
    target = flops[1]
    band = (target * 0.85, target * 1.15)
    inside = [r for r in free["history"] if band[0] <= r["val"]["flops"] <= band[1]]
    banded = train_d2s(tr, va, c4, progress=False, E_init=tiny_E(), log=quiet, flops_band=band)
    assert [r["val"]["flops"] for r in banded["history"]] == flops          # the same training
    assert banded["best"]["epoch"] == max(inside, key=lambda r: r["val"]["sparse"]["R@1"])["epoch"]
    assert [r["in_flops_band"] for r in banded["history"]] == [band[0] <= f <= band[1] for f in flops]
    none = train_d2s(tr, va, c4, progress=False, E_init=tiny_E(), log=quiet, flops_band=(1e-9, 2e-9))
    assert none["best_key"] is None and none["best"]["epoch"] == 4
    with pytest.raises(ValueError, match="flops_band"):
        train_d2s(tr, va, c4, progress=False, E_init=tiny_E(), log=quiet, flops_band=(2.0, 1.0))
    m = match_d2s_l1(tr, va, cfg, target, start=4.0, select_in_band=True, E_init=tiny_E(), progress=False, log=quiet)
    assert m["select_in_band"] and m["matched"] and len(m["probes"]) == 1 and m["probes"][0]["in_band"]
    assert m["probes"][0]["best_epoch"] == banded["best"]["epoch"] and abs(m["flops"] / target - 1) <= 0.15
    # a probe with no epoch in the band reports its epoch closest to the target, so the search still steers
    far = match_d2s_l1(tr, va, cfg, target * 50, start=4.0, select_in_band=True, max_probes=1, E_init=tiny_E(),
                       progress=False, log=quiet)
    assert not far["matched"] and not far["probes"][0]["in_band"] and far["flops"] == max(flops)
    p0 = far["probes"][0]
    assert flops[p0["best_epoch"] - 1] == max(flops) and p0["kept_epoch"] == 4
    assert p0["val_R@1"] == free["history"][p0["best_epoch"] - 1]["val"]["sparse"]["R@1"]


def test_authors_integrated_score_on_a_hand_built_case():
    from jsdlib.jsd.evaluate import authors_integrated_score, score_matrices

    enc = {"D_t": torch.tensor([[1.0, 0.0], [0.6, 0.8]]), "D_i": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
           "Z_t": torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]),
           "Z_i": torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 3.0]])}
    # cos = [[1, 0], [.6, .8]], S_s = Z_t Z_i^T = [[1, 6], [1, 0]]
    authors = authors_integrated_score(enc, 0.1, 0.2)           # 0.1 cos + 0.2 S_s
    torch.testing.assert_close(authors, torch.tensor([[0.3, 1.2], [0.26, 0.08]]))
    s_x = score_matrices(enc, 0.05, 0.1, 0.2)["integrated"]     # 0.1 cos / 0.05 + 0.2 S_s
    torch.testing.assert_close(s_x, torch.tensor([[2.2, 1.2], [1.4, 1.6]]))
    assert authors[0].argmax() == 1 and s_x[0].argmax() == 0     # the two definitions rank caption 0 differently


def test_extra_rows_leave_the_default_rows_alone():
    from jsdlib.jsd.methods import EXTRA_METHODS

    tr, va, te = tiny_features(seed=0), tiny_features(n_img=12, seed=1), tiny_features(n_img=12, seed=2)
    cfg, quiet = tiny_cfg(epochs=2), (lambda *a: None)
    base = run_methods(["d2s", "jsd_sparse", "jsd_integrated"], tr, va, te, cfg, seed=3, E_init=tiny_E(), log=quiet)
    out = run_methods(["d2s", "jsd_sparse", "jsd_integrated", *EXTRA_METHODS], tr, va, te, cfg, seed=3,
                      E_init=tiny_E(), log=quiet, match={"probe_epochs": 1, "max_probes": 2})
    for n in base:       # asking for extra rows changes no default row
        assert out[n]["t2i"] == base[n]["t2i"] and out[n]["flops"] == base[n]["flops"]
    assert out["jsd_integrated_sx"]["t2i"] == out["jsd_integrated"]["t2i"]
    assert out["jsd_corrected_teacher"]["t2i"] == out["jsd_sparse"]["t2i"]    # tiny_cfg: corrected teacher
    assert out["jsd_authors_teacher"]["teacher_transpose_quirk"] is True
    assert out["d2s_own"]["recipe"]["batch_size"] == 512
    for n in ("d2s_matched", "d2s_own_matched"):
        fm = out[n]["flops_match"]
        assert 1 <= len(fm["probes"]) <= 2 and fm["scale"] in [p["scale"] for p in fm["probes"]]
        assert fm["probe_epochs"] == 1 and isinstance(fm["final_matched"], bool)   # short probes, then a full run
        assert out[n]["epochs_run"] == 2
    assert set(METHODS).isdisjoint(EXTRA_METHODS)


def test_l1_sweep_has_d2s_own_beside_d2s():
    from jsdlib.experiments.jsd_compare import l1_sweep
    from jsdlib.jsd.features import FeatureSet

    fs = FeatureSet(tiny_features(seed=0), tiny_features(n_img=12, seed=1), tiny_features(n_img=12, seed=2),
                    tiny_E(), [], [], None)
    rows = l1_sweep(fs, tiny_cfg(epochs=1), "d2s_own", [1.0, 3.0], log=lambda *a: None)
    assert [(r["method"], r["scale"]) for r in rows] == [("d2s_own", 1.0), ("d2s_own", 3.0)]
    assert rows[1]["eta_t"] == pytest.approx(3 * tiny_cfg().eta_t) and all(r["test_flops"] >= 0 for r in rows)
    with pytest.raises(ValueError, match="d2s_own"):
        l1_sweep(fs, tiny_cfg(epochs=1), "splade", [1.0])
