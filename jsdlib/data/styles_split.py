"""The multi-style emoji set's design: styles, concept subsets (seen / cross-style / unseen) and the records.

See :mod:`jsdlib.data.emoji_styles` for the split design in words; the data card prints its counts.
"""
from __future__ import annotations

import numpy as np

from jsdlib.data.cldr import base_sequence, captions_of, codepoints, sort_key
from jsdlib.data.emoji_records import image_record

NOTO = "noto"
NOTO_FILEPATH = "emoji/images"          # JSON paths are relative to data/: the Noto images are not copied
STYLE_FILEPATH = "emoji_styles/images/{style}"
STYLES = (NOTO, "twemoji", "fluent-flat", "fluent-modern", "openmoji")
TRAIN_STYLES = (NOTO, "twemoji", "fluent-flat", "fluent-modern")
GALLERY_STYLE = "openmoji"
SUBSETS = ("seen", "cross-style", "unseen")
UNSEEN_STYLE = "unseen-style"
# dog face, cat face, octopus, birthday cake, red apple: never in the held-out "unseen" half
PINNED = ("1f436", "1f431", "1f419", "1f382", "1f34e")


def hex_key(base: str) -> tuple[int, ...]:
    """Sort key of a "_"-joined hex code-point string ("1f9d1_200d_1f373") by its code points."""
    return tuple(int(c, 16) for c in base.split("_"))


def concept_subsets(noto: list[dict], seed: int, rendered: set[str] | None = None) -> dict[str, str]:
    """base -> "cross-style" or "unseen" for every Noto test/val concept with no Noto training image.

    Test concepts are split first (a seeded permutation; the first half of the non-pinned ones are
    "unseen"), then the val concepts not already assigned, with the same generator. Pinned concepts are
    always "cross-style". ``rendered``: the bases the other training styles draw; a non-pinned concept
    drawn by none of them cannot be trained on in another style and is "unseen" whichever half it fell in.
    """
    train = {r["base"] for r in noto if r["split"] == "train"}
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for split in ("test", "val"):
        bases = sorted({r["base"] for r in noto if r["split"] == split and r["base"] not in train} - set(out),
                       key=hex_key)
        free = [b for b in bases if b not in PINNED]
        order = rng.permutation(len(free))
        held = {free[i] for i in order[: len(free) // 2]}
        out.update({b: ("unseen" if b in held or (rendered is not None and b not in rendered and b not in PINNED)
                        else "cross-style") for b in bases})
    return dict(sorted(out.items()))


def make_records(noto: list[dict], styles: dict[str, dict[str, bytes]], annotations: dict,
                 subsets: dict[str, str]) -> tuple[list[dict], dict]:
    """The JSON's records: the Noto entries (unchanged, plus ``style`` and, for val/test, ``subset``), then
    each other style's training images and the OpenMoji gallery. Returns (records, images left out)."""
    records = []
    for r in noto:
        rec = dict(r, filepath=NOTO_FILEPATH, style=NOTO)
        if r["split"] in ("val", "test"):
            rec["subset"] = subsets.get(r["base"], "seen")
        records.append(rec)
    held_out = {b for b, s in subsets.items() if s == "unseen"}
    gallery = {r["emoji"]: r for r in noto if r["split"] in ("val", "test")}
    left_out = {}
    imgid, sentid = len(noto), sum(len(r["sentences"]) for r in noto)
    for style in STYLES[1:]:
        left_out[style] = 0
        for seq in sorted(styles[style], key=sort_key):
            base = codepoints(base_sequence(seq))
            if style == GALLERY_STYLE:
                if seq not in gallery:
                    left_out[style] += 1
                    continue
                split, extra = gallery[seq]["split"], {"subset": UNSEEN_STYLE,
                                                       "concept_subset": subsets.get(base, "seen")}
            elif base in held_out:
                left_out[style] += 1
                continue
            else:
                split, extra = "train", {}
            rec = image_record(imgid, seq, split, captions_of(annotations[seq]), sentid)
            rec["filepath"] = STYLE_FILEPATH.format(style=style)
            rec["unseen_concept"] = bool(gallery[seq]["unseen_concept"]) if style == GALLERY_STYLE else False
            rec.update(style=style, **extra)
            records.append(rec)
            imgid, sentid = imgid + 1, sentid + len(rec["sentences"])
    return records, left_out


def counts_table(records: list[dict]) -> dict:
    """Images per style and split, and per style, split and subset for val/test."""
    table: dict = {}
    for r in records:
        by_split = table.setdefault(r["style"], {}).setdefault(r["split"], {"images": 0})
        by_split["images"] += 1
        if "subset" in r:
            by_split[r["subset"]] = by_split.get(r["subset"], 0) + 1
        if "concept_subset" in r:
            key = f"concept {r['concept_subset']}"
            by_split[key] = by_split.get(key, 0) + 1
    return {s: dict(sorted(table[s].items())) for s in STYLES if s in table}


__all__ = ["NOTO", "STYLES", "TRAIN_STYLES", "GALLERY_STYLE", "SUBSETS", "UNSEEN_STYLE", "PINNED", "hex_key",
           "concept_subsets", "make_records", "counts_table"]
