"""Forgetting report of an experiment: tables, figures and the runs they come from.

    python analysis/report.py --experiment quickstart
    python analysis/report.py --experiment quickstart --sweep-id 20261126-051000-ab12cd
    python analysis/report.py --experiment quickstart --filter "params.task_sequence.scenario = 'class'"

Selects the ``forgetlab.kind=train`` runs of the experiment (optionally of one sweep, and matching an
MLflow filter string); of several runs with the same ``forgetlab.config_hash`` (a repeated study, a
resumed sweep) the newest FINISHED one is used and the others are listed as superseded. Conditions
are the params that vary across runs (except ``seed``, ``tracking.*``, ``paths.*``); statistics are
over seeds. Writes ``<out>/report.md``, ``summary.csv`` (one row per condition), ``runs.csv`` (one row
per run), ``retention.csv`` and ``figures/*.png``, logs them as artifacts of a run tagged
``forgetlab.kind=report`` in the same experiment, and prints the summary table. Exit code 1 with a
message when no run matches, 2 when the store cannot be used (a missing file included: a report never
creates a store). Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `analysis` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import aggregate as A  # noqa: E402
from analysis import figures as FIG  # noqa: E402
from analysis.load import NoRunsError, load_artifacts, mark_superseded, search_training_runs  # noqa: E402
from forgetlab import metrics as M  # noqa: E402
from forgetlab.tracking.store import StoreError, open_store  # noqa: E402

SUMMARY_COLUMNS = ["acc", "bwt", "forgetting_max"]  # printed at the end of `make study`
TASK_LEVEL = ["acc", "bwt", "fwt", "forgetting_max", "forgetting_after", "learning_acc", "intransigence"]
SAMPLE_LEVEL = ["forgetting_events", "learning_events", "unforgettable", "never_learned", "drop_per_update"]


@dataclass
class Report:
    out: Path
    summary: pd.DataFrame
    runs: pd.DataFrame
    figures: dict[str, Path]
    report_run_id: str | None
    seconds: dict[str, float]  # time spent per phase


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT}/mlflow.db"


# --- building --------------------------------------------------------------------------------


def build_report(
    tracking_uri: str,
    experiment: str,
    *,
    sweep_id: str | None = None,
    filter_string: str | None = None,
    out: Path | None = None,
    cache_dir: Path | None = None,
    workers: int = 8,
    log_to_mlflow: bool = True,
) -> Report:
    import mlflow

    # The store must exist already: a report never creates an empty one (StoreError instead).
    client = open_store(tracking_uri, create=False, key="--tracking-uri")
    mlflow.set_tracking_uri(tracking_uri)
    out = Path(out or ROOT / "reports" / experiment)
    cache_dir = Path(cache_dir or ROOT / "reports" / ".cache")
    (out / "figures").mkdir(parents=True, exist_ok=True)

    clock = _Clock()
    runs = mark_superseded(search_training_runs(client, experiment, sweep_id, filter_string))
    clock.lap("query")
    runs["problem"] = ""
    if "tags.forgetlab.error" in runs:
        runs["problem"] = runs["tags.forgetlab.error"].fillna("").astype(str)
    finished = runs[(runs["superseded_by"] == "") & (runs["status"] == "FINISHED")]
    artifacts, problems = load_artifacts(client, list(finished["run_id"]), cache_dir, workers)
    for run_id, problem in problems.items():
        runs.loc[runs["run_id"] == run_id, "problem"] = problem
    runs["analysed"] = runs["run_id"].isin(artifacts)
    clock.lap("artifacts")
    if not runs["analysed"].any():
        listing = "; ".join(f"{r['tags.mlflow.runName']} {r['status']} {r['problem']}".strip() for _, r in runs.iterrows())
        raise NoRunsError(f"None of the {len(runs)} selected runs is FINISHED with readable eval artifacts: {listing}")
    # Conditions from the analysed runs only: a run that died before logging its params would
    # otherwise make every param look swept.
    keys = A.condition_keys(runs[runs["analysed"]])
    runs = A.add_conditions(runs, keys)

    analysed = runs[runs["analysed"]].copy()
    bin_edges = A.retention_bin_edges(artifacts)
    per_run, retention = {}, {}
    for run_id in analysed["run_id"]:
        per_run[run_id], retention[run_id] = A.run_metrics(artifacts[run_id], bin_edges)
    metric_frame = pd.DataFrame.from_dict(per_run, orient="index")
    analysed = analysed.join(metric_frame, on="run_id")
    analysed = A.add_intransigence(analysed, artifacts, keys)
    analysed["matches_logged_final"] = A.check_against_logged(analysed)
    order = A.condition_order(analysed, keys)
    analysed = _sorted_by_condition(analysed, order)
    runs = pd.concat([_sorted_by_condition(runs[runs["analysed"]], order), runs[~runs["analysed"]]])
    summary = A.summarize(analysed, order)
    clock.lap("metrics")

    figures = make_figures(analysed, artifacts, retention, bin_edges, order, summary, out / "figures")
    clock.lap("figures")
    runs_table = runs_csv(runs, analysed, keys)
    summary.to_csv(out / "summary.csv", index=False)
    runs_table.to_csv(out / "runs.csv", index=False)
    retention_table(analysed, retention, bin_edges, order).to_csv(out / "retention.csv", index=False)

    run_id = None
    report_client = None
    if log_to_mlflow:
        report_client = client
        exp_id = client.get_experiment_by_name(experiment).experiment_id
        run_id = client.create_run(
            exp_id,
            run_name=f"report {time.strftime('%Y%m%d-%H%M%S')}",
            tags={
                "forgetlab.kind": "report",
                "forgetlab.report.sweep_id": sweep_id or "",
                "forgetlab.report.filter": filter_string or "",
                "forgetlab.report.runs": str(int(runs["analysed"].sum())),
            },
        ).info.run_id
    (out / "report.md").write_text(
        report_markdown(experiment, tracking_uri, sweep_id, filter_string, keys, runs, analysed, summary, figures, out, run_id)
    )
    if report_client is not None:
        try:
            report_client.log_artifacts(run_id, str(out))
        except BaseException:
            report_client.set_terminated(run_id, "FAILED")
            raise
        report_client.set_terminated(run_id, "FINISHED")
    clock.lap("writing")
    return Report(out, summary, runs_table, figures, run_id, clock.seconds)


def _sorted_by_condition(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rank = runs["condition"].map({c: i for i, c in enumerate(order)})
    seed = pd.to_numeric(runs.get(A.SEED), errors="coerce") if A.SEED in runs else 0
    return runs.assign(_rank=rank, _seed=seed).sort_values(["_rank", "_seed"]).drop(columns=["_rank", "_seed"])


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self._last
        self._last = now


def make_figures(analysed, artifacts, retention, bin_edges, order, summary, fig_dir: Path) -> dict[str, Path]:
    by_condition = {c: analysed.loc[analysed["condition"] == c, "run_id"].tolist() for c in order}
    algorithm_of = dict(zip(analysed["condition"], analysed["algorithm"]))
    styles = FIG.condition_styles(order, algorithm_of)
    colors = FIG.algorithm_colors(sorted(set(algorithm_of.values())))
    names = {c: artifacts[ids[0]].task_names for c, ids in by_condition.items()}

    matrices = {c: [artifacts[r].R_with_init for r in ids] for c, ids in by_condition.items()}
    curves, boundaries, events = [], {}, []
    for c, ids in by_condition.items():
        for r in ids:
            curve = artifacts[r].curve[["samples_seen", "task", "accuracy"]].assign(condition=c, run_id=r)
            curves.append(curve)
            p = artifacts[r].probe
            forgot = M.forgetting_events(p["correct"], p["samples_seen"], p["presented_at"])
            events.append(pd.DataFrame({"condition": c, "forgetting_events": forgot[np.isfinite(forgot)]}))
        first = artifacts[ids[0]].curve
        ends = first.loc[first["boundary"] & (first["stage"] >= 0), "samples_seen"].unique()
        boundaries[c] = sorted(int(x) for x in ends)[:-1]  # the end of the last stage is the end of the plot
    return {
        "accuracy_matrices": FIG.accuracy_matrices(matrices, names, order, fig_dir / "accuracy_matrices.png"),
        "task_curves": FIG.task_curves(pd.concat(curves), boundaries, names, order, fig_dir / "task_curves.png"),
        "final_metrics": FIG.final_metric_bars(analysed, order, colors, summary, fig_dir / "final_metrics.png"),
        "retention_curves": FIG.retention_curves(
            {c: [retention[r] for r in ids] for c, ids in by_condition.items()}, bin_edges, order, styles,
            fig_dir / "retention_curves.png",
        ),
        "forgetting_events": FIG.forgetting_event_histograms(
            pd.concat(events), order, styles, fig_dir / "forgetting_events.png"
        ),
    }


def runs_csv(runs: pd.DataFrame, analysed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per selected run: identity, condition, status, recomputed and logged metrics."""
    base = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "run_name": runs.get("tags.mlflow.runName"),
            "status": runs["status"],
            "analysed": runs["analysed"],
            "problem": runs["problem"],
            "superseded_by": runs["superseded_by"],
            "sweep_id": runs.get("tags.forgetlab.sweep_id"),
            "config_hash": runs.get("tags.forgetlab.config_hash"),
            "git_commit": runs.get("tags.mlflow.source.git.commit"),
            "start_time": runs["start_time"],
            "algorithm": runs["algorithm"],
            "condition": runs["condition"],
            **{k.removeprefix("params."): runs[k] for k in keys},
            "seed": runs.get(A.SEED),
        }
    )
    recomputed = analysed[["run_id", *A.METRICS, "matches_logged_final"]]
    logged = runs[["run_id", *sorted(c for c in runs.columns if c.startswith("metrics."))]]
    logged = logged.rename(columns=lambda c: c.replace("metrics.", "logged.", 1))
    return base.merge(recomputed, on="run_id", how="left").merge(logged, on="run_id", how="left")


