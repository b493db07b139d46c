"""``jsdlib data build-emoji|build-wordnet``: rebuild the bundled data sets.

The options of each builder are declared once, by the builder's own parser (``python -m jsdlib.data.build_emoji``
takes the same ones): ``jsdlib`` picks the command with argparse and hands the rest of the line to it.
"""
from __future__ import annotations

from jsdlib.cli.options import command, group
from jsdlib.data.build_emoji import main as build_emoji_main
from jsdlib.data.build_wordnet import main as build_wordnet_main


def cmd_build_emoji(args) -> int:
    return build_emoji_main(args.options)


def cmd_build_wordnet(args) -> int:
    return build_wordnet_main(args.options)


def add(sub) -> None:
    data = group(sub, "data", "bundled data sets")
    for name, helptext, func in (
            ("build-emoji", "build data/emoji from Debian's Noto Color Emoji and CLDR packages (--help: options)",
             cmd_build_emoji),
            ("build-wordnet", "build data/wordnet_zeshel from Debian's wordnet-base package (--help: options)",
             cmd_build_wordnet)):
        command(data, name, helptext, func, add_help=False).set_defaults(passthrough=True)
