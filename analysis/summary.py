"""Print condition x final metrics (mean ± std over seeds) for a sweep, read back from MLflow.

    python analysis/summary.py --experiment quickstart            # the newest sweep
    python analysis/summary.py --experiment quickstart --sweep-id 20261126-051000-ab12cd
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import mlflow
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
METRICS = ["final/acc", "final/bwt", "final/forgetting"]


def load_sweep(experiment: str, sweep_id: str | None) -> pd.DataFrame:
    runs = mlflow.search_runs(
        experiment_names=[experiment], filter_string="tags.`forgetlab.kind` = 'train'", max_results=50000
    )
    if runs.empty:
        raise SystemExit(f"No training runs in experiment {experiment!r} at {mlflow.get_tracking_uri()}.")
    if sweep_id is None:
        sweep_id = runs.sort_values("start_time")["tags.forgetlab.sweep_id"].iloc[-1]
    runs = runs[runs["tags.forgetlab.sweep_id"] == sweep_id]
    if runs.empty:
        raise SystemExit(f"No runs with forgetlab.sweep_id={sweep_id!r} in experiment {experiment!r}.")
    return runs


def condition_keys(runs: pd.DataFrame) -> list[str]:
    """Params that vary across the runs, except the seed: they define the conditions."""
    params = [c for c in runs.columns if c.startswith("params.") and c != "params.seed"]
    return [c for c in params if runs[c].nunique(dropna=False) > 1]


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    keys = condition_keys(runs) or ["params.algorithm.name"]
    cols = [f"metrics.{m}" for m in METRICS if f"metrics.{m}" in runs]
    grouped = runs.groupby(keys, dropna=False)[cols]
    table = grouped.mean().round(3).astype(str) + " ± " + grouped.std(ddof=1).round(3).astype(str)
    table.insert(0, "seeds", grouped.size())
    table.columns = [c.removeprefix("metrics.") for c in table.columns]
    table.index.names = [k.removeprefix("params.") for k in keys]
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="quickstart")
    parser.add_argument("--sweep-id", default=None)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{ROOT}/mlflow.db"))
    args = parser.parse_args(argv)
    mlflow.set_tracking_uri(args.tracking_uri)
    runs = load_sweep(args.experiment, args.sweep_id)
    sweep_id = runs["tags.forgetlab.sweep_id"].iloc[0]
    failed = runs[runs["status"] != "FINISHED"]
    print(f"\nExperiment {args.experiment!r}, sweep {sweep_id}: {len(runs)} runs, {len(failed)} not finished")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary_table(runs[runs["status"] == "FINISHED"]).to_string())
    if not failed.empty:
        print("\nNot finished:", ", ".join(f"{r['tags.mlflow.runName']} ({r['status']})" for _, r in failed.iterrows()))


if __name__ == "__main__":
    sys.exit(main())
