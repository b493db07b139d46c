"""Command-line building blocks shared by ``jsdlib`` and the data builders: one-line errors and checked values.

A problem with what the user gave is a :class:`UserError`, reported as one line with exit code 2 (no traceback).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


class UserError(Exception):
    """A problem with what the user gave (arguments, files): reported as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, ``jsdlib: <command>: <message> (see --help)``, exit code 2."""

    def error(self, message):
        self.exit(2, f"jsdlib: {self.prog.removeprefix('jsdlib ').strip() or 'jsdlib'}: {message} "
                     f"(see `{self.prog} --help`)\n")


def _number(kind, minimum, what):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not v >= minimum or v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return v

    parse.__name__ = what
    return parse


positive_int = _number(int, 1, "a positive integer")
nonneg_int = _number(int, 0, "an integer >= 0")
positive_float = _number(float, float.fromhex("0x1p-1074"), "a positive number")


def check_output(path, kind: str = "file", option: str = "--out") -> None:
    """Fail before any work when an output ``path`` cannot be written: a file where a folder is needed (or the
    reverse), a parent that is a file, or a folder without write permission. ``kind``: ``"file"``, ``"folder"``
    or ``"store"`` (either; a Milvus Lite ``.db``)."""
    if path is None:
        return
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    if kind == "folder" and p.exists() and not p.is_dir():
        raise UserError(f"{option} {path}: is an existing file; give a folder (it is created if missing)")
    parent = p if kind == "folder" and p.is_dir() else p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: folder {parent} is not writable")
