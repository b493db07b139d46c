"""Karpathy-format image-text sets: the bundled emoji set, Flickr30k and MSCOCO.

All three share one on-disk format, the one Karpathy's ``caption_datasets`` made standard::

    {"dataset": "coco",
     "images": [{"filepath": "val2014",                  # COCO only: sub-folder of the image dir
                 "filename": "COCO_val2014_000000391895.jpg",
                 "split": "test",                        # train / restval / val / test
                 "imgid": 0, "cocoid": 391895,           # cocoid: COCO only
                 "sentids": [770337, ...],
                 "sentences": [{"raw": "A man with a red helmet ...", "tokens": [...],
                                "imgid": 0, "sentid": 770337}, ...]},
                ...]}

An image's path is ``image_dir / filepath / filename`` (``image_dir / filename`` without a filepath).
``restval`` (MSCOCO's extra training images) counts as ``train``. Captions are the ``raw`` strings with
surrounding whitespace stripped (COCO's raw captions often end in a space).

``load_karpathy`` reads one split into an :class:`ImageTextSplit`: images, captions and the two maps between
them, which is all the retrieval metrics (``jsdlib.common.metrics``) need. ``image_ids`` are COCO ids for MSCOCO
(``cocoid``) and Karpathy's ``imgid`` otherwise. Per-image keys beyond the standard ones (the emoji set's
``emoji``, ``codepoints``, ``base``, ``unseen_concept``) land in ``image_meta``; per-sentence keys beyond the
standard ones (the emoji set's ``kind``) land in ``caption_meta``.

Every failure names the file it is about and, for missing data, where to get it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jsdlib.common.paths import REPO_ROOT

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"restval": "train"}  # a split name in the JSON -> the split it is loaded as

KARPATHY_SPLITS_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
FLICKR30K_URL = "https://shannon.cs.illinois.edu/DenotationGraph/"
COCO_URL = "https://cocodataset.org/#download"

# Keys of Karpathy's format; anything else on an image (sentence) goes to image_meta (caption_meta).
_IMAGE_KEYS = frozenset({"filename", "filepath", "split", "imgid", "cocoid", "sentids", "sentences"})
_SENTENCE_KEYS = frozenset({"raw", "tokens", "imgid", "sentid"})


# --------------------------------------------------------------------------------------------- errors
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


def _where_to_get(dataset: str | None) -> str:
    if dataset == "emoji":
        return ("The emoji set is bundled with the repository (data/emoji/); if it is missing, "
                "run `jsdlib data build-emoji` to build it.")
    return ("Flickr30k/MSCOCO: get the Karpathy splits (dataset_flickr30k.json/dataset_coco.json from "
            f"Karpathy's caption_datasets, {KARPATHY_SPLITS_URL}) and the images from the official sites "
            f"(Flickr30k: {FLICKR30K_URL} -> flickr30k-images/; MSCOCO: {COCO_URL} -> train2014/ and "
            "val2014/). The bundled emoji set: run `jsdlib data build-emoji`.")


# ---------------------------------------------------------------------------------------- the split
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
        from PIL import Image

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


# ---------------------------------------------------------------------------------------- loading
def _infer_name(json_path: Path, data: dict | None = None) -> str:
    if isinstance(data, dict) and isinstance(data.get("dataset"), str):
        return data["dataset"]
    m = re.fullmatch(r"dataset_(\w+)\.json", json_path.name)
    return m.group(1) if m else json_path.stem


def _read_json(json_path: Path, dataset: str | None) -> dict:
    if not json_path.is_file():
        what = "is a directory, not a file" if json_path.is_dir() else "not found"
        raise DatasetNotFoundError(f"Karpathy-format JSON {what}: {json_path}. "
                                   + _where_to_get(dataset or _infer_name(json_path)))
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"malformed JSON in {json_path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataFormatError(f"{json_path} is not a Karpathy-format file: expected a JSON object "
                              'with an "images" list at the top level')
    return data


def _require(entry, key, types, json_path: Path, where: str):
    if not isinstance(entry, dict) or key not in entry:
        raise DataFormatError(f"{json_path}: {where} has no {key!r} field")
    value = entry[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise DataFormatError(f"{json_path}: {where} has {key}={value!r} of type {type(value).__name__}")
    return value


def _confined(filepath: str, filename: str, json_path: Path, where: str) -> Path:
    """``filepath / filename`` as a normalised relative path that stays inside the image folder.

    Absolute paths, drive letters and ``..`` components that climb out of the image folder are refused with a
    :class:`DataFormatError` naming the entry (a crafted JSON must not make jsdlib read files elsewhere).
    """
    joined = os.path.join(filepath, filename) if filepath else filename
    if not filename or os.path.isabs(joined) or os.path.isabs(filename) or Path(joined).drive or \
            joined.startswith(("/", "\\")):
        raise DataFormatError(f"{json_path}: {where} has an absolute image path {joined!r}; filepath/filename must "
                              "be relative to the image folder")
    norm = os.path.normpath(joined.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise DataFormatError(f"{json_path}: {where} has image path {joined!r}, which leaves the image folder; "
                              "filepath/filename must stay inside it")
    return Path(norm)


def load_karpathy(json_path, image_dir, split: str, dataset_name: str | None = None,
                  check_images: bool = True) -> ImageTextSplit:
    """Load one split (``"train"`` includes ``restval``) of a Karpathy-format JSON.

    ``image_dir`` is the folder the ``filepath``/``filename`` entries are relative to (Flickr30k:
    ``flickr30k-images/``; MSCOCO: the folder holding ``train2014/`` and ``val2014/``). With
    ``check_images=False`` neither the folder nor the files are checked (for cached features), and
    ``image_dir`` may be None.
    """
    json_path = Path(json_path)
    image_dir = None if image_dir is None else Path(image_dir)
    data = _read_json(json_path, dataset_name)
    dataset = dataset_name or _infer_name(json_path, data)
    entries = data["images"]

    file_splits = []
    for k, entry in enumerate(entries):
        s = _require(entry, "split", str, json_path, f"image entry {k}")
        file_splits.append(SPLIT_ALIASES.get(s, s))
    present = sorted(set(file_splits), key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    raw_present = sorted({e["split"] for e in entries})
    if split not in SPLITS:
        hint = " (restval images are loaded with split='train')" if split == "restval" else ""
        raise UnknownSplitError(f"unknown split {split!r}{hint}; valid splits are {list(SPLITS)}; "
                                f"{json_path.name} has splits {raw_present}")
    selected = [k for k, s in enumerate(file_splits) if s == split]
    if not selected:
        raise UnknownSplitError(f"split {split!r} has no images in {json_path}; valid splits are "
                                f"{list(SPLITS)}; the file has splits {raw_present} "
                                f"(loadable: {[s for s in present if s in SPLITS]})")

    image_paths, image_ids, image_meta, i2c = [], [], [], []
    captions, caption_ids, c2i, caption_meta = [], [], [], []
    seen_files: dict[Path, str] = {}
    for k in selected:
        entry = entries[k]
        filename = _require(entry, "filename", str, json_path, f"image entry {k}")
        imgid = _require(entry, "imgid", int, json_path, f"image entry {k} ({filename})")
        where = f"image imgid={imgid} ({filename})"
        image_id = _require(entry, "cocoid", int, json_path, where) if "cocoid" in entry else imgid
        filepath = entry.get("filepath") or ""
        if not isinstance(filepath, str):
            raise DataFormatError(f"{json_path}: {where} has filepath={filepath!r}, expected a string")
        sentences = _require(entry, "sentences", list, json_path, where)
        if not sentences:
            raise DataFormatError(f"{json_path}: {where} has no sentences")
        i = len(image_paths)
        rel = _confined(filepath, filename, json_path, where)
        if rel in seen_files:
            raise DataFormatError(f"{json_path}: {where} and {seen_files[rel]} point to the same image file {rel}; "
                                  "each image may be listed once (merge their sentences into one entry)")
        seen_files[rel] = where
        image_paths.append(rel if image_dir is None else image_dir / rel)
        image_ids.append(image_id)
        image_meta.append({key: v for key, v in entry.items() if key not in _IMAGE_KEYS})
        mine = []
        for j, sent in enumerate(sentences):
            sentid = _require(sent, "sentid", int, json_path, f"sentence {j} of {where}")
            raw = sent.get("raw")
            if raw is None and isinstance(sent.get("tokens"), list):
                raw = " ".join(map(str, sent["tokens"]))
            if not isinstance(raw, str):
                raise DataFormatError(f"{json_path}: sentence sentid={sentid} of {where} has no 'raw' text")
            raw = raw.strip()
            if not raw:
                raise EmptyCaptionError(f"{json_path}: empty caption for imgid={imgid} ({filename}), "
                                        f"sentid={sentid}")
            mine.append(len(captions))
            captions.append(raw)
            caption_ids.append(sentid)
            c2i.append(i)
            caption_meta.append({key: v for key, v in sent.items() if key not in _SENTENCE_KEYS})
        i2c.append(mine)

    if check_images:
        if image_dir is None or not image_dir.is_dir():
            raise DatasetNotFoundError(f"image folder not found: {image_dir} (images of {json_path.name}). "
                                       + _where_to_get(dataset))
        missing = [p for p in image_paths if not p.is_file()]
        root = image_dir.resolve()
        outside = [p for p in image_paths if p.is_file() and not p.resolve().is_relative_to(root)]
        if outside:
            raise DataFormatError(f"{json_path}: image file {outside[0]} resolves to {outside[0].resolve()}, outside "
                                  f"the image folder {root} (a symbolic link?); {len(outside)} such file(s)")
        if missing:
            raise ImageNotFoundError(
                f"{len(missing)} of {len(image_paths)} image files of {dataset} {split} are missing, "
                f"first: {missing[0]} (image folder {image_dir}). "
                "Pass check_images=False to load captions only. " + _where_to_get(dataset))

    return ImageTextSplit(
        dataset=dataset, split=split, image_paths=image_paths, image_ids=image_ids, captions=captions,
        caption_ids=caption_ids, caption_to_image=np.asarray(c2i, dtype=np.int64), image_to_captions=i2c,
        image_meta=image_meta, json_path=json_path, image_dir=image_dir, caption_meta=caption_meta)


# ---------------------------------------------------------------------------------- named data sets
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


def data_root() -> Path:
    """The folder holding the bundled data sets: ``$JSDLIB_DATA`` if set, else the repository's ``data/``."""
    env = os.environ.get("JSDLIB_DATA")
    return Path(env) if env else REPO_ROOT / "data"


