"""The MiniLM bi-encoder: pooling, encoding + cache, in-domain top-K retrieval, fine-tuning (tiny random
BERTs with MiniLM's real tokenizer; the pretrained weights are only loaded by the marker-token test)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jsdlib import retrieval as B
from jsdlib.retrieval.finetune import sibling_rows
from jsdlib.data.zeshel import load_zeshel
from jsdlib.vlp.minilm import minilm_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "zeshel_mini"


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer(markers=True)


def tiny_bert(seed: int):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg)


@pytest.fixture
def be(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("JSDLIB_CACHE", str(tmp_path / "cache"))
    return B.BiEncoder(tiny_bert(0), tiny_bert(1), tokenizer, max_len=32)


def test_mean_pool_by_hand():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(B.mean_pool(h, mask), torch.tensor([[2.0, 3.0]]))


def test_encode_unit_vectors_and_order_independent(be):
    texts = ["a much longer text about a red brick baseplate", "short", "blue dragon card", "x y"]
    e = be.encode_candidates(texts, batch_size=2)
    assert e.shape == (4, 32)
    assert torch.allclose(e.norm(dim=1), torch.ones(4), atol=1e-5)
    one_by_one = torch.cat([be.encode_candidates([t]) for t in texts])
    assert torch.allclose(e, one_by_one, atol=1e-5)
    assert not torch.allclose(be.encode_queries(texts[:1]), e[:1])             # two separate towers


def test_cached_encode(be, tmp_path):
    texts = ["red brick", "quexa"]
    a = B.cached_encode(be, "queries", texts)
    files = list((tmp_path / "cache" / "biencoder").glob("queries-*.safetensors"))
    assert len(files) == 1
    assert torch.equal(B.cached_encode(be, "queries", texts), a)
    B.cached_encode(be, "queries", texts[::-1])
    assert len(list((tmp_path / "cache" / "biencoder").glob("queries-*"))) == 2   # key covers the texts
    with pytest.raises(ValueError, match="role"):
        B.cached_encode(be, "docs", texts)


def test_retrieve_within_domain_with_padding(be, monkeypatch):
    z = load_zeshel(FIXTURE, "train")                       # starfleet_wiki: 4 entities, 3 mentions
    r = B.retrieve(be, z, k=10, progress=False)
    assert r.topk.shape == (3, 4) and r.valid.all()        # K = min(k, largest catalogue)
    assert r.cand_ids == [d["document_id"] for d in z.documents["starfleet_wiki"]]
    assert torch.allclose(r.scores, (r.query_emb[:, None] * r.cand_emb[r.topk]).sum(-1), atol=1e-6)
    assert (r.scores[:, :-1] >= r.scores[:, 1:]).all()
    for i, m in enumerate(z.mentions):
        assert r.cand_ids[r.gold[i]] == m["label_document_id"]
        assert sorted(r.topk[i].tolist()) == [0, 1, 2, 3]

    # two worlds of different sizes: the small one's list is padded with other rows, marked invalid
    z2 = load_zeshel(FIXTURE, "train")
    z2.documents["cardgame"] = load_zeshel(FIXTURE, "test").documents["cardgame"]
    z2.contexts.update(load_zeshel(FIXTURE, "test").contexts)
    z2.mentions = z2.mentions + load_zeshel(FIXTURE, "test").mentions
    z2.__post_init__()
    r2 = B.retrieve(be, z2, k=3, progress=False)
    assert r2.topk.shape == (4, 3)
    card_rows = {i for i, d in enumerate(r2.cand_domain) if d == "cardgame"}
    assert set(r2.topk[3, :2].tolist()) == card_rows and r2.valid[3].tolist() == [True, True, False]
    assert r2.topk[3, 2].item() not in card_rows and r2.scores[3, 2].item() == B.PAD_SCORE
    for i in range(3):
        assert set(r2.topk[i].tolist()) <= {j for j, d in enumerate(r2.cand_domain) if d == "starfleet_wiki"}
    ranks = r2.gold_ranks()
    assert ranks[3] == r2.topk[3].tolist().index(r2.gold[3].item())
    m = B.retrieval_metrics(r2, ks=(1, 3))
    assert set(m) == {"R@1", "R@3", "MRR@10", "n"} and m["R@3"] == 100.0 and m["n"] == 4
    with pytest.raises(ValueError, match="k must be"):
        B.retrieve(be, z, k=0)


def test_sibling_rows_are_other_senses():
    z = load_zeshel(FIXTURE, "val")
    z.documents["brickworld"].append({"document_id": "X", "title": "Red Brick, clay brick", "text": "a second sense"})
    z.__post_init__()
    rows = sibling_rows(z)
    assert rows == [[3], [3]]                                 # same surface form, not the gold


def test_lr_schedule():
    """The BE's schedule (common.schedule, warm-up rounded to nearest, linear decay), as jsdlib 0.1 computed it."""
    from jsdlib.common.schedule import lr_factor, warmup_steps

    w = warmup_steps(10, 0.2, "nearest")
    assert [round(lr_factor(s, 10, w, "linear"), 3) for s in range(10)] == [
        0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]
    assert warmup_steps(10, 0.25, "nearest") == 2 and warmup_steps(10, 0.25, "floor") == 2
    assert warmup_steps(10, 0.15, "nearest") == 2 and warmup_steps(10, 0.15, "floor") == 1


