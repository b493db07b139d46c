"""Where the emoji set's inputs come from: the Noto font and the CLDR annotations, as Debian packages or paths."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jsdlib.data.cldr import ANNOTATION_FILES, CLDR_PACKAGE, CLDR_REL
from jsdlib.data.debs import deb_version, extract_deb, fetch_debs

FONT_PACKAGE = "fonts-noto-color-emoji"
FONT_REL = Path("usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
PACKAGES = (FONT_PACKAGE, CLDR_PACKAGE)


@dataclass
class Sources:
    """Where the font and the CLDR data are, and what we know about where they came from."""

    font_path: Path
    cldr_dir: Path
    versions: dict = field(default_factory=dict)     # Debian package -> version ("unknown" if not a .deb)
    copyrights: dict = field(default_factory=dict)   # Debian package -> its debian/copyright file, if found


def _fetch_help(reason: str) -> str:
    return (f"cannot get the Debian packages {FONT_PACKAGE} and {CLDR_PACKAGE} ({reason}). Either run, on a "
            f"Debian/Ubuntu machine, `apt-get download {' '.join(PACKAGES)}` and pass the folder with "
            "`--debs DIR` (build_emoji(debs_dir=...)), or install them (`apt-get install "
            f"{' '.join(PACKAGES)}`) and pass `--font /{FONT_REL} --cldr /{CLDR_REL}` "
            "(build_emoji(font_path=..., cldr_dir=...)).")


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
        sources = sources_from_debs(fetch_debs(work_dir, PACKAGES, debs_dir, _fetch_help), work_dir)
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


__all__ = ["FONT_PACKAGE", "FONT_REL", "PACKAGES", "Sources", "sources_from_debs", "sources_from_paths",
           "resolve_sources"]
