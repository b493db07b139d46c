"""The errors of the data loaders: each names the file it is about and, for missing data, where to get it."""
from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A data set's JSON file or image folder is missing."""


class ImageNotFoundError(DatasetNotFoundError):
    """An image file listed in the JSON is missing."""


class DataFormatError(ValueError):
    """The JSON is not valid JSON or not in Karpathy's format."""


class UnknownSplitError(ValueError):
    """The requested split is not one of SPLITS, or the file has no image in it."""


class EmptyCaptionError(DataFormatError):
    """A caption is empty or only whitespace."""


class ImageDecodeError(OSError, ValueError):
    """An image file exists but cannot be decoded (an OSError like Pillow's, and a ValueError)."""


class UnknownDomainError(ValueError):
    """A requested ZeSHEL world / domain has no mention in the requested split."""


__all__ = ["DatasetNotFoundError", "ImageNotFoundError", "DataFormatError", "UnknownSplitError",
           "EmptyCaptionError", "ImageDecodeError", "UnknownDomainError"]
