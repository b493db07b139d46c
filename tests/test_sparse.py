"""The sparse head, regularisers, efficiency numbers and term decoding (jsdlib.jsd.head, losses, efficiency, vocab)."""
from __future__ import annotations

import math

import pytest
import torch

from jsdlib.jsd.efficiency import active_terms, flops
from jsdlib.jsd.head import SparseHead
from jsdlib.jsd.losses import flops_reg, l1_reg, reg_weight
from jsdlib.jsd.vocab import Vocabulary, bag_mask, caption_token_ids, top_terms

V, e, D = 40, 6, 8


pytestmark = pytest.mark.usefixtures("one_thread")


def make_head(seed=0, **kw):
    torch.manual_seed(seed)
    return SparseHead(D, e, V, E_init=torch.randn(V, e), **kw)


def test_head_shapes_and_non_negative():
    head = make_head()
    d = torch.nn.functional.normalize(torch.randn(5, D), dim=-1)
    z = head(d)
    assert z.shape == (5, V)
    assert (z >= 0).all()
    assert (z > 0).any() and (z == 0).any()


def test_head_equation():
    head = make_head()
    d = torch.randn(3, D)
    u = torch.nn.functional.layer_norm(d @ head.proj.weight.T + head.proj.bias, (e,),
                                       head.norm.weight, head.norm.bias)
    torch.testing.assert_close(head(d), torch.log(1 + torch.relu(u @ head.E.T)))


def test_E_is_a_trainable_copy_not_tied():
    E0 = torch.randn(V, e)
    head = SparseHead(D, e, V, E_init=E0)
    torch.testing.assert_close(head.E.detach(), E0)
    assert head.E.data_ptr() != E0.data_ptr() and head.E.requires_grad
    E0.add_(1.0)
    assert not torch.allclose(head.E.detach(), E0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="E_init has shape"):
        SparseHead(D, e, V, E_init=torch.randn(V + 1, e))
    with pytest.raises(ValueError, match="dense vectors"):
        make_head()(torch.randn(2, D + 1))
    with pytest.raises(IndexError):
        SparseHead(D, e, V, mask_ids=[V])


def test_mask_special_tokens():
    head = make_head(mask_ids=[0, 3])
    z = head(torch.randn(16, D))
    assert (z[:, [0, 3]] == 0).all()
    assert make_head()(torch.randn(16, D))[:, [0, 3]].abs().sum() > 0  # default: nothing masked


def test_forward_active_same_values_and_gradients():
    d = torch.randn(6, D)
    a, b = make_head(), make_head()
    z_full = a(d)
    z_act, cols = b.forward_active(d)
    assert set(cols.tolist()) == set((z_full > 0).any(0).nonzero().squeeze(1).tolist())
    torch.testing.assert_close(z_act, z_full[:, cols])
    w = torch.randn(6, V)
    (z_full * w).sum().add(l1_reg(z_full)).backward()
    (z_act * w[:, cols]).sum().add(l1_reg(z_act)).backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-5, rtol=1e-5)


def test_regularisers_hand_values():
    Z = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    assert l1_reg(Z).item() == pytest.approx((3 + 3) / 2)                       # mean_b sum_j |z|
    assert flops_reg(Z).item() == pytest.approx(0.5 ** 2 + 1.5 ** 2 + 1.0 ** 2)  # sum_j (mean_b |z_j|)^2
    assert l1_reg(Z.to(torch.bfloat16)).dtype == torch.float32


@pytest.mark.parametrize("frac, expected", [(0.0, 0.0), (0.1, 0.25), (0.2, 1.0), (0.5, 1.0), (1.0, 1.0)])
def test_reg_weight_quadratic_warmup(frac, expected):
    total = 1000
    assert reg_weight(int(frac * total), total, 2e-3) == pytest.approx(2e-3 * expected)


def test_flops_and_active_terms_hand_example():
    Zq = torch.tensor([[1.0, 0, 2], [0, 0, 1]])              # p(q) = [.5, 0, 1]
    Zd = torch.tensor([[1.0, 1, 0], [1, 0, 3], [0, 0, 0], [2, 0, 1]])  # p(d) = [.75, .25, .5]
    assert flops(Zq, Zd) == pytest.approx(0.5 * 0.75 + 0 * 0.25 + 1 * 0.5)
    assert active_terms(Zq) == pytest.approx(1.5)
    assert active_terms(Zd) == pytest.approx(1.5)
    with pytest.raises(ValueError):
        flops(Zq, Zd[:, :2])


def test_top_terms_plain_list_and_batch():
    vocab = ["cat", "dog", "##s", "sun"]
    z = torch.tensor([0.5, 0.0, 2.0, 1.0])
    assert top_terms(z, 10, vocab) == [("-s", 2.0), ("sun", 1.0), ("cat", 0.5)]  # zero weights left out
    assert top_terms(torch.stack([z, z]), 1, vocab) == [[("-s", 2.0)], [("-s", 2.0)]]
    with pytest.raises(ValueError, match="dimensions"):
        top_terms(torch.ones(5), 2, vocab)


def test_top_terms_wordpiece_minilm():
    from jsdlib.vlp.minilm import minilm_tokenizer

    tok = minilm_tokenizer()
    vocab = Vocabulary.from_hf(tok)
    assert vocab.kind == "wordpiece" and len(vocab) == 30522 and 101 in vocab.special_ids
    ids = tok.convert_tokens_to_ids(["smiling", "##ing", "face"])
    z = torch.zeros(len(vocab))
    z[ids] = torch.tensor([3.0, 1.0, 2.0])
    assert top_terms(z, 3, tok) == [("smiling", 3.0), ("face", 2.0), ("-ing", 1.0)]


def test_top_terms_clip_bpe():
    from open_clip.tokenizer import SimpleTokenizer

    st = SimpleTokenizer()
    vocab = Vocabulary.from_open_clip(st)
    assert vocab.kind == "bpe" and len(vocab) == 49408 and len(vocab.special_ids) == 2
    word_ids = st.encode("smiling face")
    piece = st.encoder["sel"]  # a piece without </w>: the word goes on
    z = torch.zeros(len(vocab))
    z[word_ids[0]], z[word_ids[1]], z[piece] = 3.0, 2.0, 1.0
    assert top_terms(z, 5, st) == [("smiling", 3.0), ("face", 2.0), ("sel-", 1.0)]
    accent = st.encode("café")
    assert vocab.term(accent[-1]).endswith("é") or "é" in "".join(vocab.term(i) for i in accent)


def test_caption_token_ids_and_bag_mask():
    from jsdlib.vlp.minilm import minilm_tokenizer

    tok = minilm_tokenizer()
    ids = caption_token_ids(["a smiling face", "face"], tok)
    assert ids[1].tolist() == tok.convert_tokens_to_ids(["face"])
    m = bag_mask(ids, 30522)
    assert m.shape == (2, 30522) and m.sum(1).tolist() == [3.0, 1.0]
    assert math.isclose(float(m[0, tok.convert_tokens_to_ids("smiling")]), 1.0)
