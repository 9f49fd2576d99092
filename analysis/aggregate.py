"""From loaded runs to conditions, per-run metrics and seed statistics (mean, std, 95 % bootstrap CI).

Every number is recomputed from the run's eval artifacts with ``forgetlab.metrics``; the logged
``final/*`` metrics are only compared against (``check_against_logged``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from analysis.load import RunArtifacts
from forgetlab import metrics as M

SEED = "params.seed"
JOINT = "params.task_sequence.joint"
ALGORITHM = "params.algorithm.name"
# Params that say where a run is stored or shown, or how it is guarded, not what it is.
RUN_SPECIFIC_PREFIXES = ("params.tracking.", "params.paths.", "params.guard.")
BOOTSTRAP_RESAMPLES = 9999
CI_LEVEL = 0.95

# name in runs.csv / summary.csv -> (label, logged final/* metric it must equal or None)
METRICS: dict[str, tuple[str, str | None]] = {
    "acc": ("ACC", "final/acc"),
    "bwt": ("BWT", "final/bwt"),
    "fwt": ("FWT", "final/fwt"),
    "forgetting_max": ("Forgetting (max, RWalk)", "final/forgetting"),
    "forgetting_after": ("Forgetting (after training, Avalanche)", None),
    "learning_acc": ("Learning accuracy", None),
    "intransigence": ("Intransigence (vs joint)", None),
    "forgetting_events": ("Forgetting events per sample", None),
    "learning_events": ("Learning events per sample", None),
    "unforgettable": ("Unforgettable samples", None),
    "never_learned": ("Never-learned samples", None),
    "drop_per_update": ("Accuracy drop per update", None),
}


# --- conditions ------------------------------------------------------------------------------


def condition_keys(runs: pd.DataFrame) -> list[str]:
    """Param columns whose value varies across ``runs``, except the seed and run-specific params."""
    keys = [
        c for c in runs.columns
        if c.startswith("params.") and c != SEED and not c.startswith(RUN_SPECIFIC_PREFIXES)
    ]
    varying = [c for c in keys if runs[c].nunique(dropna=False) > 1]
    # "algorithm=rtrl scenario=class joint=True" reads best
    return sorted(varying, key=lambda c: (c != ALGORITHM, c == JOINT))


def short_names(keys: list[str]) -> dict[str, str]:
    """``params.task_sequence.scenario`` -> ``scenario``, unless two keys share the last part."""
    # `algorithm.name` -> `algorithm`: a group's choice is named after its group
    last = [k.split(".")[-2] if k.endswith(".name") and k.count(".") >= 2 else k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k.removeprefix("params.")) for k, s in zip(keys, last)}


def label_keys(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys worth showing in a condition label. When the algorithm is swept, a network or algorithm
    key whose value follows from the algorithm alone (``network.name``, an algorithm's own option) is
    left out; keys the user swept together stay, even when confounded."""
    if ALGORITHM not in keys:
        return list(keys)

    def follows_from_algorithm(key: str) -> bool:
        own = key.startswith(("params.network.", "params.algorithm."))
        return own and (runs.groupby(ALGORITHM, dropna=False)[key].nunique(dropna=False) <= 1).all()

    return [k for k in keys if k == ALGORITHM or not follows_from_algorithm(k)]


