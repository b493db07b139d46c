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

This module runs the build and its command line; the steps live in ``emoji_sources`` (the .deb files or paths),
``emoji_glyphs`` (drawing and keeping glyphs), ``emoji_records`` (records, split, flags) and ``emoji_card`` (data
card, attribution, licences), on the pieces every builder shares: ``debs``, ``cldr``, ``raster``, ``build_io``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import PIL

from jsdlib.common.cliargs import OneLineParser, check_output, nonneg_int, positive_int
from jsdlib.common.paths import REPO_ROOT
from jsdlib.data.build_io import progress as progress_bar
from jsdlib.data.build_io import remove_stale, sample_evenly, sha256_file, write_dataset_json
from jsdlib.data.cldr import ANNOTATION_FILES, CLDR_REL, load_annotations
from jsdlib.data.emoji_card import write_attribution, write_datacard, write_licenses
from jsdlib.data.emoji_glyphs import FONT_SIZE, GlyphRenderer, select_emoji
from jsdlib.data.emoji_records import duplicate_groups, make_records, shared_keyword_captions, split_counts
from jsdlib.data.emoji_sources import FONT_REL, PACKAGES, Sources, resolve_sources
from jsdlib.data.raster import save_png, to_square


def build_info(sources: Sources, annotations: dict, records: list[dict], dropped: dict, *, seed: int,
               n_test: int, n_val: int, image_size: int, fe0f_forms: int) -> dict:
    """The JSON's ``build`` block: inputs (package versions, sha256), settings and counts."""
    counts = split_counts(records)
    counts.update(annotated=len(annotations), dropped=dropped, rendered_with_fe0f=fe0f_forms,
                  shared_keyword_captions=sum(shared_keyword_captions(records).values()))
    sha = {"font": sha256_file(sources.font_path)}
    sha.update({rel: sha256_file(sources.cldr_dir / rel) for rel in ANNOTATION_FILES})
    return {"debian_packages": {p: sources.versions.get(p, "unknown") for p in PACKAGES}, "sha256": sha,
            "seed": seed, "n_test": n_test, "n_val": n_val, "image_size": image_size, "font_size": FONT_SIZE,
            "renderer": f"Pillow {PIL.__version__} (raqm layout)", "counts": counts}


def write_images(rendered: dict[str, object], records: list[dict], image_dir: Path, image_size: int,
                 sample: int | None = None, progress: bool = True) -> int:
    """Save each record's image as a square PNG; with ``sample``, only that many evenly spaced images.

    Without ``sample`` any other PNG in ``image_dir`` is deleted, so the folder holds exactly the set.
    Returns the number of images written.
    """
    image_dir.mkdir(parents=True, exist_ok=True)
    chosen = sample_evenly(records, sample)
    if sample is None:
        remove_stale(image_dir, {image_dir / r["filename"] for r in records})
    for record in progress_bar(chosen, progress, "write"):
        save_png(to_square(rendered[record["emoji"]], image_size), image_dir / record["filename"])
    return len(chosen)


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