def retention_table(analysed, retention, bin_edges, order) -> pd.DataFrame:
    rows = []
    for c in order:
        stacked = np.array([retention[r] for r in analysed.loc[analysed["condition"] == c, "run_id"]])
        mean, low, high = A.mean_and_ci(stacked)
        for b in range(len(bin_edges) - 1):
            rows.append(
                {"condition": c, "n_from": bin_edges[b], "n_to": bin_edges[b + 1], "retained_mean": mean[b],
                 "retained_ci_low": low[b], "retained_ci_high": high[b], "runs": len(stacked)}
            )
    return pd.DataFrame(rows)


# --- writing ---------------------------------------------------------------------------------


def fmt(x: float, digits: int = 3) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:.{digits - 1}e}" if 0 < abs(x) < 1e-3 else f"{x:.{digits}f}"


def cell(row: pd.Series, name: str) -> str:
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    low, high = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if not np.isfinite(mean):
        return "–"
    text = fmt(mean) + (f" ± {fmt(std)}" if np.isfinite(std) else "")
    return text + (f" [{fmt(low)}, {fmt(high)}]" if np.isfinite(low) else "")


def markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def summary_markdown(summary: pd.DataFrame, names: list[str]) -> str:
    table = pd.DataFrame(
        {
            "condition": summary["condition"],
            "algorithm": summary["algorithm"],
            "runs": summary["runs"],
            **{A.METRICS[n][0]: [cell(r, n) for _, r in summary.iterrows()] for n in names},
        }
    )
    return markdown_table(table)


