"""Forgetting report of an experiment: tables, figures and the runs they come from.

    python analysis/report.py --experiment quickstart
    python analysis/report.py --experiment quickstart --sweep-id 20261126-051000-ab12cd
    python analysis/report.py --experiment quickstart --filter "params.task_sequence.scenario = 'class'"

Selects the ``forgetlab.kind=train`` runs of the experiment (optionally of one sweep, and matching an
MLflow filter string) trained by the current code (``forgetlab.code_version`` equal to the package's
``contract.package_hash``; ``--code-version VERSION`` another code's, ``--any-code`` every code's: the
runs of other code left out are counted in a note); of several runs with the same ``forgetlab.config_hash`` (a repeated study, a
resumed sweep) the newest FINISHED one is used and the others are listed as superseded. Conditions
are the params that vary across runs (except ``seed``, ``tracking.*``, ``paths.*``); statistics are
over seeds. Writes ``<out>/report.md``, ``summary.csv`` (one row per condition), ``runs.csv`` (one row
per run), ``retention.csv``, ``tables/*.tex`` and ``figures/*.{png,pdf}`` (each figure page and column wide:
``<name>`` and ``<name>-column``), logs them as artifacts of a
run tagged ``forgetlab.kind=report`` in the experiment ``<experiment>-reports`` (so the training
experiment's charts hold only training runs; one run per selection, an earlier one deleted), logs the figures to the parent run of the sweep when the
report covers one whole sweep, and prints the summary table. A selection whose figures would have
more than ``--max-panels`` panels (one per condition group) gets the tables without the figures and a
note on how to narrow it. ``<out>`` defaults to
``reports/<experiment>/``; a report of one sweep or a filter goes to a directory of its own inside it.
Exit code 1 with a message when no run matches, 2 when the store cannot be used (a missing
file included: a report never creates a store). Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import argparse
import hashlib
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
from mlflow.tracking import MlflowClient  # noqa: E402

from analysis import aggregate, figures, style, update_figures, update_resolution  # noqa: E402
from analysis.load import (  # noqa: E402
    METRIC_COLUMN_PREFIX, CodeChoice, NoRunsError, RunArtifacts, add_code_arguments, choose_code, code_version_asked,
    code_versions_read, load_artifacts, mark_superseded, search_training_runs, tag_column,
)
from forgetlab import contract, metrics  # noqa: E402
from forgetlab.metric_registry import BY_NAME, METRICS, SAMPLE, TASK, of_level  # noqa: E402
from forgetlab.tracking.store import StoreError, open_store  # noqa: E402

# Columns of the runs frame (``mlflow.search_runs``) that the report reads
RUN_NAME = tag_column(contract.TAG_RUN_NAME)
SWEEP_ID = tag_column(contract.TAG_SWEEP_ID)
CONFIG_HASH = tag_column(contract.TAG_CONFIG_HASH)
GIT_COMMIT = tag_column(contract.TAG_GIT_COMMIT)
ERROR = tag_column(contract.TAG_ERROR)

REPORTS = ROOT / "reports"
# A figure taller than a page helps no one, and matplotlib's shared axes make a facet grid's drawing time
# grow faster than quadratically in its panels: the credit-assignment study's first figure (4,790 runs,
# 109 panels) spent 4.5 CPU minutes in them, and the report had not finished after 7.
MAX_PANELS = 36
SUMMARY_COLUMNS = ["acc", "bwt", "forgetting_max"]  # printed at the end of `make study`, and in the run table
TASK_LEVEL = [m.name for m in of_level(TASK)]
SAMPLE_LEVEL = [m.name for m in of_level(SAMPLE)]


@dataclass
class Report:
    out: Path
    summary: pd.DataFrame
    runs: pd.DataFrame
    figures: dict[str, Path]
    report_run_id: str | None
    seconds: dict[str, float]  # time spent per phase
    figures_note: str = ""  # why there are no figures, when there are none
    code: CodeChoice | None = None  # which code's runs were read


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{ROOT}/mlflow.db"


def default_out(experiment: str, sweep_id: str | None = None, filter_string: str | None = None) -> Path:
    """``reports/<experiment>/`` for all the experiment's runs. A narrower selection gets a directory
    of its own inside it (``sweep-<id>``, ``filtered-<first 8 hex digits of the filter's SHA-1>``, or
    both joined by ``-``), so it never overwrites the full report and the same filter finds its
    directory again."""
    parts = [f"sweep-{sweep_id}"] if sweep_id else []
    if filter_string:
        parts.append(f"filtered-{hashlib.sha1(filter_string.encode()).hexdigest()[:8]}")
    return REPORTS / experiment / "-".join(parts) if parts else REPORTS / experiment


# --- building --------------------------------------------------------------------------------


@dataclass
class Analysis:
    """The selected runs with their conditions, and the metrics of the analysed ones."""

    runs: pd.DataFrame  # every selected run: the analysed ones first, in condition order
    analysed: pd.DataFrame  # the analysed runs with their metrics, in condition order
    keys: list[str]  # the params that define the conditions
    order: list[str]  # the conditions, in order
    conditions: pd.DataFrame  # aggregate.condition_table
    summary: pd.DataFrame  # one row per condition, with a column per condition key
    retention: dict[str, np.ndarray]  # each analysed run's retention curve
    bin_edges: np.ndarray  # of the retention curves
    experiment: str = ""


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
    max_panels: int = MAX_PANELS,
    code_version: str | None = None,
    any_code: bool = False,
) -> Report:
    """The report of ``experiment``'s selected runs of code ``code_version`` (default: the current
    code's; every code's with ``any_code``); see the module doc."""
    import mlflow

    # The store must exist already: a report never creates an empty one (StoreError instead).
    client = open_store(tracking_uri, create=False, key="--tracking-uri")
    mlflow.set_tracking_uri(tracking_uri)
    out = Path(out or default_out(experiment, sweep_id, filter_string))
    for folder in ("figures", "tables"):
        (out / folder).mkdir(parents=True, exist_ok=True)

    clock = _Clock()
    version = None if any_code else code_version or contract.package_hash()
    runs, code = select_runs(client, experiment, sweep_id, filter_string, version)
    clock.lap("query")
    artifacts = read_artifacts(client, runs, Path(cache_dir or REPORTS / ".cache"), workers)
    clock.lap("artifacts")
    analysis = analyse(runs, artifacts, experiment)
    clock.lap("metrics")
    figure_paths, figures_note = draw_figures(analysis, artifacts, out / "figures", max_panels)
    update_section = update_resolution.report_section(  # "" without update-probe runs
        analysis.analysed, artifacts, analysis.order, out, update_look(analysis))
    clock.lap("figures")
    runs_table = runs_csv(analysis.runs, analysis.analysed, analysis.keys)
    written, tables = write_tables(analysis, runs_table, out)

    run_id = None
    if log_to_mlflow:
        log_figures_to_sweep(client, experiment, analysis.runs, filter_string, out / "figures")
        run_id = create_report_run(client, experiment, sweep_id, filter_string, analysis.runs)
    (out / "report.md").write_text(report_markdown(
        ReportSource(experiment, tracking_uri, sweep_id, filter_string, run_id, code), analysis, figure_paths, tables, out,
        update_section, figures_note,
    ))
    if run_id is not None:
        # file by file: `out` may hold the reports of narrower selections, and files of older reports
        files = [out / "report.md", *written, *tables.values()]
        files += [path for png in figure_paths.values() for path in figure_files(png)]
        files += update_resolution.written_files(out) if update_section else []
        log_report_files(client, run_id, out, files)
    clock.lap("writing")
    return Report(out, analysis.summary, runs_table, figure_paths, run_id, clock.seconds, figures_note, code)


def figure_files(png: Path) -> list[Path]:
    """Every file of the figure whose page-wide PNG is ``png``: both widths, PNG and PDF."""
    return [png.with_name(png.stem + style.SUFFIX[width]).with_suffix(f".{fmt}")
            for width in style.WIDTHS for fmt in style.FORMATS]


def select_runs(client: MlflowClient, experiment: str, sweep_id: str | None, filter_string: str | None,
                code_version: str | None = None) -> tuple[pd.DataFrame, CodeChoice]:
    """The selected training runs of code ``code_version`` (every code's when None), each marked
    ``superseded_by`` (or "") and with its ``problem`` (or ""), and which code was chosen."""
    runs, code = choose_code(search_training_runs(client, experiment, sweep_id, filter_string), code_version)
    runs = mark_superseded(runs)
    runs["problem"] = runs[ERROR].fillna("").astype(str) if ERROR in runs else ""
    return runs, code


def read_artifacts(client: MlflowClient, runs: pd.DataFrame, cache_dir: Path, workers: int) -> dict[str, RunArtifacts]:
    """The eval artifacts of the newest FINISHED run of each config; marks ``runs`` ``analysed`` (those
    whose artifacts could be read) and notes the problem of each that could not. Raises NoRunsError
    when there is none."""
    finished = runs[(runs["superseded_by"] == "") & (runs["status"] == "FINISHED")]
    artifacts, problems = load_artifacts(client, list(finished["run_id"]), cache_dir, workers)
    for run_id, problem in problems.items():
        runs.loc[runs["run_id"] == run_id, "problem"] = problem
    runs["analysed"] = runs["run_id"].isin(artifacts)
    if not runs["analysed"].any():
        listing = "; ".join(f"{r[RUN_NAME]} {r['status']} {r['problem']}".strip() for _, r in runs.iterrows())
        raise NoRunsError(f"None of the {len(runs)} selected runs is FINISHED with readable eval artifacts: {listing}")
    return artifacts


def analyse(runs: pd.DataFrame, artifacts: dict[str, RunArtifacts], experiment: str = "") -> Analysis:
    """Conditions, per-run metrics (checked against the logged ones) and their summary over seeds."""
    # Conditions from the analysed runs only: a run that died before logging its params would
    # otherwise make every param look swept.
    keys = aggregate.condition_keys(runs[runs["analysed"]])
    runs = aggregate.add_conditions(runs, keys)
    analysed = runs[runs["analysed"]].copy()
    bin_edges = aggregate.retention_bin_edges(artifacts)
    per_run, retention = {}, {}
    for run_id in analysed["run_id"]:
        per_run[run_id], retention[run_id] = aggregate.run_metrics(artifacts[run_id], bin_edges)
    analysed = analysed.join(pd.DataFrame.from_dict(per_run, orient="index"), on="run_id")
    analysed = aggregate.add_reference_metrics(analysed, artifacts, keys)
    analysed["matches_logged_final"] = aggregate.check_against_logged(analysed)
    order = aggregate.condition_order(analysed, keys)
    analysed = _sorted_by_condition(analysed, order)
    runs = pd.concat([_sorted_by_condition(runs[runs["analysed"]], order), runs[~runs["analysed"]]])
    conditions = aggregate.condition_table(analysed, keys, order)
    summary = with_condition_columns(aggregate.summarize(analysed, order), conditions)
    return Analysis(runs, analysed, keys, order, conditions, summary, retention, bin_edges, experiment)


def draw_figures(analysis: Analysis, artifacts: dict[str, RunArtifacts], fig_dir: Path,
                 max_panels: int) -> tuple[dict[str, Path], str]:
    """(the figures, ""), or no figures and a note on how to narrow a selection whose largest figure
    would have more than ``max_panels`` panels."""
    layout = figures.build_layout(analysis.conditions, analysis.keys, figure_source(analysis))
    panels = figures.panel_count(layout)
    if panels <= max_panels:
        return make_figures(analysis.analysed, artifacts, analysis.retention, analysis.bin_edges, layout, fig_dir), ""
    varying = ", ".join(f"`{k.removeprefix('params.')}` ({analysis.analysed[k].nunique()})" for k in analysis.keys)
    return {}, (f"Not drawn: this selection's largest figure would have {panels} panel{'s' * (panels != 1)} "
                f"(the limit is {max_panels}: `--max-panels`). Narrow it with `--sweep-id` or `--filter` "
                f"(e.g. `--filter \"params.task_sequence.scenario = 'domain'\"`) on the params that vary: "
                f"{varying}.")


def update_look(analysis: Analysis) -> update_figures.Look:
    """How the update-resolution figures show each condition: its learner's label and colour, with the
    scenario and other swept values that tell conditions of one learner apart."""
    layout = figures.build_layout(analysis.conditions, analysis.keys, figure_source(analysis))
    frame = layout.frame
    joint = np.where(frame["training"] == aggregate.JOINT_TRAINING, "joint", "")
    parts = pd.DataFrame({"hue": frame["hue"], "col": frame["col"], "row": frame["row"], "joint": joint})
    labels = {c: " · ".join(v for v in row if v) for c, row in zip(frame.index, parts.itertuples(index=False))}
    return update_figures.Look(labels, {c: layout.palette[h] for c, h in frame["hue"].items()}, layout.source)


def figure_source(analysis: Analysis) -> style.Source:
    """What the figures' titles say: the experiment, the task sequences and the seeds per condition."""
    analysed = analysis.analysed
    data = sorted(analysed[aggregate.TASK_SEQUENCE].astype(str).unique()) if aggregate.TASK_SEQUENCE in analysed else []
    return style.Source(analysis.experiment, ", ".join(data) or "?",
                        style.seeds_text(analysis.conditions["runs"]))


def write_tables(analysis: Analysis, runs_table: pd.DataFrame, out: Path) -> tuple[list[Path], dict[str, Path]]:
    """(summary.csv, runs.csv and retention.csv; the LaTeX summary tables by name), written under ``out``."""
    written = [out / "summary.csv", out / "runs.csv", out / "retention.csv"]
    analysis.summary.to_csv(written[0], index=False)
    runs_table.to_csv(written[1], index=False)
    retention_table(analysis.analysed, analysis.retention, analysis.bin_edges, analysis.order).to_csv(written[2], index=False)
    tables = {}
    for name, columns in (("summary_task_level", TASK_LEVEL), ("summary_sample_level", SAMPLE_LEVEL)):
        tables[name] = out / "tables" / f"{name}.tex"
        label = f"tab:{analysis.experiment or 'report'}-{name.removeprefix('summary_').replace('_', '-')}"
        tables[name].write_text(summary_latex(analysis.summary, condition_columns(analysis.summary), columns, label))
    return written, tables


def create_report_run(client: MlflowClient, experiment: str, sweep_id: str | None, filter_string: str | None,
                      runs: pd.DataFrame) -> str:
    """A new RUNNING report run (``contract.KIND_REPORT``) in the experiment of ``experiment``'s reports."""
    return client.create_run(
        report_experiment_id(client, experiment),
        run_name=f"report {time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            contract.TAG_KIND: contract.KIND_REPORT,
            contract.TAG_REPORT_SWEEP_ID: sweep_id or "",
            contract.TAG_REPORT_FILTER: filter_string or "",
            contract.TAG_REPORT_RUNS: str(int(runs["analysed"].sum())),
        },
    ).info.run_id


