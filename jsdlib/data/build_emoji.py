"""Build the bundled emoji image-text set (``data/emoji/``) from two Debian packages.

Images come from the Noto Color Emoji font (Debian ``fonts-noto-color-emoji``), captions from the
Unicode CLDR English emoji annotations (Debian ``unicode-cldr-core``)::

    python -m jsdlib.data.build_emoji --out data/emoji            # fetches the packages with apt-get download
    python -m jsdlib.data.build_emoji --out data/emoji --debs /tmp/debs   # uses .deb files already downloaded

Every annotated sequence that the font draws as one glyph with ink becomes a 64x64 PNG with two captions:
its CLDR short name (kind ``name``, e.g. "dog face") and its CLDR keywords joined with ", " (kind
``keywords``, e.g. "dog, face, pet"). The result is written in Karpathy's format
(``dataset_emoji.json`` + ``images/``) with a fixed seeded split, together with a data card, the licence
texts and an attribution note. The build is deterministic: two runs give byte-identical output.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jsdlib.common.paths import REPO_ROOT

FONT_PACKAGE = "fonts-noto-color-emoji"
CLDR_PACKAGE = "unicode-cldr-core"
PACKAGES = (FONT_PACKAGE, CLDR_PACKAGE)
FONT_REL = Path("usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR_REL = Path("usr/share/unicode/cldr")
ANNOTATION_FILES = ("common/annotations/en.xml", "common/annotationsDerived/en.xml")
APACHE_LICENSE_PATH = Path("/usr/share/common-licenses/Apache-2.0")  # Debian's base-files

FONT_SIZE = 109            # the one size Noto Color Emoji's bitmaps (CBDT, 136x128) are made for
REFERENCE_EMOJI = "\U0001F600"   # grinning face: the advance width of one glyph
INK_THRESHOLD = 250        # a pixel is ink when one of its channels is below this (on white)
MIN_INK_PIXELS = 16        # fewer ink pixels than this at full size counts as blank

FE0F = "\uFE0F"            # emoji variation selector
ZWJ = "\u200D"             # zero-width joiner
SKIN_TONES = frozenset(chr(c) for c in range(0x1F3FB, 0x1F400))
GENDER_SIGNS = ("\u2640", "\u2642")
MAN, WOMAN, PERSON = "\U0001F468", "\U0001F469", "\U0001F9D1"

CAPTION_KINDS = ("name", "keywords")
DATACARD_EXAMPLES = ("1f436", "1f680", "1f469_200d_1f373", "1f1eb_1f1f7")  # dog, rocket, cook, flag


# --------------------------------------------------------------------------------------- sources
@dataclass
class Sources:
    """Where the font and the CLDR data are, and what we know about where they came from."""

    font_path: Path
    cldr_dir: Path
    versions: dict = field(default_factory=dict)     # Debian package -> version ("unknown" if not a .deb)
    copyrights: dict = field(default_factory=dict)   # Debian package -> its debian/copyright file, if found


def deb_version(deb: Path) -> str:
    """The Version field of a .deb file (``dpkg-deb -f X.deb Version``)."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def extract_deb(deb: Path, dest: Path) -> None:
    """Unpack a .deb's files under ``dest`` (``dpkg -x``; nothing is installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True, capture_output=True, text=True)


def find_debs(debs_dir: Path) -> dict[str, Path]:
    """The newest-named .deb of each needed package in ``debs_dir`` (missing packages are left out)."""
    found = {}
    for package in PACKAGES:
        debs = sorted(Path(debs_dir).glob(f"{package}_*.deb"))
        if debs:
            found[package] = debs[-1]
    return found


def download_debs(work_dir: Path) -> dict[str, Path]:
    """Fetch the two packages with ``apt-get download`` into ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *PACKAGES], cwd=work_dir, check=True, capture_output=True, text=True)
    return find_debs(work_dir)


