"""From loaded runs to conditions, per-run metrics and seed statistics (mean, std, 95 % t-interval).

Every number is recomputed from the run's eval artifacts, one column per record of
``forgetlab.metric_registry`` (the records with a ``logged`` key are also what a run logs through
``forgetlab.contract.final_metrics``, the same functions); the logged values are only compared against
(``check_against_logged``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from analysis.load import RunArtifacts, metric_column, tag_column
from forgetlab import contract, metrics
from forgetlab.metric_registry import METRICS, SAMPLE, TASK, task_arrays

SEED = "params.seed"
JOINT = "params.task_sequence.joint"
ALGORITHM = "params.algorithm.name"
STRATEGY = "params.strategy.name"  # the continual-learning strategy; runs from before strategies lack it
NO_STRATEGY = "fine_tuning"  # the default: a learner is named by its algorithm alone
LEARNER_LABEL = tag_column(contract.TAG_LEARNER_LABEL)  # how figures and tables name the learner, e.g. "BPTT(4; 1)"
CHANCE = tag_column(contract.TAG_CHANCE_ACCURACY)
SCENARIO = "params.task_sequence.scenario"
TASK_SEQUENCE = "params.task_sequence.name"
# Params that say where a run is stored or shown, or how it is guarded, not what it is.
RUN_SPECIFIC_PREFIXES = ("params.tracking.", "params.paths.", "params.guard.")
# The learner preset only sets params that are recorded themselves (network, algorithm, input form),
# and runs from before it was recorded lack it: it never defines a condition.
PRESET_PARAMS = (f"params.{contract.PARAM_LEARNER}",)
CI_LEVEL = 0.95
# Declared value orders, so that tables and figures come out in the same order in every clone,
# whatever order MLflow returns the runs in. Values not listed follow, numbers numerically, then text
# (algorithms, in name order).
VALUE_ORDER: dict[str, list[str]] = {
    SCENARIO: ["task", "domain", "class"],  # easiest to hardest (van de Ven et al. 2022)
    JOINT: ["False", "True"],
}
SEQUENTIAL_TRAINING, JOINT_TRAINING = "sequential", "joint"
METRIC_NAMES = [m.name for m in METRICS]  # the metric columns of runs.csv; summary.csv has <name>_mean ...


# --- conditions ------------------------------------------------------------------------------


def condition_keys(runs: pd.DataFrame) -> list[str]:
    """Param columns whose value varies across ``runs``, except the seed and run-specific params."""
    keys = [
        c for c in runs.columns
        if c.startswith("params.") and c != SEED and not c.startswith(RUN_SPECIFIC_PREFIXES) and c not in PRESET_PARAMS
    ]
    varying = [c for c in keys if runs[c].nunique(dropna=False) > 1]
    # "algorithm=rtrl scenario=class joint=True" reads best; the name breaks ties, so the order does
    # not follow the column order of the search result (which follows the order runs come back in)
    return sorted(varying, key=lambda c: (c != ALGORITHM, c != STRATEGY, c == JOINT, c))


def short_names(keys: list[str]) -> dict[str, str]:
    """``params.task_sequence.scenario`` -> ``scenario``, unless two keys share the last part."""
    # `algorithm.name` -> `algorithm`: a group's choice is named after its group
    last = [k.split(".")[-2] if k.endswith(".name") and k.count(".") >= 2 else k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k.removeprefix("params.")) for k, s in zip(keys, last)}


def label_keys(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys worth showing in a condition label. When the learner (algorithm or strategy) is swept,
    a network, algorithm or strategy key whose value follows from the learner and the data alone
    (``network.name``, an algorithm's own option, a strategy's selected strength) is left out; keys the
    user swept together stay, even when confounded."""
    if ALGORITHM not in keys and STRATEGY not in keys:
        return list(keys)
    learner = [c for c in (ALGORITHM, STRATEGY, TASK_SEQUENCE, SCENARIO) if c in runs]

    def follows_from_learner(key: str) -> bool:
        own = key.startswith(("params.network.", "params.algorithm.", "params.strategy."))
        return own and (runs.groupby(learner, dropna=False)[key].nunique(dropna=False) <= 1).all()

    return [k for k in keys if k in (ALGORITHM, STRATEGY) or not follows_from_learner(k)]


def learner_names(runs: pd.DataFrame) -> pd.Series:
    """Each run's learner: its algorithm's name, and its strategy's after a "+" (none for fine-tuning,
    and for runs from before strategies existed)."""
    algorithm = runs[ALGORITHM].astype(str) if ALGORITHM in runs else pd.Series("unknown", index=runs.index)
    if STRATEGY not in runs:
        return algorithm
    strategy = runs[STRATEGY].fillna(NO_STRATEGY).astype(str)
    return algorithm.where(strategy == NO_STRATEGY, algorithm + " + " + strategy)


