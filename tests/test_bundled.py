"""The committed JSD model (jsdlib.jsd.io: save/load round trip, recorded metrics reproduce) and EmojiSearch."""
import json
from pathlib import Path

import pytest
import torch

from jsdlib.apps import bundled
from jsdlib.jsd.features import emoji_features
from jsdlib.jsd.evaluate import evaluate_model
from jsdlib.jsd.io import BundledModelError, load_jsd, save_jsd
from jsdlib.jsd.model import JSDModel
from jsdlib.jsd.presets import get_preset


def _tiny(seed=0, mask=None):
    g = torch.Generator().manual_seed(seed)
    proj = {"W_t": torch.randn(8, 12, generator=g), "b_t": torch.randn(8, generator=g),
            "W_v": torch.randn(8, 10, generator=g), "b_v": torch.randn(8, generator=g)}
    return JSDModel(proj, vocab_size=50, emb_dim=6, E_init=torch.randn(50, 6, generator=g), tau_init=0.05,
                    mask_ids=mask)


def test_save_load_round_trip(tmp_path):
    m = _tiny(mask=[0, 3])
    with torch.no_grad():
        m.head.E.copy_(m.head.E.half().float())  # E is stored in fp16: make it exactly representable
    p = save_jsd(m, tmp_path / "m.safetensors", {"preset": "x", "seed": 3})
    m2, meta = load_jsd(p)
    assert meta == {"preset": "x", "seed": 3}
    assert m2.head.masked and m2.head.keep[[0, 3]].eq(0).all() and m2.head.keep.sum() == 48
    h_t, h_i = torch.randn(4, 12), torch.randn(5, 10)
    for a, b in zip(m.eval()(h_t, h_i), m2(h_t, h_i)):
        assert torch.equal(a, b)
    assert float(m2.tau.detach()) == pytest.approx(0.05)
    assert not (tmp_path / "m.safetensors.tmp").exists()