def _fetch_help(reason: str) -> str:
    return (f"cannot get the Debian packages {FONT_PACKAGE} and {CLDR_PACKAGE} ({reason}). Either run, on a "
            f"Debian/Ubuntu machine, `apt-get download {' '.join(PACKAGES)}` and pass the folder with "
            "`--debs DIR` (build_emoji(debs_dir=...)), or install them (`apt-get install "
            f"{' '.join(PACKAGES)}`) and pass `--font /{FONT_REL} --cldr /{CLDR_REL}` "
            "(build_emoji(font_path=..., cldr_dir=...)).")


def fetch_debs(work_dir: Path, debs_dir: Path | None = None) -> dict[str, Path]:
    """The two .deb files: taken from ``debs_dir`` if it has them, else downloaded with apt-get.

    Raises RuntimeError, saying what to install or download instead, if neither works.
    """
    if debs_dir is not None:
        found = find_debs(Path(debs_dir))
        if len(found) == len(PACKAGES):
            return found
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise RuntimeError(_fetch_help("apt-get/dpkg not found: not a Debian-based system"))
    try:
        found = download_debs(Path(work_dir) / "debs")
    except subprocess.CalledProcessError as e:
        raise RuntimeError(_fetch_help(f"`apt-get download` failed: {e.stderr.strip()[-500:]}")) from e
    missing = sorted(set(PACKAGES) - set(found))
    if missing:
        raise RuntimeError(_fetch_help(f"`apt-get download` gave no .deb for {', '.join(missing)}"))
    return found


def sources_from_debs(debs: dict[str, Path], work_dir: Path) -> Sources:
    """Unpack the two .deb files under ``work_dir/root`` and point at the font and the CLDR data."""
    root = Path(work_dir) / "root"
    for deb in debs.values():
        extract_deb(deb, root)
    return Sources(
        font_path=root / FONT_REL, cldr_dir=root / CLDR_REL,
        versions={package: deb_version(deb) for package, deb in sorted(debs.items())},
        copyrights={package: root / "usr/share/doc" / package / "copyright" for package in PACKAGES})


def _copyright_near(path: Path, levels_up: int, package: str) -> Path | None:
    """The package's debian/copyright file in the tree ``path`` was unpacked or installed in, if any."""
    candidates = [Path("/usr/share/doc") / package / "copyright"]
    if len(path.parents) > levels_up:
        candidates.insert(0, path.parents[levels_up] / "usr/share/doc" / package / "copyright")
    return next((c for c in candidates if c.is_file()), None)


def sources_from_paths(font_path: Path, cldr_dir: Path) -> Sources:
    """Sources given as paths (an installed or unpacked package); package versions are then unknown."""
    font_path, cldr_dir = Path(font_path), Path(cldr_dir)
    copyrights = {FONT_PACKAGE: _copyright_near(font_path, 5, FONT_PACKAGE),   # <root>/usr/share/fonts/..
                  CLDR_PACKAGE: _copyright_near(cldr_dir, 3, CLDR_PACKAGE)}    # <root>/usr/share/unicode/cldr
    return Sources(font_path=font_path, cldr_dir=cldr_dir, versions={p: "unknown" for p in PACKAGES},
                   copyrights={p: c for p, c in copyrights.items() if c is not None})


def resolve_sources(work_dir: Path, font_path=None, cldr_dir=None, debs_dir=None) -> Sources:
    """Paths given by the caller win; otherwise the .debs are fetched (or taken from ``debs_dir``)."""
    if font_path is not None and cldr_dir is not None:
        sources = sources_from_paths(font_path, cldr_dir)
    else:
        sources = sources_from_debs(fetch_debs(work_dir, debs_dir), work_dir)
        if font_path is not None:
            sources.font_path, sources.versions[FONT_PACKAGE] = Path(font_path), "unknown"
        if cldr_dir is not None:
            sources.cldr_dir, sources.versions[CLDR_PACKAGE] = Path(cldr_dir), "unknown"
    if not sources.font_path.is_file():
        raise RuntimeError(_fetch_help(f"font file not found: {sources.font_path}"))
    for rel in ANNOTATION_FILES:
        if not (sources.cldr_dir / rel).is_file():
            raise RuntimeError(_fetch_help(f"CLDR annotation file not found: {sources.cldr_dir / rel}"))
    return sources


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------- annotations
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


