"""The emoji set's documents: the data card, the attribution note and the licence texts, from the build's numbers."""
from __future__ import annotations

import sys
from pathlib import Path

from jsdlib.common.io import atomic_write
from jsdlib.data.cldr import ANNOTATION_FILES, CLDR_PACKAGE
from jsdlib.data.debs import deb_license_text
from jsdlib.data.emoji_glyphs import MIN_INK_PIXELS
from jsdlib.data.emoji_records import shared_keyword_captions
from jsdlib.data.emoji_sources import FONT_PACKAGE, FONT_REL, Sources

APACHE_LICENSE_PATH = Path("/usr/share/common-licenses/Apache-2.0")  # Debian's base-files
DATACARD_EXAMPLES = ("1f436", "1f680", "1f469_200d_1f373", "1f1eb_1f1f7")  # dog, rocket, cook, flag


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
            atomic_write(lic_dir / name, texts[name])
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
    atomic_write(Path(out_dir) / "ATTRIBUTION.md", text)


DATACARD = """\
# Data card: the bundled emoji image-text set

A small, real image-text retrieval set that ships with the tutorial, so that every notebook runs on a
laptop with no download. It has the format of Karpathy's Flickr30k/MSCOCO split files, so one loader
(`jsdlib.data.karpathy.load_karpathy`) reads all three.

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
    atomic_write(Path(out_dir) / "DATACARD.md", text)


__all__ = ["write_licenses", "write_attribution", "write_datacard", "ATTRIBUTION", "DATACARD"]
