"""The data sets, in memory and on disk: image-text sets in Karpathy's format and entity-linking sets in ZeSHEL's.

Loaders (notebook 01 teaches them): :func:`load_emoji` (the bundled Noto emoji set), :func:`load_flickr30k`,
:func:`load_coco`, :func:`load_karpathy` -> :class:`ImageTextSplit`; :func:`load_wordnet` (the bundled WordNet
sense-linking set) and :func:`load_zeshel` -> :class:`ZeshelSet`. Builders of the bundled sets (run as
``python -m``): ``build_emoji``, ``emoji_styles``, ``build_wordnet``; the authors' released features (JSD, CIKM
2025): ``released``.
"""
from jsdlib.data.errors import (DataFormatError, DatasetNotFoundError, EmptyCaptionError, ImageDecodeError,
                                ImageNotFoundError, UnknownDomainError, UnknownSplitError)
from jsdlib.data.karpathy import load_coco, load_emoji, load_flickr30k, load_karpathy
from jsdlib.data.paths import data_root, emoji_paths, wordnet_dir
from jsdlib.data.split import SPLITS, ImageTextSplit, concat_splits
from jsdlib.data.zeshel import MARKER_TOKENS, MENTION_END, MENTION_START, TITLE_SEP, ZeshelSet, load_wordnet, load_zeshel

__all__ = [
    "SPLITS", "ImageTextSplit", "concat_splits", "load_karpathy", "load_emoji", "load_flickr30k", "load_coco",
    "ZeshelSet", "load_zeshel", "load_wordnet", "MENTION_START", "MENTION_END", "TITLE_SEP", "MARKER_TOKENS",
    "data_root", "emoji_paths", "wordnet_dir", "DatasetNotFoundError", "ImageNotFoundError", "DataFormatError",
    "UnknownSplitError", "EmptyCaptionError", "ImageDecodeError", "UnknownDomainError",
]