def emoji_paths() -> tuple[Path, Path]:
    """(JSON, image folder) of the bundled emoji set."""
    root = data_root() / "emoji"
    return root / "dataset_emoji.json", root / "images"


def load_emoji(split: str = "test", check_images: bool = True) -> ImageTextSplit:
    """One split of the bundled emoji set (Noto Color Emoji images, CLDR captions)."""
    json_path, image_dir = emoji_paths()
    return load_karpathy(json_path, image_dir, split, dataset_name="emoji", check_images=check_images)


def load_flickr30k(root, split: str = "test", check_images: bool = True) -> ImageTextSplit:
    """Flickr30k from ``root/dataset_flickr30k.json`` and ``root/flickr30k-images/``."""
    root = Path(root)
    return load_karpathy(root / "dataset_flickr30k.json", root / "flickr30k-images", split,
                         dataset_name="flickr30k", check_images=check_images)


def load_coco(root, split: str = "test", check_images: bool = True) -> ImageTextSplit:
    """MSCOCO from ``root/dataset_coco.json`` and ``root/{train2014,val2014}/``."""
    root = Path(root)
    return load_karpathy(root / "dataset_coco.json", root, split, dataset_name="coco",
                         check_images=check_images)


__all__ = [
    "SPLITS", "ImageTextSplit", "load_karpathy", "load_emoji", "emoji_paths", "data_root",
    "load_flickr30k", "load_coco", "DatasetNotFoundError", "ImageNotFoundError", "DataFormatError",
    "UnknownSplitError", "EmptyCaptionError", "ImageDecodeError",
]


# ==================================================================================================
# ZeSHEL-format entity-linking sets: real ZeSHEL and the bundled WordNet sense-linking set
# ==================================================================================================
# ZeSHEL (Logeswaran et al. 2019, https://github.com/lajanugen/zeshel) ships JSON lines in two folders:
#     documents/<world>.json     {"document_id", "title", "text"}           (one world = one domain)
#     mentions/<split>.json      {"mention_id", "context_document_id", "corpus", "start_index",
#                                 "end_index", "text", "label_document_id", "category"}
# ``start_index`` / ``end_index`` are an *inclusive* span of whitespace tokens of the context document's
# ``text``; ``corpus`` is the mention's world, whose documents are its candidates. Files may also be gzip
# compressed (``.json.gz``, the bundled WordNet set). The bundled set keeps its context documents (one example
# sentence each) in the pseudo-world ``documents/wordnet_examples.json.gz``; the loader finds a context document
# in the mention's own world first (real ZeSHEL) and otherwise in the other world files.
#
# Marker tokens. Queries are ``left context  [unused0] mention [unused1]  right context`` and candidates are
# ``title [unused2] text`` (BLINK's layout; BLINK adds new tokens [START_ENT]/[END_ENT]/[ENT]). We use three of
# BERT-uncased's reserved ``[unusedN]`` vocabulary entries instead, so MiniLM needs no new embedding rows: a
# tokenizer must treat them as special tokens (``jsdlib.retrieval.biencoder.minilm_tokenizer`` does), otherwise WordPiece
# splits "[unused0]" into "[", "unused", "##0", "]".
ZESHEL_URL = "https://github.com/lajanugen/zeshel"
MENTION_START, MENTION_END, TITLE_SEP = "[unused0]", "[unused1]", "[unused2]"
MARKER_TOKENS = (MENTION_START, MENTION_END, TITLE_SEP)
ZESHEL_MENTION_KEYS = ("mention_id", "context_document_id", "corpus", "start_index", "end_index", "text",
                       "label_document_id")          # "category" is optional
