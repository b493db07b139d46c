"""Experiments over the library: the JSD table over seeds and the L1 sweep, the headless ``reproduce`` job, and the
report and paper tables it writes. Taught in notebook 06 (``06_paper_tables``); the JSD comparison in notebook 02.

``python -m jsdlib.experiments.notebooks`` rebuilds and re-executes the notebooks (not re-exported here).
"""
from jsdlib.experiments.jsd_compare import aggregate, compare, l1_sweep, summary_rows
from jsdlib.experiments.reproduce import CPU_STEPS, MissingDataError, Step, cpu_steps, paper_steps, run
from jsdlib.experiments.report import summary_markdown, write_report

__all__ = ["aggregate", "compare", "l1_sweep", "summary_rows", "CPU_STEPS",
           "MissingDataError", "Step", "cpu_steps", "paper_steps", "run", "summary_markdown", "write_report"]
