"""Issue 15 point 3: the authors' weight-decay groups, their CE head and CMC-final over the BE's top-64."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from jsdlib.cmc.config import CMCConfig
from jsdlib.cmc.cross_encoder import CEConfig, CrossEncoder
from jsdlib.common.optim import adamw, decay_split


def test_decay_groups_leave_biases_and_norms_undecayed():
    m = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2))
    params = list(m.parameters())
    decayed, plain = decay_split(m, params)
    assert [p.shape for p in decayed] == [torch.Size([3, 4]), torch.Size([2, 3])]
    assert len(plain) == 4 and all(p.ndim == 1 for p in plain)
    opt = adamw(m, params, 1e-3, 1e-6, 0.01, decay_groups=True)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert len(adamw(m, params, 1e-3, 1e-6, 0.01).param_groups) == 1
    # one AdamW step with zero gradients: only the decayed weights shrink
    for p in params:
        p.grad = torch.zeros_like(p)
    before = [p.detach().clone() for p in params]
    opt.step()
    for p, b in zip(params, before):
        assert torch.equal(p, b) == (p.ndim == 1)
    with pytest.raises(ValueError, match="belong to the module"):
        decay_split(m, [nn.Parameter(torch.zeros(2))])


def test_decay_groups_option_keeps_old_digests():
    assert CMCConfig().digest() == CMCConfig(decay_groups=False).digest() != CMCConfig(decay_groups=True).digest()


def _tiny_bert():
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32))


class _Tok:
    def __call__(self, q, c, **kw):
        n = len(q)
        ids = torch.tensor([[1, 5 + len(a) % 7, 2, 9 + len(b) % 5, 2] for a, b in zip(q, c)])
        return _Enc(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))


class _Enc(dict):
    def to(self, dev):
        return self


def test_ce_pooler_head_is_the_authors():
    bert = _tiny_bert()
    ce = CrossEncoder(bert=bert, tokenizer=_Tok(), head="pooler").eval()
    assert ce.score.bias.item() == 0.0 and 0.005 < ce.score.weight.detach().std().item() < 0.05
    s = ce.pair_scores(["a dog", "cat"], ["pet", "animal x"])
    with torch.no_grad():
        out = bert(**{k: v for k, v in _Tok()(["a dog", "cat"], ["pet", "animal x"]).items()})
        want = ce.score(torch.tanh(bert.pooler.dense(out.last_hidden_state[:, 0]))).squeeze(-1)
    assert torch.allclose(s, want, atol=1e-6)
    cls = CrossEncoder(bert=bert, tokenizer=_Tok())
    with torch.no_grad():
        assert torch.allclose(cls.eval().pair_scores(["a dog"], ["pet"]),
                              cls.score(out.last_hidden_state[:1, 0]).squeeze(-1), atol=1e-6)
    with pytest.raises(ValueError, match="head must be one of"):
        CEConfig(head="mlp")
    with pytest.raises(ValueError, match="head must be one of"):
        CrossEncoder(bert=bert, tokenizer=_Tok(), head="mlp")


def test_cmc_final_over_the_be_top_k_final():
    from jsdlib.cmc import CMC
    from jsdlib.cmc.data import gold_positions
    from jsdlib.cmc.pipelines import run_pipelines
    from tests.test_cmc import synthetic

    d = synthetic(n=24, m=80, k=64, noise=0.5)
    torch.manual_seed(0)
    m = CMC(16).eval()
    names = ("be", "be_cmc", "cmc_final")
    default = run_pipelines(d, m, None, k=64, k_ce=8, names=names)
    wide = run_pipelines(d, m, None, k=64, k_ce=8, names=names, k_final=64)
    assert default["cmc_final"]["n_reranked"] == 8 and wide["cmc_final"]["n_reranked"] == 64
    # over all 64 candidates CMC-final is BE-CMC's ranking; over 8 the ranks beyond 8 stay the BE's
    assert wide["cmc_final"]["ranks"] == wide["be_cmc"]["ranks"]
    g = gold_positions(d.topk[:, :64], d.gold)
    assert default["cmc_final"]["R@8"] == pytest.approx(100 * float((g < 8).float().mean()))
    with pytest.raises(ValueError, match="k_final"):
        run_pipelines(d, m, None, k=64, k_ce=8, names=names, k_final=65)


def test_cmc_early_stopping_on_validation(tmp_path):
    from jsdlib.cmc.train import train_cmc
    from tests.test_cmc import synthetic

    tr, va = synthetic(n=40, m=120, k=100, noise=0.5), synthetic(n=20, m=120, k=100, seed=1, noise=0.5)
    cfg = CMCConfig(lr=0.0, epochs=6, patience=2, eval_k=64, batch_size=8, seed=0)   # lr 0: no epoch improves
    res = train_cmc(tr, va, cfg, progress=False, log=lambda *a: None)
    assert len(res["history"]) == 3 and res["best"]["epoch"] == 1      # epoch 1, then two without a better key
    full = train_cmc(tr, va, cfg.replace(patience=None), progress=False, log=lambda *a: None)
    assert len(full["history"]) == 6
