"""jsdlib 0.1's ``vlp.py``, split by idea in 0.2: every name now lives in its own module (the re-imports below
keep the old paths working until their callers are rewritten)."""
from __future__ import annotations

from jsdlib.common.integrity import file_sha256, safetensors_digest  # moved:
from jsdlib.common.paths import cache_dir, minilm_path  # moved:
from jsdlib.vlp.features import (FEATURE_FORMAT, Features, cached_features, encode_split, feature_key,  # moved:
                                 load_features, save_features, split_fingerprint)  # moved:
from jsdlib.vlp.load import load_vlp  # moved:
from jsdlib.vlp.openclip import VLP, PretrainedUnavailableError, load_openclip, register_model_config  # moved:
from jsdlib.vlp.projection import pre_projection, projection_params, tokenize, word_embeddings  # moved:
from jsdlib.vlp.quiet import quiet_loading  # moved:
from jsdlib.vlp.standin import (DEFAULT_STANDIN_CHECKPOINT, STANDIN_NAME, build_standin, load_standin,  # moved:
                                register_standin, standin_config, standin_state_dict)  # moved:
