"""What a paper preset of ``jsdlib reproduce`` needs before it starts: the authors' released features, Karpathy's
split, the VLP's projections and word embeddings; each missing input is named with where it comes from."""
from __future__ import annotations

from pathlib import Path

import torch

from jsdlib.common.integrity import IntegrityError, check_finite, load_safetensors

PAPER_DATA = {  # preset -> (Karpathy JSON, text parquet, image parquet)
    "blip-coco": ("dataset_coco.json", "text_embs_before_proj_blip.parquet", "img_embs_before_proj_blip.parquet"),
    "albef-coco": ("dataset_coco.json", "text_embs_before_proj_albef.parquet", "img_embs_before_proj_albef.parquet"),
    "blip-flickr": ("dataset_flickr30k.json", "text_embs_before_proj_blip.parquet",
                    "img_embs_before_proj_blip.parquet"),
    "albef-flickr": ("dataset_flickr30k.json", "text_embs_before_proj_albef.parquet",
                     "img_embs_before_proj_albef.parquet"),
}
WHERE = ("the authors' released pre-projection features (github.com/holi-lab/mm-sparse-retrieval) and Karpathy's "
         "split JSON (cs.stanford.edu/people/karpathy/deepimagesent), plus the VLP's final projection weights "
         "exported from the LAVIS checkpoint (--projection) and its text tower's word embeddings (--word-embeddings)")


class MissingDataError(FileNotFoundError):
    """A paper preset was asked for without its data."""


def check_paper_data(preset: str, data_dir) -> dict[str, Path]:
    """The files a paper preset needs in ``data_dir``; raises :class:`MissingDataError` naming what is missing."""
    if preset not in PAPER_DATA:
        raise ValueError(f"unknown preset {preset!r}; paper presets: {sorted(PAPER_DATA)}, or 'cpu'")
    names = dict(zip(("karpathy_json", "text_parquet", "image_parquet"), PAPER_DATA[preset]))
    if data_dir is None:
        raise MissingDataError(f"preset {preset!r} needs --data DIR holding {', '.join(names.values())}: {WHERE}. "
                               "Nothing is downloaded; the CPU course runs with --preset cpu.")
    paths = {k: Path(data_dir) / v for k, v in names.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise MissingDataError(f"preset {preset!r}: missing {', '.join(missing)}. They are {WHERE}.")
    return paths


PROJECTION_HOW = ("export BLIP's/ALBEF's `text_proj` and `vision_proj` (Linear 768 -> 256) from the LAVIS checkpoint "
                  "as W_t, b_t, W_v, b_v into a .safetensors or .pt file")


def check_paper_inputs(projection, word_embeddings, random_projection: bool = False) -> None:
    """The VLP's projections and word embeddings a paper preset needs, checked before any feature is read.

    Without ``--projection`` the dense branch would start from a random Linear layer and "dense original" would
    mean nothing: refused unless ``random_projection`` (``--random-projection``) says so explicitly.
    """
    if projection is None and not random_projection:
        raise MissingDataError("paper presets need --projection FILE with the VLP's final projections (W_t, b_t, W_v, "
                               f"b_v): {PROJECTION_HOW}; --random-projection trains from a random projection "
                               "instead (recorded in results.json; 'dense original' is then meaningless)")
    if projection is not None and random_projection:
        raise ValueError("give either --projection FILE or --random-projection, not both")
    if projection is not None and not Path(projection).is_file():
        raise MissingDataError(f"--projection {projection}: file not found ({PROJECTION_HOW})")
    if word_embeddings is None:
        raise MissingDataError("paper presets need --word-embeddings (a .pt/.safetensors tensor |V| x 768: the "
                               "BERT word embeddings of the VLP's text tower) to initialise E")
    if not Path(word_embeddings).is_file():
        raise MissingDataError(f"--word-embeddings {word_embeddings}: file not found (a .pt/.safetensors tensor "
                               "|V| x 768: the BERT word embeddings of the VLP's text tower)")


def _word_embeddings(path) -> torch.Tensor:
    """The text tower's word embeddings E (|V| x e) from a .safetensors or a .pt file, checked finite."""
    if str(path).endswith(".safetensors"):
        return next(iter(load_safetensors(path, "word embeddings")[0].values()))
    try:
        E = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # a truncated or foreign file: name it
        raise IntegrityError(f"word embeddings {path} are unreadable ({e})") from e
    check_finite({"E": E} if torch.is_tensor(E) else {}, path, "word embeddings")
    return E


__all__ = ["PAPER_DATA", "WHERE", "PROJECTION_HOW", "MissingDataError", "check_paper_data", "check_paper_inputs"]
