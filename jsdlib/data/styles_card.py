"""The multi-style emoji set's documents: the data card, the attribution note and the licence texts."""
from __future__ import annotations

import sys
from pathlib import Path

import PIL

from jsdlib.common.io import atomic_write
from jsdlib.data.debs import deb_license_text
from jsdlib.data.raster import SVG_RENDER_SIZE, load_cairosvg
from jsdlib.data.styles_sources import NPM_PACKAGES, read_member
from jsdlib.data.styles_split import GALLERY_STYLE, NOTO, PINNED, SUBSETS, UNSEEN_STYLE

# licence file -> (npm package, member) for texts shipped in the archives
ARCHIVE_LICENSES = {
    "CC-BY-SA-4.0-openmoji.txt": ("openmoji", "package/LICENSE.txt"),
    "MIT-fluentui-emoji.txt": ("fluentui-emoji", "package/LICENSE"),
    "MIT-emoji-datasource.txt": ("emoji-datasource-twitter", "package/LICENSE"),
}
CC_BY_SOURCES = (Path("/usr/share/doc/libuv1/copyright"),)  # Debian copyright files with the CC-BY-4.0 text
NOTO_LICENSES = ("Apache-2.0.txt", "OFL-1.1.txt", "Unicode-DFS-2016.txt")

def write_licenses(out_dir: Path, archives: dict[str, Path], noto_dir: Path) -> list[str]:
    """LICENSES/: the Noto set's three texts, the archives' own licence files and CC-BY-4.0 (Twemoji)."""
    lic = Path(out_dir) / "LICENSES"
    lic.mkdir(parents=True, exist_ok=True)
    written = []
    for name in NOTO_LICENSES:
        atomic_write(lic / name, (Path(noto_dir) / "LICENSES" / name).read_bytes())
        written.append(name)
    for name, (package, member) in ARCHIVE_LICENSES.items():
        atomic_write(lic / name, read_member(archives[package], member))
        written.append(name)
    source = next((p for p in CC_BY_SOURCES if p.is_file()), None)
    if source is not None:
        atomic_write(lic / "CC-BY-4.0.txt", deb_license_text(source, "CC-BY-4.0"))
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
a style never trained on. Karpathy's format: `jsdlib.data.karpathy.load_karpathy(json, "data/emoji_styles/images",
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
(`jsdlib.data.raster.to_square`) and saved as an optimised PNG without metadata
(`jsdlib.data.raster.save_png`), as the Noto images are.

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
    versions = {p: v for p, v in NPM_PACKAGES.items()}
    fmt = dict(twemoji_ver=versions["emoji-datasource-twitter"], fluent_ver=versions["fluentui-emoji"],
               openmoji_ver=versions["openmoji"], cldr_ver=build["cldr_version"], size=size, svg=SVG_RENDER_SIZE)
    atomic_write(Path(out_dir) / "ATTRIBUTION.md", ATTRIBUTION.format(**fmt))
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
        pillow=PIL.__version__, cairosvg=load_cairosvg().__version__)
    atomic_write(Path(out_dir) / "DATACARD.md", text)


__all__ = ["NOTO_LICENSES", "write_licenses", "write_docs", "ATTRIBUTION", "DATACARD"]
