"""Issue 15, item 2: CMC with its own encoders fine-tuned (copied from the bi-encoder, warm-started from a frozen head),
the encoders' own learning rate, the cached cross-encoder run, and cmc_fidelity's extra WordNet settings."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from jsdlib.cmc import config as cmc_config
from jsdlib.cmc.config import CMCConfig, get_cmc_preset
from jsdlib.cmc.model import CMC, CMCHead, TextEncoder
from jsdlib.cmc.train import _optimizer
from jsdlib.retrieval.biencoder import BiEncoder
from test_cmc import synthetic, tiny_bert


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def tiny_be() -> BiEncoder:
    q, tok = tiny_bert()
    c, _ = tiny_bert()
    with torch.no_grad():                       # two different towers
        for p in c.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return BiEncoder(q, c, tok, max_len=16)


def test_encoders_copied_from_the_bi_encoder_read_its_vectors():
    """CMC.from_biencoder: mean-pooled unit vectors equal to the BE's, copies (training CMC leaves the BE alone),
    the head copied from a frozen-variant head when given."""
    be = tiny_be()
    texts = ["a bank of the river", "money in the bank", "x", "a much longer text with many words in it"]
    torch.manual_seed(1)
    head = CMCHead(32)
    m = CMC.from_biencoder(be, head=head)
    assert m.encoders == "finetuned" and m.query_encoder.pooling == "mean_unit"
    assert torch.allclose(m.encode_queries(texts), be.encode_queries(texts), atol=1e-6)
    assert torch.allclose(m.encode_catalogue(texts), be.encode_candidates(texts), atol=1e-6)
    assert not torch.allclose(be.encode_queries(texts), be.encode_candidates(texts))   # each tower its own copy
    assert torch.allclose(m.encode_queries(texts).norm(dim=1), torch.ones(4), atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(m.head.state_dict().values(), head.state_dict().values()))
    next(m.query_encoder.parameters()).data.add_(1.0)
    assert not torch.equal(next(m.query_encoder.parameters()), next(be.query_encoder.parameters()))
    cls = TextEncoder(be.query_encoder, be.tokenizer, 16)                       # the default: raw [CLS] states
    assert cls.pooling == "cls" and cls.encode(texts).norm(dim=1).min() > 1.5
    with pytest.raises(ValueError, match="pooling must be one of"):
        TextEncoder(be.query_encoder, be.tokenizer, 16, pooling="max")


def test_encoder_lr_gives_the_encoders_their_own_groups():
    m = CMC.from_biencoder(tiny_be())
    params = [p for p in m.parameters() if p.requires_grad]
    enc = {id(p) for e in (m.query_encoder, m.candidate_encoder) for p in e.parameters()}
    opt = _optimizer(m, params, CMCConfig(encoders="finetuned", lr=1e-3, encoder_lr=1e-5, decay_groups=True))
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(1e-3, 0.01), (1e-3, 0.0), (1e-5, 0.01),
                                                                        (1e-5, 0.0)]
    seen = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in params)                          # each parameter exactly once
    assert all((id(p) in enc) == (g["lr"] == 1e-5) for g in opt.param_groups for p in g["params"])
    assert all(p.ndim < 2 for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"])
    one = _optimizer(m, params, CMCConfig(encoders="finetuned", lr=1e-3))        # no encoder_lr: one lr, one group
    assert len(one.param_groups) == 1 and one.param_groups[0]["lr"] == 1e-3


def test_new_fields_leave_old_fingerprints_and_digests_alone():
    old = get_cmc_preset("cpu-authors")
    assert "encoder_lr" not in old.identity() and "warm_start" not in old.identity()
    assert old.digest() == old.replace(encoder_lr=None).digest() != old.replace(encoder_lr=1e-5).digest()
    ft = get_cmc_preset("cpu-authors-ft")
    assert ft.identity()["warm_start"] == "cpu-authors" and ft.encoders == "finetuned"
    assert get_cmc_preset(ft.warm_start).encoders == "frozen"


def test_finetuned_cmc_starts_from_the_frozen_head_of_its_seed(tmp_path, monkeypatch):
    """cmc_run with a warm-started finetuned preset: the frozen preset's run (same seed) is trained first, the
    finetuned CMC starts with its head and copies of the BE's towers, trains, and a second call only loads it."""
    import importlib

    from jsdlib.experiments import cmc_compare

    finetune = importlib.import_module("jsdlib.retrieval.finetune")   # the package's name `finetune` is the function
    be = tiny_be()
    monkeypatch.setattr(finetune, "load_biencoder", lambda kind="asis", **kw: be)
    tr, va = (dataclasses.replace(synthetic(n=n, m=80, k=64, texts=True, seed=s, d=32), name=f"wordnet-{x}-be_asis")
              for n, s, x in ((12, 0, "train"), (6, 3, "val")))
    base = dict(lr=3e-3, batch_size=4, eval_k=20, n_hard=7, n_random=8, pool=64, dropout=0.0, max_val_queries=6)
    monkeypatch.setitem(cmc_config.PRESETS, "tiny-frozen", CMCConfig(name="tiny-frozen", epochs=1, **base))
    monkeypatch.setitem(cmc_config.PRESETS, "tiny-ft", CMCConfig(name="tiny-ft", encoders="finetuned", epochs=1,
                                                                 encoder_lr=1e-4, warm_start="tiny-frozen", **base))
    data, log = {"train": tr, "val": va}, (lambda *a: None)
    cfg = get_cmc_preset("tiny-ft", seed=1)
    start = cmc_compare.finetuned_start("wordnet", data, cfg, tmp_path, log=log)
    frozen = cmc_compare.cmc_run("wordnet", data, get_cmc_preset("tiny-frozen", seed=1), tmp_path, log=log)["model"]
    assert (tmp_path / f"wordnet-tiny-frozen-seed1-{cmc_compare.folder_key(data)}" / "best.pt").is_file()
    assert all(torch.equal(a, b) for a, b in zip(start.head.state_dict().values(), frozen.head.state_dict().values()))
    res = cmc_compare.cmc_run("wordnet", data, cfg, tmp_path, log=log)
    assert res["variant"] == "finetuned" and len(res["history"]) == 1
    moved = res["model"].query_encoder.bert.embeddings.word_embeddings.weight
    assert not torch.equal(moved, be.query_encoder.embeddings.word_embeddings.weight)   # the BE itself is untouched
    again = cmc_compare.cmc_run("wordnet", data, cfg, tmp_path, log=log)
    assert all(torch.equal(a, b) for a, b in zip(again["model"].state_dict().values(), res["model"].state_dict().values()))
    # other data (the lists of a re-exported model), same root: a new folder, not the old data's refused checkpoint
    swapped = {"train": va, "val": tr}
    assert cmc_compare.folder_key(swapped) != cmc_compare.folder_key(data)
    cmc_compare.cmc_run("wordnet", swapped, get_cmc_preset("tiny-frozen", seed=1), tmp_path, log=log)
    assert (tmp_path / f"wordnet-tiny-frozen-seed1-{cmc_compare.folder_key(swapped)}" / "best.pt").is_file()
    with pytest.raises(ValueError, match="as-is bi-encoder"):
        cmc_compare.finetuned_start("emoji", data, cfg, tmp_path, log=log)
    with pytest.raises(ValueError, match="frozen-variant preset"):               # a warm start must be a head
        cmc_compare.finetuned_start("wordnet", data, cfg.replace(warm_start="tiny-ft"), tmp_path, log=log)


