"""The report's update-resolution section: forgetting of single samples counted in weight updates
(``eval/update_probe.npz``, runs with ``eval.probe_every`` > 0) and gradient interference (runs with
``eval.interference=true``). Every number comes from ``forgetlab.metrics``; definitions in
docs/metrics.md, "Update resolution".

A run probed every k > 1 updates is read on its rows: a presentation counts from the first row at
or after it, and a lag of K updates is defined only when k divides K.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import style, update_figures
from analysis.load import RunArtifacts
from forgetlab import metrics

KS = (1, 10, 100, 1000)  # lags of the tables, in updates
INTERVALS = (1, 10, 100)  # evaluation intervals of the flips-to-wrong table, in updates
CURVE_KS = np.unique(np.round(np.logspace(0, 4, 33)).astype(int))  # lags of the erasure-vs-k figure


def in_rows(u: dict[str, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(k, correct (R, P), loss (R, P) float64, presentations as rows (P, n)): each presentation at
    update u becomes the first row at or after it, ceil(u / k); one after the last row is dropped, and
    of two presentations that meet in one row only the later counts (it starts that row's anchor)."""
    every = int(u["every"])
    correct, loss = u["correct"].astype(bool), u["loss"].astype(float)
    presented = u["presented_update"].astype(np.int64)
    rows = -(-presented // every)
    rows = np.where((presented >= 0) & (rows < correct.shape[0]), rows, -1)
    if every > 1:
        earlier_twin = np.zeros(rows.shape, dtype=bool)
        earlier_twin[:, :-1] = (rows[:, :-1] == rows[:, 1:]) & (rows[:, :-1] >= 0)
        rows = np.where(earlier_twin, -1, rows)
        rows = np.take_along_axis(rows, np.argsort(rows < 0, axis=1, kind="stable"), axis=1)  # padding last
    return every, correct, loss, rows


def lags_in_rows(ks, every: int) -> tuple[np.ndarray, np.ndarray]:
    """(lags in rows, defined): a lag of K updates is K / k rows where k divides K."""
    ks = np.asarray(ks, dtype=np.int64)
    return ks // every, ks % every == 0


def earlier_task_cosines(u: dict[str, np.ndarray]) -> np.ndarray:
    """cos(g_r, m_t) of each step r for the tasks t trained before the step's task, NaN elsewhere
    (everywhere in a joint run, which has no earlier task): (R-1, T)."""
    step_end = u["updates"][1:]
    task = u["stage_task"][u["update_stage"][step_end - 1]]
    earlier = np.arange(u["task_cosine"].shape[1])[None, :] < task[:, None]
    return np.where(earlier, u["task_cosine"], np.nan)


def _nanmean(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def run_update_metrics(u: dict[str, np.ndarray]) -> dict[str, float]:
    """The section's numbers for one run's update probe: Kaplan-Meier survival, erasure and loss change
    at the lags KS with their pair counts, Toneva et al.'s forgetting events and unforgettable samples
    (at presentations), flips to wrong at the intervals INTERVALS, and with interference the
    first-order agreement, the mean cosines and the final matrix."""
    every, correct, loss, presented = in_rows(u)
    out: dict[str, float] = {"probe_every": every, "probe_samples": correct.shape[1]}
    out["toneva_events"] = metrics.mean_toneva_forgetting_events(correct, presented, every)
    out["toneva_unforgettable"] = metrics.toneva_unforgettable_fraction(correct, presented, every)
    lags, defined = lags_in_rows(KS, every)
    erasure, pairs = metrics.erasure_after_updates(correct, presented, lags)
    change, change_pairs = metrics.loss_change_after_updates(loss, presented, lags)
    survival = metrics.survival_after_updates(metrics.time_to_forget(correct, presented), lags)
    for j, k in enumerate(KS):
        out[f"erasure_{k}"] = erasure[j] if defined[j] else np.nan
        out[f"erasure_{k}_pairs"] = pairs[j] if defined[j] else 0
        out[f"loss_change_{k}"] = change[j] if defined[j] else np.nan
        out[f"loss_change_{k}_pairs"] = change_pairs[j] if defined[j] else 0
        out[f"survival_{k}"] = survival[j] if defined[j] else np.nan
    intervals, defined = lags_in_rows(INTERVALS, every)
    flips, counted = metrics.flips_to_wrong_by_interval(correct, presented, np.maximum(intervals, 1))
    for j, s in enumerate(INTERVALS):
        out[f"flips_{s}"] = flips[j] if defined[j] else np.nan
        out[f"flips_{s}_samples"] = counted[j] if defined[j] else 0
    if bool(u["interference"]):
        agreement = metrics.first_order_agreement(u["predicted"], u["measured"])
        out["fo_correlation"], out["fo_slope"], out["fo_pairs"] = agreement["correlation"], agreement["slope"], agreement["n"]
        out["cos_consecutive"] = _nanmean(u["consecutive_cosine"])
        out["cos_earlier"] = _nanmean(earlier_task_cosines(u))
        final = u["interference_matrix"][-1]
        off = ~np.eye(final.shape[0], dtype=bool)
        out["interference_within"] = _nanmean(np.diag(final))
        out["interference_between"] = _nanmean(final[off])
    return out


def erasure_curve(u: dict[str, np.ndarray], ks=CURVE_KS) -> np.ndarray:
    """erasure(k) at the lags ``ks`` (NaN where not defined)."""
    every, correct, _, presented = in_rows(u)
    lags, defined = lags_in_rows(ks, every)
    erasure, _ = metrics.erasure_after_updates(correct, presented, lags)
    return np.where(defined, erasure, np.nan)


# --- the section -----------------------------------------------------------------------------


def _cell(values: pd.Series, digits: int = 3, counts: pd.Series | None = None) -> str:
    """mean ± std over the runs (std when there are two), with the summed pair count."""
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return "–"
    mean = v.mean()
    text = f"{mean:.{digits}f}" if abs(mean) >= 10 ** -digits or mean == 0 else f"{mean:.2e}"
    if v.size > 1:
        std = v.std(ddof=1)
        text += f" ± {std:.{digits}f}" if std >= 10 ** -digits or std == 0 else f" ± {std:.1e}"
    if counts is not None:
        text += f" ({int(counts.sum()):,})"
    return text


def _table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    return "\n".join([head, rule, *("| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False))])


def _by_condition(table: pd.DataFrame, order: list[str], columns: dict[str, tuple[str, str | None]]) -> str:
    rows = []
    for condition in order:
        group = table[table["condition"] == condition]
        if group.empty:
            continue
        row = {"condition": condition, "runs": len(group)}
        for label, (name, count) in columns.items():
            row[label] = _cell(group[name], counts=group[count] if count else None) if name in group else "–"
        rows.append(row)
    return _table(pd.DataFrame(rows))


CAPTIONS = {
    "erasure_vs_k": "Erasure after k updates, P(wrong k updates after its presentation | correct right after it), "
                    "mean over seeds with its 95 % t-interval (clipped to [0, 1]); log k. A lag that meets the sample's "
                    "next presentation or the end of training is not counted.",
    "first_order": "First-order prediction ⟨∇ℓ_p, Δθ⟩ against the measured loss change of every probe sample at every "
                   "probed step (a random subset of points, all seeds; axes clipped to the 0.5–99.5 % range); "
                   "r and the slope through the origin over all points.",
    "interference_matrices": "Task × task interference matrix at the end of training: mean cosine between the per-sample "
                             "loss gradients of the probe samples of two tasks (mean over seeds).",
    "cosine_traces": "Cosine of each applied update with the previous one (in the learner's colour), and with the mean "
                     "probe gradient of the tasks trained before (dashed; < 0: the update raises their loss), moving "
                     "average, first seed; dotted: task boundaries.",
}


FIGURES = ("erasure_vs_k", "first_order", "interference_matrices", "cosine_traces")
TABLE = "update_resolution.csv"


def figure_path(out: Path, name: str) -> Path:
    return out / "figures" / f"{name}.png"


def written_files(out: Path) -> list[Path]:
    """The files ``report_section`` wrote under ``out`` (none without update-probe runs): the table and
    each figure at both widths, PNG and PDF."""
    candidates = [out / TABLE]
    for name in FIGURES:
        png = figure_path(out, name)
        candidates += [png.with_name(png.stem + style.SUFFIX[w]).with_suffix(f".{f}") for w in style.WIDTHS
                       for f in style.FORMATS]
    return [path for path in candidates if path.exists()]


def report_section(analysed: pd.DataFrame, artifacts: dict[str, RunArtifacts], order: list[str], out: Path,
                   look: update_figures.Look | None = None) -> str:
    """The section's markdown (empty when no analysed run has the update probe); writes
    ``update_resolution.csv`` (one row per run) and the figures under ``out/figures``, each condition
    labelled and coloured as ``look`` says (by default, by its own name)."""
    probed = analysed[[artifacts[r].updates is not None for r in analysed["run_id"]]]
    if probed.empty:
        return ""
    table = run_table(probed, artifacts)
    table.to_csv(out / TABLE, index=False)
    order = [c for c in order if c in set(table["condition"])]
    probes = {c: [artifacts[r].updates for r in table.loc[table["condition"] == c, "run_id"]] for c in order}
    with_interference = {c: [u for u in us if bool(u["interference"])] for c, us in probes.items()}
    with_interference = {c: us for c, us in with_interference.items() if us}
    figures = draw_figures(probes, with_interference, order, out, look or update_figures.Look.plain(order))
    lines = section_tables(table, order, [c for c in order if c in with_interference])
    for key, path in figures.items():
        png = path.relative_to(out).as_posix()
        stem = png.removesuffix(".png")
        lines += [f"![{CAPTIONS[key]}]({png})", "",
                  f"*{CAPTIONS[key]}* (PDF: [page width]({stem}.pdf), [column width]({stem}-column.pdf))", ""]
    return "\n".join(lines)


def run_table(probed: pd.DataFrame, artifacts: dict[str, RunArtifacts]) -> pd.DataFrame:
    """One row per run with the update probe: its condition, algorithm and ``run_update_metrics``."""
    rows = []
    for _, run in probed.iterrows():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append({"run_id": run["run_id"], "condition": run["condition"], "algorithm": run["algorithm"],
                         **run_update_metrics(artifacts[run["run_id"]].updates)})
    return pd.DataFrame(rows)


def draw_figures(probes: dict[str, list], with_interference: dict[str, list], order: list[str], out: Path,
                 look: update_figures.Look) -> dict[str, Path]:
    """Erasure against k for every condition; with interference also the first-order scatter, the final
    interference matrices and the cosine traces (first seed). ``probes``: the update probes by condition."""
    figures = {"erasure_vs_k": update_figures.erasure_vs_k(
        {c: np.array([erasure_curve(u) for u in us]) for c, us in probes.items()}, CURVE_KS, order,
        figure_path(out, "erasure_vs_k"), look)}
    if with_interference:
        ordered = [c for c in order if c in with_interference]
        figures["first_order"] = update_figures.first_order_scatter(
            with_interference, ordered, figure_path(out, "first_order"), look=look)
        figures["interference_matrices"] = update_figures.interference_matrices(
            with_interference, ordered, figure_path(out, "interference_matrices"), look)
        figures["cosine_traces"] = update_figures.cosine_traces(
            {c: (us[0], earlier_task_cosines(us[0])) for c, us in with_interference.items()}, ordered,
            figure_path(out, "cosine_traces"), look)
    return figures


def section_tables(table: pd.DataFrame, order: list[str], interference_order: list[str]) -> list[str]:
    """The section's text and tables, condition by condition; the interference table when
    ``interference_order`` (the conditions with interference) is not empty."""
    lines = [
        "## Update resolution",
        "",
        f"{len(table)} of the analysed runs have the update-resolution probe (`eval.probe_every` > 0; here every "
        f"{', '.join(sorted({str(int(k)) for k in table['probe_every']}))} update(s), "
        f"{', '.join(sorted({str(int(p)) for p in table['probe_samples']}))} probe samples). Each cell: mean ± std over "
        "seeds, (pairs or samples behind it, summed over seeds). Per run: `update_resolution.csv`. "
        "Definitions: `docs/metrics.md`, *Update resolution*.",
        "",
        "### Time to forget (the headline)",
        "",
        "Kaplan–Meier S(k) = P(still correct at every one of the k updates after its presentation | correct right "
        "after it): each learned sample followed from its presentation until it is first wrong or is no longer "
        "observed (its next presentation, the end of training).",
        "",
        _by_condition(table, order, {f"S({k})": (f"survival_{k}", None) for k in KS}),
        "",
        "### Forgetting events at presentations (Toneva et al.)",
        "",
        "Per presented probe sample, the presentations at which it is wrong after one at which it was correct, "
        "correctness taken with the weights before the presenting update; unforgettable: correct at some presentation, "
        "no such event (needs `eval.probe_every=1`).",
        "",
        _by_condition(table, order, {"forgetting events per sample": ("toneva_events", None),
                                     "unforgettable": ("toneva_unforgettable", None)}),
        "",
        "### Erasure after k updates",
        "",
        "P(wrong k updates after its presentation | correct right after it); positive = forgetting. Its anchors "
        "change with k (those observed that long), so it need not grow with k: S(k) above is the summary.",
        "",
        _by_condition(table, order, {f"k = {k}": (f"erasure_{k}", f"erasure_{k}_pairs") for k in KS}),
        "",
        "### Loss change of the just-presented sample after k updates",
        "",
        "Mean of ℓ(u + k) − ℓ(u) over every presentation u; positive = the sample's loss went up.",
        "",
        _by_condition(table, order, {f"k = {k}": (f"loss_change_{k}", f"loss_change_{k}_pairs") for k in KS}),
        "",
        "### Flips to wrong and the evaluation interval",
        "",
        "Flips to wrong (correct → wrong between consecutive evaluations; not Toneva et al.'s forgetting events) per "
        "probe sample, counted on the same runs evaluated every s updates: a flip that is undone within s updates is "
        "not seen, so the count falls with s.",
        "",
        _by_condition(table, order, {f"every {s} update{'s' if s > 1 else ''}": (f"flips_{s}", f"flips_{s}_samples")
                                     for s in INTERVALS}),
        "",
    ]
    return lines + (interference_table(table, interference_order) if interference_order else [])


def interference_table(table: pd.DataFrame, order: list[str]) -> list[str]:
    return [
        "### Gradient interference",
        "",
        "First-order prediction of each probe sample's loss change at each probed step, ⟨∇ℓ_p, Δθ⟩ = −η ⟨∇ℓ_p, g⟩, "
        "against the measured change: Pearson r and the slope through the origin (1 = calibrated, < 1 = the "
        "prediction overshoots). Mean cosine of each update with the previous one and with the mean probe gradient "
        "of each earlier task; interference matrix at the end of training: mean cosine between per-sample gradients "
        "within a task (diagonal) and between tasks (off-diagonal).",
        "",
        _by_condition(table, order, {
            "r (pairs)": ("fo_correlation", "fo_pairs"), "slope": ("fo_slope", None),
            "cos(g_i, g_{i−1})": ("cos_consecutive", None), "cos(g_i, earlier task)": ("cos_earlier", None),
            "I within": ("interference_within", None), "I between": ("interference_between", None),
        }),
        "",
    ]


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