DEFINITIONS = """\
R[i, j] is the test accuracy on task j after training stage i (T tasks), R_init the accuracy before
training; a joint run has one stage, so only ACC applies to it. Positive forgetting = lost accuracy;
negative BWT = lost accuracy. Full definitions, edge cases and citations: `docs/metrics.md`.

| metric | definition |
| --- | --- |
| ACC | 1/T Σ_j R[T−1, j] (Lopez-Paz & Ranzato 2017) |
| BWT | 1/(T−1) Σ_{j<T−1} (R[T−1, j] − R[j, j]) (Lopez-Paz & Ranzato 2017, paper normalisation) |
| FWT | 1/(T−1) Σ_{j≥1} (R[j−1, j] − R_init[j]) (Lopez-Paz & Ranzato 2017) |
| Forgetting (max, RWalk) | 1/(T−1) Σ_{j<T−1} (max_{l<T−1} R[l, j] − R[T−1, j]) (Chaudhry et al. 2018) |
| Forgetting (after training, Avalanche) | 1/(T−1) Σ_{j<T−1} (R[j, j] − R[T−1, j]) = −BWT exactly |
| Learning accuracy | 1/T Σ_j R[j, j] (Riemer et al. 2019) |
| Intransigence (vs joint) | 1/T Σ_j (A_joint[j] − R[j, j]), A_joint = final accuracy of the joint runs of the same condition (mean over seeds) (Chaudhry et al. 2018) |
| Forgetting / learning events per sample | number of correct→wrong / wrong→correct changes of a probe sample between consecutive evaluation points, from the first point at or after its first presentation (Toneva et al. 2019); mean over presented probe samples |
| Unforgettable / never-learned samples | fraction of presented probe samples correct at some point and never forgotten / never correct (same window) |
| Accuracy drop per update | Σ_e d_e / Σ_e u_e over consecutive evaluation points: d_e = accuracy drop on probe samples presented before the interval and not during it, u_e = updates in the interval |
| Retention curve | P(correct n samples after its last presentation \\| correct at the first evaluation point at or after it) |

Each cell: mean ± standard deviation over seeds [95 % percentile-bootstrap CI of the mean, 9999
resamples, seeded]. With few seeds the bootstrap CI is coarse: it never extends beyond the range of the seeds.
"""

