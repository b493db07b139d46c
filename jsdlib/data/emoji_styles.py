"""Build the multi-style emoji set (``data/emoji_styles/``): the bundled Noto set plus three more art styles.

Sources (npm archives fetched with ``npm pack``, see ``make emoji-styles``; this module never downloads):

- ``emoji-datasource-twitter`` 16.0.0: Twemoji, ``img/twitter/64/*.png`` (graphics CC-BY 4.0);
- ``fluentui-emoji`` 1.3.0: Microsoft Fluent Emoji, ``icons/flat/*.svg`` and ``icons/modern/*.svg`` (MIT);
- ``openmoji`` 17.0.0: OpenMoji, ``color/svg/*.svg`` (CC BY-SA 4.0; never trained on).

Captions are the CLDR English names and keywords (the Debian ``unicode-cldr-core`` package, read with
:func:`jsdlib.data.build_emoji.load_annotations`), joined to each image by its code points; Fluent files are named
by CLDR short names ("dog-face.svg", "woman-pouting-light.svg") and are joined through the CLDR names.
The Noto entries are taken unchanged from ``data/emoji/`` (their ids, splits and captions stay exactly as
they are) and their images are not copied: the JSON's image paths are relative to ``data/`` (``filepath``
``emoji/images`` for Noto, ``emoji_styles/images/<style>`` for the others; :func:`load`)::

    python -m jsdlib.data.emoji_styles --npm .cache/npm --debs .cache/debs --out data/emoji_styles

Split design (the concept of an image is its ``base``, :func:`jsdlib.data.build_emoji.base_sequence`): the Noto
val/test splits are today's. A test or val concept with no Noto training image was "unseen" in the Noto set;
a fixed seeded half of those concepts (test first, then the remaining val ones; never the pinned concepts
dog face, cat face, octopus, birthday cake, red apple) stays out of training in every style (subset
``unseen``), the other half enters training only as renderings in the other training styles (subset
``cross-style``). Every other concept enters training in every training style (Noto test/val images of
those concepts are subset ``seen``). OpenMoji is never trained on: its renderings of the Noto test (val)
sequences form an unseen-style gallery in the test (val) split (``style: "openmoji"``,
``subset: "unseen-style"``, ``concept_subset``: the subset of its concept). The build is deterministic.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np

from jsdlib.data import build_emoji as eb
from jsdlib.common.paths import REPO_ROOT

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
SVG_RENDER_SIZE = 256      # SVGs are drawn at this size, then downscaled with LANCZOS (like Noto's 136 px cells)
FLUENT_TONES = {"light": "light skin tone", "medium-light": "medium-light skin tone",
                "medium": "medium skin tone", "medium-dark": "medium-dark skin tone", "dark": "dark skin tone"}
TONE_MODIFIERS = {"light": "\U0001F3FB", "medium-light": "\U0001F3FC", "medium": "\U0001F3FD",
                  "medium-dark": "\U0001F3FE", "dark": "\U0001F3FF"}
# licence file -> (npm package, member) for texts shipped in the archives
ARCHIVE_LICENSES = {
    "CC-BY-SA-4.0-openmoji.txt": ("openmoji", "package/LICENSE.txt"),
    "MIT-fluentui-emoji.txt": ("fluentui-emoji", "package/LICENSE"),
    "MIT-emoji-datasource.txt": ("emoji-datasource-twitter", "package/LICENSE"),
}
CC_BY_SOURCES = (Path("/usr/share/doc/libuv1/copyright"),)  # Debian copyright files with the CC-BY-4.0 text
NOTO_LICENSES = ("Apache-2.0.txt", "OFL-1.1.txt", "Unicode-DFS-2016.txt")
DATA_ROOT = REPO_ROOT / "data"


# --------------------------------------------------------------------------------------- archives
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


def cldr_annotations(debs_dir, work_dir: Path, cldr_dir=None) -> tuple[dict, str, dict]:
    """(CLDR annotations, unicode-cldr-core version, sha256 of the two annotation files)."""
    version = "unknown"
    if cldr_dir is None:
        debs = eb.find_debs(Path(debs_dir)) if debs_dir else {}
        if eb.CLDR_PACKAGE not in debs:
            raise RuntimeError(f"no {eb.CLDR_PACKAGE} .deb in {debs_dir}; run `make debs` (or `apt-get download "
                               f"{eb.CLDR_PACKAGE}`) and pass its folder with --debs")
        eb.extract_deb(debs[eb.CLDR_PACKAGE], work_dir / "root")
        version, cldr_dir = eb.deb_version(debs[eb.CLDR_PACKAGE]), work_dir / "root" / eb.CLDR_REL
    sha = {rel: eb.sha256_file(Path(cldr_dir) / rel) for rel in eb.ANNOTATION_FILES}
    return eb.load_annotations(Path(cldr_dir)), version, sha


# ------------------------------------------------------------------------------------ file -> sequence
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
    for seq in sorted(annotations, key=eb.sort_key):
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
        if seq is None or seq not in annotations or not all(eb.captions_of(annotations[seq]).values()):
            unmapped.append(name)
        elif seq in mapped:
            duplicates.append(name)
        else:
            mapped[seq] = data
    return mapped, unmapped, duplicates


# ------------------------------------------------------------------------------------------ images
def on_white(image):
    """An RGBA/LA/P image composited on white, as RGB."""
    from PIL import Image

    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")


def render(data: bytes, suffix: str, size: int):
    """A source file's bytes -> an RGB size x size image on white (SVG via cairosvg at SVG_RENDER_SIZE)."""
    from PIL import Image

    if suffix == ".svg":
        import cairosvg

        data = cairosvg.svg2png(bytestring=data, output_width=SVG_RENDER_SIZE, output_height=SVG_RENDER_SIZE)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return eb.to_square(on_white(im), size)