def log_report_files(client: MlflowClient, run_id: str, out: Path, files: list[Path]) -> None:
    """``files`` (under ``out``) as the report run's artifacts, in their folders; ends the run FINISHED
    and deletes the earlier report runs of the same selection (``retire_earlier_reports``), or ends it
    FAILED when logging fails (the earlier report stays)."""
    try:
        for path in files:
            parent = path.parent.relative_to(out).as_posix()
            client.log_artifact(run_id, str(path), None if parent == "." else parent)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    retire_earlier_reports(client, run_id)


def retire_earlier_reports(client: MlflowClient, run_id: str) -> list[str]:
    """Delete (MLflow's soft delete: ``mlflow gc`` purges it) every other report run of the experiment
    and selection (sweep id and filter) of report run ``run_id``: one report run per selection, the
    newest. Returns the deleted runs' ids."""
    run = client.get_run(run_id)
    same = {key: run.data.tags.get(key, "") for key in (contract.TAG_REPORT_SWEEP_ID, contract.TAG_REPORT_FILTER)}
    reports = client.search_runs([run.info.experiment_id], contract.tag_equals(contract.TAG_KIND, contract.KIND_REPORT),
                                 max_results=10_000)
    retired = [r.info.run_id for r in reports if r.info.run_id != run_id
               and all(r.data.tags.get(key, "") == value for key, value in same.items())]
    for old in retired:
        client.delete_run(old)
    return retired


