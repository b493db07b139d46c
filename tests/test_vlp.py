"""VLP loading, pre-projection features, feature cache and the stand-in's training loop (all offline)."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from jsdlib import vlp as V
from jsdlib.common.integrity import safetensors_digest
from jsdlib.vlp.openclip import register_model_config
from jsdlib.data.karpathy import load_emoji

TINY_CLIP = {  # an open_clip CLIP with the BPE text transformer, small enough for a unit test
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_STANDIN = {"image_size": 32, "patch_size": 16, "width": 32, "layers": 1, "embed_dim": 16}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JSDLIB_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def emoji_small():
    return load_emoji("test").subset(range(6))


def _tiny_standin_checkpoint(path, seed=0):
    from jsdlib.vlp.standin import save_standin

    torch.manual_seed(seed)
    model, _, _ = V.build_standin(TINY_STANDIN)
    save_standin(model, path, TINY_STANDIN, {"note": "random weights, unit test"})
    return path


def _check_projection_split(model, tokenizer, images):
    """encode_* == projection(pre-projection features) for both towers."""
    model.eval()
    p = V.projection_params(model)
    texts = ["dog face", "red heart, love"]
    tok = V.tokenize(model, tokenizer, texts)
    with torch.no_grad():
        full_t, full_v = model.encode_text(tok), model.encode_image(images)
        with V.pre_projection(model):
            h_t, h_v = model.encode_text(tok), model.encode_image(images)
        again_t = model.encode_text(tok)  # projections are restored after the block
    assert h_t.shape[1] == p["W_t"].shape[1] and h_v.shape[1] == p["W_v"].shape[1]
    torch.testing.assert_close(h_t @ p["W_t"].T + p["b_t"], full_t, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h_v @ p["W_v"].T + p["b_v"], full_v, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(again_t, full_t)


def test_standin_pre_projection_matches_projection():
    torch.manual_seed(0)
    model, _, tok = V.build_standin(TINY_STANDIN)
    _check_projection_split(model, tok, torch.randn(2, 3, 32, 32))
    assert V.word_embeddings(model).shape == (30522, 384)  # BERT-uncased WordPiece of MiniLM


def test_openclip_bpe_model_pre_projection_and_vocab():
    import open_clip

    name = register_model_config("jsd-test-tiny-clip", TINY_CLIP)
    vlp = V.load_openclip(name)  # random weights, offline
    assert vlp.weights == "random" and vlp.fingerprint == "random"
    _check_projection_split(vlp.model, open_clip.get_tokenizer(name), torch.randn(2, 3, 32, 32))
    assert V.word_embeddings(vlp).shape == (49408, 32)  # CLIP BPE vocabulary


def test_openclip_errors_offline():
    with pytest.raises(ValueError, match="unknown open_clip model 'No-Such-Model'"):
        V.load_openclip("No-Such-Model")
    with pytest.raises(ValueError, match="has no pretrained tag 'nope'"):
        V.load_openclip("ViT-B-32", "nope")
    t0 = time.time()
    with pytest.raises(V.PretrainedUnavailableError, match="not on this machine and cannot be downloaded"):
        V.load_openclip("RN50", "openai")
    assert time.time() - t0 < 120


def test_missing_standin_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="jsdlib vlp train-standin"):
        V.load_standin(tmp_path / "nope.safetensors")


def test_tokenize_trims_padding_without_changing_features():
    torch.manual_seed(0)
    model, _, tok = V.build_standin(TINY_STANDIN)
    texts = ["dog", "arrow, direction, down-right arrow, intercardinal, southeast"]
    short = V.tokenize(model, tok, texts)
    assert short.shape[1] < tok(texts).shape[1]
    with torch.no_grad(), V.pre_projection(model):
        torch.testing.assert_close(model.encode_text(short), model.encode_text(tok(texts)), atol=1e-5, rtol=1e-5)


def test_feature_cache_hit_miss_and_keys(tmp_path, emoji_small):
    ck = _tiny_standin_checkpoint(tmp_path / "a.safetensors")
    vlp = V.load_standin(ck)
    root = tmp_path / "feats"
    f1 = V.cached_features(vlp, emoji_small, progress=False, root=root)
    assert f1.meta["cache"] == "miss"
    f2 = V.cached_features(vlp, emoji_small, progress=False, root=root)
    assert f2.meta["cache"] == "hit"
    torch.testing.assert_close(f1.text, f2.text)
    torch.testing.assert_close(f1.image, f2.image)
    assert f1.text.shape == (emoji_small.n_captions, 384) and f1.image.shape == (6, 32)
    np.testing.assert_array_equal(f2.caption_to_image, emoji_small.caption_to_image)
    assert f2.image_to_captions == [list(c) for c in emoji_small.image_to_captions]
    # the dense scores from cached features are the model's own cosine similarities
    t = vlp.encode_text(emoji_small.captions)
    v = vlp.encode_images([emoji_small.load_image(i) for i in range(6)])
    torch.testing.assert_close(f2.dense_scores(), t @ v.T, atol=1e-5, rtol=1e-4)
    # anything the features depend on changes the key
    key = f1.key
    assert V.feature_key(vlp, load_emoji("test").subset(range(1, 7))) != key       # other images
    other = V.load_standin(_tiny_standin_checkpoint(tmp_path / "b.safetensors", seed=1))
    assert V.feature_key(other, emoji_small) != key                                   # other weights


def test_feature_cache_not_stale_when_image_changes(tmp_path):
    import shutil

    from jsdlib.data.paths import emoji_paths
    from jsdlib.data.karpathy import load_karpathy

    json_path, image_dir = emoji_paths()
    local = tmp_path / "images"
    split = load_emoji("test").subset(range(3))
    local.mkdir()
    for p in split.image_paths:
        shutil.copy(p, local / p.name)
    s1 = load_karpathy(json_path, local, "test", check_images=False).subset(range(3))
    vlp = V.load_standin(_tiny_standin_checkpoint(tmp_path / "a.safetensors"))
    k1 = V.feature_key(vlp, s1)
    target = s1.image_paths[0]
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert V.feature_key(vlp, s1) != k1


def test_standin_training_resumes_exactly(tmp_path):
    """A run killed after epoch 1 and resumed ends with the same weights as an uninterrupted run."""
    from jsdlib.vlp.train_standin import StandinConfig, train_standin

    train = load_emoji("train").subset(range(24))
    val = load_emoji("val").subset(range(8))
    cfg = StandinConfig(epochs=2, batch_size=8, **TINY_STANDIN)
    kw = dict(progress=False, log=lambda *a: None, train=train, val=val)
    full = train_standin(cfg, out=tmp_path / "full.safetensors", run_dir=tmp_path / "run_full", **kw)
    part = train_standin(cfg, out=tmp_path / "res.safetensors", run_dir=tmp_path / "run_res",
                         stop_after_epoch=1, **kw)
    assert part["stopped_at"] == 1 and not (tmp_path / "res.safetensors").exists()
    res = train_standin(cfg, out=tmp_path / "res.safetensors", run_dir=tmp_path / "run_res", **kw)
    assert [h["loss"] for h in res["history"]] == [h["loss"] for h in full["history"]]
    from safetensors.torch import load_file

    a, b = load_file(str(tmp_path / "full.safetensors")), load_file(str(tmp_path / "res.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert V.load_standin(tmp_path / "res.safetensors").arch == TINY_STANDIN


def test_checkpoint_fingerprint_is_content_based(tmp_path):
    """Saving the same weights twice may reorder safetensors' metadata; the cache key must not change."""
    a = _tiny_standin_checkpoint(tmp_path / "a.safetensors")
    b = _tiny_standin_checkpoint(tmp_path / "b.safetensors")
    assert safetensors_digest(a) == safetensors_digest(b)
    c = _tiny_standin_checkpoint(tmp_path / "c.safetensors", seed=1)
    assert safetensors_digest(c) != safetensors_digest(a)


