"""Choose learning rates from a selection sweep's validation runs and write them into a study's table.

    python analysis/select_lr.py --experiment credit_assignment_pilot --criterion joint_acc \
        --table conf/learner/credit_assignment/lr.csv
    python analysis/select_lr.py --experiment quickstart_lr          # criterion final_acc

Reads the FINISHED training runs of the selection experiment from MLflow (of several runs of one
config, the newest); refuses (exit code 2) when any of them scored test data: every selection run must
have ``eval.split=val``. The criterion (``CRITERIA``) is the mean over seeds of the logged validation
``final/acc`` of

- ``final_acc``: the runs themselves (sequential training: what a learner learns *and* retains);
- ``joint_acc``: the joint runs only (``task_sequence.joint=true``: what a learner can learn, all tasks
  shuffled together), and the row it writes applies to sequential and joint configs alike.

Runs are grouped by the params that vary across them except ``algorithm.lr`` and ``seed`` (and, with
``joint_acc``, ``task_sequence.joint``), always including the task sequence, scenario, network and
algorithm; in each group the rate with the highest criterion is chosen (a tie goes to the smaller
rate); a rate with fewer FINISHED seeds than the others of its group (one diverged) is not eligible.
Writes the table that ``${forgetlab.selected:...}`` reads (``forgetlab/config/selection.py``): a column
per grouping key, then ``lr``, ``selected_by`` (the selection sweep id, which every study run records
as ``algorithm.lr_selected_by``), the score, its seeds, the criterion and the runner-up. Default table:
``conf/learner/<experiment without _lr or _pilot>/lr.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `analysis` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.load import NoRunsError, mark_superseded, metric_column, search_training_runs, tag_column  # noqa: E402
from forgetlab import contract  # noqa: E402
from forgetlab.tracking.store import StoreError, open_store  # noqa: E402

LR = "params.algorithm.lr"
SEED = "params.seed"
SPLIT = "params.eval.split"
VAL_SIZE = "params.task_sequence.val_size"
JOINT = "params.task_sequence.joint"
# criterion -> what the table's ``criterion`` column says it is
CRITERIA = {"final_acc": f"mean validation {contract.FINAL_ACC}",
            "joint_acc": f"mean validation {contract.FINAL_ACC} of joint training"}
# Always keys of a row, so a table never applies to a sequence, scenario or learner it was not selected on.
CORE_KEYS = ["params.task_sequence.name", "params.task_sequence.scenario", "params.network.name",
             "params.algorithm.name"]
NOT_KEYS = {LR, SEED, "params.algorithm.lr_selected_by"}
RUN_SPECIFIC_PREFIXES = ("params.tracking.", "params.paths.")


class SelectionError(ValueError):
    """The runs cannot select anything honestly (test data scored, nothing finished)."""


def default_table(experiment: str) -> Path:
    return ROOT / "conf" / "learner" / experiment.removesuffix("_lr").removesuffix("_pilot") / "lr.csv"


def selection_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs a selection uses: FINISHED, not superseded. Raises SelectionError when any of them
    scored anything but validation sets."""
    runs = mark_superseded(runs)
    used = runs[(runs["status"] == "FINISHED") & (runs["superseded_by"] == "")]
    if used.empty:
        raise SelectionError("no FINISHED selection run")
    on_test = used[used.get(SPLIT, pd.Series("test", index=used.index)).astype(str) != "val"]
    if len(on_test):
        names = ", ".join(on_test[tag_column(contract.TAG_RUN_NAME)].astype(str).head(5))
        raise SelectionError(
            f"{len(on_test)} selection run(s) scored test data (eval.split != 'val'), e.g. {names}: "
            "learning rates are selected on validation sets only (run the selection preset, which sets eval.split=val)"
        )
    return used


def with_neutral_params(runs: pd.DataFrame) -> pd.DataFrame:
    """A run recorded before a config key existed lacks its param but ran at the key's neutral value
    (``contract.NEUTRAL_ADDITIONS``): fill it in, so that such a run groups with (and its table row
    matches) the configs of today, which carry the key. Only runs whose group has the key are filled:
    ``network.loss_last_steps`` belongs to the RNN, never to the MLP (told apart by ``<group>.name``)."""
    runs = runs.copy()
    for key, neutral in contract.NEUTRAL_ADDITIONS.items():
        column = f"params.{key}"
        if column not in runs:
            continue
        missing = runs[column].isna()
        name = f"params.{key.split('.')[0]}.name"
        if name in runs:
            missing &= runs[name].isin(runs.loc[runs[column].notna(), name].unique())
        runs.loc[missing, column] = str(neutral)
    return runs


