"""The multi-style emoji set's inputs: the pinned npm archives, and which CLDR sequence each of their files draws.

Twemoji and OpenMoji files are named by code points (``1f436.png``, ``1F436.svg``); Fluent files by CLDR short
names (``dog-face.svg``, skin tones as ``-light`` ... ``-dark``). The archives are fetched with ``npm pack``
(``make emoji-styles``); this module never downloads.
"""
from __future__ import annotations

import re
import tarfile
import unicodedata
from pathlib import Path

from jsdlib.data.cldr import captions_of, sort_key

NPM_PACKAGES = {  # npm name -> pinned version
    "emoji-datasource-twitter": "16.0.0",
    "fluentui-emoji": "1.3.0",
    "openmoji": "17.0.0",
}
# style -> (npm package, member folder inside the archive, file suffix)
STYLE_SOURCES = {
    "twemoji": ("emoji-datasource-twitter", "package/img/twitter/64/", ".png"),
    "fluent-flat": ("fluentui-emoji", "package/icons/flat/", ".svg"),
    "fluent-modern": ("fluentui-emoji", "package/icons/modern/", ".svg"),
    "openmoji": ("openmoji", "package/color/svg/", ".svg"),
}
FLUENT_TONES = {"light": "light skin tone", "medium-light": "medium-light skin tone",
                "medium": "medium skin tone", "medium-dark": "medium-dark skin tone", "dark": "dark skin tone"}
TONE_MODIFIERS = {"light": "\U0001F3FB", "medium-light": "\U0001F3FC", "medium": "\U0001F3FD",
                  "medium-dark": "\U0001F3FE", "dark": "\U0001F3FF"}

def archive_name(package: str) -> str:
    """The file ``npm pack <package>@<pinned version>`` writes."""
    return f"{package}-{NPM_PACKAGES[package]}.tgz"


def find_archives(npm_dir) -> dict[str, Path]:
    """The pinned archives present in ``npm_dir`` (package -> path); missing ones are left out."""
    found = {p: Path(npm_dir) / archive_name(p) for p in NPM_PACKAGES}
    return {p: path for p, path in found.items() if path.is_file()}


def require_archives(npm_dir) -> dict[str, Path]:
    """All three archives, or RuntimeError saying how to fetch them."""
    found = find_archives(npm_dir) if npm_dir else {}
    missing = [f"{p}@{v}" for p, v in NPM_PACKAGES.items() if p not in found]
    if missing:
        raise RuntimeError(f"npm archives missing in {npm_dir}: {', '.join(missing)}; fetch them with "
                           f"`make emoji-styles` or `cd {npm_dir} && npm pack {' '.join(missing)}`")
    return found


def read_members(tgz: Path, prefix: str, suffix: str) -> dict[str, bytes]:
    """Files directly under ``prefix`` ending in ``suffix``: file name -> bytes, sorted by name."""
    out = {}
    with tarfile.open(tgz, "r:gz") as tar:
        for m in tar:
            if m.isfile() and m.name.startswith(prefix) and m.name.endswith(suffix) and "/" not in m.name[len(prefix):]:
                out[m.name[len(prefix):]] = tar.extractfile(m).read()
    return dict(sorted(out.items()))


def read_member(tgz: Path, member: str) -> bytes:
    with tarfile.open(tgz, "r:gz") as tar:
        return tar.extractfile(member).read()


def sequence_from_hex(stem: str) -> str:
    """"1f468-200d-1f373" or "00A9-FE0F" -> the CLDR key (the code points, U+FE0F dropped)."""
    return "".join(chr(int(h, 16)) for h in stem.split("-") if h.lower() != "fe0f")


def slug(text: str) -> str:
    """Fluent's file naming: ASCII-folded, lower-case, runs of other characters -> "-" ("Japanese “here” button" ->
    "japanese-here-button")."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")


def fluent_index(annotations: dict) -> dict[str, str]:
    """slug(CLDR name) -> sequence (the first in code-point order when two names fold to one slug)."""
    index: dict[str, str] = {}
    for seq in sorted(annotations, key=sort_key):
        name = annotations[seq]["name"]
        if name:
            index.setdefault(slug(name), seq)
    return index


def fluent_sequence(stem: str, index: dict[str, str], annotations: dict | None = None) -> str | None:
    """The sequence of a Fluent file stem: its name's slug, or a skin-tone variant ("-default" = no tone).

    A variant "<name>-<tone>" is the sequence "<name>: <tone> skin tone" when CLDR has that name, else the
    base sequence with the tone modifier inserted after its first code point, if CLDR annotates that
    ("man-bald-dark" -> "man: dark skin tone, bald").
    """
    if stem in index:
        return index[stem]
    for tone in ("default", *sorted(FLUENT_TONES, key=len, reverse=True)):
        if not stem.endswith("-" + tone):
            continue
        base = stem[: -len(tone) - 1]
        if tone == "default":
            return index.get(base)
        key = f"{base}-{slug(FLUENT_TONES[tone])}"
        if key in index:
            return index[key]
        if base in index and annotations is not None:
            seq = index[base][0] + TONE_MODIFIERS[tone] + index[base][1:]
            if seq in annotations:
                return seq
        return None
    return None


def style_files(style: str, archives: dict[str, Path], annotations: dict, fluent_idx: dict):
    """(sequence -> file bytes, unmapped file names, duplicate file names) for one style."""
    package, prefix, suffix = STYLE_SOURCES[style]
    files = read_members(archives[package], prefix, suffix)
    mapped, unmapped, duplicates = {}, [], []
    for name, data in files.items():
        stem = name[: -len(suffix)]
        if style.startswith("fluent"):
            seq = fluent_sequence(stem, fluent_idx, annotations)
        else:
            seq = sequence_from_hex(stem)
        if seq is None or seq not in annotations or not all(captions_of(annotations[seq]).values()):
            unmapped.append(name)
        elif seq in mapped:
            duplicates.append(name)
        else:
            mapped[seq] = data
    return mapped, unmapped, duplicates


__all__ = ["NPM_PACKAGES", "STYLE_SOURCES", "archive_name", "find_archives", "require_archives", "read_members",
           "read_member", "sequence_from_hex", "slug", "fluent_index", "fluent_sequence", "style_files"]