@pytest.mark.parametrize("bar_on", [True, False])
def test_quiet_loading_puts_every_logging_setting_back(bar_on):
    """Verbosity, progress-bar switch, root level and root handlers are as before, also after an error."""
    import logging

    import transformers

    from jsdlib.vlp.quiet import quiet_loading

    tlog = transformers.utils.logging
    root = logging.getLogger()
    saved = (tlog.get_verbosity(), tlog.is_progress_bar_enabled(), root.level, list(root.handlers))
    try:
        (tlog.enable_progress_bar if bar_on else tlog.disable_progress_bar)()
        tlog.set_verbosity_info()
        root.setLevel(logging.DEBUG)
        root.handlers = []                    # logging.info() then installs a handler (basicConfig)
        before = (tlog.get_verbosity(), tlog.is_progress_bar_enabled(), root.level, list(root.handlers))
        with pytest.raises(RuntimeError, match="inside"):
            with quiet_loading():
                assert root.level == logging.ERROR and not tlog.is_progress_bar_enabled()
                logging.info("open_clip logs to the root logger")
                raise RuntimeError("inside")
        after = (tlog.get_verbosity(), tlog.is_progress_bar_enabled(), root.level, list(root.handlers))
        assert after == before == (logging.INFO, bar_on, logging.DEBUG, [])
    finally:
        tlog.set_verbosity(saved[0])
        (tlog.enable_progress_bar if saved[1] else tlog.disable_progress_bar)()
        root.setLevel(saved[2])
        root.handlers = saved[3]


def test_each_name_has_one_home():
    """jsdlib 0.1's flat module is gone (no shim left behind); the package re-exports each name from its home."""
    import importlib
    import importlib.util

    from jsdlib.vlp import features, standin

    trainer = importlib.import_module("jsdlib.vlp.train_standin")  # the package's name is the function

    assert importlib.util.find_spec("jsdlib.vlp.models") is None
    assert V.load_standin is standin.load_standin and V.Features is features.Features
    assert V.train_standin is trainer.train_standin and V.StandinConfig is trainer.StandinConfig


def test_minilm_tokenizer_with_and_without_the_zeshel_markers():
    from jsdlib.data.zeshel import MARKER_TOKENS
    from jsdlib.vlp.minilm import minilm_tokenizer

    plain, marked = minilm_tokenizer(), minilm_tokenizer(markers=True)
    text = f"{MARKER_TOKENS[0]} bank {MARKER_TOKENS[1]}"
    assert marked.tokenize(text) == [MARKER_TOKENS[0], "bank", MARKER_TOKENS[1]]
    assert plain.tokenize(text) != marked.tokenize(text)          # without markers WordPiece splits them
    assert len(plain) == len(marked)                              # no new rows: they are BERT's [unusedN]
