"""Issue 14, point 2: the stand-in trained on the multi-style emoji set and its per-subset evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jsdlib.common.metrics import t2i_metrics
from jsdlib.data import emoji_styles
from jsdlib.data.karpathy import load_emoji
from jsdlib.vlp.standin import load_standin
from jsdlib.vlp.standin_eval import GALLERY, NOTO_SUBSETS, _embed, subset_metrics
from jsdlib.vlp.train_standin import StandinConfig, _split_id, default_splits


def test_train_set_option_and_digests():
    # the Noto runs keep the digest they had before the field existed (their run folders still resume)
    assert StandinConfig().digest() == "5685dc69da18bf82"
    assert StandinConfig(train_set="styles").digest() != StandinConfig().digest()
    with pytest.raises(ValueError, match="train_set must be one of"):
        StandinConfig(train_set="openmoji")


def test_styles_training_set_validates_on_the_noto_val_split():
    train, val = default_splits(StandinConfig(train_set="styles"))
    styles = {m["style"] for m in train.image_meta}
    assert styles == {"noto", "twemoji", "fluent-flat", "fluent-modern"}      # never the OpenMoji gallery style
    assert _split_id(val) == _split_id(load_emoji("val"))                        # the same 500 images, same captions
    noto_train, _ = default_splits(StandinConfig())
    assert _split_id(train.subset([i for i, m in enumerate(train.image_meta) if m["style"] == "noto"])) \
        == _split_id(noto_train)


@pytest.fixture(scope="module")
def small_test_split():
    """Eight images of each subset of the multi-style test split (40 images)."""
    split = emoji_styles.load("test")
    pick = []
    for name in NOTO_SUBSETS + (GALLERY,):
        pick += [i for i, m in enumerate(split.image_meta) if m.get("subset") == name][:8]
    return split.subset(pick)


def test_subset_metrics_rank_as_documented(small_test_split):
    vlp = load_standin()
    res = subset_metrics(vlp.model, vlp.preprocess, vlp.tokenizer, small_test_split)
    assert set(res) == {"noto", *NOTO_SUBSETS, GALLERY}
    assert res["noto"]["images"] == 24 and res["noto"]["queries"] == 48
    for name in NOTO_SUBSETS:   # each Noto subset's captions ranked against all 24 Noto images
        assert res[name]["images"] == 24 and res[name]["queries"] == 16
    assert res[GALLERY]["images"] == 8 and res[GALLERY]["queries"] == 16
    # by hand: the unseen-style gallery's captions against the gallery's images only
    v, t = _embed(vlp.model, vlp.preprocess, vlp.tokenizer, small_test_split)
    g = list(range(24, 32))
    caps = [c for i in g for c in small_test_split.image_to_captions[i]]
    want = t2i_metrics((t[caps] @ v[g].T).numpy(), np.asarray(small_test_split.caption_to_image[caps]) - 24)
    assert res[GALLERY]["R@1"] == pytest.approx(want["R@1"]) and res[GALLERY]["MRR@10"] == pytest.approx(want["MRR@10"])
    # the Noto row is the mean of its three subsets (equal query counts here)
    assert res["noto"]["R@1"] == pytest.approx(np.mean([res[n]["R@1"] for n in NOTO_SUBSETS]))
    assert torch.allclose(v.norm(dim=1), torch.ones(len(v)), atol=1e-5)   # unit vectors: cosine scores


def test_subset_metrics_needs_style_labels():
    vlp = load_standin()
    with pytest.raises(ValueError, match="multi-style split"):
        subset_metrics(vlp.model, vlp.preprocess, vlp.tokenizer, load_emoji("test").subset(range(4)))


def test_committed_styles_standin_is_the_chosen_configuration():
    """jsdlib/assets/standin_styles.safetensors: benchmarks/standin_styles.py's ``deep-long`` configuration (chosen
    on val, benchmarks/results_standin_styles.txt), trained on every training style and selected on the Noto val
    split; the results file's choice is this configuration."""
    import json

    from safetensors import safe_open

    import runpy
    from pathlib import Path

    from jsdlib.vlp.standin import DEFAULT_STANDIN_CHECKPOINT, STYLES_STANDIN_CHECKPOINT
    from jsdlib.vlp.train_standin import COMMITTED_STANDIN, StandinConfig

    assert DEFAULT_STANDIN_CHECKPOINT == STYLES_STANDIN_CHECKPOINT     # the course's default since issue 14
    config = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "standin_styles.py"))["config"]
    info = json.loads(safe_open(str(STYLES_STANDIN_CHECKPOINT), "pt").metadata()["info"])
    want = config("deep-long", threads=1)
    res = json.loads((Path(__file__).parents[1] / "benchmarks" / "results_standin_styles.json").read_text())
    assert res["chosen_on_val_noto_R@1"] == "deep-long"
    chosen = next(r for r in res["rows"] if r["name"] == "deep-long")
    assert chosen["best_epoch"] == info["best_epoch"] and chosen["val"]["noto"]["R@1"] == info["best_val"]["R@1"]
    assert want == StandinConfig(threads=1, **COMMITTED_STANDIN)   # what `jsdlib vlp train-standin` retrains
    assert {k: v for k, v in info["config"].items() if k != "threads"} == \
        {k: v for k, v in want.__dict__.items() if k != "threads"}
    hist = info["history"]
    assert len(hist) == want.epochs and hist[info["best_epoch"] - 1]["val"] == info["best_val"]
    assert info["best_val"]["R@1"] == max(r["val"]["R@1"] for r in hist if r["selectable"])
    vlp = load_standin(STYLES_STANDIN_CHECKPOINT)          # integrity-checked (embedded and recorded digests)
    assert len(vlp.model.visual.transformer.resblocks) == 8


