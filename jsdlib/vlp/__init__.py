"""Vision-language dual encoders (VLPs) and their pre-projection features: the frozen encoders JSD starts from
(JSD, CIKM 2025: JSD trains on cached features ``h`` and initialises its dense branch with the VLP's own
projection). Any open_clip model by name, or the bundled stand-in (MiniLM text tower + small ViT) trained here on
the emoji set. Taught in notebook 01 (data and the dense VLP).
"""
from jsdlib.vlp.standin import (DEFAULT_STANDIN_CHECKPOINT, NOTO_STANDIN_CHECKPOINT, STANDIN_NAME,
                                STYLES_STANDIN_CHECKPOINT, build_standin, load_standin, save_standin, standin_state_dict)
from jsdlib.vlp.features import Features, cached_features, encode_split, feature_key, load_features, save_features
from jsdlib.vlp.load import load_vlp
from jsdlib.vlp.minilm import minilm_tokenizer
from jsdlib.vlp.openclip import VLP, PretrainedUnavailableError, load_openclip
from jsdlib.vlp.projection import pre_projection, projection_params, tokenize, word_embeddings
from jsdlib.vlp.quiet import quiet_loading
from jsdlib.vlp.train_standin import StandinConfig, clip_loss, train_standin

__all__ = ["VLP", "load_vlp", "load_openclip", "load_standin", "build_standin", "save_standin", "standin_state_dict",
           "STANDIN_NAME", "DEFAULT_STANDIN_CHECKPOINT", "NOTO_STANDIN_CHECKPOINT", "STYLES_STANDIN_CHECKPOINT", "PretrainedUnavailableError",
           "Features", "cached_features",
           "encode_split", "feature_key", "load_features", "save_features", "pre_projection", "projection_params",
           "tokenize", "word_embeddings", "minilm_tokenizer", "quiet_loading", "StandinConfig", "train_standin",
           "clip_loss"]