# ----------------------------------------------------------------------------------------- splits
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
                       key=lambda b: tuple(int(c, 16) for c in b.split("_")))
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
        for seq in sorted(styles[style], key=eb.sort_key):
            base = eb.codepoints(eb.base_sequence(seq))
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
            rec = eb.image_record(imgid, seq, split, eb.captions_of(annotations[seq]), sentid)
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


# ----------------------------------------------------------------------------------------- writing
def image_path(data_root: Path, record: dict) -> Path:
    """Where a record's image is, given the data folder its JSON paths are relative to (``data/``)."""
    return Path(data_root) / record["filepath"] / record["filename"]


def output_path(out_dir: Path, record: dict) -> Path:
    """Where the builder writes a (non-Noto) record's image: ``<out>/images/<style>/<filename>``."""
    return Path(out_dir) / "images" / record["style"] / record["filename"]


def write_images(records: list[dict], styles: dict[str, dict[str, bytes]], out_dir: Path,
                 size: int, sample: int | None = None, progress: bool = True) -> int:
    """Render the non-Noto styles; with ``sample``, that many evenly spaced images of each style only.
    Without ``sample`` stale PNGs are deleted. Returns the number written."""
    chosen = []
    for style in STYLES[1:]:
        mine = [r for r in records if r["style"] == style]
        if sample is not None:
            picks = np.unique(np.linspace(0, len(mine) - 1, min(sample, len(mine))).round().astype(int))
            mine = [mine[i] for i in picks]
        chosen += mine
    if sample is None and (Path(out_dir) / "images").is_dir():
        keep = {output_path(out_dir, r) for r in records if r["style"] != NOTO}
        for stale in (Path(out_dir) / "images").rglob("*.png"):
            if stale not in keep:
                stale.unlink()
    for r in eb._progress(chosen, progress, "images"):
        path = output_path(out_dir, r)
        path.parent.mkdir(parents=True, exist_ok=True)
        eb.save_png(render(styles[r["style"]][r["emoji"]], STYLE_SOURCES[r["style"]][2], size), path)
    return len(chosen)


def write_licenses(out_dir: Path, archives: dict[str, Path], noto_dir: Path) -> list[str]:
    """LICENSES/: the Noto set's three texts, the archives' own licence files and CC-BY-4.0 (Twemoji)."""
    lic = Path(out_dir) / "LICENSES"
    lic.mkdir(parents=True, exist_ok=True)
    written = []
    for name in NOTO_LICENSES:
        shutil.copyfile(Path(noto_dir) / "LICENSES" / name, lic / name)
        written.append(name)
    for name, (package, member) in ARCHIVE_LICENSES.items():
        (lic / name).write_bytes(read_member(archives[package], member))
        written.append(name)
    source = next((p for p in CC_BY_SOURCES if p.is_file()), None)
    if source is not None:
        (lic / "CC-BY-4.0.txt").write_text(eb.deb_license_text(source, "CC-BY-4.0"), encoding="utf-8")
        written.append("CC-BY-4.0.txt")
    else:
        print("warning: no CC-BY-4.0 text found on this machine; LICENSES/CC-BY-4.0.txt left as it is",
              file=sys.stderr)
    return sorted(written)