def report_experiment_id(client: MlflowClient, experiment: str) -> str:
    """The experiment that holds ``experiment``'s report runs (``contract.report_experiment``)."""
    name = contract.report_experiment(experiment)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    # Beside the training runs' artifacts, as before reports had an experiment of their own.
    location = client.get_experiment_by_name(experiment).artifact_location
    return client.create_experiment(
        name, artifact_location=location, tags={contract.EXPERIMENT_TAG_KIND: contract.EXPERIMENT_KIND_TRAINING}
    )


def log_figures_to_sweep(client, experiment, runs, filter_string, fig_dir: Path) -> None:
    """A report of one whole sweep (its runs only, no filter) puts its figures on the sweep's parent run."""
    sweeps = runs.loc[runs["superseded_by"] == "", SWEEP_ID].dropna().unique()
    if filter_string or len(sweeps) != 1:
        return
    exp_id = client.get_experiment_by_name(experiment).experiment_id
    parent_filter = f"{contract.tag_equals(contract.TAG_KIND, contract.KIND_SWEEP)} and {contract.tag_equals(contract.TAG_SWEEP_ID, sweeps[0])}"
    for parent in client.search_runs([exp_id], filter_string=parent_filter, max_results=1):
        client.log_artifacts(parent.info.run_id, str(fig_dir), contract.ARTIFACT_SWEEP_REPORT)


