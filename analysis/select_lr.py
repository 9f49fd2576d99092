"""Choose a hyperparameter (the learning rate, or another swept key) from a selection sweep's validation
runs and write it into a study's table.

    python analysis/select_lr.py --experiment credit_assignment_pilot --criterion joint_acc \
        --table conf/learner/credit_assignment/lr.csv
    python analysis/select_lr.py --experiment quickstart_lr          # criterion final_acc
    python analysis/select_lr.py --experiment strategies_select --param strategy.strength

Reads the FINISHED training runs of the selection experiment from MLflow trained by the current code
(``--code-version VERSION``: another code's; ``--any-code``: every code's; the runs of other code left
out are counted in a note), of several runs of one config the newest, that have the selected key (``--param``, default ``algorithm.lr``; a strategy
without a ``strength`` is not part of a strength selection); refuses (exit code 2) when any of them
scored test data: every selection run must have ``eval.split=val``. The criterion (``--criterion``,
``CRITERIA``) is the mean over seeds of the logged validation ``final/acc`` of

- ``final_acc``: the runs themselves (sequential training: what a learner learns *and* retains);
- ``joint_acc``: the joint runs only (``task_sequence.joint=true``: what a learner can learn, all tasks
  shuffled together), and the row it writes applies to sequential and joint configs alike.

Runs are grouped by the params that vary across them except the selected key and ``seed`` (and, with
``joint_acc``, ``task_sequence.joint``), always including the task sequence, scenario, network and
algorithm; in each group the value with the highest criterion is chosen (a tie goes to the smaller
value); with ``--within D --prefer larger``
the largest value whose mean lies within D of the highest (a study that needs plasticity, or a strong
penalty, at a negligible cost on the validation sets); a value with fewer FINISHED seeds than the others
of its group (one diverged) is not eligible. Writes the table that
``${forgetlab.selected:...}`` reads (``forgetlab/config/selection.py``): a column per grouping key, then
the chosen value (a column named after the key's last part: ``lr``, ``strength``), ``selected_by`` (the
selection sweep id, which every study run records as ``algorithm.lr_selected_by`` or
``strategy.selected_by``), the score, its seeds, the criterion and the runner-up. Default table:
``conf/learner/<experiment without _lr, _select or _pilot>/<lr or strength ...>.csv``.
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

from analysis.load import (  # noqa: E402
    NoRunsError, add_code_arguments, choose_code, code_version_asked, code_versions_read, mark_superseded, metric_column,
    search_training_runs, tag_column,
)
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
# Never grouping keys: the seed, and which sweep selected a value (the selected key joins them per call).
NOT_KEYS = {SEED, "params.algorithm.lr_selected_by", "params.strategy.selected_by"}
RUN_SPECIFIC_PREFIXES = ("params.tracking.", "params.paths.")


class SelectionError(ValueError):
    """The runs cannot select anything honestly (test data scored, nothing finished)."""


def default_table(experiment: str, param: str = "algorithm.lr") -> Path:
    study = experiment.removesuffix("_lr").removesuffix("_select").removesuffix("_pilot")
    return ROOT / "conf" / "learner" / study / f"{value_column(param)}.csv"


def value_column(param: str) -> str:
    """The table's column of the chosen value: the key's last part (``lr``, ``strength``)."""
    return param.rsplit(".", 1)[-1]


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
        if name in runs and name != column:
            missing &= runs[name].isin(runs.loc[runs[column].notna(), name].unique())
        runs.loc[missing, column] = str(neutral)
    return runs


def grouping_keys(runs: pd.DataFrame, param: str = LR, not_keys: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The core keys, then every other param that varies across ``runs`` (except the selected one, seed
    and ``not_keys``)."""
    varying = [
        c for c in runs.columns
        if c.startswith("params.") and c not in NOT_KEYS | {param} | set(not_keys)
        and not c.startswith(RUN_SPECIFIC_PREFIXES)
        and runs[c].nunique(dropna=False) > 1
    ]
    return CORE_KEYS + sorted(c for c in varying if c not in CORE_KEYS)