ZESHEL_DOCUMENT_KEYS = ("document_id", "title", "text")
DEFAULT_QUERY_WINDOW = 32   # whitespace tokens of context kept on each side of the mention


class UnknownDomainError(ValueError):
    """A requested ZeSHEL world / domain has no mention in the requested split."""


def _zeshel_help() -> str:
    return (f"ZeSHEL: download it from {ZESHEL_URL} (documents/ and mentions/ folders); the bundled WordNet set "
            "is data/wordnet_zeshel/ (rebuild: `jsdlib data build-wordnet`).")


def _zeshel_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.json`` or ``folder/stem.json.gz``, whichever exists (plain first)."""
    for name in (f"{stem}.json", f"{stem}.json.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_jsonl(path: Path, keys: tuple[str, ...]) -> list[dict]:
    """JSON lines of a (possibly gzip-compressed) file; every record must have ``keys``."""
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}, line {n}: not valid JSON ({e.msg})") from e
            if not isinstance(rec, dict):
                raise DataFormatError(f"{path}, line {n}: expected a JSON object, got {type(rec).__name__}")
            missing = [k for k in keys if k not in rec]
            if missing:
                raise DataFormatError(f"{path}, line {n}: missing key(s) {missing} (ZeSHEL format needs {list(keys)})")
            out.append(rec)
    return out


def _world_stem(path: Path) -> str:
    return path.name[:-len(".json.gz")] if path.name.endswith(".json.gz") else path.name[:-len(".json")]


@dataclass(eq=False, repr=False)
class ZeshelSet:
    """One split of a ZeSHEL-format set.

    ``documents``: world -> its entity documents ``{"document_id", "title", "text"}`` (the candidate catalogue
    of every mention whose ``corpus`` is that world), for the worlds of the loaded mentions.
    ``mentions``: the ZeSHEL mention records, in file order. ``contexts``: context_document_id -> context
    document, for the loaded mentions.
    """

    documents: dict[str, list[dict]]
    mentions: list[dict]
    contexts: dict[str, dict] = field(default_factory=dict)
    root: Path | None = None
    split: str = ""

    def __post_init__(self):
        self._row = {w: {d["document_id"]: r for r, d in enumerate(docs)} for w, docs in self.documents.items()}

    def __len__(self) -> int:
        return len(self.mentions)

    def __repr__(self) -> str:
        n_docs = sum(len(d) for d in self.documents.values())
        return (f"ZeshelSet({self.split!r}: {len(self.mentions)} mentions, {len(self.documents)} domains, "
                f"{n_docs} entities, root={self.root})")

    @property
    def domains(self) -> list[str]:
        """The worlds of the loaded mentions (sorted)."""
        return sorted(self.documents)

    def context_tokens(self, i: int) -> list[str]:
        """The whitespace tokens of mention ``i``'s context document."""
        return self.contexts[self.mentions[i]["context_document_id"]]["text"].split()

    def mention_tokens(self, i: int) -> list[str]:
        """The tokens of mention ``i`` itself: ``tokens[start_index : end_index + 1]``."""
        m = self.mentions[i]
        return self.context_tokens(i)[m["start_index"]:m["end_index"] + 1]

    def query_text(self, i: int, window: int = DEFAULT_QUERY_WINDOW) -> str:
        """Mention ``i`` in its context window with markers: ``left [unused0] mention [unused1] right``.

        ``left`` / ``right`` are up to ``window`` whitespace tokens of the context document on each side of the
        inclusive span ``start_index..end_index`` (BLINK centres a window of word pieces the same way).
        """
        if window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        m, tokens = self.mentions[i], self.context_tokens(i)
        s, e = m["start_index"], m["end_index"]
        left, right = tokens[max(0, s - window):s], tokens[e + 1:e + 1 + window]
        return " ".join(left + [MENTION_START] + tokens[s:e + 1] + [MENTION_END] + right)

    def query_texts(self, window: int = DEFAULT_QUERY_WINDOW) -> list[str]:
        """:meth:`query_text` of every mention."""
        return [self.query_text(i, window) for i in range(len(self.mentions))]

    @staticmethod
    def candidate_text(doc: dict) -> str:
        """A candidate entity as text: ``title [unused2] text``."""
        return f"{doc['title']} {TITLE_SEP} {doc['text']}"

    def gold(self, i: int) -> tuple[str, int]:
        """(world, row in ``documents[world]``) of mention ``i``'s gold entity."""
        m = self.mentions[i]
        return m["corpus"], self._row[m["corpus"]][m["label_document_id"]]

    def document(self, world: str, document_id: str) -> dict:
        """The entity document ``document_id`` of ``world``."""
        return self.documents[world][self._row[world][document_id]]


