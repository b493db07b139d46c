"""Debian packages as data sources: find, download (``apt-get download``), unpack (``dpkg -x``), read licences.

The emoji builders (font + CLDR annotations) and the WordNet builder take their inputs from Debian packages;
nothing is installed. A builder passes a ``fetch_help(reason)`` that turns a failure into one message saying
what to download or install instead.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path


def deb_version(deb: Path) -> str:
    """The Version field of a .deb file (``dpkg-deb -f X.deb Version``)."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def extract_deb(deb: Path, dest: Path) -> None:
    """Unpack a .deb's files under ``dest`` (``dpkg -x``; nothing is installed)."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg", "-x", str(deb), str(dest)], check=True, capture_output=True, text=True)


def find_debs(debs_dir: Path, packages: Sequence[str]) -> dict[str, Path]:
    """The newest-named .deb of each of ``packages`` in ``debs_dir`` (missing packages are left out).

    apt names them ``<package>_<version>_<arch>.deb`` (``wordnet-base_1%3a3.0-37_all.deb``).
    """
    found = {}
    for package in packages:
        debs = sorted(Path(debs_dir).glob(f"{package}_*.deb"))
        if debs:
            found[package] = debs[-1]
    return found


def download_debs(work_dir: Path, packages: Sequence[str]) -> dict[str, Path]:
    """Fetch ``packages`` with ``apt-get download`` into ``work_dir``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", *packages], cwd=work_dir, check=True, capture_output=True, text=True)
    return find_debs(work_dir, packages)


def fetch_debs(work_dir: Path, packages: Sequence[str], debs_dir: Path | None,
               fetch_help: Callable[[str], str]) -> dict[str, Path]:
    """The .deb of every package: taken from ``debs_dir`` if it has them all, else downloaded with apt-get
    into ``work_dir/debs``.

    Raises RuntimeError(``fetch_help(reason)``), saying what to install or download instead, if neither works.
    """
    if debs_dir is not None:
        found = find_debs(Path(debs_dir), packages)
        if len(found) == len(packages):
            return found
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise RuntimeError(fetch_help("apt-get/dpkg not found: not a Debian-based system"))
    try:
        found = download_debs(Path(work_dir) / "debs", packages)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(fetch_help(f"`apt-get download` failed: {e.stderr.strip()[-500:]}")) from e
    missing = sorted(set(packages) - set(found))
    if missing:
        raise RuntimeError(fetch_help(f"`apt-get download` gave no .deb for {', '.join(missing)}"))
    return found


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


__all__ = ["deb_version", "extract_deb", "find_debs", "download_debs", "fetch_debs", "deb_license_text"]