def _sorted_by_condition(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rank = runs["condition"].map({c: i for i, c in enumerate(order)})
    seed = pd.to_numeric(runs.get(aggregate.SEED), errors="coerce") if aggregate.SEED in runs else 0
    return runs.assign(_rank=rank, _seed=seed).sort_values(["_rank", "_seed"]).drop(columns=["_rank", "_seed"])


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self._last
        self._last = now


def make_figures(analysed, artifacts, retention, bin_edges, layout, fig_dir: Path) -> dict[str, Path]:
    """Every figure of the report, as PNG (the path returned) and PDF."""
    runs = list(zip(analysed["condition"], analysed["run_id"], aggregate.is_joint(analysed)))
    centers = (bin_edges[:-1] + bin_edges[1:]) / 2
    curves, seen, events, retained = [], [], [], []
    for c, r, joint in runs:
        art = artifacts[r]
        curves.append(art.curve[["samples_seen", "task", "accuracy"]].assign(condition=c, run_id=r))
        seen.append(aggregate.seen_task_accuracy(art.curve, joint).assign(condition=c, run_id=r))
        p = art.probe
        flips = metrics.flips_to_wrong(p["correct"], p["samples_seen"], p["presented_at"])
        events.append(pd.DataFrame({"condition": c, "run_id": r, "flips_to_wrong": flips[np.isfinite(flips)]}))
        retained.append(pd.DataFrame({"condition": c, "run_id": r, "lag": centers, "retained": retention[r]}))
    by_condition = analysed.groupby("condition", sort=False)["run_id"].apply(list)
    names = {c: artifacts[ids[0]].task_names for c, ids in by_condition.items()}
    matrices = {c: np.mean([artifacts[r].R_with_init for r in ids], axis=0) for c, ids in by_condition.items()}
    stage_ends = {}
    for c, ids in by_condition.items():
        first = artifacts[ids[0]].curve
        ends = first.loc[first["boundary"] & (first["stage"] >= 0), "samples_seen"].unique()
        stage_ends[c] = sorted(int(x) for x in ends)
    final = analysed[["condition", "run_id", *aggregate.METRIC_NAMES]]
    return {
        "seen_accuracy": figures.seen_task_accuracy(
            pd.concat(seen), final, layout, stage_ends, names, fig_dir / "seen_accuracy"
        ),
        "final_metrics": figures.final_metric_bars(final, layout, fig_dir / "final_metrics"),
        "accuracy_matrices": figures.accuracy_matrices(matrices, layout, names, fig_dir / "accuracy_matrices"),
        "task_curves": figures.task_curves(pd.concat(curves), layout, stage_ends, names, fig_dir / "task_curves"),
        "retention_curves": figures.retention_curves(pd.concat(retained), layout, fig_dir / "retention_curves"),
        "flips_to_wrong": figures.forgetting_event_histograms(pd.concat(events), layout, fig_dir / "flips_to_wrong"),
    }


def runs_csv(runs: pd.DataFrame, analysed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per selected run: identity, condition, status, recomputed and logged metrics."""
    base = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "run_name": runs.get(RUN_NAME),
            "status": runs["status"],
            "analysed": runs["analysed"],
            "problem": runs["problem"],
            "superseded_by": runs["superseded_by"],
            "sweep_id": runs.get(SWEEP_ID),
            "config_hash": runs.get(CONFIG_HASH),
            "git_commit": runs.get(GIT_COMMIT),
            "start_time": runs["start_time"],
            "algorithm": runs["algorithm"],
            "condition": runs["condition"],
            **{k.removeprefix("params."): runs[k] for k in keys},
            "seed": runs.get(aggregate.SEED),
        }
    )
    recomputed = analysed[["run_id", *aggregate.METRIC_NAMES, "matches_logged_final"]]
    metric_columns = sorted(c for c in runs.columns if c.startswith(METRIC_COLUMN_PREFIX))
    logged = runs[["run_id", *metric_columns]]
    logged = logged.rename(columns={c: "logged." + c.removeprefix(METRIC_COLUMN_PREFIX) for c in metric_columns})
    return base.merge(recomputed, on="run_id", how="left").merge(logged, on="run_id", how="left")


def retention_table(analysed, retention, bin_edges, order) -> pd.DataFrame:
    rows = []
    for c in order:
        stacked = np.array([retention[r] for r in analysed.loc[analysed["condition"] == c, "run_id"]])
        mean, low, high = aggregate.mean_and_ci(stacked)
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
    """mean ± std [95 % t-interval], and the number of seeds when the metric is defined for fewer
    than all of the condition's runs."""
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    low, high, n = row[f"{name}_ci_low"], row[f"{name}_ci_high"], row[f"{name}_n"]
    if not np.isfinite(mean):
        return "–"
    text = fmt(mean) + (f" ± {fmt(std)}" if np.isfinite(std) else "")
    text += f" [{fmt(low)}, {fmt(high)}]" if np.isfinite(low) else ""
    return text + (f" (n = {n})" if n != row["runs"] else "")


def latex_cell(row: pd.Series, name: str) -> str:
    """mean [95 % t-interval] in math mode (a real minus sign), the number of seeds as in ``cell``."""
    mean, low, high, n = row[f"{name}_mean"], row[f"{name}_ci_low"], row[f"{name}_ci_high"], row[f"{name}_n"]
    if not np.isfinite(mean):
        return "--"
    text = f"${fmt(mean)}$" + (f" [${fmt(low)}$, ${fmt(high)}$]" if np.isfinite(low) else "")
    return text + (f" ($n = {n}$)" if n != row["runs"] else "")


def markdown_table(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def with_condition_columns(summary: pd.DataFrame, conditions: pd.DataFrame) -> pd.DataFrame:
    """The summary with a column per condition key (its short name, e.g. ``scenario``) after
    ``condition`` and ``algorithm``, so tables can show the varying params one by one."""
    keys = [c for c in conditions.columns if c.startswith("params.")]
    decomposed = conditions[keys].rename(columns=aggregate.short_names(keys))
    decomposed = decomposed.drop(columns=[c for c in decomposed if c in summary])  # `algorithm` is there
    summary = summary.join(decomposed, on="condition")
    front = ["condition", "algorithm", *decomposed.columns]
    return summary[front + [c for c in summary if c not in front]]


def condition_columns(summary: pd.DataFrame) -> list[str]:
    """The columns of ``with_condition_columns`` that tell conditions apart (``condition`` when none)."""
    keys = list(summary.columns[2 : summary.columns.get_loc("runs")])
    if summary["algorithm"].nunique() > 1:
        keys.insert(0, "algorithm")
    return keys or ["condition"]


def summary_frame(summary: pd.DataFrame, columns: list[str], names: list[str], cell_of) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **{c: summary[c].astype(str) for c in columns},
            "n": summary["runs"],
            **{BY_NAME[n].label: [cell_of(r, n) for _, r in summary.iterrows()] for n in names},
        }
    )


def summary_markdown(summary: pd.DataFrame, columns: list[str], names: list[str]) -> str:
    return markdown_table(summary_frame(summary, columns, names, cell))


# The LaTeX tables leave out what another column gives: F_after is −BWT exactly (docs/metrics.md).
LATEX_LEFT_OUT = ("forgetting_after",)


def latex_frame(summary: pd.DataFrame, columns: list[str], names: list[str]) -> pd.DataFrame:
    """The summary as a paper reads it: the learner's label for the algorithm's name, a ``training``
    column (sequential | joint) for ``joint`` True/False, and no column another one implies."""
    frame = summary_frame(summary, columns, [n for n in names if n not in LATEX_LEFT_OUT], latex_cell)
    if "algorithm" in frame and "learner" in summary:
        frame["algorithm"] = summary["learner"].astype(str).to_numpy()
        frame = frame.rename(columns={"algorithm": "learner"})
    if "joint" in frame:
        frame["joint"] = frame["joint"].map({"True": "joint", "False": "sequential"}).fillna(frame["joint"])
        frame = frame.rename(columns={"joint": "training"})
    return frame


def summary_latex(summary: pd.DataFrame, columns: list[str], names: list[str], label: str = "tab:summary") -> str:
    """The summary as a LaTeX table for a paper: booktabs rules (\\usepackage{booktabs}), centred,
    scaled to the text width (\\resizebox, graphicx), with a caption and ``label``."""
    frame = latex_frame(summary, columns, names)
    text_columns = [c for c in frame.columns if c != "n" and c not in {BY_NAME[n].label for n in names}]
    metric_columns = len(frame.columns) - len(text_columns) - 1
    styler = frame.style.hide(axis="index").format(escape="latex", subset=text_columns).format_index(
        escape="latex", axis=1)
    latex = styler.to_latex(
        hrules=True, column_format="l" * len(text_columns) + "r" + "l" * metric_columns, position="tbp",
        position_float="centering", label=label,
        caption="Mean over seeds [95 \\% t-interval of the mean]; $n$: seeds per condition (a cell with fewer "
        "seeds, where the metric is undefined for some, gives its own $n$). Definitions: docs/metrics.md.",
    )
    return latex.replace("\\begin{tabular}", "\\resizebox{\\linewidth}{!}{%\n\\begin{tabular}").replace(
        "\\end{tabular}", "\\end{tabular}%\n}")


def definitions_markdown() -> str:
    """The report's section on what its numbers are: every metric's definition (its record), the
    retention curve, and how cells and intervals are computed."""
    rows = [{"metric": m.label, "definition": m.definition} for m in METRICS]
    rows.append({"metric": "Retention curve", "definition": "P(correct n samples after its last presentation | "
                 "correct at the first evaluation point at or after it)"})
    return "\n".join([
        "R[i, j] is the test accuracy on task j after training stage i (T tasks), R_init the accuracy before",
        "training; a joint run has one stage, so only ACC applies to it. Positive forgetting = lost accuracy;",
        "negative BWT = lost accuracy. Full definitions, edge cases and citations: `docs/metrics.md`.",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
        "Each cell: mean ± standard deviation (ddof = 1) over the n seeds [95 % Student-t interval of the mean,",
        "mean ± t_{0.975, n−1} · s/√n]; `n` is the number of seeds (a cell where the metric is undefined for some",
        "seeds gives its own n). With 3 seeds t_{0.975, 2} = 4.30: the interval is wide, and it may extend",
        "beyond the range of the seeds, as it should; a percentile bootstrap never does and understates the",
        "uncertainty at small n. Bands and error bars in the figures are the same intervals (error bars clipped",
        "to the metric's range); dots are seeds.",
    ])


CAPTIONS = {
    "seen_accuracy": "Mean test accuracy on the tasks trained so far, over training samples seen: a line per "
    "learner or swept value (band: 95 % t-interval over seeds, clipped to [0, 1]); triangles at the right: final "
    "ACC of joint training (all tasks shuffled together), the ceiling; dashed: chance; dotted: task boundaries, "
    "each stretch named after its task.",
    "final_metrics": f"{', '.join(BY_NAME[n].label for n in figures.BAR_METRICS)} of sequential training (↑ higher is "
    "better, ↓ lower is better): bars = mean, whiskers = 95 % t-interval (clipped to the metric's range), dots = "
    "seeds; dashed outlines: ACC of joint training; dashed lines: chance. Metrics undefined for joint training (one "
    "stage) are left out; forgetting (RWalk) mirrors BWT and is in the tables.",
    "accuracy_matrices": "Accuracy matrix R[i, j], test accuracy on task j after training stage i (mean over seeds); "
    "last row: final accuracy of joint training.",
    "task_curves": "Test accuracy on every task over training samples seen (mean over seeds, band: 95 % t-interval "
    "clipped to [0, 1]); dashed: chance; dotted: task boundaries.",
    "retention_curves": "Retention: P(probe sample still correct n samples after its last presentation | correct right "
    "after it), a line per learner or swept value (band: 95 % t-interval over seeds, clipped to [0, 1]); solid: "
    "sequential training, dashed: joint training.",
    "flips_to_wrong": "Flips to wrong per probe sample (correct → wrong between consecutive evaluations; not Toneva "
    f"et al.'s forgetting events, which count at presentations; the last bar {figures.MAX_EVENTS} or more), all seeds "
    "pooled: the fraction of samples per count, a bar per learner.",
}


@dataclass
class ReportSource:
    """Where a report's runs come from and where it is logged."""

    experiment: str
    tracking_uri: str
    sweep_id: str | None
    filter_string: str | None
    report_run_id: str | None
    code: CodeChoice | None = None


def report_markdown(source: ReportSource, analysis: Analysis, figure_paths: dict[str, Path], tables: dict[str, Path],
                    out: Path, update_section: str = "", figures_note: str = "") -> str:
    lines = header_markdown(source, analysis)
    lines += summary_section(analysis.summary, tables, out)
    lines += figures_section(figure_paths, out, figures_note)
    if update_section:
        lines += [update_section, ""]
    lines += ["## Metric definitions", "", definitions_markdown(), ""]
    lines += runs_section(analysis.analysed)
    lines += not_analysed_section(analysis.runs[~analysis.runs["analysed"]])
    lines += configuration_section(analysis.analysed, analysis.keys)
    return "\n".join(lines)


def header_markdown(source: ReportSource, analysis: Analysis) -> list[str]:
    """Title, selection, code, and the runs that were not analysed or disagree with their logged metrics."""
    runs, analysed = analysis.runs, analysis.analysed
    sweeps = sorted(runs.loc[runs["superseded_by"] == "", SWEEP_ID].dropna().unique())
    commits = sorted(runs.get(GIT_COMMIT, pd.Series(dtype=str)).dropna().unique())
    lines = [
        f"# Forgetting report: experiment `{source.experiment}`",
        "",
        f"- generated: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; tracking URI: `{source.tracking_uri}`"
        + (f"; report run `{source.report_run_id}`" if source.report_run_id else ""),
        f"- selection: `{contract.TAG_KIND}={contract.KIND_TRAIN}`"
        + (f", sweep `{source.sweep_id}`" if source.sweep_id else "")
        + (f", filter `{source.filter_string}`" if source.filter_string else "")
        + f"; sweeps: {', '.join(f'`{s}`' for s in sweeps)}",
        f"- runs: {int(runs['analysed'].sum())} analysed of {len(runs)} found; {len(analysis.summary)} conditions over "
        + (", ".join(f"`{k.removeprefix('params.')}`" for k in analysis.keys) or "no varying param")
        + "; statistics over `seed`",
        "- code versions analysed: " + (code_versions_read(analysed, source.code.current) if source.code else "unknown")
        + "; git commits: " + (", ".join(f"`{c[:12]}`" for c in commits) or "unknown"),
        "",
    ]
    if source.code is not None and source.code.left_out:
        lines += [f"**Note: {source.code.note()}**", ""]
    not_analysed = runs[~runs["analysed"]]
    if len(not_analysed):
        lines += [f"**{len(not_analysed)} run(s) not analysed** (listed under *Runs not analysed*).", ""]
    mismatched = analysed[~analysed["matches_logged_final"]]
    if len(mismatched):
        lines += [
            f"**Warning: {len(mismatched)} run(s) whose recomputed metrics differ from their logged `final/*`:** "
            + ", ".join(mismatched[RUN_NAME].astype(str)), "",
        ]
    else:
        logged = [m.label for m in METRICS if m.logged]
        lines += [f"Every recomputed {', '.join(logged[:-1])} and {logged[-1]} equals the run's logged `final/*` metric.", ""]
    return lines


def summary_section(summary: pd.DataFrame, tables: dict[str, Path], out: Path) -> list[str]:
    columns = condition_columns(summary)
    latex = ", ".join(f"[`{p.name}`]({p.relative_to(out).as_posix()})" for p in tables.values())
    return ["## Summary", "",
            f"Mean ± std [95 % t-interval] over the n seeds (definitions below); as LaTeX: {latex}.", "",
            "### Task level", "", summary_markdown(summary, columns, TASK_LEVEL), "",
            "### Sample level (probe)", "", summary_markdown(summary, columns, SAMPLE_LEVEL), ""]


def figures_section(figure_paths: dict[str, Path], out: Path, figures_note: str) -> list[str]:
    lines = ["## Figures", ""] + ([figures_note, ""] if figures_note else [])
    for key, path in figure_paths.items():
        png = path.relative_to(out).as_posix()
        stem = png.removesuffix(".png")
        lines += [f"![{CAPTIONS[key]}]({png})", "",
                  f"*{CAPTIONS[key]}* (PDF: [page width]({stem}.pdf), [column width]({stem}-column.pdf))", ""]
    return lines


def runs_section(analysed: pd.DataFrame) -> list[str]:
    """One row per analysed run with its headline metrics."""
    table = pd.DataFrame(
        {
            "run": analysed[RUN_NAME],
            "run id": analysed["run_id"].str[:12],
            "condition": analysed["condition"],
            "seed": analysed.get(aggregate.SEED),
            **{BY_NAME[n].label: analysed[n].map(fmt) for n in SUMMARY_COLUMNS},
            "= logged": analysed["matches_logged_final"].map({True: "yes", False: "**no**"}),
            "sweep": analysed[SWEEP_ID],
        }
    )
    return ["## Runs", "", markdown_table(table), ""]


def not_analysed_section(not_analysed: pd.DataFrame) -> list[str]:
    if not len(not_analysed):
        return []
    reason = not_analysed.apply(
        lambda r: f"superseded by `{r['superseded_by'][:12]}` (same config)" if r["superseded_by"] else (r["problem"] or "no reason recorded"),
        axis=1,
    )
    table = pd.DataFrame(
        {
            "run": not_analysed[RUN_NAME],
            "run id": not_analysed["run_id"].str[:12],
            "status": not_analysed["status"],
            "condition": not_analysed["condition"],
            "reason": reason,
        }
    )
    return ["## Runs not analysed", "", markdown_table(table), ""]


def configuration_section(analysed: pd.DataFrame, keys: list[str]) -> list[str]:
    """The swept params with their values, and the params common to every analysed run."""
    swept = ", ".join(f"`{k.removeprefix('params.')}` ∈ {{{', '.join(sorted(map(str, analysed[k].unique())))}}}" for k in keys)
    seeds = ", ".join(sorted(map(str, analysed.get(aggregate.SEED, pd.Series(dtype=str)).unique())))
    constant = sorted(
        c for c in analysed.columns
        if c.startswith("params.") and c not in keys and c != aggregate.SEED and not c.startswith(aggregate.RUN_SPECIFIC_PREFIXES)
        and analysed[c].nunique(dropna=False) == 1  # a preset param varies without defining conditions
    )
    common = pd.DataFrame({"param": [c.removeprefix("params.") for c in constant], "value": [analysed[c].iloc[0] for c in constant]})
    return ["## Configuration", "", f"Swept (define the conditions): {swept or 'none'}; seeds: {seeds}.", "",
            "Common to every analysed run:", "", markdown_table(common), ""]


def print_summary(report: Report) -> None:
    s = report.summary
    table = pd.DataFrame(
        {
            **{c: s[c] for c in condition_columns(s)},
            "n": s["runs"],
            **{BY_NAME[n].label: [
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
    if report.code is not None and report.code.left_out:
        print("\nNote: " + report.code.note().replace("`", ""))
    print(f"\nReport: {report.out / 'report.md'}  (figures in {report.out / 'figures'})")
    if report.figures_note:
        print(report.figures_note.replace("`", ""))
    print("Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items()))
    if report.report_run_id:
        print(f"Logged as MLflow run {report.report_run_id} (tag {contract.TAG_KIND}={contract.KIND_REPORT})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", required=True, help="MLflow experiment name")
    parser.add_argument("--sweep-id", default=None, help=f"only the runs of this {contract.TAG_SWEEP_ID}")
    parser.add_argument("--filter", default=None, help="an MLflow search filter string, ANDed with the selection")
    parser.add_argument("--tracking-uri", default=default_tracking_uri(),
                        help="default: $MLFLOW_TRACKING_URI, else sqlite:///<project root>/mlflow.db")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default reports/<experiment>)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="artifact download cache (default reports/.cache)")
    parser.add_argument("--workers", type=int, default=8, help="threads downloading and reading artifacts")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log the report as an MLflow run")
    parser.add_argument("--max-panels", type=int, default=MAX_PANELS,
                        help="draw no figures when they would have more panels than this (default %(default)s)")
    add_code_arguments(parser)
    args = parser.parse_args(argv)
    try:
        report = build_report(
            args.tracking_uri, args.experiment, sweep_id=args.sweep_id, filter_string=args.filter,
            out=args.out, cache_dir=args.cache_dir, workers=args.workers, log_to_mlflow=not args.no_mlflow,
            max_panels=args.max_panels, code_version=code_version_asked(args), any_code=args.any_code,
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
