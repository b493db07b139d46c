"""The emoji set's records in Karpathy's format: one image, two CLDR captions, a seeded split, concept flags."""
from __future__ import annotations

import hashlib

import numpy as np

from jsdlib.data.cldr import CAPTION_KINDS, base_sequence, captions_of, codepoints, tokenize


def assign_splits(n: int, seed: int, n_test: int, n_val: int) -> list[str]:
    """Seeded image-level split: a permutation's first n_test images are test, the next n_val val."""
    if n_test + n_val >= n:
        raise ValueError(f"n_test + n_val = {n_test + n_val} leaves no training image out of {n}")
    split = np.full(n, "train", dtype=object)
    order = np.random.default_rng(seed).permutation(n)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_val]] = "val"
    return split.tolist()


def unseen_flags(bases: list[str], splits: list[str]) -> list[bool]:
    """True for a test image whose base concept has no image in train; False for every other image."""
    train_bases = {b for b, s in zip(bases, splits) if s == "train"}
    return [s == "test" and b not in train_bases for b, s in zip(bases, splits)]


def image_record(imgid: int, seq: str, split: str, captions: dict[str, str], first_sentid: int) -> dict:
    """One image of the Karpathy JSON with its two sentences."""
    cps = codepoints(seq)
    sentences = [{"raw": captions[kind], "tokens": tokenize(captions[kind]), "sentid": first_sentid + k,
                  "imgid": imgid, "kind": kind} for k, kind in enumerate(CAPTION_KINDS)]
    return {"filename": f"emoji_u{cps}.png", "imgid": imgid, "split": split,
            "sentids": [s["sentid"] for s in sentences], "sentences": sentences,
            "emoji": seq, "codepoints": cps, "base": codepoints(base_sequence(seq)), "unseen_concept": False}


def make_records(seqs: list[str], annotations: dict[str, dict], seed: int, n_test: int, n_val: int) -> list[dict]:
    """The JSON's image records for sequences already in order: imgid = position, sentids running."""
    splits = assign_splits(len(seqs), seed, n_test, n_val)
    records = [image_record(i, seq, splits[i], captions_of(annotations[seq]), len(CAPTION_KINDS) * i)
               for i, seq in enumerate(seqs)]
    for record, unseen in zip(records, unseen_flags([r["base"] for r in records], splits)):
        record["unseen_concept"] = unseen
    return records


def split_counts(records: list[dict]) -> dict:
    """Images per split, captions, distinct bases and unseen-concept test images."""
    counts = {s: sum(r["split"] == s for r in records) for s in ("train", "val", "test")}
    counts.update(images=len(records), captions=sum(len(r["sentences"]) for r in records),
                  bases=len({r["base"] for r in records}),
                  unseen_concept_test=sum(r["unseen_concept"] for r in records))
    return counts


def shared_keyword_captions(records: list[dict]) -> dict[str, int]:
    """Keyword captions that several images have, with how many, most shared first."""
    counts: dict[str, int] = {}
    for r in records:
        for s in r["sentences"]:
            if s["kind"] == "keywords":
                counts[s["raw"]] = counts.get(s["raw"], 0) + 1
    shared = [(n, text) for text, n in counts.items() if n > 1]
    return {text: n for n, text in sorted(shared, key=lambda x: (-x[0], x[1]))}


def duplicate_groups(rendered: dict, records: list[dict]) -> list[list[str]]:
    """Names of images with identical full-size pixels, grouped (e.g. territories sharing a flag)."""
    groups: dict[str, list[str]] = {}
    for r in records:
        digest = hashlib.sha256(rendered[r["emoji"]].tobytes()).hexdigest()
        groups.setdefault(digest, []).append(r["sentences"][0]["raw"])
    return [g for g in groups.values() if len(g) > 1]


__all__ = ["assign_splits", "unseen_flags", "image_record", "make_records", "split_counts",
           "shared_keyword_captions", "duplicate_groups"]
