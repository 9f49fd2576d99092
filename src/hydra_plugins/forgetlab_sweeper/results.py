"""The sweep's results table, printed at its end and logged on its parent run: one row per condition
(the jobs' overrides that vary across the sweep, except the seed), per final metric the mean over
seeds ± the half-width of its 95 % Student-t interval, and n, the seeds behind it.

The numbers are each job's ``final/*`` metrics, of its run trained now or before (a skipped job's
too): a quick look at a sweep. ``python analysis/report.py`` recomputes every metric from the runs'
artifacts, with the figures.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from forgetlab import contract

SEED_KEY = "seed"
FINAL_ORDER = (contract.FINAL_ACC, contract.FINAL_BWT, contract.FINAL_FORGETTING, contract.FINAL_FWT)
LEVEL = 0.95


def job_condition(overrides: list[str], varying: set[str]) -> dict[str, str]:
    """The job's values of the keys that vary across the sweep (``varying``), the seed left out."""
    condition = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in varying and key != SEED_KEY:
            condition[key] = value
    return condition


def varying_keys(jobs) -> list[str]:
    """The override keys whose value differs across ``jobs`` (the sweeper's Jobs), in override order."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job.overrides:
            key, _, value = override.lstrip("+~").partition("=")
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1]


def mean_and_half_width(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of the 95 % t-interval of the mean (NaN with fewer than two values)."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if not x.size:
        return float("nan"), float("nan")
    if x.size < 2:
        return float(x.mean()), float("nan")
    # The t quantile of scipy.special (which the networks import anyway): scipy.stats' t.ppf computes it
    # with the same function, bit for bit, and importing scipy.stats cost a sweep's parent ~1.5 s.
    quantile = stdtrit(x.size - 1, (1 + LEVEL) / 2)
    return float(x.mean()), float(quantile * x.std(ddof=1) / math.sqrt(x.size))


def cell(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.3f}" + (f" ± {half:.3f}" if math.isfinite(half) else "")


def results_table(jobs, finals: dict[int, dict[str, float]]) -> pd.DataFrame:
    """One row per condition, in sweep order: a column per varying key (its last part, e.g.
    ``scenario``), ``n`` (jobs with final metrics) and one ``mean ± half-width`` column per final
    metric. ``finals``: job number -> its final metrics (jobs without any are left out)."""
    keys = [k for k in varying_keys(jobs) if k != SEED_KEY]
    groups: dict[tuple, list[dict[str, float]]] = {}
    for job in jobs:
        condition = job_condition(job.overrides, set(keys))
        groups.setdefault(tuple(condition.get(k, "") for k in keys), [])
        if finals.get(job.num):
            groups[tuple(condition.get(k, "") for k in keys)].append(finals[job.num])
    names = [m for m in FINAL_ORDER if any(m in f for f in finals.values())]
    short = _short_names(keys)
    rows = []
    for values, results in groups.items():
        row = {short[k]: v for k, v in zip(keys, values)} | {"n": len(results)}
        for name in names:
            row[name.removeprefix("final/")] = cell(*mean_and_half_width([r.get(name, math.nan) for r in results]))
        rows.append(row)
    return pd.DataFrame(rows)


def _short_names(keys: list[str]) -> dict[str, str]:
    """``task_sequence.scenario`` -> ``scenario``, unless two keys share their last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def format_table(table: pd.DataFrame) -> str:
    """The table as aligned text, with the line that says what its cells are."""
    if table.empty:
        return ""
    text = table.to_string(index=False)
    return f"{text}\n(final metrics: mean ± half-width of the 95 % t-interval over n seeds; the report recomputes them)"