# ------------------------------------------------------------------------------------- rendering
def candidate_forms(seq: str) -> list[str]:
    """Ways to ask the font for ``seq``: as CLDR writes it, then with U+FE0F (fully-qualified guesses).

    CLDR keys drop every U+FE0F; fonts may need one after the first code point, or after every code point
    that precedes a ZWJ, to pick the colour glyph.
    """
    if FE0F in seq:
        return [seq]
    forms = [seq, seq[0] + FE0F + seq[1:]]
    parts = seq.split(ZWJ)
    if len(parts) > 1:
        forms.append(ZWJ.join(p + FE0F if len(p) == 1 else p for p in parts))
    return list(dict.fromkeys(forms))


class GlyphRenderer:
    """Draws an emoji sequence with the colour font and says whether it came out as one inked glyph."""

    def __init__(self, font_path: Path, font_size: int = FONT_SIZE):
        from PIL import ImageFont, features

        if not features.check("raqm"):
            raise RuntimeError("Pillow was built without libraqm; emoji sequences (ZWJ, skin tones, flags) "
                               "need complex text layout. Install a Pillow wheel from PyPI.")
        self.font = ImageFont.truetype(str(font_path), font_size, layout_engine=ImageFont.Layout.RAQM)
        self.advance = self.font.getlength(REFERENCE_EMOJI)
        left, _, right, _ = self.font.getbbox(REFERENCE_EMOJI)
        self.width = right - left

    def is_one_glyph(self, seq: str) -> bool:
        """True when the sequence is laid out as a single glyph: one glyph's advance and box width.

        A sequence the font does not ligate falls apart into several glyphs, each with its own advance.
        """
        left, _, right, _ = self.font.getbbox(seq)
        return abs(self.font.getlength(seq) - self.advance) < 0.5 and right - left <= 1.1 * self.width

    def draw(self, seq: str):
        """The glyph's box (the font's bitmap cell) drawn in colour on white, as an RGB image."""
        from PIL import Image, ImageDraw

        left, top, right, bottom = self.font.getbbox(seq)
        image = Image.new("RGB", (max(right - left, 1), max(bottom - top, 1)), "white")
        ImageDraw.Draw(image).text((-left, -top), seq, font=self.font, embedded_color=True)
        return image

    def render(self, seq: str):
        """(image, form drawn) for the first candidate form that is one glyph with ink, else (None, reason)."""
        reason = "not one glyph"
        for form in candidate_forms(seq):
            if not self.is_one_glyph(form):
                continue
            image = self.draw(form)
            if ink_pixels(image) >= MIN_INK_PIXELS:
                return image, form
            reason = "blank"
        return None, reason


def ink_pixels(image) -> int:
    """How many pixels of an RGB image on white are not (near) white."""
    return int((np.asarray(image).min(axis=-1) < INK_THRESHOLD).sum())


def to_square(image, size: int):
    """Centre the image on a white square canvas (side = its longer edge) and resize with LANCZOS."""
    from PIL import Image

    side = max(image.size)
    canvas = Image.new("RGB", (side, side), "white")
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas.resize((size, size), Image.Resampling.LANCZOS)


def save_png(image, path: Path) -> None:
    """Save as an optimised PNG with no metadata (no timestamp, no text chunks): same pixels, same bytes."""
    image.save(path, format="PNG", optimize=True)


# -------------------------------------------------------------------------------------- captions
def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (regex ``\\w+``), as Karpathy's ``tokens``."""
    return re.findall(r"\w+", text.lower())


def captions_of(entry: dict) -> dict[str, str]:
    """The two captions of an annotated sequence: kind -> text (empty if CLDR has none)."""
    return {"name": entry["name"], "keywords": ", ".join(entry["keywords"])}


# ---------------------------------------------------------------------------------------- splits
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