def add_conditions(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Columns ``condition`` (a label such as ``scenario=class joint=False``) and ``algorithm``."""
    runs = runs.copy()
    keys = label_keys(runs, keys)
    names = short_names(keys)
    if keys:
        runs["condition"] = runs[keys].astype(str).apply(
            lambda row: " ".join(f"{names[k]}={row[k]}" for k in keys), axis=1
        )
    else:
        runs["condition"] = "all runs"
    runs["algorithm"] = runs[ALGORITHM].astype(str) if ALGORITHM in runs else "unknown"
    return runs


def condition_order(runs: pd.DataFrame, keys: list[str]) -> list[str]:
    """Conditions sorted by algorithm, then by their key values (numbers numerically)."""

    def sort_key(value) -> tuple:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return (1, 0.0, str(value))
        return (2, 0.0, "") if np.isnan(number) else (0, number, "")  # missing values last

    firsts = runs.drop_duplicates("condition")
    ranked = sorted(
        firsts.to_dict("records"), key=lambda r: (r["algorithm"], *[sort_key(r[k]) for k in keys])
    )
    return [r["condition"] for r in ranked]


# --- per-run metrics -------------------------------------------------------------------------


def run_metrics(art: RunArtifacts, bin_edges: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Task- and sample-level metrics of one run, and its retention curve on ``bin_edges``."""
    R_with_init = art.R_with_init
    r_init, R = R_with_init[0], R_with_init[1:]
    out = {k: float("nan") for k in METRICS}
    out["acc"] = M.average_accuracy(R)
    if R.shape[0] == R.shape[1]:  # one stage per task (not a joint run)
        out["bwt"] = M.backward_transfer(R)
        out["fwt"] = M.forward_transfer(R, r_init)
        out["forgetting_max"] = M.forgetting_max(R)
        out["forgetting_after"] = M.forgetting_after_training(R)
        out["learning_acc"] = M.learning_accuracy(R)
    p = art.probe
    forgot, learned = M.transition_counts(p["correct"], p["samples_seen"], p["presented_at"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no presented probe sample: NaN
        out["forgetting_events"] = float(np.nanmean(forgot)) if forgot.size else float("nan")
        out["learning_events"] = float(np.nanmean(learned)) if learned.size else float("nan")
    out.update(M.sample_fractions(p["correct"], p["samples_seen"], p["presented_at"]))
    out["drop_per_update"] = M.accuracy_drop_per_update(p["correct"], p["samples_seen"], p["updates"], p["presented_at"])
    retention, _ = M.retention_curve(p["correct"], p["samples_seen"], p["presented_at"], bin_edges)
    return out, retention


def retention_bin_edges(artifacts: dict[str, RunArtifacts], n_bins: int = 30) -> np.ndarray:
    """Equal-width bins of the lag n from 0 to the longest run, shared by every run of the report."""
    longest = max((int(a.probe["samples_seen"][-1]) for a in artifacts.values()), default=1)
    return np.linspace(0, max(longest, n_bins), n_bins + 1)


def is_joint(runs: pd.DataFrame) -> pd.Series:
    if JOINT not in runs:
        return pd.Series(False, index=runs.index)
    return runs[JOINT].astype(str).str.lower() == "true"


def add_intransigence(table: pd.DataFrame, artifacts: dict[str, RunArtifacts], keys: list[str]) -> pd.DataFrame:
    """Intransigence of each sequential run against the joint runs of its condition (same values of
    every other condition key): the reference is their final accuracy per task, averaged over seeds."""
    table = table.copy()
    if JOINT not in keys:
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
        R = artifacts[row["run_id"]].R_with_init[1:]
        if ref is not None and R.shape[0] == R.shape[1] == len(ref):
            table.at[i, "intransigence"] = M.intransigence(R, ref)
    return table


def check_against_logged(table: pd.DataFrame, tol: float = 1e-9) -> pd.Series:
    """For each run: True when every recomputed metric with a logged ``final/*`` twin equals it
    (both missing counts as equal)."""
    ok = pd.Series(True, index=table.index)
    for name, (_, logged) in METRICS.items():
        col = f"metrics.{logged}"
        if logged is None:
            continue
        mine = table[name].astype(float)
        theirs = table[col].astype(float) if col in table else pd.Series(np.nan, index=table.index)
        same = (mine - theirs).abs().le(tol) | (mine.isna() & theirs.isna())
        ok &= same
    return ok


# --- statistics over seeds -------------------------------------------------------------------


def bootstrap_ci(values: np.ndarray, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0):
    """95 % percentile-bootstrap CI of the mean along axis 0 (seeds), NaNs ignored; NaN for < 2
    values. Seeded, so a report is reproducible."""
    values = np.asarray(values, dtype=float)
    shape = values.shape[1:]
    nan = np.full(shape, np.nan)
    if values.shape[0] < 2:
        return nan, nan.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-NaN columns and degenerate (constant) samples
        res = stats.bootstrap(
            (values,), lambda x, axis: np.nanmean(x, axis=axis), n_resamples=n_resamples,
            confidence_level=CI_LEVEL, method="percentile", axis=0, vectorized=True,
            rng=np.random.default_rng(seed),
        )
    low, high = np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
    few = np.sum(np.isfinite(values), axis=0) < 2
    return np.where(few, np.nan, low), np.where(few, np.nan, high)


def summarize(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """One row per condition: number of runs, and mean, std, CI low/high of every metric."""
    rows = []
    for condition in order:
        group = table[table["condition"] == condition]
        row = {"condition": condition, "algorithm": group["algorithm"].iloc[0], "runs": len(group)}
        values = group[list(METRICS)].to_numpy(dtype=float)
        low, high = bootstrap_ci(values)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=0)
            std = np.nanstd(values, axis=0, ddof=1) if len(group) > 1 else np.full(len(METRICS), np.nan)
        for k, name in enumerate(METRICS):
            row[f"{name}_mean"], row[f"{name}_std"] = mean[k], std[k]
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = low[k], high[k]
        rows.append(row)
    return pd.DataFrame(rows)


def mean_and_ci(stacked: np.ndarray, n_resamples: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 (seeds) and its bootstrap CI, for curves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stacked, axis=0)
    low, high = bootstrap_ci(stacked, n_resamples=n_resamples)
    return mean, low, high