def grouping_keys(runs: pd.DataFrame, not_keys=NOT_KEYS) -> list[str]:
    """The core keys, then every other param that varies across ``runs`` (except ``not_keys``: lr and seed)."""
    varying = [
        c for c in runs.columns
        if c.startswith("params.") and c not in not_keys and not c.startswith(RUN_SPECIFIC_PREFIXES)
        and runs[c].nunique(dropna=False) > 1
    ]
    return CORE_KEYS + sorted(c for c in varying if c not in CORE_KEYS)


def select(runs: pd.DataFrame, criterion: str = "final_acc") -> pd.DataFrame:
    """One row per group: its key values (columns named by the config keys), the chosen ``lr``,
    ``selected_by``, ``score`` (the ``criterion`` over ``n_seeds``) and the runner-up."""
    if criterion not in CRITERIA:
        raise SelectionError(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
    runs = with_neutral_params(runs)
    not_keys = NOT_KEYS
    if criterion == "joint_acc":
        joint = runs.get(JOINT, pd.Series("False", index=runs.index)).astype(str) == "True"
        if not joint.any():
            raise SelectionError("no FINISHED joint run (task_sequence.joint=true) to select on joint accuracy")
        runs, not_keys = runs[joint], NOT_KEYS | {JOINT}
    keys = grouping_keys(runs, not_keys)
    score_column = metric_column(contract.FINAL_ACC)
    frame = runs[keys + [LR, SEED, score_column, tag_column(contract.TAG_SWEEP_ID)]].copy()
    frame[keys] = frame[keys].fillna("").astype(str)
    frame["lr_value"] = frame[LR].astype(float)
    rows = []
    for values, group in frame.groupby(keys, sort=True):
        scores = group.groupby("lr_value")[score_column].agg(["mean", "count"]).reset_index()
        # A rate that lost seeds (a run that diverged ends FAILED and is not here) is out: the mean of
        # its survivors would flatter it.
        complete = scores["count"] == scores["count"].max()
        incomplete = " ".join(f"{lr:g}" for lr in sorted(scores.loc[~complete, "lr_value"]))
        scores = scores[complete]
        # Highest mean first; among equal means the smaller rate.
        scores = scores.sort_values(["mean", "lr_value"], ascending=[False, True]).reset_index(drop=True)
        best = scores.iloc[0]
        chosen = group[group["lr_value"] == best["lr_value"]]
        row = {k.removeprefix("params."): v for k, v in zip(keys, values)}
        row.update({
            "lr": chosen[LR].iloc[0],
            "selected_by": "+".join(sorted(group[tag_column(contract.TAG_SWEEP_ID)].dropna().unique())),
            "score": float(best["mean"]),
            "n_seeds": int(best["count"]),
            "criterion": CRITERIA[criterion],
            "runner_up_lr": scores["lr_value"].iloc[1] if len(scores) > 1 else np.nan,
            "runner_up_score": float(scores["mean"].iloc[1]) if len(scores) > 1 else np.nan,
            "lrs_tried": " ".join(f"{lr:g}" for lr in sorted(group["lr_value"].unique())),
            "lrs_missing_seeds": incomplete,
        })
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    table.to_csv(partial, index=False)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="the selection sweep's MLflow experiment")
    parser.add_argument("--table", type=Path, help="where to write (default conf/learner/<study>/lr.csv)")
    parser.add_argument("--criterion", choices=list(CRITERIA), default="final_acc",
                        help="final_acc: the runs' validation final/acc; joint_acc: that of the joint runs only")
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///<project root>/mlflow.db")
    args = parser.parse_args(argv)
    import mlflow

    from analysis.report import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = open_store(uri, create=False, key="--tracking-uri")  # never creates an empty store
        runs = selection_runs(search_training_runs(client, args.experiment))
        table = select(runs, args.criterion)
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SelectionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    path = args.table if args.table is not None else default_table(args.experiment)
    path = path if path.is_absolute() else ROOT / path
    write_table(table, path)
    shown = table.drop(columns=["criterion", "lrs_tried"])
    print(shown.to_string(index=False))
    print(f"\n{len(table)} learning rates from {len(runs)} runs -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