def test_pinned_ranks_of_the_committed_standin():
    """standin_pinned_ranks on the committed stand-in: issue 14's pinned val/test images (training images' names
    left out) and how many Noto images of their split it scores above them for their own names. The committed
    probe report (benchmarks/results_standin_styles_probe.json, row ``deep-long``: the same checkpoint) recorded
    these counts; within one image, since kernels differ between CPUs."""
    import json
    from pathlib import Path

    from jsdlib.common.integrity import file_sha256
    from jsdlib.experiments.grounding import PINNED_NAMES
    from jsdlib.vlp.standin import STYLES_STANDIN_CHECKPOINT
    from jsdlib.vlp.standin_eval import standin_pinned_ranks

    got = standin_pinned_ranks(STYLES_STANDIN_CHECKPOINT, PINNED_NAMES, threads=2)
    assert set(got) <= set(PINNED_NAMES) and {"octopus", "birthday cake"} <= set(got)
    assert all(r["split"] in ("val", "test") and 0 <= r["above"] < 500 for r in got.values())
    res = json.loads((Path(__file__).parents[1] / "benchmarks" / "results_standin_styles_probe.json").read_text())
    row = next(r for r in res["rows"] if r["name"] == "deep-long")
    assert row["sha256"] == file_sha256(STYLES_STANDIN_CHECKPOINT)     # the report evaluated this very file
    assert set(row["pinned"]) == set(got)
    for name, r in got.items():
        assert row["pinned"][name]["split"] == r["split"] and abs(row["pinned"][name]["above"] - r["above"]) <= 1


def test_pinned_ranks_refuse_a_name_held_by_two_images(monkeypatch):
    """A pinned name must pick one image per split: two Noto test images captioned "octopus" raise ValueError."""
    from jsdlib.data import emoji_styles
    from jsdlib.vlp.standin_eval import standin_pinned_ranks

    real = emoji_styles.load

    def load(split):
        data = real(split)
        if split == "test":
            noto = [i for i, m in enumerate(data.image_meta) if m["style"] == "noto"]
            other = next(i for i in noto if data.captions_of(i)[0] != "octopus")
            data.captions[data.image_to_captions[other][0]] = "octopus"
        return data

    monkeypatch.setattr(emoji_styles, "load", load)
    with pytest.raises(ValueError, match="several Noto test images"):
        standin_pinned_ranks(None, ("octopus",), threads=1)