ATTRIBUTION = """\
# Attribution

The multi-style emoji set (`dataset_emoji_styles.json`, `images/`) is derived from:

- **Noto Color Emoji** images and **Unicode CLDR** captions: the bundled set `data/emoji/`, referenced
  unchanged (see `data/emoji/ATTRIBUTION.md`; Apache-2.0 artwork, OFL-1.1 font, Unicode-DFS-2016 annotations;
  `LICENSES/Apache-2.0.txt`, `LICENSES/OFL-1.1.txt`, `LICENSES/Unicode-DFS-2016.txt`). The captions of every
  style are CLDR's English names and keywords (Debian `unicode-cldr-core` {cldr_ver}), Copyright Unicode, Inc.
- **Twemoji** (`images/twemoji/`): graphics Copyright 2019 Twitter, Inc and other contributors
  (https://github.com/twitter/twemoji, maintained at https://github.com/jdecked/twemoji), licensed under
  CC-BY 4.0 (`LICENSES/CC-BY-4.0.txt`; https://creativecommons.org/licenses/by/4.0/). Taken from the npm
  package `emoji-datasource-twitter` {twemoji_ver} (`img/twitter/64/`; the package's code and data are MIT,
  Copyright (c) 2013 Cal Henderson, `LICENSES/MIT-emoji-datasource.txt`).
- **Fluent Emoji** (`images/fluent-flat/`, `images/fluent-modern/`): Copyright (c) Microsoft Corporation
  (https://github.com/microsoft/fluentui-emoji), MIT licence. Taken from the npm package `fluentui-emoji`
  {fluent_ver} (`icons/flat/`, `icons/modern/`), MIT, Copyright (c) 2022 Mohammad Abu Mattar
  (`LICENSES/MIT-fluentui-emoji.txt`).
- **OpenMoji** (`images/openmoji/`): the open-source emoji and icon project, https://openmoji.org/,
  licensed under CC BY-SA 4.0 (`LICENSES/CC-BY-SA-4.0-openmoji.txt`). Taken from the npm package `openmoji`
  {openmoji_ver} (`color/svg/`). **The OpenMoji renderings here are adapted material and stay under
  CC BY-SA 4.0.**

Changes: SVGs rasterised with CairoSVG at {svg}x{svg} and PNGs composited on white, centred on a white square
and downscaled to {size}x{size} with LANCZOS; annotations reformatted into Karpathy's caption JSON. This set
is not endorsed by Google, Twitter/X, Microsoft, the OpenMoji project or Unicode, Inc.
"""