CAPTIONS = {
    "accuracy_matrices": "Accuracy matrix per condition (mean over seeds).",
    "task_curves": "Test accuracy on every task over training samples seen; bands: 95 % CI over seeds; dashed lines: task boundaries.",
    "final_metrics": "ACC, BWT, forgetting (RWalk) and learning accuracy per condition with 95 % CIs; dots are seeds.",
    "retention_curves": "Retention curve: P(probe sample still correct n samples after its last presentation | correct right after it).",
    "forgetting_events": "Forgetting events per probe sample (all seeds pooled).",
}


def report_markdown(experiment, uri, sweep_id, filter_string, keys, runs, analysed, summary, figures, out, run_id) -> str:
    not_analysed = runs[~runs["analysed"]]
    mismatched = analysed[~analysed["matches_logged_final"]]
    sweeps = sorted(runs.loc[runs["superseded_by"] == "", "tags.forgetlab.sweep_id"].dropna().unique())
    commits = sorted(runs.get("tags.mlflow.source.git.commit", pd.Series(dtype=str)).dropna().unique())
    lines = [
        f"# Forgetting report: experiment `{experiment}`",
        "",
        f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; tracking URI: `{uri}`"
        + (f"; report run `{run_id}`" if run_id else ""),
        "- selection: `forgetlab.kind=train`" + (f", sweep `{sweep_id}`" if sweep_id else "")
        + (f", filter `{filter_string}`" if filter_string else "") + f"; sweeps: {', '.join(f'`{s}`' for s in sweeps)}",
        f"- runs: {int(runs['analysed'].sum())} analysed of {len(runs)} found; {len(summary)} conditions over "
        + (", ".join(f"`{k.removeprefix('params.')}`" for k in keys) or "no varying param") + "; statistics over `seed`",
        "- code: " + (", ".join(f"`{c[:12]}`" for c in commits) or "unknown"),
        "",
    ]
    if len(not_analysed):
        lines += [f"**{len(not_analysed)} run(s) not analysed** (listed under *Runs not analysed*).", ""]
    if len(mismatched):
        lines += [
            f"**Warning: {len(mismatched)} run(s) whose recomputed metrics differ from their logged `final/*`:** "
            + ", ".join(mismatched["tags.mlflow.runName"].astype(str)), "",
        ]
    else:
        lines += ["Every recomputed ACC, BWT, FWT and forgetting equals the run's logged `final/*` metric.", ""]
    lines += ["## Summary", "", "### Task level", "", summary_markdown(summary, TASK_LEVEL), "",
              "### Sample level (probe)", "", summary_markdown(summary, SAMPLE_LEVEL), ""]
    lines += ["## Figures", ""]
    for key, path in figures.items():
        lines += [f"![{CAPTIONS[key]}]({path.relative_to(out).as_posix()})", "", f"*{CAPTIONS[key]}*", ""]
    lines += ["## Metric definitions", "", DEFINITIONS, ""]
    lines += ["## Runs", ""]
    table = pd.DataFrame(
        {
            "run": analysed["tags.mlflow.runName"],
            "run id": analysed["run_id"].str[:12],
            "condition": analysed["condition"],
            "seed": analysed.get(A.SEED),
            "ACC": analysed["acc"].map(fmt),
            "BWT": analysed["bwt"].map(fmt),
            "forgetting": analysed["forgetting_max"].map(fmt),
            "= logged": analysed["matches_logged_final"].map({True: "yes", False: "**no**"}),
            "sweep": analysed["tags.forgetlab.sweep_id"],
        }
    )
    lines += [markdown_table(table), ""]
    if len(not_analysed):
        lines += ["## Runs not analysed", ""]
        reason = not_analysed.apply(
            lambda r: f"superseded by `{r['superseded_by'][:12]}` (same config)" if r["superseded_by"] else (r["problem"] or "no reason recorded"),
            axis=1,
        )
        lines += [
            markdown_table(
                pd.DataFrame(
                    {
                        "run": not_analysed["tags.mlflow.runName"],
                        "run id": not_analysed["run_id"].str[:12],
                        "status": not_analysed["status"],
                        "condition": not_analysed["condition"],
                        "reason": reason,
                    }
                )
            ),
            "",
        ]
    lines += ["## Configuration", "", "Swept (define the conditions): "
              + (", ".join(f"`{k.removeprefix('params.')}` ∈ {{{', '.join(sorted(map(str, analysed[k].unique())))}}}" for k in keys) or "none")
              + f"; seeds: {', '.join(sorted(map(str, analysed.get(A.SEED, pd.Series(dtype=str)).unique())))}.", ""]
    constant = sorted(
        c for c in analysed.columns
        if c.startswith("params.") and c not in keys and c != A.SEED and not c.startswith(A.RUN_SPECIFIC_PREFIXES)
    )
    lines += ["Common to every analysed run:", "", markdown_table(pd.DataFrame(
        {"param": [c.removeprefix("params.") for c in constant], "value": [analysed[c].iloc[0] for c in constant]}
    )), ""]
    return "\n".join(lines)