def add_conditions(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Columns ``condition`` (a label such as ``scenario=class joint=False``), ``algorithm`` (the
    algorithm's name, and the strategy's, ``backprop + ewc``) and ``learner`` (the run's learner label,
    strategy included; the ``algorithm`` column for runs recorded before there was one)."""
    runs = runs.copy()
    keys = label_keys(runs, keys)
    names = short_names(keys)
    if keys:
        runs["condition"] = runs[keys].astype(str).apply(
            lambda row: " ".join(f"{names[k]}={row[k]}" for k in keys), axis=1
        )
    else:
        runs["condition"] = "all runs"
    runs["algorithm"] = learner_names(runs)
    label = runs[LEARNER_LABEL] if LEARNER_LABEL in runs else pd.Series(np.nan, index=runs.index)
    runs["learner"] = label.where(label.notna() & (label.astype(str) != ""), runs["algorithm"]).astype(str)
    return runs


def value_rank(key: str, value) -> tuple:
    """Sort key of one param value: the declared order first, then numbers numerically, then text;
    missing values last."""
    declared = VALUE_ORDER.get(key, [])
    if str(value) in declared:
        return (0, declared.index(str(value)), 0.0, "")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (2, 0, 0.0, str(value))
    return (3, 0, 0.0, "") if np.isnan(number) else (1, 0, number, "")


def condition_order(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """Conditions sorted by algorithm, then by their key values (``value_rank``)."""
    firsts = runs.drop_duplicates("condition")
    ranked = sorted(
        firsts.to_dict("records"),
        key=lambda r: (value_rank(ALGORITHM, r["algorithm"]), *[value_rank(k, r[k]) for k in keys], r["condition"]),
    )
    return [r["condition"] for r in ranked]


def condition_table(runs: pd.DataFrame, keys: list[str], order: list[str]) -> pd.DataFrame:
    """One row per condition (index, in ``order``): the value of every label key as text (columns named
    by the keys), ``algorithm``, ``learner``, ``training`` (sequential or joint), ``runs`` and ``chance``
    (the chance accuracy its runs recorded; NaN when they did not)."""
    keys = label_keys(runs, keys)
    firsts = runs.drop_duplicates("condition").set_index("condition").loc[order]
    table = firsts[keys].astype(str) if keys else pd.DataFrame(index=firsts.index)
    table["algorithm"] = firsts["algorithm"].astype(str)
    table["learner"] = firsts["learner"].astype(str) if "learner" in firsts else table["algorithm"]
    table["chance"] = pd.to_numeric(firsts[CHANCE], errors="coerce") if CHANCE in firsts else np.nan
    table["training"] = np.where(is_joint(firsts), JOINT_TRAINING, SEQUENTIAL_TRAINING)
    table["runs"] = runs.groupby("condition").size().reindex(order).to_numpy()
    return table


# --- per-run metrics -------------------------------------------------------------------------


def run_metrics(art: RunArtifacts, bin_edges: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Every metric of one run (NaN where the run does not define it; the ones that need the joint
    runs of its condition come from ``add_reference_metrics``), and its retention curve on ``bin_edges``."""
    task = task_arrays(art.R_with_init, chance=art.chance)
    arrays = {TASK: task, SAMPLE: art.probe}
    out = {m.name: m.value(arrays.get(m.level, art.updates or {})) for m in METRICS}
    p = art.probe
    retention, _ = metrics.retention_curve(p["correct"], p["samples_seen"], p["presented_at"], bin_edges)
    return out, retention


def seen_task_accuracy(curve: pd.DataFrame, joint: bool) -> pd.DataFrame:
    """Mean test accuracy over the tasks trained so far, at every evaluation point after training
    began (columns ``samples_seen``, ``accuracy``): tasks 0..k during stage k of a sequential run (the
    point that ends stage k belongs to it), every task in a joint run. The last value is the run's ACC."""
    trained = curve[curve["stage"] >= 0]
    seen = trained if joint else trained[trained["task"] <= trained["stage"]]
    return seen.groupby("samples_seen", as_index=False)["accuracy"].mean()


def retention_bin_edges(artifacts: dict[str, RunArtifacts], n_bins: int = 30) -> np.ndarray:
    """Equal-width bins of the lag n from 0 to the longest run, shared by every run of the report."""
    longest = max((int(a.probe["samples_seen"][-1]) for a in artifacts.values()), default=1)
    return np.linspace(0, max(longest, n_bins), n_bins + 1)


def is_joint(runs: pd.DataFrame) -> pd.Series:
    if JOINT not in runs:
        return pd.Series(False, index=runs.index)
    return runs[JOINT].astype(str).str.lower() == "true"


def add_reference_metrics(table: pd.DataFrame, artifacts: dict[str, RunArtifacts], keys: list[str]) -> pd.DataFrame:
    """The metrics that take ``joint_accuracy`` (intransigence), of each sequential run against the
    joint runs of its condition (same values of every other condition key): the reference is their
    final accuracy per task, averaged over seeds."""
    table = table.copy()
    referenced = [m for m in METRICS if "joint_accuracy" in m.inputs]
    if JOINT not in keys or not referenced:
        return table
    others = [k for k in keys if k != JOINT]
    joint = table[is_joint(table)]
    reference: dict[tuple, np.ndarray] = {}
    for values, group in joint.groupby(others, dropna=False) if others else [((), joint)]:
        values = values if isinstance(values, tuple) else (values,)
        finals = [artifacts[r].R_with_init[-1] for r in group["run_id"]]
        reference[tuple(map(str, values))] = np.mean(finals, axis=0)
    for i, row in table[~is_joint(table)].iterrows():
        ref = reference.get(tuple(str(row[k]) for k in others))
        R_with_init = artifacts[row["run_id"]].R_with_init
        if ref is not None and R_with_init.shape[1] == len(ref):
            arrays = task_arrays(R_with_init, joint_accuracy=ref, chance=artifacts[row["run_id"]].chance)
            for m in referenced:
                table.at[i, m.name] = m.value(arrays)
    return table


def check_against_logged(table: pd.DataFrame, tol: float = 1e-9) -> pd.Series:
    """For each run: True when every recomputed metric with a logged ``final/*`` twin equals it
    (both missing counts as equal)."""
    ok = pd.Series(True, index=table.index)
    for m in METRICS:
        if m.logged is None:
            continue
        col = metric_column(m.logged)
        mine = table[m.name].astype(float)
        theirs = table[col].astype(float) if col in table else pd.Series(np.nan, index=table.index)
        same = (mine - theirs).abs().le(tol) | (mine.isna() & theirs.isna())
        ok &= same
    return ok


# --- statistics over seeds -------------------------------------------------------------------


def t_interval(values: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Student-t confidence interval of the mean along axis 0 (seeds), NaNs ignored:
    mean ± t_{(1+level)/2, n−1} · s / √n, s the sample standard deviation (ddof = 1), n the number
    of finite values; NaN where n < 2. Unlike a percentile bootstrap it widens as n shrinks, and it
    can extend beyond the range of the seeds (a bootstrap of 3 values never does)."""
    values = np.asarray(values, dtype=float)
    n = np.sum(np.isfinite(values), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns, n < 2
        mean = np.nanmean(values, axis=0)
        half = stats.t.ppf((1 + level) / 2, n - 1) * np.nanstd(values, axis=0, ddof=1) / np.sqrt(n)
    few = n < 2
    return np.where(few, np.nan, mean - half), np.where(few, np.nan, mean + half)


def t_errorbar(values) -> tuple[float, float]:
    """``t_interval`` of one sample, as seaborn's ``errorbar=`` callable expects it."""
    low, high = t_interval(np.asarray(values, dtype=float))
    return float(low), float(high)


def summarize(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """One row per condition: number of runs, and per metric the mean, std, 95 % t-interval (low,
    high) and n, the number of seeds where it is defined."""
    rows = []
    for condition in order:
        group = table[table["condition"] == condition]
        row = {"condition": condition, "algorithm": group["algorithm"].iloc[0], "runs": len(group)}
        if "learner" in group:
            row["learner"] = group["learner"].iloc[0]
        values = group[METRIC_NAMES].to_numpy(dtype=float)
        low, high = t_interval(values)
        n = np.sum(np.isfinite(values), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0, ddof=1) if len(group) > 1 else np.full(len(METRIC_NAMES), np.nan)
        for k, name in enumerate(METRIC_NAMES):
            row[f"{name}_mean"], row[f"{name}_std"] = mean[k], std[k]
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low[k], high[k]
            row[f"{name}_n"] = int(n[k])
        rows.append(row)
    return pd.DataFrame(rows)


def mean_and_ci(stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 (seeds) and its t-interval, for curves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stacked, axis=0)
    low, high = t_interval(stacked)
    return mean, low, high


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