DATACARD = """\
# Data card: the multi-style emoji set

The bundled Noto emoji set (`data/emoji/`, unchanged) plus the same CLDR concepts drawn in three more art
styles, for training an image tower that knows a dog from a cat across styles, and for reporting retrieval
per subset: concepts seen in training, concepts seen only in other styles, concepts never trained on, and
a style never trained on. Karpathy's format: `jsdlib.data.datasets.load_karpathy(json, "data/emoji_styles/images",
"data", split)` reads it (image paths are relative to `data/`: the Noto images are not copied, they stay
in `data/emoji/images/`); `jsdlib.data.emoji_styles.load(split, style=...)` does the same and keeps one style.
Filter by the per-image `style` key (and `subset`) to evaluate.

**Rebuild:** `make emoji-styles` (fetches the three npm archives with `npm pack` into `.cache/npm/` and the
Debian CLDR package into `.cache/debs/`, then runs
`python -m jsdlib.data.emoji_styles --npm .cache/npm --debs .cache/debs --out data/emoji_styles`). The build is
deterministic (tests/test_emoji_styles.py rebuilds the JSON and a sample of images from `$JSDLIB_NPM`).

## Sources and licences
| Style | Source | Files | Licence |
|---|---|---|---|
| `noto` | `data/emoji/` (Noto Color Emoji, Debian `fonts-noto-color-emoji`) | PNG copies | Apache-2.0 (artwork) |
| `twemoji` | npm `emoji-datasource-twitter@{twemoji_ver}` | `img/twitter/64/*.png` | CC-BY 4.0 |
| `fluent-flat` | npm `fluentui-emoji@{fluent_ver}` | `icons/flat/*.svg` | MIT |
| `fluent-modern` | npm `fluentui-emoji@{fluent_ver}` | `icons/modern/*.svg` | MIT |
| `openmoji` | npm `openmoji@{openmoji_ver}` | `color/svg/*.svg` | CC BY-SA 4.0 (renderings stay CC BY-SA) |
| captions | Debian `unicode-cldr-core` {cldr_ver} | `annotations/en.xml`, `annotationsDerived/en.xml` | Unicode-DFS-2016 |

Licence texts are in `LICENSES/`, the attribution note in `ATTRIBUTION.md`; sha256 of every input is in the
JSON's `build` block.

## Contents
- `dataset_emoji_styles.json`: the Noto entries of `data/emoji/dataset_emoji.json` first, unchanged (same
  `imgid`, `sentids`, `filename`, `split`, captions) with three keys added: `filepath: "emoji/images"`,
  `style: "noto"` and, for val/test, `subset`; then the other styles' images (`filepath` =
  `emoji_styles/images/<style>`, `filename` =
  `emoji_u<codepoints>.png`, ids continuing), each with `style`, CLDR captions of kinds `name` and
  `keywords`, `emoji`, `codepoints`, `base`. OpenMoji images carry `subset: "unseen-style"` and
  `concept_subset` (the subset of their concept).
- `images/<style>/`: {n_new} RGB PNGs, {size}x{size}, {size_mb:.1f} MB in all (plus the {n_noto} Noto
  images in `data/emoji/images/`, {n_images} images in all).

## Counts (images)
{counts_md}

## Split design
- **Noto val/test are today's** (500 + 500 images, same ids and captions). Noto train is unchanged too.
- A val/test concept (`base`) with no Noto training image was `unseen_concept` in the Noto set. A fixed,
  seeded half of them (`numpy.random.default_rng({seed})`: test concepts first, then the val concepts not
  yet assigned; never the pinned {pinned}) stays out of training in **every** style: subset
  **unseen** ({n_unseen_bases} concepts). The other half, **cross-style** ({n_cross_bases} concepts), enters
  training only as Twemoji/Fluent renderings; a concept neither Twemoji nor Fluent draws cannot, and is
  unseen whichever half it fell in ({n_moved}: {moved}). Every other concept enters training in every training style
  (`noto`, `twemoji`, `fluent-flat`, `fluent-modern`); their Noto val/test images are subset **seen**.
  Test images per subset: {test_subsets}; val: {val_subsets}.
- **OpenMoji is never trained on.** Its renderings of the Noto test (val) sequences are in the test (val)
  split with `subset: "unseen-style"` ({om_test} test, {om_val} val images); Noto sequences OpenMoji lacks
  have none.
- Twemoji and Fluent images are all `train`, except the renderings of held-out (unseen) concepts, which
  are left out; OpenMoji files that draw no Noto val/test sequence are left out too ({left_out}).
  A seen or cross-style test sequence may thus be in training in another style: that is the design.

## Joining files to captions
- Twemoji and OpenMoji files are named by code points (`1f436.png`, `1F436.svg`); U+FE0F is dropped to
  match CLDR's keys. Fluent files are named by CLDR short names (`dog-face.svg`; skin tones as
  `-default`/`-light`/`-medium-light`/`-medium`/`-medium-dark`/`-dark`), joined through
  the ASCII-folded, hyphenated CLDR names.
- Files with no CLDR name and keywords (newer emoji than CLDR {cldr_ver}, OpenMoji's extras, unmapped
  Fluent names) are dropped: {unmapped}. Examples of Fluent names that do not map: {fluent_examples}.

## How the images were made
PNGs (Twemoji, 64x64 RGBA) are composited on white; SVGs are rasterised with CairoSVG ({cairosvg}) at
{svg}x{svg} and composited on white; each is centred on a white square and resized to {size}x{size} with LANCZOS
(`jsdlib.data.build_emoji.to_square`) and saved as an optimised PNG without metadata
(`jsdlib.data.build_emoji.save_png`), as the Noto images are.

## Caveats
- Styles differ in coverage (Fluent has no country flags: one `flag-*` file, `flag-in-hole`), so a concept
  may be in training in fewer styles than four; report per subset and style.
- Noto's own coverage (CLDR 41 + the font) decides the val/test sequences; Twemoji (Emoji 16) and Fluent
  have newer emoji than CLDR 41, which are dropped for lack of captions.
- Loading the `test` split loads the Noto test images **and** the OpenMoji gallery: filter by `style`.
- Pixels depend on the renderer (Pillow {pillow}, CairoSVG {cairosvg}).
"""


