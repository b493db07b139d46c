"""SPLADE's max pooling (the contrast of issue 18 point 8): formula, padding, order, and JSD's head as one position."""
from __future__ import annotations

import pytest
import torch

from jsdlib.jsd.head import SparseHead, log1p_relu
from jsdlib.jsd.splade import max_pooled_terms, tied_mlm_logits


def test_max_pooling_by_hand():
    logits = torch.tensor([[1.0, -2.0, 0.5], [3.0, -1.0, -0.5], [0.0, 4.0, 0.0]])   # 3 positions, |V| = 3
    z = max_pooled_terms(logits)
    assert torch.allclose(z, torch.log1p(torch.tensor([3.0, 4.0, 0.5])))
    # padding (the third position) never contributes; the order of the positions does not matter
    assert torch.allclose(max_pooled_terms(logits, torch.tensor([1, 1, 0])), torch.log1p(torch.tensor([3.0, 0, 0.5])))
    assert torch.equal(max_pooled_terms(logits[[2, 0, 1]]), z)
    batch = max_pooled_terms(torch.stack([logits, -logits]), torch.ones(2, 3))
    assert torch.equal(batch[0], z) and torch.allclose(batch[1], torch.log1p(torch.tensor([0.0, 2.0, 0.5])))
    with pytest.raises(ValueError, match="mask"):
        max_pooled_terms(logits, torch.ones(2))


def test_one_position_is_a_single_vector_head():
    torch.manual_seed(0)
    head = SparseHead(dense_dim=8, emb_dim=6, vocab_size=20).eval()
    d = torch.nn.functional.normalize(torch.randn(8), dim=0)
    with torch.no_grad():
        u = head.norm(head.proj(d))
        z_one = max_pooled_terms(tied_mlm_logits(u.unsqueeze(0), head.E))
        assert torch.allclose(z_one, head(d.unsqueeze(0))[0], atol=1e-6)
        assert torch.allclose(z_one, log1p_relu(head.E @ u), atol=1e-6)
    with pytest.raises(ValueError, match="width"):
        tied_mlm_logits(torch.zeros(3, 5), head.E)