# ------------------------------------------------------------------------------------ the records
def select_emoji(annotations: dict[str, dict], renderer: GlyphRenderer, progress: bool = True):
    """Render every annotated sequence in code-point order; keep those with two captions and one inked glyph.

    Returns (kept, dropped): kept is a list of (sequence, form drawn, image); dropped counts reasons.
    """
    kept, dropped = [], {}
    for seq in _progress(sorted(annotations, key=sort_key), progress, "render"):
        captions = captions_of(annotations[seq])
        if not all(captions.values()):
            dropped["missing name or keywords"] = dropped.get("missing name or keywords", 0) + 1
            continue
        image, form = renderer.render(seq)
        if image is None:
            dropped[form] = dropped.get(form, 0) + 1
            continue
        kept.append((seq, form, image))
    return kept, dict(sorted(dropped.items()))


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


# --------------------------------------------------------------------------------------- writing
def write_dataset_json(path: Path, dataset: dict) -> None:
    """Write the Karpathy JSON with one image per line (valid JSON, readable diffs, UTF-8)."""
    def dump(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

    lines = ['{"dataset":' + dump(dataset["dataset"]) + ',"images":[']
    lines += [dump(r) + ("," if i < len(dataset["images"]) - 1 else "") for i, r in enumerate(dataset["images"])]
    lines += ['],"build":' + json.dumps(dataset["build"], ensure_ascii=False, indent=1) + "}"]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_images(rendered: dict[str, object], records: list[dict], image_dir: Path, image_size: int,
                 sample: int | None = None, progress: bool = True) -> int:
    """Save each record's image as a square PNG; with ``sample``, only that many evenly spaced images.

    Without ``sample`` any other PNG in ``image_dir`` is deleted, so the folder holds exactly the set.
    Returns the number of images written.
    """
    image_dir.mkdir(parents=True, exist_ok=True)
    chosen = records
    if sample is not None:
        picks = np.unique(np.linspace(0, len(records) - 1, min(sample, len(records))).round().astype(int))
        chosen = [records[i] for i in picks]
    else:
        keep = {r["filename"] for r in records}
        for stale in image_dir.glob("*.png"):
            if stale.name not in keep:
                stale.unlink()
    for record in _progress(chosen, progress, "write"):
        save_png(to_square(rendered[record["emoji"]], image_size), image_dir / record["filename"])
    return len(chosen)


def deb_license_text(copyright_file: Path, name: str) -> str:
    """The full text of licence ``name`` from a Debian machine-readable copyright file.

    Takes the first ``License: name`` paragraph that has a body; undoes Debian's indentation and " ."
    blank-line markers.
    """
    lines = Path(copyright_file).read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(rf"License:\s*{re.escape(name)}\s*", line) and i + 1 < len(lines) \
                and lines[i + 1].startswith(" "):
            body = []
            for b in lines[i + 1:]:
                if not b.startswith(" "):
                    break
                body.append("" if b.strip() == "." else b[1:])
            return "\n".join(body).rstrip() + "\n"
    raise ValueError(f"no 'License: {name}' text in {copyright_file}")


def write_licenses(out_dir: Path, sources: Sources) -> list[str]:
    """Write LICENSES/: Apache-2.0 (emoji artwork), OFL-1.1 (the font), Unicode-DFS-2016 (CLDR).

    Texts come from the packages' Debian copyright files and Debian's common-licenses; a text whose source
    is missing here is left as it is (with a warning). Returns the file names written.
    """
    lic_dir = Path(out_dir) / "LICENSES"
    lic_dir.mkdir(parents=True, exist_ok=True)
    texts = {}
    if APACHE_LICENSE_PATH.is_file():
        texts["Apache-2.0.txt"] = APACHE_LICENSE_PATH.read_text(encoding="utf-8")
    if FONT_PACKAGE in sources.copyrights:
        texts["OFL-1.1.txt"] = deb_license_text(sources.copyrights[FONT_PACKAGE], "SIL-1.1")
    if CLDR_PACKAGE in sources.copyrights:
        texts["Unicode-DFS-2016.txt"] = deb_license_text(sources.copyrights[CLDR_PACKAGE], "Unicode-DFS-2016")
    for name in ("Apache-2.0.txt", "OFL-1.1.txt", "Unicode-DFS-2016.txt"):
        if name in texts:
            (lic_dir / name).write_text(texts[name], encoding="utf-8")
        else:
            print(f"warning: source of LICENSES/{name} not found; left as it is", file=sys.stderr)
    return sorted(texts)


ATTRIBUTION = """\
# Attribution

The bundled emoji image-text set (`dataset_emoji.json`, `images/`) is derived from:

- **Noto Color Emoji** (Debian package `{font_pkg}` {font_ver}; upstream
  https://github.com/googlefonts/noto-emoji), Copyright 2013-2017 Google Inc. and Arjen Nienhuis.
  The images are the font's colour bitmaps, drawn with Pillow and resized to {size}x{size}. The emoji
  artwork is licensed under the Apache License 2.0 (`LICENSES/Apache-2.0.txt`); the font file is
  licensed under the SIL Open Font License 1.1 (`LICENSES/OFL-1.1.txt`). Upstream notes that most flag
  images (from its third_party/region-flags) are in the public domain or otherwise exempt from copyright.
- **Unicode CLDR English emoji annotations** (Debian package `{cldr_pkg}` {cldr_ver};
  https://cldr.unicode.org/), `common/annotations/en.xml` and `common/annotationsDerived/en.xml`,
  Copyright 1991-2022 Unicode, Inc., used under the Unicode licence (`LICENSES/Unicode-DFS-2016.txt`,
  SPDX Unicode-DFS-2016). The captions are CLDR's short names and keyword lists, unchanged except that
  keywords are joined with ", ".

Changes: glyphs rendered to PNG, centred on a white square and downscaled; annotations reformatted into
Karpathy's caption JSON. This set is not endorsed by Google or Unicode, Inc.
"""


def write_attribution(out_dir: Path, sources: Sources, image_size: int) -> None:
    """Write ATTRIBUTION.md (sources, copyright holders, licences, changes)."""
    text = ATTRIBUTION.format(font_pkg=FONT_PACKAGE, font_ver=sources.versions.get(FONT_PACKAGE, "unknown"),
                              cldr_pkg=CLDR_PACKAGE, cldr_ver=sources.versions.get(CLDR_PACKAGE, "unknown"),
                              size=image_size)
    (Path(out_dir) / "ATTRIBUTION.md").write_text(text, encoding="utf-8")


DATACARD = """\
# Data card: the bundled emoji image-text set

A small, real image-text retrieval set that ships with the tutorial, so that every notebook runs on a
laptop with no download. It has the format of Karpathy's Flickr30k/MSCOCO split files, so one loader
(`jsdlib.data.datasets.load_karpathy`) reads all three.

**Rebuild:** `python -m jsdlib.data.build_emoji --out data/emoji` (fetches the two Debian packages with
`apt-get download`; `--debs DIR` uses .deb files already downloaded). The build is deterministic: the
files here are byte for byte what it produces (tests/test_emoji_build.py checks a rebuild).

## Sources
| What | Debian package | Version | Licence |
|---|---|---|---|
| Images: Noto Color Emoji font (`{font_rel}`) | `{font_pkg}` | {font_ver} | artwork Apache-2.0, font OFL-1.1 |
| Captions: CLDR English annotations (`annotations/en.xml`, `annotationsDerived/en.xml`) | `{cldr_pkg}` | {cldr_ver} | Unicode-DFS-2016 |

Licence texts are in `LICENSES/`, the attribution note in `ATTRIBUTION.md`. sha256 of the inputs:
font `{font_sha}`; annotations `{ann_sha}`, derived annotations `{der_sha}`.

## Contents
- `dataset_emoji.json`: `{{"dataset": "emoji", "images": [...], "build": {{...}}}}`; per image `filename`,
  `imgid` (position), `split`, `sentids`, `sentences` (`raw`, `tokens` = lower-cased `\\w+` tokens,
  `sentid`, `imgid`, `kind`), plus `emoji` (the CLDR sequence, without U+FE0F), `codepoints`
  (hex, "_"-joined), `base` (see below) and `unseen_concept`. Images are sorted by code points; sentence
  ids run globally (image i has sentids 2i and 2i+1).
- `images/`: {n_images} RGB PNGs, {size}x{size}, named `emoji_u<codepoints>.png`, {size_mb:.1f} MB in all.

| Split | Images | Captions |
|---|---|---|
| train | {train} | {train_caps} |
| val | {val} | {val_caps} |
| test | {test} | {test_caps} |
| all | {n_images} | {captions} |

{bases} distinct base concepts; {unseen} of the {test} test images have a base with no image in train
(`unseen_concept: true`).

## How it was made
1. Every sequence annotated in CLDR's English `annotations` and `annotationsDerived` files ({n_annotated})
   is drawn with Pillow (`ImageFont.truetype(font, {font_size})`, raqm layout,
   `ImageDraw.text(..., embedded_color=True)`) on white, first as CLDR writes it (CLDR keys have no
   U+FE0F), then with U+FE0F added if needed.
2. It is kept only if it has both a name and keywords, lays out as **one glyph** (the advance and box
   width of a single emoji; a sequence the font does not ligate falls apart into several glyphs) and has
   **ink** (at least {min_ink} non-white pixels; the font is bitmap-only, so a glyph with ink is a
   colour-emoji glyph; symbols it lacks, such as most of CLDR's arrows, math and currency signs, come out
   blank). Dropped: {dropped}.
3. The glyph's bitmap cell (136x128 at size {font_size}) is centred on a white square and resized to
   {size}x{size} with LANCZOS; PNGs are saved optimised with no metadata.

## Captions
Each image has exactly two captions, CLDR text stripped of surrounding whitespace and otherwise kept:
- kind `name`: the CLDR short name (`type="tts"`), e.g. {name_examples}.
- kind `keywords`: the CLDR keywords in CLDR's order, joined with ", ", e.g. {kw_examples}.

## Split
Fixed and seeded, written into the JSON: `numpy.random.default_rng({seed}).permutation(n)` over the images
in code-point order; the first {n_test} are test, the next {n_val} val, the rest train. The split is by
image, so **variants of one base emoji (skin tones, genders) may straddle splits**. This is decided on
purpose: it keeps the split simple and every image in it, and telling near-duplicates apart by the details
of their captions ("medium skin tone", "woman") is part of the task. The `unseen_concept` flag marks the
test images whose base concept has no image in train; evaluate on those alone for new concepts only.

## Base rule
`base` = the code points with skin-tone modifiers (U+1F3FB..U+1F3FF) removed, U+FE0F removed, gender signs
joined by ZWJ (ZWJ U+2640, ZWJ U+2642) removed, and a leading man/woman (U+1F468/U+1F469) followed by a ZWJ
mapped to person (U+1F9D1). E.g. "woman cook: medium skin tone" `1f469_1f3fd_200d_1f373` -> `1f9d1_200d_1f373`
(cook); "man gesturing OK" `1f646_200d_2642` -> `1f646` (person gesturing OK). A lone skin-tone swatch is
its own base. The base is a grouping key and need not be an emoji itself ("couple with heart: woman, man"
`1f469_200d_2764_200d_1f468` -> `1f9d1_200d_2764_200d_1f468`).

## Known caveats
- Near-duplicates: skin-tone and gender variants look alike. Names are unique, but {shared_kw} images
  share their keyword caption with another image; most shared: {top_shared}. Two-person sequences whose
  two skin tones are swapped (e.g. "kiss: woman, woman, light skin tone, medium skin tone" and "... medium
  skin tone, light skin tone") have the same keywords, because CLDR's derived keywords are sorted.
- {dup_images} images are pixel-identical to an earlier image in the set (the font draws the same glyph
  for several sequences): {dup_groups}. Their captions differ.
- CLDR lists keywords alphabetically, not by relevance, so their order in a keyword caption means nothing.
- The font has only colour bitmaps (CBDT, no outlines). Some glyphs are greyscale by design (e.g. black
  heart, family silhouettes); they are still the colour font's bitmaps.
- Captions are short and lexical (names, keywords), unlike the sentences of Flickr30k/MSCOCO; the set is
  for a quick, real, offline tutorial, not for comparing with published numbers.
- Pixels depend on the renderer (built with {renderer}); a different Pillow/FreeType may change
  anti-aliasing slightly.
"""


def _examples(records: list[dict], kind: str) -> str:
    """Three captions of a kind, for the data card, from fixed well-known emoji where present."""
    by_cps = {r["codepoints"]: r for r in records}
    picks = [by_cps[c] for c in DATACARD_EXAMPLES if c in by_cps][:3]
    picks += [r for r in records if r not in picks][:3 - len(picks)]
    return ", ".join(f'{r["emoji"]} "{s["raw"]}"' for r in picks for s in r["sentences"] if s["kind"] == kind)


def write_datacard(out_dir: Path, dataset: dict, image_bytes: int) -> None:
    """Write DATACARD.md: sources, licences, counts, how it was made, split and base rules, caveats."""
    build, records = dataset["build"], dataset["images"]
    counts = build["counts"]
    caps = {s: 2 * counts[s] for s in ("train", "val", "test")}
    text = DATACARD.format(
        font_rel=FONT_REL, font_pkg=FONT_PACKAGE, cldr_pkg=CLDR_PACKAGE,
        font_ver=build["debian_packages"][FONT_PACKAGE], cldr_ver=build["debian_packages"][CLDR_PACKAGE],
        font_sha=build["sha256"]["font"], ann_sha=build["sha256"][ANNOTATION_FILES[0]],
        der_sha=build["sha256"][ANNOTATION_FILES[1]], n_images=counts["images"], size=build["image_size"],
        size_mb=image_bytes / 1e6, train=counts["train"], val=counts["val"], test=counts["test"],
        train_caps=caps["train"], val_caps=caps["val"], test_caps=caps["test"], captions=counts["captions"],
        bases=counts["bases"], unseen=counts["unseen_concept_test"], n_annotated=counts["annotated"],
        font_size=build["font_size"], min_ink=MIN_INK_PIXELS,
        dropped="; ".join(f"{n} {why}" for why, n in counts["dropped"].items()) or "none",
        name_examples=_examples(records, "name"), kw_examples=_examples(records, "keywords"),
        seed=build["seed"], n_test=build["n_test"], n_val=build["n_val"],
        shared_kw=counts["shared_keyword_captions"], dup_images=counts["duplicate_images"],
        top_shared=", ".join(f'"{t}" ({n} images)' for t, n in list(shared_keyword_captions(records).items())[:4]),
        dup_groups="; ".join(" = ".join(g) for g in build["duplicate_images"]),
        renderer=build["renderer"])
    (Path(out_dir) / "DATACARD.md").write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------------ build
def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, leave=False)


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


