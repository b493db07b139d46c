"""Build the multi-style emoji set (``data/emoji_styles/``): the bundled Noto set plus three more art styles.

Sources (npm archives fetched with ``npm pack``, see ``make emoji-styles``; this module never downloads):

- ``emoji-datasource-twitter`` 16.0.0: Twemoji, ``img/twitter/64/*.png`` (graphics CC-BY 4.0);
- ``fluentui-emoji`` 1.3.0: Microsoft Fluent Emoji, ``icons/flat/*.svg`` and ``icons/modern/*.svg`` (MIT);
- ``openmoji`` 17.0.0: OpenMoji, ``color/svg/*.svg`` (CC BY-SA 4.0; never trained on).

Captions are the CLDR English names and keywords (the Debian ``unicode-cldr-core`` package, read with
:func:`jsdlib.data.cldr.load_annotations`), joined to each image by its code points; Fluent files are named
by CLDR short names ("dog-face.svg", "woman-pouting-light.svg") and are joined through the CLDR names.
The Noto entries are taken unchanged from ``data/emoji/`` (their ids, splits and captions stay exactly as
they are) and their images are not copied: the JSON's image paths are relative to ``data/`` (``filepath``
``emoji/images`` for Noto, ``emoji_styles/images/<style>`` for the others; :func:`load`)::

    python -m jsdlib.data.emoji_styles --npm .cache/npm --debs .cache/debs --out data/emoji_styles

Split design (the concept of an image is its ``base``, :func:`jsdlib.data.cldr.base_sequence`): the Noto
val/test splits are today's. A test or val concept with no Noto training image was "unseen" in the Noto set;
a fixed seeded half of those concepts (test first, then the remaining val ones; never the pinned concepts
dog face, cat face, octopus, birthday cake, red apple) stays out of training in every style (subset
``unseen``), the other half enters training only as renderings in the other training styles (subset
``cross-style``). Every other concept enters training in every training style (Noto test/val images of
those concepts are subset ``seen``). OpenMoji is never trained on: its renderings of the Noto test (val)
sequences form an unseen-style gallery in the test (val) split (``style: "openmoji"``,
``subset: "unseen-style"``, ``concept_subset``: the subset of its concept). The build is deterministic.

This module runs the build, writes the images, loads the committed set (:func:`load`) and has the command line;
the steps live in ``styles_sources`` (archives, file -> sequence), ``styles_split`` (styles, subsets, records) and
``styles_card`` (data card, attribution, licences), on the pieces shared with ``build_emoji``.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from jsdlib.common.cliargs import OneLineParser, check_output, nonneg_int, positive_int
from jsdlib.common.paths import REPO_ROOT
from jsdlib.data.build_io import progress as progress_bar
from jsdlib.data.build_io import remove_stale, sample_evenly, sha256_file, write_dataset_json
from jsdlib.data.cldr import base_sequence, cldr_annotations, codepoints
from jsdlib.data.karpathy import load_emoji, load_karpathy
from jsdlib.data.paths import data_root
from jsdlib.data.raster import SVG_RENDER_SIZE, render_file, save_png
from jsdlib.data.styles_card import write_docs, write_licenses
from jsdlib.data.styles_sources import (NPM_PACKAGES, STYLE_SOURCES, archive_name, fluent_index, require_archives,
                                        style_files)
from jsdlib.data.styles_split import (GALLERY_STYLE, NOTO, PINNED, STYLES, TRAIN_STYLES, concept_subsets,
                                      counts_table, hex_key, make_records)

DATA_ROOT = REPO_ROOT / "data"


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
        chosen += sample_evenly([r for r in records if r["style"] == style], sample)
    if sample is None and (Path(out_dir) / "images").is_dir():
        remove_stale(Path(out_dir) / "images", {output_path(out_dir, r) for r in records if r["style"] != NOTO})
    for r in progress_bar(chosen, progress, "images"):
        save_png(render_file(styles[r["style"]][r["emoji"]], STYLE_SOURCES[r["style"]][2], size),
                 output_path(out_dir, r))
    return len(chosen)


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
    rendered = {codepoints(base_sequence(seq)) for style in TRAIN_STYLES[1:] for seq in styles[style]}
    subsets = concept_subsets(noto, seed, rendered)
    records, left_out = make_records(noto, styles, annotations, subsets)
    build = {
        "npm_packages": dict(NPM_PACKAGES),
        "sha256": {**{archive_name(p): sha256_file(a) for p, a in sorted(archives.items())},
                   "data/emoji/dataset_emoji.json": sha256_file(noto_json), **cldr_sha},
        "cldr_version": cldr_version, "seed": seed, "image_size": image_size, "svg_render_size": SVG_RENDER_SIZE,
        "styles": list(STYLES), "train_styles": list(TRAIN_STYLES), "gallery_style": GALLERY_STYLE,
        "pinned": list(PINNED), "concept_subsets": subsets,
        "unseen_for_lack_of_renderings": sorted(set(subsets) - rendered - set(PINNED), key=hex_key),
        "counts": counts_table(records),
        "unmapped_files": unmapped, "fluent_unmapped": len(set(fluent_unmapped)),
        "fluent_unmapped_examples": sorted(set(fluent_unmapped))[:8],
        "left_out_held_out_or_not_gallery": left_out,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_images(records, styles, out_dir, image_size, image_sample, progress)
    write_dataset_json(out_dir / "dataset_emoji_styles.json",
                       {"dataset": "emoji_styles", "images": records, "build": build})
    write_licenses(out_dir, archives, noto_dir)
    if image_sample is None:
        image_bytes = sum(p.stat().st_size for p in (out_dir / "images").rglob("*.png"))
        write_docs(out_dir, build, records, image_bytes, image_size)
    return {**build, "images": len(records), "images_written": written}


def load(split: str = "test", style: str | None = None, check_images: bool = True):
    """One split of the committed set (:func:`jsdlib.data.karpathy.load_karpathy` with image paths relative to
    ``data/``); ``style`` keeps only that style's images (e.g. ``"noto"``: exactly the Noto split)."""
    if style is not None and style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles are {list(STYLES)}")
    root = data_root()
    data = load_karpathy(root / "emoji_styles" / "dataset_emoji_styles.json", root, split,
                         dataset_name="emoji_styles", check_images=check_images)
    if style is None:
        return data
    return data.subset([i for i, m in enumerate(data.image_meta) if m["style"] == style])


def noto_subsets(split: str) -> list[str]:
    """The subset label (seen / cross-style / unseen) of each image of the bundled Noto ``split``, in
    :func:`jsdlib.data.karpathy.load_emoji`'s order (checked by file name)."""
    noto, styles = load_emoji(split), load(split, style="noto", check_images=False)
    if [Path(p).name for p in noto.image_paths] != [Path(p).name for p in styles.image_paths]:
        raise ValueError(f"the multi-style set's Noto {split} split does not list the bundled {split} split's images")
    return [m["subset"] for m in styles.image_meta]


def main(argv=None) -> int:
    """Command line: ``python -m jsdlib.data.emoji_styles --npm DIR --debs DIR --out data/emoji_styles``."""
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
