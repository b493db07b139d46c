"""``jsdlib`` command line: data building, stand-in training, evaluation (the headless main job).

    jsdlib data build-emoji            build the bundled emoji set from Debian packages
    jsdlib data build-wordnet          build the bundled WordNet sense-linking set (ZeSHEL format) from wordnet-base
    jsdlib vlp train-standin           (re)train the stand-in VLP, resumable
    jsdlib eval dense                  dense text->image / image->text retrieval on a Karpathy-format split
    jsdlib cmc compare --task T        the CMC pipelines (BE, BE-CE, BE-CMC, BE-CMC-CE, CMC final) over seeds
    jsdlib terms --image ID --k 20     the top-k vocabulary terms of an emoji image under the bundled JSD model
    jsdlib index build|search          exact / faiss / Seismic / Milvus search over the emoji images
    jsdlib jsd compare|sweep|export    the JSD table over seeds, the L1 trade-off, the bundled JSD model
    jsdlib reproduce --out DIR         everything above in one resumable run -> DIR/report.md, DIR/results.json

Errors: a user error (a missing or corrupted file, a bad argument) prints one line ``jsdlib: <message>`` and exits
with code 2; any other failure prints one line and exits with code 1. ``JSDLIB_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from jsdlib.cli import cmc, data, evaluate, index, jsd, reproduce, terms, vlp
from jsdlib.cli.options import default_threads
from jsdlib.common.cliargs import OneLineParser, UserError
from jsdlib.common.seeding import num_threads

GROUPS = (data, vlp, evaluate, cmc, terms, index, jsd, reproduce)  # the order of `jsdlib --help`


def build_parser() -> argparse.ArgumentParser:
    """The ``jsdlib`` parser: each command group's module adds its subcommands (see ``jsdlib/cli/*.py``)."""
    p = OneLineParser(prog="jsdlib", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="group", required=True)
    for g in GROUPS:
        g.add(sub)
    return p


def parse(argv) -> argparse.Namespace:
    """Parse ``argv``. A pass-through command (the data builders) gets the rest of the line as ``args.options``, for
    its own parser; any other command rejects what it does not know with its own one-line usage error."""
    args, rest = build_parser().parse_known_args(argv)
    if args.passthrough:
        args.options = rest
    elif rest:
        args.command_parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


USER_ERRORS = (UserError, OSError, ValueError, LookupError, ImportError)  # OSError: missing / unreadable files


def _one_line(e: BaseException) -> str:
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(text).split()) or type(e).__name__


def _run(fn, *args) -> int:
    """Run a command: a user error becomes one line ``jsdlib: <message>`` and exit code 2 (any other failure: one
    line and exit code 1); ``JSDLIB_DEBUG=1`` re-raises for the full traceback."""
    if os.environ.get("JSDLIB_DEBUG", "") not in ("", "0"):
        return fn(*args)
    try:
        return fn(*args)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(f"jsdlib: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jsdlib: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"jsdlib: {_one_line(e)}", file=sys.stderr)
        return 2
    except BaseException as e:  # noqa: BLE001 - also Rust panics (pyo3's PanicException is a BaseException)
        if isinstance(e, GeneratorExit):
            raise
        print(f"jsdlib: internal error ({type(e).__name__}: {_one_line(e)}); rerun with JSDLIB_DEBUG=1 for the "
              "traceback and report it", file=sys.stderr)
        return 1


def main(argv=None) -> int:
    """The ``jsdlib`` program. ``--threads`` (default: at most 2) holds for the command only: the thread count the
    caller had is restored afterwards, so calling ``main`` from Python changes nothing global."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv)
    except SystemExit as e:  # argparse: --help (0) or a one-line usage error (2)
        return e.code if isinstance(e.code, int) else 2
    threads = (args.threads or default_threads()) if hasattr(args, "threads") else None
    with num_threads(threads):
        return _run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