def _counts_md(table: dict) -> str:
    rows = ["| Style | Split | Images | seen | cross-style | unseen | unseen-style |", "|---|---|---|---|---|---|---|"]
    for style, splits in table.items():
        for split in ("train", "val", "test"):
            if split in splits:
                c = splits[split]
                rows.append(f"| {style} | {split} | {c['images']} | " + " | ".join(
                    str(c.get(k, "")) for k in ("seen", "cross-style", "unseen", UNSEEN_STYLE)) + " |")
    return "\n".join(rows)


def write_docs(out_dir: Path, build: dict, records: list[dict], image_bytes: int, size: int) -> None:
    """DATACARD.md and ATTRIBUTION.md from the build block."""
    import PIL
    import cairosvg

    versions = {p: v for p, v in NPM_PACKAGES.items()}
    fmt = dict(twemoji_ver=versions["emoji-datasource-twitter"], fluent_ver=versions["fluentui-emoji"],
               openmoji_ver=versions["openmoji"], cldr_ver=build["cldr_version"], size=size, svg=SVG_RENDER_SIZE)
    (Path(out_dir) / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(**fmt), encoding="utf-8")
    table = build["counts"]
    subsets = build["concept_subsets"]
    def per_subset(split):
        c = table[NOTO][split]
        return ", ".join(f"{k} {c.get(k, 0)}" for k in SUBSETS)
    text = DATACARD.format(
        **fmt, n_images=len(records), n_noto=sum(r["style"] == NOTO for r in records),
        n_new=sum(r["style"] != NOTO for r in records), size_mb=image_bytes / 1e6, counts_md=_counts_md(table), seed=build["seed"],
        pinned=", ".join(PINNED), n_unseen_bases=sum(s == "unseen" for s in subsets.values()),
        n_cross_bases=sum(s == "cross-style" for s in subsets.values()),
        n_moved=len(build["unseen_for_lack_of_renderings"]),
        moved=", ".join(build["unseen_for_lack_of_renderings"]) or "none",
        test_subsets=per_subset("test"), val_subsets=per_subset("val"),
        om_test=table[GALLERY_STYLE].get("test", {}).get("images", 0),
        om_val=table[GALLERY_STYLE].get("val", {}).get("images", 0),
        left_out=", ".join(f"{s} {n}" for s, n in build["left_out_held_out_or_not_gallery"].items()),
        unmapped=", ".join(f"{s} {n}" for s, n in build["unmapped_files"].items()),
        fluent_examples=", ".join(f"`{n}`" for n in build["fluent_unmapped_examples"]) or "none",
        pillow=PIL.__version__, cairosvg=cairosvg.__version__)
    (Path(out_dir) / "DATACARD.md").write_text(text, encoding="utf-8")