def select(runs: pd.DataFrame, param: str = "algorithm.lr", criterion: str = "final_acc", within: float = 0.0,
           prefer: str = "smaller") -> pd.DataFrame:
    """One row per group: its key values (columns named by the config keys), the chosen value (a column
    named by ``value_column``), ``selected_by``, ``score`` (the ``criterion`` over ``n_seeds``), the
    criterion and the runner-up. Only runs that have ``param`` take part (with ``joint_acc``, only the
    joint runs among them). The chosen value: among those whose mean lies within ``within`` of the
    highest, the ``prefer``red one ("smaller" or "larger")."""
    if criterion not in CRITERIA:
        raise SelectionError(f"unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
    key, column = f"params.{param}", value_column(param)
    runs = with_neutral_params(runs)
    if key not in runs or runs[key].isna().all():
        raise SelectionError(f"no selection run has the param {param!r}")
    runs = runs[runs[key].notna()]
    not_keys: set[str] = set()
    if criterion == "joint_acc":
        joint = runs.get(JOINT, pd.Series("False", index=runs.index)).astype(str) == "True"
        if not joint.any():
            raise SelectionError("no FINISHED joint run (task_sequence.joint=true) to select on joint accuracy")
        runs, not_keys = runs[joint], {JOINT}
    keys = grouping_keys(runs, key, not_keys)
    score_column = metric_column(contract.FINAL_ACC)
    frame = runs[keys + [key, SEED, score_column, tag_column(contract.TAG_SWEEP_ID)]].copy()
    frame[keys] = frame[keys].fillna("").astype(str)
    frame["value"] = frame[key].astype(float)
    rule = "best mean" if within == 0 else f"the {prefer} value within {within:g} of the best mean"
    return pd.DataFrame([{**choice(group, values, keys, key, column, score_column, within, prefer, criterion),
                          "rule": rule} for values, group in frame.groupby(keys, sort=True)])


def choice(group: pd.DataFrame, values: tuple, keys: list[str], key: str, column: str, score_column: str,
           within: float = 0.0, prefer: str = "smaller", criterion: str = "final_acc") -> dict:
    """The table row of one group: among the values with every seed, those whose mean score lies within
    ``within`` of the highest, the ``prefer``red one; the runner-up is the best of the others."""
    scores = group.groupby("value")[score_column].agg(["mean", "count"]).reset_index()
    # A value that lost seeds (a run that diverged ends FAILED and is not here) is out: the mean of its
    # survivors would flatter it.
    complete = scores["count"] == scores["count"].max()
    incomplete = " ".join(f"{v:g}" for v in sorted(scores.loc[~complete, "value"]))
    scores = scores[complete]
    # Highest mean first; among equal means the smaller value.
    scores = scores.sort_values(["mean", "value"], ascending=[False, True]).reset_index(drop=True)
    eligible = scores[scores["mean"] >= scores["mean"].iloc[0] - within]
    pick = eligible["value"].idxmax() if prefer == "larger" else eligible["value"].idxmin()
    scores = pd.concat([scores.loc[[pick]], scores.drop(index=pick)]).reset_index(drop=True)
    best = scores.iloc[0]
    chosen = group[group["value"] == best["value"]]
    row = {k.removeprefix("params."): v for k, v in zip(keys, values)}
    row.update({
        column: chosen[key].iloc[0],
        "selected_by": "+".join(sorted(group[tag_column(contract.TAG_SWEEP_ID)].dropna().unique())),
        "score": float(best["mean"]),
        "n_seeds": int(best["count"]),
        "criterion": CRITERIA[criterion],
        f"runner_up_{column}": scores["value"].iloc[1] if len(scores) > 1 else np.nan,
        "runner_up_score": float(scores["mean"].iloc[1]) if len(scores) > 1 else np.nan,
        f"{column}s_tried": " ".join(f"{v:g}" for v in sorted(group["value"].unique())),
        f"{column}s_missing_seeds": incomplete,
    })
    return row


def write_table(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    table.to_csv(partial, index=False)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="the selection sweep's MLflow experiment")
    parser.add_argument("--param", default="algorithm.lr", help="the swept key to select (default algorithm.lr)")
    parser.add_argument("--within", type=float, default=0.0,
                        help="choose among the values whose mean lies within this of the best (default 0: the best)")
    parser.add_argument("--prefer", choices=("smaller", "larger"), default="smaller",
                        help="which of those values to choose (default the smaller)")
    parser.add_argument("--criterion", choices=list(CRITERIA), default="final_acc",
                        help="final_acc: the runs' validation final/acc; joint_acc: that of the joint runs only")
    parser.add_argument("--table", type=Path, help="where to write (default conf/learner/<study>/<lr, strength ...>.csv)")
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///<project root>/mlflow.db")
    add_code_arguments(parser)
    args = parser.parse_args(argv)
    import mlflow

    from analysis.report import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        client = open_store(uri, create=False, key="--tracking-uri")  # never creates an empty store
        runs, code = choose_code(search_training_runs(client, args.experiment), code_version_asked(args))
        runs = selection_runs(runs)
        table = select(runs, args.param, args.criterion, args.within, args.prefer)
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except SelectionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    path = args.table if args.table is not None else default_table(args.experiment, args.param)
    path = path if path.is_absolute() else ROOT / path
    write_table(table, path)
    shown = table.drop(columns=["criterion", "rule", f"{value_column(args.param)}s_tried"])
    print(shown.to_string(index=False))
    print(f"\n{len(table)} values of {args.param} from {len(runs)} runs of code version(s) "
          f"{code_versions_read(runs, code.current).replace('`', '')} -> {path}")
    if code.left_out:
        print("Note: " + code.note().replace("`", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
