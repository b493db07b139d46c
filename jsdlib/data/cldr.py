"""Captions from the Unicode CLDR English emoji annotations, and the code-point rules of emoji sequences.

The annotations come from the Debian package ``unicode-cldr-core`` (``annotations/en.xml`` and
``annotationsDerived/en.xml``); every emoji set here (Noto, Twemoji, Fluent, OpenMoji) is captioned from them.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from jsdlib.data.build_io import sha256_file
from jsdlib.data.debs import deb_version, extract_deb, find_debs

CLDR_PACKAGE = "unicode-cldr-core"
CLDR_REL = Path("usr/share/unicode/cldr")
ANNOTATION_FILES = ("common/annotations/en.xml", "common/annotationsDerived/en.xml")
CAPTION_KINDS = ("name", "keywords")
FE0F = "\uFE0F"            # emoji variation selector
ZWJ = "\u200D"             # zero-width joiner
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
GENDER_SIGNS = ("\u2640", "\u2642")
MAN, WOMAN, PERSON = "\U0001F468", "\U0001F469", "\U0001F9D1"


def load_annotations(cldr_dir: Path) -> dict[str, dict]:
    """CLDR English annotations: sequence -> {"name": tts name, "keywords": [keyword, ...]}.

    Reads ``annotations/en.xml`` and ``annotationsDerived/en.xml`` (the derived file adds skin-tone and
    other generated sequences). Keys are the CLDR ``cp`` strings, which have no U+FE0F. Text is stripped;
    empty keywords are dropped; a sequence missing a name or keywords gets an empty value for it.
    """
    entries: dict[str, dict] = {}
    for rel in ANNOTATION_FILES:
        for node in ET.parse(Path(cldr_dir) / rel).iter("annotation"):
            entry = entries.setdefault(node.get("cp"), {"name": "", "keywords": []})
            text = (node.text or "").strip()
            if node.get("type") == "tts":
                entry["name"] = text
            else:
                entry["keywords"] = [k.strip() for k in text.split("|") if k.strip()]
    return entries


def codepoints(seq: str) -> str:
    """Lower-case hex code points joined by "_" (Noto's file naming): "1f468_200d_1f373"."""
    return "_".join(f"{ord(c):x}" for c in seq)


def sort_key(seq: str) -> tuple[int, ...]:
    """Order sequences by their code points."""
    return tuple(ord(c) for c in seq)


def base_sequence(seq: str) -> str:
    """The base concept of an emoji sequence (variants of one base are near-duplicate images).

    Removes skin-tone modifiers (U+1F3FB..U+1F3FF), U+FE0F and gender signs joined by ZWJ
    (ZWJ U+2640 / ZWJ U+2642), and maps a leading man / woman (U+1F468 / U+1F469) that is followed by a
    ZWJ to person (U+1F9D1). A sequence that would become empty (a lone skin-tone swatch) is its own base.
    """
    base = "".join(c for c in seq if c not in SKIN_TONES and c != FE0F)
    for sign in GENDER_SIGNS:
        base = base.replace(ZWJ + sign, "")
    if len(base) > 1 and base[0] in (MAN, WOMAN) and base[1] == ZWJ:
        base = PERSON + base[1:]
    return base or seq


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (regex ``\\w+``), as Karpathy's ``tokens``."""
    return re.findall(r"\w+", text.lower())


def captions_of(entry: dict) -> dict[str, str]:
    """The two captions of an annotated sequence: kind -> text (empty if CLDR has none)."""
    return {"name": entry["name"], "keywords": ", ".join(entry["keywords"])}


def cldr_annotations(debs_dir, work_dir: Path, cldr_dir=None) -> tuple[dict, str, dict]:
    """(CLDR annotations, unicode-cldr-core version, sha256 of the two annotation files)."""
    version = "unknown"
    if cldr_dir is None:
        debs = find_debs(Path(debs_dir), (CLDR_PACKAGE,)) if debs_dir else {}
        if CLDR_PACKAGE not in debs:
            raise RuntimeError(f"no {CLDR_PACKAGE} .deb in {debs_dir}; run `make debs` (or `apt-get download "
                               f"{CLDR_PACKAGE}`) and pass its folder with --debs")
        extract_deb(debs[CLDR_PACKAGE], work_dir / "root")
        version, cldr_dir = deb_version(debs[CLDR_PACKAGE]), work_dir / "root" / CLDR_REL
    sha = {rel: sha256_file(Path(cldr_dir) / rel) for rel in ANNOTATION_FILES}
    return load_annotations(Path(cldr_dir)), version, sha


__all__ = ["CLDR_PACKAGE", "CLDR_REL", "ANNOTATION_FILES", "CAPTION_KINDS", "load_annotations", "codepoints",
           "sort_key", "base_sequence", "tokenize", "captions_of", "cldr_annotations"]
