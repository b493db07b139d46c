"""One split of an image-text set in memory: images, captions and the two maps between them.

:class:`ImageTextSplit` is what :func:`jsdlib.data.karpathy.load_karpathy` returns and all the retrieval metrics
(``jsdlib.common.metrics``) need; :meth:`ImageTextSplit.subset` and :func:`concat_splits` cut and join splits,
renumbering both maps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from jsdlib.data.errors import ImageDecodeError, ImageNotFoundError

SPLITS = ("train", "val", "test")


@dataclass(eq=False, repr=False)
class ImageTextSplit:
    """One split of an image-text set: images, their captions and the maps between them.

    ``caption_to_image[c]`` is the index (into the images) of caption ``c``'s image;
    ``image_to_captions[i]`` lists the indices (into the captions) of image ``i``'s captions.
    """

    dataset: str
    split: str
    image_paths: list[Path]
    image_ids: list[int]           # imgid, or cocoid for MSCOCO
    captions: list[str]
    caption_ids: list[int]         # sentid
    caption_to_image: np.ndarray   # int64 (n_captions,)
    image_to_captions: list[list[int]]
    image_meta: list[dict]         # extra per-image keys, {} if none
    json_path: Path
    image_dir: Path | None
    caption_meta: list[dict] = field(default_factory=list)  # extra per-sentence keys, {} if none

    def __post_init__(self):
        self.caption_to_image = np.asarray(self.caption_to_image, dtype=np.int64)
        if not self.caption_meta:
            self.caption_meta = [{} for _ in self.captions]
        n, m = len(self.image_paths), len(self.captions)
        lengths = {"image_ids": len(self.image_ids), "image_to_captions": len(self.image_to_captions),
                   "image_meta": len(self.image_meta)}
        cap_lengths = {"caption_ids": len(self.caption_ids), "caption_to_image": len(self.caption_to_image),
                       "caption_meta": len(self.caption_meta)}
        bad = [f"{k}={v}" for k, v in lengths.items() if v != n]
        bad += [f"{k}={v}" for k, v in cap_lengths.items() if v != m]
        if bad:
            raise ValueError(f"inconsistent ImageTextSplit: {n} images and {m} captions but " + ", ".join(bad))

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def n_images(self) -> int:
        return len(self.image_paths)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    def __repr__(self) -> str:
        return (f"ImageTextSplit(dataset={self.dataset!r}, split={self.split!r}, "
                f"n_images={self.n_images}, n_captions={self.n_captions})")

    def captions_of(self, i: int) -> list[str]:
        """The captions of image ``i``."""
        return [self.captions[c] for c in self.image_to_captions[i]]

    def load_image(self, i: int):
        """Image ``i`` as an RGB ``PIL.Image`` (transparent pixels composited on white)."""
        path = Path(self.image_paths[i])
        if not path.is_file():
            raise ImageNotFoundError(f"image file not found: {path} (image {i} of {self.dataset} "
                                     f"{self.split}, listed in {self.json_path})")
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    canvas.alpha_composite(rgba)
                    return canvas.convert("RGB")
                return im.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:  # UnidentifiedImageError is an OSError
            raise ImageDecodeError(f"cannot decode image file {path}: {e}") from e

    def subset(self, image_indices) -> "ImageTextSplit":
        """The split restricted to some images (indices or a boolean mask), keeping their captions.

        Images come in the order given; captions follow their images; both maps are renumbered.
        """
        idx = _as_index_array(image_indices, self.n_images)
        paths, ids, meta, i2c = [], [], [], []
        caps, cap_ids, c2i, cap_meta = [], [], [], []
        for new_i, old_i in enumerate(idx.tolist()):
            paths.append(self.image_paths[old_i])
            ids.append(self.image_ids[old_i])
            meta.append(self.image_meta[old_i])
            mine = []
            for c in self.image_to_captions[old_i]:
                mine.append(len(caps))
                caps.append(self.captions[c])
                cap_ids.append(self.caption_ids[c])
                cap_meta.append(self.caption_meta[c])
                c2i.append(new_i)
            i2c.append(mine)
        return ImageTextSplit(
            dataset=self.dataset, split=self.split, image_paths=paths, image_ids=ids, captions=caps,
            caption_ids=cap_ids, caption_to_image=np.asarray(c2i, dtype=np.int64), image_to_captions=i2c,
            image_meta=meta, json_path=self.json_path, image_dir=self.image_dir, caption_meta=cap_meta)


def _as_index_array(image_indices, n: int) -> np.ndarray:
    if hasattr(image_indices, "detach"):  # torch tensor
        image_indices = image_indices.detach().cpu().numpy()
    arr = np.asarray(image_indices)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"boolean mask has shape {arr.shape}, expected ({n},)")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"image_indices must be a 1-D sequence of ints or a boolean mask, got {arr.dtype} "
                        f"with shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= n:
        raise IndexError(f"image index out of range [0, {n}): min {arr.min()}, max {arr.max()}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError("image_indices contains duplicates")
    return arr.astype(np.int64)



def concat_splits(splits, name: str = "all") -> ImageTextSplit:
    """Several splits of one data set as one :class:`ImageTextSplit` (images and captions in the order given)."""
    splits = list(splits)
    if not splits:
        raise ValueError("concat_splits needs at least one split")
    if len({s.dataset for s in splits}) != 1:
        raise ValueError(f"concat_splits: splits of different data sets {sorted({s.dataset for s in splits})}")
    paths, ids, meta, i2c, caps, cap_ids, c2i, cap_meta = [], [], [], [], [], [], [], []
    for s in splits:
        i0, c0 = len(paths), len(caps)
        paths += list(s.image_paths)
        ids += list(s.image_ids)
        meta += [dict(m, split=s.split) for m in s.image_meta]
        i2c += [[c0 + c for c in cs] for cs in s.image_to_captions]
        caps += list(s.captions)
        cap_ids += list(s.caption_ids)
        c2i += (np.asarray(s.caption_to_image) + i0).tolist()
        cap_meta += list(s.caption_meta)
    first = splits[0]
    return ImageTextSplit(dataset=first.dataset, split=name, image_paths=paths, image_ids=ids, captions=caps,
                          caption_ids=cap_ids, caption_to_image=np.asarray(c2i, dtype=np.int64),
                          image_to_captions=i2c, image_meta=meta, json_path=first.json_path,
                          image_dir=first.image_dir, caption_meta=cap_meta)


__all__ = ["SPLITS", "ImageTextSplit", "concat_splits"]
