"""The ``jsdlib`` command line (console script ``jsdlib = jsdlib.cli.main:main``).

One module per command group, each adding its subcommands to the parser of :func:`jsdlib.cli.main.build_parser`:
``data``, ``vlp``, ``evaluate`` (``eval``), ``jsd``, ``cmc``, ``terms``, ``index``, ``reproduce``; the options they
share (``--threads``, ``--quiet``, ``--seed(s)``, ``--json``, ``--run-root``) are declared once in
:mod:`jsdlib.cli.options`. Nothing is re-exported here: ``python -m jsdlib.cli.main`` must find ``jsdlib.cli.main``
not yet imported (runpy warns on stderr otherwise, and the CLI's errors are one line).
"""
__all__: list[str] = []