def test_load_errors(tmp_path):
    with pytest.raises(BundledModelError, match="no JSD checkpoint at .*jsd export"):
        load_jsd(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(BundledModelError, match="not a jsdlib JSD checkpoint"):
        load_jsd(tmp_path / "other.safetensors")


def test_committed_model_is_the_bundled_recipe():
    """Issue 14: the committed model is cpu-emoji with BUNDLED_RECIPE (grounding's choice on validation,
    pec-words-cw1-styles-e4x-nopec-l1x0.5: no PEC, half the L1 weights, 160 epochs), trained on the committed
    four-style stand-in's features."""
    from jsdlib.experiments.grounding import GAP_BASE, GAP_LEVERS, candidates

    _, meta = load_jsd()
    recipe = dict(bundled.BUNDLED_RECIPE)
    assert meta["train_set"] == recipe.pop("train_set") == "styles"
    cfg = get_preset("cpu-emoji", seed=0, **recipe)
    assert cfg.pec is False and (cfg.eta_t, cfg.eta_i) == (get_preset("cpu-emoji").eta_t * 0.5,
                                                            get_preset("cpu-emoji").eta_i * 0.5)
    # fields added to JSDConfig after the export (DIGEST_NEUTRAL) read as their neutral value
    from jsdlib.jsd.presets import DIGEST_NEUTRAL
    assert DIGEST_NEUTRAL | meta["config"] == json.loads(json.dumps(cfg.__dict__))
    chosen = candidates(get_preset("cpu-emoji", seed=0, pec=True))[f"{GAP_BASE}-e4x-nopec-l1x0.5"]
    assert "e4x-nopec-l1x0.5" in GAP_LEVERS
    assert chosen == recipe | {"caption_words_on": "image", "train_set": "styles"}
    # the rule's choice in the committed grounding run is this recipe
    doc = json.loads((Path(__file__).parents[1] / "benchmarks" / "results_grounding_styles.json").read_text())
    assert doc["chosen"] == f"{GAP_BASE}-e4x-nopec-l1x0.5"
    assert meta["vlp_weights"] == "jsdlib/assets/standin_styles.safetensors"
    # exported from the recipe's run on the committed stand-in (benchmarks/results_grounding_deeplong.json)
    run = json.loads((Path(__file__).parents[1] / "benchmarks" / "results_grounding_deeplong.json").read_text())
    row = run["rows"][run["chosen"]]
    assert (meta["best_epoch"], meta["epochs_run"]) == (row["best_epoch"], row["epochs_run"])
    for split in ("val", "test"):
        assert meta[split]["sparse"]["R@1"] == pytest.approx(row[split]["sparse_R@1"], abs=0.05), split
        assert meta[split]["dense"]["R@1"] == pytest.approx(row[split]["dense_R@1"], abs=0.05), split


def test_committed_model_reproduces_its_recorded_metrics():
    model, meta = load_jsd()
    assert meta["preset"] == "cpu-emoji" and meta["seed"] == 0 and meta["config"]["pec"] is False
    cfg = get_preset("cpu-emoji")
    fs = emoji_features()
    ev = bundled._summary(evaluate_model(model, fs.test, cfg.w1, cfg.w2))
    recorded = dict(meta["test"])
    # issue 14: the readability of its test image vectors, per multi-style subset (recorded by exports since
    # jsdlib.apps.bundled._readability; the committed file predates it: the metadata is rewritten with the model)
    read = bundled._readability(model, fs.test, "test", fs.vocab)
    assert recorded.pop("readability", read) == read
    assert json.loads(json.dumps(ev)) == recorded
    assert set(read) == {"k", "all", "seen", "cross-style", "unseen"} and read["k"] == 5
    assert read["seen"]["readable"] > read["unseen"]["readable"]
    # at a sparsity an inverted index can serve (issue 3's budget), and a working retriever
    assert ev["terms_q"] <= 64 and ev["terms_d"] <= 256
    assert ev["sparse"]["R@1"] > 45 and ev["integrated"]["R@1"] > 50


@pytest.fixture(scope="module")
def search():
    torch.set_num_threads(2)
    return bundled.EmojiSearch("all")


PINNED_MET = (("dog face", "dog"), ("cat face", "cat"), ("red apple", "apple"))
PINNED_UNMET = (("octopus", "octopus"), ("birthday cake", "cake"))     # issue 14's pinned test images, not yet met


@pytest.mark.parametrize("caption,word", PINNED_MET + tuple(
    pytest.param(c, w, marks=pytest.mark.xfail(strict=True, reason="issue 14: not among the bundled model's top 5 "
                                                "terms (README, 'The bundled JSD model')")) for c, w in PINNED_UNMET))
def test_pinned_terms(search, caption, word):
    """Issue 14's pinned images: the word among the top 5 terms of the Noto image with that name (octopus and
    birthday cake are cross-style test images, not yet met: strict xfail, so this fails once they hold)."""
    terms = [t for t, _ in search.image_terms(search.image_index(caption), 5)]
    assert word in terms, (caption, terms)


def test_search_and_explain(search):
    assert len(search) == 3635 and search.split.split == "all"
    # terms are words: a whole-word vocabulary and the caption-word loss; images carry their words
    for caption, word in (("red apple", "red"), ("airplane", "airplane"), ("pig face", "pig"),
                          ("dog face", "face")):
        j = search.image_index(caption)
        assert caption in search.split.captions_of(j)
        assert word in [t for t, _ in search.image_terms(j, 20)], caption
    i = search.image_index("dog face")
    assert search.split.image_meta[i]["split"] == "train"
    hits = search.search("dog face", k=5)
    assert len(hits) == 5 and [s for _, s in hits] == sorted([s for _, s in hits], reverse=True)
    assert i in [j for j, _ in hits]
    full = search.scores("dog face", "sparse")
    parts = search.explain("dog face", i, k=10_000)
    assert sum(c for *_, c in parts) == pytest.approx(float(full[i]), rel=1e-4)
    assert all(abs(q * d - c) < 1e-5 for _, q, d, c in parts)
    integ = search.scores("dog face", "integrated")
    dense = search.scores("dog face", "dense")
    assert torch.allclose(integ, search.w1 * dense + search.w2 * full, atol=1e-4)


def test_search_errors(search):
    with pytest.raises(ValueError, match="score must be one of"):
        search.scores("dog", "hybrid")
    with pytest.raises(ValueError, match="non-empty strings"):
        search.encode_query("  ")
    with pytest.raises(KeyError, match="no image in the emoji all images"):
        search.image_index("no such emoji caption")
    with pytest.raises(IndexError, match="outside"):
        search.image_index(10_000)


def test_sparse_dense_gap_by_subset_adds_up():
    """benchmarks/sparse_dense_gap.py: its "all" row is the model's recorded test R@1 (same scores), and the
    subsets split the 500 test images."""
    import runpy
    from pathlib import Path

    gap_rows = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "sparse_dense_gap.py"))["gap_rows"]
    model, meta = load_jsd()
    rows = {r["subset"]: r for r in gap_rows(model, emoji_features(), splits=("test",))}
    assert rows["all"]["sparse"] == pytest.approx(meta["test"]["sparse"]["R@1"], abs=0.2)
    assert rows["all"]["dense"] == pytest.approx(meta["test"]["dense"]["R@1"], abs=0.2)
    assert sum(rows[s]["images"] for s in ("seen", "cross-style", "unseen")) == rows["all"]["images"] == 500
    assert all(r["gap"] == r["sparse"] - r["dense"] for r in rows.values())
    assert all(r["ci"][0] < r["gap"] < r["ci"][1] for r in rows.values())    # the interval holds the difference
