"""Old home of the data loaders (jsdlib 0.1's ``data.py``): every name now lives in one module per idea.

``jsdlib.data.errors`` (exceptions), ``jsdlib.data.paths`` (data_root, emoji_paths, wordnet_dir),
``jsdlib.data.split`` (ImageTextSplit, concat_splits), ``jsdlib.data.karpathy`` (load_karpathy and the named image-text
sets), ``jsdlib.data.zeshel`` (ZeshelSet, load_zeshel, load_wordnet). The lines below keep the old import path working.
"""
from __future__ import annotations

from jsdlib.data.errors import DataFormatError, DatasetNotFoundError, EmptyCaptionError  # moved:
from jsdlib.data.errors import ImageDecodeError, ImageNotFoundError, UnknownDomainError, UnknownSplitError  # moved:
from jsdlib.data.karpathy import COCO_URL, FLICKR30K_URL, KARPATHY_SPLITS_URL, SPLIT_ALIASES  # moved:
from jsdlib.data.karpathy import load_coco, load_emoji, load_flickr30k, load_karpathy  # moved:
from jsdlib.data.paths import data_root, emoji_paths, wordnet_dir  # moved:
from jsdlib.data.split import SPLITS, ImageTextSplit, concat_splits  # moved:
from jsdlib.data.zeshel import DEFAULT_QUERY_WINDOW, MARKER_TOKENS, MENTION_END, MENTION_START, TITLE_SEP  # moved:
from jsdlib.data.zeshel import ZESHEL_URL, ZeshelSet, load_wordnet, load_zeshel  # moved:

__all__ = [
    "SPLITS", "ImageTextSplit", "load_karpathy", "load_emoji", "emoji_paths", "data_root",
    "load_flickr30k", "load_coco", "DatasetNotFoundError", "ImageNotFoundError", "DataFormatError",
    "UnknownSplitError", "EmptyCaptionError", "ImageDecodeError",
    "ZeshelSet", "load_zeshel", "load_wordnet", "wordnet_dir", "UnknownDomainError", "MENTION_START",
    "MENTION_END", "TITLE_SEP", "MARKER_TOKENS",
]
