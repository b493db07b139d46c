"""The options several ``jsdlib`` commands share, declared once as argparse parent parsers.

A command names the shared options it takes (``command(sub, "compare", ..., shared=("threads", "quiet"))``) and
gets them with one meaning, one type check and one help text everywhere: ``--threads``, ``--quiet``, ``--seed``,
``--seeds``, ``--json``, ``--run-root``. ``--threads`` is applied once, by :func:`jsdlib.cli.main.main`, around
the command (and restored afterwards), never by a library function.
"""
from __future__ import annotations

import argparse
import os

from jsdlib.common.cliargs import nonneg_int, positive_int
from jsdlib.common.io import write_json


def _parent(*flags, **kwargs) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(*flags, **kwargs)
    return p


SHARED = {
    "threads": _parent("--threads", type=positive_int, default=None,
                       help="torch threads for this command (default: min(2, CPU cores))"),
    "quiet": _parent("--quiet", action="store_true", help="no progress bars or per-step log lines"),
    "seed": _parent("--seed", type=nonneg_int, default=0, help="training seed (default 0)"),
    "seeds": _parent("--seeds", type=nonneg_int, nargs="+", default=[0, 1, 2],
                     help="seeds to run; results are mean ± std over them (default: 0 1 2)"),
    "json": _parent("--json", help="write the results as JSON here"),
    "run_root": _parent("--run-root", help="resumable run folders, one per training (default: none)"),
}


def default_threads() -> int:
    """The CLI's thread count when ``--threads`` is not given: at most 2 (the course's laptop CPU)."""
    return min(2, os.cpu_count() or 1)


def log_of(args):
    """``print`` for the per-step log lines, or nothing under ``--quiet``."""
    return (lambda *a: None) if args.quiet else print


def write_results(result, path) -> None:
    """``--json PATH``: the results written atomically, and said so (nothing without ``--json``)."""
    if path:
        write_json(result, path)
        print(f"wrote {path}")


def command(sub, name: str, help: str, func, shared=(), **kwargs) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``sub`` with the shared options ``shared`` (keys of :data:`SHARED`); the
    command runs ``func(args)``."""
    p = sub.add_parser(name, help=help, parents=[SHARED[s] for s in shared], **kwargs)
    p.set_defaults(func=func, passthrough=False, command_parser=p)
    return p


def group(sub, name: str, help: str):
    """A command group (``jsdlib <name> <command>``); returns the object to add its commands to."""
    return sub.add_parser(name, help=help).add_subparsers(dest="cmd", required=True)