def load_zeshel(root, split: str, domains=None, max_mentions: int | None = None, seed: int = 0) -> ZeshelSet:
    """Read one split of a ZeSHEL-format set: ``root/mentions/<split>.json[.gz]`` + ``root/documents/*.json[.gz]``.

    ``domains``: keep only mentions of these worlds (each must have a mention in the split).
    ``max_mentions``: keep a seeded random subset of this many mentions (``numpy.random.default_rng(seed)``,
    file order kept), for fast runs. The catalogue of every world of the kept mentions is loaded whole.
    Errors: :class:`DatasetNotFoundError` (missing folder / file), :class:`UnknownSplitError`,
    :class:`UnknownDomainError`, :class:`DataFormatError` (bad record, span outside the context, or a mention
    pointing to a document that does not exist).
    """
    root = Path(root)
    if split not in SPLITS:
        raise UnknownSplitError(f"unknown split {split!r}; ZeSHEL splits are {list(SPLITS)}")
    doc_dir, men_dir = root / "documents", root / "mentions"
    for d in (root, doc_dir, men_dir):
        if not d.is_dir():
            raise DatasetNotFoundError(f"ZeSHEL folder not found: {d} (expected {root}/documents/ and "
                                       f"{root}/mentions/). " + _zeshel_help())
    men_path = _zeshel_file(men_dir, split)
    if men_path is None:
        raise DatasetNotFoundError(f"no mentions file for split {split!r}: {men_dir}/{split}.json[.gz]. "
                                   + _zeshel_help())
    mentions = _read_jsonl(men_path, ZESHEL_MENTION_KEYS)
    if domains is not None:
        domains = [domains] if isinstance(domains, str) else list(domains)
        present = {m["corpus"] for m in mentions}
        unknown = [d for d in domains if d not in present]
        if unknown:
            raise UnknownDomainError(f"domain(s) {unknown} have no mention in {men_path}; its domains are "
                                     f"{sorted(present)}")
        keep = set(domains)
        mentions = [m for m in mentions if m["corpus"] in keep]
    if max_mentions is not None:
        if max_mentions < 1:
            raise ValueError(f"max_mentions must be >= 1, got {max_mentions}")
        if max_mentions < len(mentions):
            idx = np.sort(np.random.default_rng(seed).choice(len(mentions), max_mentions, replace=False))
            mentions = [mentions[i] for i in idx]

    for m in mentions:  # a world names a file in documents/: it may not point anywhere else
        w = m["corpus"]
        if not isinstance(w, str) or not w or w in (".", "..") or "/" in w or "\\" in w or os.path.isabs(w):
            raise DataFormatError(f"mention {m['mention_id']} of {men_path} has corpus {w!r}, which is not a world "
                                  f"name (a file stem inside {doc_dir})")
    documents: dict[str, list[dict]] = {}
    for world in sorted({m["corpus"] for m in mentions}):
        path = _zeshel_file(doc_dir, world)
        if path is None:
            raise DatasetNotFoundError(f"no document file for world {world!r} (corpus of mentions in {men_path}): "
                                       f"{doc_dir}/{world}.json[.gz]. " + _zeshel_help())
        documents[world] = _read_jsonl(path, ZESHEL_DOCUMENT_KEYS)
    ids = {w: {d["document_id"] for d in docs} for w, docs in documents.items()}
    for m in mentions:
        if m["label_document_id"] not in ids[m["corpus"]]:
            raise DataFormatError(f"mention {m['mention_id']} of {men_path} points to unknown document "
                                  f"{m['label_document_id']!r} (label_document_id) in world {m['corpus']!r}")

    # context documents: the mention's own world first (real ZeSHEL), then the other world files
    need = {m["context_document_id"] for m in mentions}
    contexts = {d["document_id"]: d for docs in documents.values() for d in docs if d["document_id"] in need}
    if len(contexts) < len(need):
        for path in sorted(doc_dir.glob("*.json*")):
            if _world_stem(path) in documents or not path.name.endswith((".json", ".json.gz")):
                continue
            for d in _read_jsonl(path, ZESHEL_DOCUMENT_KEYS):
                if d["document_id"] in need:
                    contexts[d["document_id"]] = d
            if len(contexts) == len(need):
                break
    for m in mentions:
        ctx = contexts.get(m["context_document_id"])
        if ctx is None:
            raise DataFormatError(f"mention {m['mention_id']} of {men_path} points to unknown context document "
                                  f"{m['context_document_id']!r} (not in any file of {doc_dir})")
        s, e, n = m["start_index"], m["end_index"], len(ctx["text"].split())
        if not (isinstance(s, int) and isinstance(e, int) and 0 <= s <= e < n):
            raise DataFormatError(f"mention {m['mention_id']} of {men_path}: span {s}..{e} (inclusive) is outside "
                                  f"its context document {m['context_document_id']!r} of {n} tokens")
    return ZeshelSet(documents=documents, mentions=mentions, contexts=contexts, root=root, split=split)


def wordnet_dir() -> Path:
    """The bundled WordNet sense-linking set in ZeSHEL format (``data/wordnet_zeshel``)."""
    return data_root() / "wordnet_zeshel"


def load_wordnet(split: str = "test", **kwargs) -> ZeshelSet:
    """One split of the bundled WordNet set (:func:`load_zeshel` on :func:`wordnet_dir`)."""
    return load_zeshel(wordnet_dir(), split, **kwargs)


__all__ += [
    "ZeshelSet", "load_zeshel", "load_wordnet", "wordnet_dir", "UnknownDomainError", "MENTION_START",
    "MENTION_END", "TITLE_SEP", "MARKER_TOKENS",
]