def print_summary(report: Report) -> None:
    s = report.summary
    table = pd.DataFrame(
        {
            "condition": s["condition"],
            "runs": s["runs"],
            **{A.METRICS[n][0]: [
                f"{fmt(r[f'{n}_mean'])} ± {fmt(r[f'{n}_std'])}" if np.isfinite(r[f"{n}_mean"]) else "–"
                for _, r in s.iterrows()
            ] for n in SUMMARY_COLUMNS},
        }
    )
    print()
    print(table.to_string(index=False))
    runs = report.runs
    superseded = runs["superseded_by"] != ""
    skipped = runs[~runs["analysed"] & ~superseded]
    if len(skipped):
        print(f"\nNot analysed ({len(skipped)}):")
        for _, r in skipped.iterrows():
            print(f"  {r['run_name']} {r['status']} {r['problem'] or ''}")
    if superseded.any():
        print(f"\n{int(superseded.sum())} older run(s) superseded by a newer run of the same config (listed in report.md)")
    print(f"\nReport: {report.out / 'report.md'}  (figures in {report.out / 'figures'})")
    print("Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items()))
    if report.report_run_id:
        print(f"Logged as MLflow run {report.report_run_id} (tag forgetlab.kind=report)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--sweep-id", default=None, help="only the runs of this forgetlab.sweep_id")
    parser.add_argument("--filter", default=None, help="an MLflow search filter string, ANDed with the selection")
    parser.add_argument("--tracking-uri", default=default_tracking_uri(),
                        help="default: $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default reports/<experiment>)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="artifact download cache (default reports/.cache)")
    parser.add_argument("--workers", type=int, default=8, help="threads downloading and reading artifacts")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report as an MLflow run")
    args = parser.parse_args(argv)
    try:
        report = build_report(
            args.tracking_uri, args.experiment, sweep_id=args.sweep_id, filter_string=args.filter,
            out=args.out, cache_dir=args.cache_dir, workers=args.workers, log_to_mlflow=not args.no_mlflow,
        )
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    print_summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