def test_cross_encoder_run_folder_loads_a_finished_training(tmp_path):
    """train_ce with run_dir: a second call trains nothing and reports the first call's losses and time."""
    from jsdlib.cmc.cross_encoder import CEConfig, CrossEncoder, train_ce
    from test_cmc_authors_options import _Tok, _tiny_bert

    tr = synthetic(n=10, m=40, k=30, texts=True)
    cfg = CEConfig(max_len=8, n_candidates=4, max_train_queries=6, lr=1e-3)
    first = train_ce(tr, cfg, CrossEncoder(bert=_tiny_bert(), tokenizer=_Tok()), progress=False, log=lambda *a: None,
                     run_dir=tmp_path / "ce")
    assert len(first["losses"]) == 6 and (tmp_path / "ce" / "losses.json").is_file()
    again = train_ce(tr, cfg, CrossEncoder(bert=_tiny_bert(), tokenizer=_Tok()), progress=False, log=lambda *a: None,
                     run_dir=tmp_path / "ce")
    assert again["losses"] == first["losses"] and again["train_time_s"] == first["train_time_s"]
    assert all(torch.equal(a, b) for a, b in zip(again["model"].state_dict().values(),
                                                 first["model"].state_dict().values()))


def test_a_step_keeps_its_own_options():
    from jsdlib.experiments import cmc_fidelity, reproduce
    from jsdlib.experiments.cmc_compare import compare

    st = reproduce.Step("x", "x", compare, None, {"task": "wordnet", "settings": {"a": {"preset": "p"}}},
                        options=("settings",))
    a = st.resolved()
    assert a["settings"] == {"a": {"preset": "p"}} and a["preset"] == "cpu-frozen"     # compare's default filled in
    with pytest.raises(TypeError):                                        # not declared: a misspelt argument
        reproduce.Step("x", "x", compare, None, {"task": "wordnet", "settings": {}}).resolved()
    step = reproduce.cpu_steps(["cmc_fidelity"])[0]
    assert step.resolved()["settings"] == cmc_fidelity.SETTINGS["settings"]
    assert set(step.config["setting_presets"]) == {"finetuned_encoders", "finetuned_be"}