# ------------------------------------------------------------------------------------------- build
def build_emoji_styles(out_dir, npm_dir, debs_dir=None, cldr_dir=None, noto_dir=None, seed: int = 0,
                       image_size: int = 64, image_sample: int | None = None, progress: bool = True) -> dict:
    """Build the multi-style set into ``out_dir``; returns the build block.

    ``npm_dir`` holds the three pinned npm archives; the CLDR annotations come from ``cldr_dir`` or the
    ``unicode-cldr-core`` .deb in ``debs_dir``; the Noto set from ``noto_dir`` (default ``data/emoji``).
    ``image_sample`` writes only that many evenly spaced images per style (the JSON is complete either way;
    the data card is written only for a full build).
    """
    out_dir, noto_dir = Path(out_dir), Path(noto_dir or DATA_ROOT / "emoji")
    archives = require_archives(npm_dir)
    noto_json = noto_dir / "dataset_emoji.json"
    noto = json.loads(noto_json.read_text(encoding="utf-8"))["images"]
    with tempfile.TemporaryDirectory(prefix="emoji_styles_") as tmp:
        annotations, cldr_version, cldr_sha = cldr_annotations(debs_dir, Path(tmp), cldr_dir)
    idx = fluent_index(annotations)
    styles, unmapped, fluent_unmapped = {}, {}, []
    for style in STYLES[1:]:
        styles[style], bad, dups = style_files(style, archives, annotations, idx)
        unmapped[style] = len(bad) + len(dups)
        if style.startswith("fluent"):
            fluent_unmapped += bad
    rendered = {eb.codepoints(eb.base_sequence(seq)) for style in TRAIN_STYLES[1:] for seq in styles[style]}
    subsets = concept_subsets(noto, seed, rendered)
    records, left_out = make_records(noto, styles, annotations, subsets)
    build = {
        "npm_packages": dict(NPM_PACKAGES),
        "sha256": {**{archive_name(p): eb.sha256_file(a) for p, a in sorted(archives.items())},
                   "data/emoji/dataset_emoji.json": eb.sha256_file(noto_json), **cldr_sha},
        "cldr_version": cldr_version, "seed": seed, "image_size": image_size, "svg_render_size": SVG_RENDER_SIZE,
        "styles": list(STYLES), "train_styles": list(TRAIN_STYLES), "gallery_style": GALLERY_STYLE,
        "pinned": list(PINNED), "concept_subsets": subsets,
        "unseen_for_lack_of_renderings": sorted(set(subsets) - rendered - set(PINNED),
                                                key=lambda b: tuple(int(c, 16) for c in b.split("_"))), "counts": counts_table(records),
        "unmapped_files": unmapped, "fluent_unmapped": len(set(fluent_unmapped)),
        "fluent_unmapped_examples": sorted(set(fluent_unmapped))[:8],
        "left_out_held_out_or_not_gallery": left_out,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_images(records, styles, out_dir, image_size, image_sample, progress)
    eb.write_dataset_json(out_dir / "dataset_emoji_styles.json",
                          {"dataset": "emoji_styles", "images": records, "build": build})
    write_licenses(out_dir, archives, noto_dir)
    if image_sample is None:
        image_bytes = sum(p.stat().st_size for p in (out_dir / "images").rglob("*.png"))
        write_docs(out_dir, build, records, image_bytes, image_size)
    return {**build, "images": len(records), "images_written": written}


def load(split: str = "test", style: str | None = None, check_images: bool = True):
    """One split of the committed set (:func:`jsdlib.data.datasets.load_karpathy` with image paths relative to
    ``data/``); ``style`` keeps only that style's images (e.g. ``"noto"``: exactly the Noto split)."""
    from jsdlib.data.datasets import data_root, load_karpathy

    if style is not None and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles are {list(STYLES)}")
    root = data_root()
    data = load_karpathy(root / "emoji_styles" / "dataset_emoji_styles.json", root, split,
                         dataset_name="emoji_styles", check_images=check_images)
    if style is None:
        return data
    return data.subset([i for i, m in enumerate(data.image_meta) if m["style"] == style])


def main(argv=None) -> int:
    """Command line: ``python -m jsdlib.data.emoji_styles --npm DIR --debs DIR --out data/emoji_styles``."""
    from jsdlib.common.cliargs import OneLineParser, check_output, nonneg_int, positive_int

    parser = OneLineParser(prog="python -m jsdlib.data.emoji_styles", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_ROOT / "emoji_styles")
    parser.add_argument("--npm", type=Path, required=True, help="folder with the three npm archives (npm pack)")
    parser.add_argument("--debs", type=Path, default=None, help="folder with the unicode-cldr-core .deb")
    parser.add_argument("--cldr", type=Path, default=None, help="an unpacked CLDR folder instead of --debs")
    parser.add_argument("--seed", type=nonneg_int, default=0)
    parser.add_argument("--image-size", type=positive_int, default=64)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    check_output(args.out, "folder", "--out")
    start = time.perf_counter()
    try:
        summary = build_emoji_styles(args.out, args.npm, args.debs, args.cldr, seed=args.seed,
                                     image_size=args.image_size, progress=not args.quiet)
    except RuntimeError as e:
        print(f"jsdlib: emoji_styles: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("counts", "unmapped_files", "fluent_unmapped", "images")}, indent=1))
    print(f"built {summary['images']} images into {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