def build_info(sources: Sources, annotations: dict, records: list[dict], dropped: dict, *, seed: int,
               n_test: int, n_val: int, image_size: int, fe0f_forms: int) -> dict:
    """The JSON's ``build`` block: inputs (package versions, sha256), settings and counts."""
    import PIL

    counts = split_counts(records)
    counts.update(annotated=len(annotations), dropped=dropped, rendered_with_fe0f=fe0f_forms,
                  shared_keyword_captions=sum(shared_keyword_captions(records).values()))
    sha = {"font": sha256_file(sources.font_path)}
    sha.update({rel: sha256_file(sources.cldr_dir / rel) for rel in ANNOTATION_FILES})
    return {"debian_packages": {p: sources.versions.get(p, "unknown") for p in PACKAGES}, "sha256": sha,
            "seed": seed, "n_test": n_test, "n_val": n_val, "image_size": image_size, "font_size": FONT_SIZE,
            "renderer": f"Pillow {PIL.__version__} (raqm layout)", "counts": counts}


def build_emoji(out_dir: Path, work_dir: Path | None = None, font_path=None, cldr_dir=None, seed: int = 0,
                n_test: int = 500, n_val: int = 500, image_size: int = 64, progress: bool = True,
                debs_dir=None, image_sample: int | None = None) -> dict:
    """Build the emoji image-text set into ``out_dir``; returns the summary counts.

    ``font_path``/``cldr_dir`` point at an unpacked or installed font file and CLDR folder
    (``.../usr/share/unicode/cldr``); without them the two Debian packages are taken from ``debs_dir`` or
    fetched with ``apt-get download`` into ``work_dir`` (a temporary folder by default) and unpacked with
    ``dpkg -x``. ``image_sample`` writes only that many evenly spaced images (for a quick rebuild check;
    the JSON is complete either way).
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="emoji_build_") as tmp:
        sources = resolve_sources(Path(work_dir) if work_dir else Path(tmp), font_path, cldr_dir, debs_dir)
        annotations = load_annotations(sources.cldr_dir)
        kept, dropped = select_emoji(annotations, GlyphRenderer(sources.font_path), progress)
        rendered = {seq: image for seq, _, image in kept}
        records = make_records([seq for seq, _, _ in kept], annotations, seed, n_test, n_val)
        build = build_info(sources, annotations, records, dropped, seed=seed, n_test=n_test, n_val=n_val,
                           image_size=image_size, fe0f_forms=sum(form != seq for seq, form, _ in kept))
        duplicates = duplicate_groups(rendered, records)
        build["counts"]["duplicate_images"] = sum(len(g) - 1 for g in duplicates)
        build["duplicate_images"] = duplicates
        out_dir.mkdir(parents=True, exist_ok=True)
        written = write_images(rendered, records, out_dir / "images", image_size, image_sample, progress)
        dataset = {"dataset": "emoji", "images": records, "build": build}
        write_dataset_json(out_dir / "dataset_emoji.json", dataset)
        image_bytes = sum(p.stat().st_size for p in (out_dir / "images").glob("*.png"))
        if image_sample is None:  # the card reports the size of the full image folder
            write_datacard(out_dir, dataset, image_bytes)
        write_licenses(out_dir, sources)
        write_attribution(out_dir, sources, image_size)
    return {**build["counts"], "images_written": written, "image_bytes": image_bytes}


def main(argv=None) -> int:
    """Command line: ``python -m jsdlib.data.build_emoji --out data/emoji [--debs DIR | --font F --cldr D]``."""
    from jsdlib.common.cliargs import OneLineParser, check_output, nonneg_int, positive_int

    parser = OneLineParser(prog="jsdlib data build-emoji", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "emoji",
                        help="output folder (default: the repository's data/emoji)")
    parser.add_argument("--work", type=Path, default=None, help="where to download/unpack (default: a temp dir)")
    parser.add_argument("--debs", type=Path, default=None, help="folder with the two .deb files already downloaded")
    parser.add_argument("--font", type=Path, default=None, help=f"NotoColorEmoji.ttf (e.g. /{FONT_REL})")
    parser.add_argument("--cldr", type=Path, default=None, help=f"CLDR folder (e.g. /{CLDR_REL})")
    parser.add_argument("--seed", type=nonneg_int, default=0)
    parser.add_argument("--n-test", type=positive_int, default=500)
    parser.add_argument("--n-val", type=positive_int, default=500)
    parser.add_argument("--image-size", type=positive_int, default=64)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    check_output(args.out, "folder", "--out")
    start = time.perf_counter()
    try:
        summary = build_emoji(args.out, args.work, args.font, args.cldr, seed=args.seed, n_test=args.n_test,
                              n_val=args.n_val, image_size=args.image_size, progress=not args.quiet,
                              debs_dir=args.debs)
    except RuntimeError as e:
        print(f"jsdlib: data build-emoji: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    print(f"built {summary['images']} images into {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
