"""Repository-wide pytest hook: the time each notebook takes under nbval, and the course total (CI prints it)."""
from __future__ import annotations

from collections import defaultdict

_NB_SECONDS: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _NB_SECONDS[path] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NB_SECONDS:
        return
    tr = terminalreporter
    tr.section("notebook course time (nbval, this run)")
    for path, s in sorted(_NB_SECONDS.items()):
        tr.write_line(f"{path:45s} {s:7.1f} s")
    total = sum(_NB_SECONDS.values())
    tr.write_line(f"{'total':45s} {total:7.1f} s  ({total / 60:.1f} min; course budget 15 min)")
