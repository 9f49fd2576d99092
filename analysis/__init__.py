"""Reading forgetlab runs back from MLflow: ``load`` (runs and artifacts), ``aggregate`` (conditions,
metrics, seed statistics), ``style`` (the house style of every figure), ``figures`` and
``update_figures`` (the report's figures), ``update_resolution`` and ``report`` (the CLI:
``python analysis/report.py``), ``select_lr``, ``paired_statistics`` and ``study_report``.

Installed with the package (``pip install -e .``), so ``from analysis import ...`` works from any directory."""

from __future__ import annotations

import argparse
from pathlib import Path

COMMANDS = (
    "python analysis/report.py (the report), analysis/select_lr.py, analysis/study_report.py, analysis/pilot.py, "
    "analysis/run_study.py"
)


def explain_module(doc: str, file: str) -> None:
    """The command line of a module that is a library of the report, not a command: ``--help`` (or no
    argument) prints what it does and which commands use it; anything else is an error (exit 2)."""
    parser = argparse.ArgumentParser(
        prog=f"python analysis/{Path(file).name}", description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"This module is a library of the analysis commands and has no command of its own: {COMMANDS} "
               "(each with --help).",
    )
    parser.parse_args()
    parser.print_help()