def test_in_batch_loss_by_hand():
    """-1/B sum_i log softmax(scale * q_i . c)_i over the 2B candidates, masked entries left out."""
    import math

    from jsdlib.retrieval.finetune import in_batch_loss

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, 0.8]])
    same = torch.zeros(2, 4, dtype=torch.bool)
    same[0, 2] = True                                    # candidate 2 is mention 0's gold again: not a negative
    s = 2.0
    l0 = -math.log(math.exp(s * 1.0) / (math.exp(s * 1.0) + math.exp(0.0) + math.exp(s * 0.6)))
    l1 = -math.log(math.exp(s * 1.0) / (math.exp(0.0) + math.exp(s * 1.0) + 2 * math.exp(s * 0.8)))
    assert in_batch_loss(q, c, same, s).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_finetune_runs_resumes_and_is_seeded(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setenv("JSDLIB_CACHE", str(tmp_path / "cache"))
    cfg = B.FinetuneConfig(n_train=None, epochs=2, batch_size=2, lr=1e-3, val_domains=("brickworld",), n_val=None)

    def run(run_dir, epochs=2):
        be = B.BiEncoder(tiny_bert(0), tiny_bert(1), tokenizer, max_len=32)
        c = B.FinetuneConfig(**{**cfg.__dict__, "epochs": epochs})
        return B.finetune(c, root=FIXTURE, run_dir=run_dir, progress=False, be=be, log=lambda *a: None)

    be_a, hist_a = run(tmp_path / "a")
    assert len(hist_a["epochs"]) == 2 and all(e["loss"] > 0 for e in hist_a["epochs"])
    assert hist_a["best_epoch"] in (1, 2) and be_a.kind == "finetuned"
    start = B.BiEncoder(tiny_bert(0), tiny_bert(1), tokenizer, max_len=32)
    assert be_a.state_digest() != start.state_digest()                    # it trained
    be_b, hist_b = run(tmp_path / "b")
    untimed = lambda h: [{k: v for k, v in e.items() if not k.endswith("_s")} for e in h["epochs"]]  # noqa: E731
    assert untimed(hist_b) == untimed(hist_a) and hist_b["best"] == hist_a["best"]
    assert be_b.state_digest() == be_a.state_digest()                     # seeded: same weights
    # resumable: a run killed right after epoch 1 (its checkpoint written) and started again ends where one
    # uninterrupted run ends, bit for bit
    class Killed(Exception):
        pass

    def kill(msg):
        raise Killed(msg)

    be_c = B.BiEncoder(tiny_bert(0), tiny_bert(1), tokenizer, max_len=32)
    with pytest.raises(Killed, match="epoch 1"):
        B.finetune(cfg, root=FIXTURE, run_dir=tmp_path / "c", progress=False, be=be_c, log=kill)
    logs = []
    be_d = B.BiEncoder(tiny_bert(0), tiny_bert(1), tokenizer, max_len=32)
    be_d, hist_d = B.finetune(cfg, root=FIXTURE, run_dir=tmp_path / "c", progress=False, be=be_d, log=logs.append)
    assert "resumed from" in logs[0] and "after epoch 1" in logs[0] and len(logs) == 2
    assert [e["loss"] for e in hist_d["epochs"]] == [e["loss"] for e in hist_a["epochs"]]
    assert be_d.state_digest() == be_a.state_digest()


def test_load_biencoder_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown bi-encoder kind"):
        B.load_biencoder("large")
    with pytest.raises(FileNotFoundError, match="no fine-tuned bi-encoder"):
        B.load_biencoder("finetuned", path=tmp_path / "none.safetensors", train_if_missing=False)
