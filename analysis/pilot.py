"""The pilot of a declared study: can every learner learn the study's tasks? Its learnability table and
gate, the rates it selected, the smallest effect of interest by the declared rule, and what each
learner costs, from the pilot's runs (the selection sweep: validation sets only, never test data).

    python experiments/train.py -m experiment=credit_assignment_pilot
    python analysis/select_lr.py --experiment credit_assignment_pilot --criterion joint_acc \\
        --table conf/learner/credit_assignment/lr.csv
    python analysis/pilot.py --experiment credit_assignment_pilot --doc docs/credit_assignment_pilot.md

The study is the one whose declaration names this experiment as its selection (default: the preset
of the experiment's name without ``_pilot``). Per learner and scenario, at the learner's selected rate:
the joint ceiling (mean validation ACC of joint training over the pilot's seeds), the learning accuracy
and ACC of sequential training, chance, the primary outcome, and whether the joint ceiling reaches the
scenario's gate. Writes ``reports/<experiment>/pilot.csv``, ``rates.csv`` (joint and sequential ACC at
every rate), ``pilot.md``, the smallest effect of interest to the study's ``sesoi.file``, and with
``--doc`` the pilot's doc. Exit code 0 when every learner passes the gate of every gated scenario, 3
when some do not (their comparisons get no verdict in the study), 1 without runs, 2 on a bad store. The runs
read are the current code's (``--code-version VERSION``: another code's; ``--any-code``: every code's).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `analysis` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.load import (  # noqa: E402
    NoRunsError, add_code_arguments, code_version_asked, code_versions_read, older_code_line,
)
from analysis.report import REPORTS, default_tracking_uri, fmt, markdown_table  # noqa: E402
from analysis.study_runs import (  # noqa: E402
    PRESETS, ROOT as PROJECT_ROOT, SelectionTable, Study, git_head, latest_runs, learnability, load_runs,
    ordered_learners, read_declaration, sweep_sizes, unfinished_lines, unfinished_of,
)
from forgetlab.metric_registry import BY_NAME  # noqa: E402
from forgetlab.tracking.store import StoreError, open_store  # noqa: E402

GATE_FAILED = 3


def sesoi_by_rule(study: Study, table: pd.DataFrame) -> dict:
    """The smallest effect of interest by the declared rule, from the pilot's sequential runs of the
    primary cell at each learner's selected rate:

        delta = max(0.1 |m_ref|, 0.5 s_pooled)

    m_ref the reference learner's mean primary outcome (how much it forgets: a tenth of all the
    forgetting there is), s_pooled the seed-to-seed sd of the primary outcome pooled over the learners
    (sqrt of the df-weighted mean of their variances: below half of it, an effect is smaller than what
    the seed alone moves one run). Both inputs are returned with it."""
    outcome = study.primary_metric
    cell = table[(table["task_sequence"] == study.primary_sequence) & (table["scenario"] == study.primary_scenario)
                 & ~table["joint"] & table["at_selected"]]
    reference = cell.loc[cell["learner"] == study.reference, outcome].dropna()
    groups = [g[outcome].dropna() for _, g in cell.groupby("learner")]
    df = sum(len(g) - 1 for g in groups if len(g) > 1)
    pooled = math.sqrt(sum((len(g) - 1) * g.var(ddof=1) for g in groups if len(g) > 1) / df) if df else math.nan
    reference_mean = float(reference.mean()) if len(reference) else math.nan
    candidates = [v for v in (0.1 * abs(reference_mean), 0.5 * pooled) if np.isfinite(v)]
    return {"sesoi": round(max(candidates), 4) if candidates else math.nan,
            "reference_mean": reference_mean, "pooled_sd": pooled, "pooled_df": df,
            "rule": "max(0.1 x |reference's mean primary outcome|, 0.5 x pooled seed-to-seed sd), primary cell, "
                    "sequential runs at each learner's selected rate"}


def cost_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per learner: runs, the wall time of an ensemble job (its members' runs span it) and per member-run.
    A job trains one learner, data set, scenario and training for every rate and seed as one ensemble."""
    jobs = table.groupby(["learner", "task_sequence", "scenario", "joint", "sweep_id"], dropna=False)
    per_job = jobs.agg(seconds=("seconds", "max"), members=("run_id", "size")).reset_index()
    per_job["per_member"] = per_job["seconds"] / per_job["members"]
    rows = []
    for learner in ordered_learners(per_job["learner"].unique()):
        mine = per_job[per_job["learner"] == learner]
        rows.append({"learner": learner, "runs": int(mine["members"].sum()), "jobs": len(mine),
                     "wall s per job (mean)": f"{mine['seconds'].mean():.0f}",
                     "wall s per run": f"{mine['per_member'].mean():.1f}",
                     "wall h in all": f"{mine['seconds'].sum() / 3600:.2f}"})
    return pd.DataFrame(rows)


def study_wall_time(costs: pd.DataFrame, runs_per_learner: int, workers: int = 2) -> dict:
    """The study's job wall time at the pilot's measured cost per run: each learner's wall seconds per
    run times the study's runs of a learner, summed, and divided among ``workers`` jobs at a time.
    The pilot machine's time at its load (benchmarks/study_cost.py measures the CPU per run at the
    study's job size, apart from the machine's load)."""
    seconds = float(sum(costs["wall s per run"].astype(float)) * runs_per_learner)
    return {"learners": len(costs), "runs_per_learner": runs_per_learner, "hours": seconds / 3600,
            "workers": workers, "hours_on_workers": seconds / 3600 / workers}


def rate_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Mean validation ACC of joint and of sequential training per learner, scenario and rate, the
    rate selected (the best joint one) and ``edge``: "highest" or "lowest" when that is the grid's
    highest or lowest rate of three or more (the best rate may then lie beyond the grid)."""
    wide = table.pivot_table(index=["task_sequence", "scenario", "learner"], columns=["joint", "lr"], values="acc",
                             aggfunc="mean")
    rows = []
    for (sequence, scenario, learner), values in wide.iterrows():
        mine = table[(table["learner"] == learner) & (table["scenario"] == scenario) & (table["task_sequence"] == sequence)]
        selected, tried = mine["selected_lr"].iloc[0], sorted(mine["lr"].unique())
        row = {"task_sequence": sequence, "scenario": scenario, "learner": learner}
        for (joint, lr), value in values.items():
            row[f"{'joint' if joint else 'sequential'} {lr:g}"] = value
        edge = "" if len(tried) < 3 else "highest" if selected == tried[-1] else "lowest" if selected == tried[0] else ""
        rows.append({**row, "selected": selected, "edge": edge})
    return pd.DataFrame(rows)


def at_the_edge(rates: pd.DataFrame) -> list[str]:
    """One line per learner and scenario whose rate was selected at the edge of the grid."""
    return [f"- {r['task_sequence']}, {r['scenario']}: {r['learner']} at the {r['edge']} rate tried ({r['selected']:g}): "
            f"its best rate may lie {'above' if r['edge'] == 'highest' else 'below'} the grid"
            for _, r in rates[rates["edge"] != ""].iterrows()]


def gate_markdown(study: Study, frame: pd.DataFrame) -> str:
    label = BY_NAME[study.primary_metric].label
    shown = pd.DataFrame({
        "data": frame["task_sequence"], "scenario": frame["scenario"], "learner": frame["learner"],
        "rate": frame["lr"].map(lambda v: f"{v:g}"), "seeds": frame["n"],
        "joint ACC (ceiling)": [f"{fmt(m)} ± {fmt(round(s, 9))}" if np.isfinite(s) else fmt(m)
                                for m, s in zip(frame["joint_acc"], frame["joint_acc_sd"])],
        "learning accuracy": frame["learning_acc"].map(fmt), "ACC": frame["acc"].map(fmt),
        "chance": frame["chance"].map(fmt), label: frame[study.primary_metric].map(fmt),
        "gate": frame["gate"].map(lambda g: f"≥ {g:g}" if g is not None and np.isfinite(g) else "–"),
        "passes": frame["passes"].map({True: "yes", False: "**no**", None: "–"}),
    })
    return markdown_table(shown)


def not_learned(frame: pd.DataFrame) -> list[str]:
    """One line per scenario with learners below its gate."""
    failed = frame[frame["passes"] == False]  # noqa: E712 (None is no verdict)
    return [f"- {sequence}, {scenario}: " + ", ".join(f"{r['learner']} ({fmt(r['joint_acc'])} < {r['gate']:g})"
                                                     for _, r in group.iterrows())
            for (sequence, scenario), group in failed.groupby(["task_sequence", "scenario"], sort=False)]


def pilot_markdown(study: Study, experiment: str, frame: pd.DataFrame, rates: pd.DataFrame, costs: pd.DataFrame,
                   sesoi: dict, table: pd.DataFrame, note: str = "", budget: dict | None = None,
                   code_line: str = "", unfinished: pd.DataFrame | None = None) -> str:
    sweeps = ", ".join(f"`{s}`" for s in sorted(table["sweep_id"].dropna().astype(str).unique()))
    commits = ", ".join(f"`{c}`" for c in sorted(table["git_commit"].dropna().astype(str).str[:12].unique()))
    failed = not_learned(frame)
    edges = at_the_edge(rates)
    rate_view = rates.drop(columns="edge")
    for column in rate_view.columns[3:-1]:
        rate_view[column] = rate_view[column].map(fmt)
    rate_view["selected"] = rate_view["selected"].map(lambda v: f"{v:g}")
    lines = [
        f"# Pilot of `{experiment}`: can every learner learn the tasks?", "",
        "<!-- generated by analysis/pilot.py from the MLflow runs; do not edit by hand -->", "",
        f"- generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `python analysis/pilot.py --experiment {experiment}` "
        f"at commit `{git_head()}`",
        f"- pilot sweeps: {sweeps}; runs trained at commit(s) {commits}; {len(table)} runs, "
        f"{table['seed'].nunique()} seeds" + (f"; {code_line}" if code_line else ""), "",
        "Every learner of the study at each of its rates, jointly and sequentially, scored on the validation "
        "sets held out of each task's training images (the test sets are left for the study). The rate of "
        "each learner is the one with the best mean joint validation ACC (`analysis/select_lr.py --criterion "
        "joint_acc`): what it can learn, not what it retains.", "",
        "## Learnability at the selected rate", "",
        gate_markdown(study, frame), "",
        "**Gate**: joint ACC ≥ " + ", ".join(f"{v:g} ({s}-IL)" for s, v in study.gate.items())
        + ". " + ("Every learner passes." if not failed else "Below the gate (the study gives their comparisons no verdict):"),
        "", *failed, "",
        "## Selection: validation ACC at every rate", "", markdown_table(rate_view), "",
        *(["Selected at the edge of the grid:", "", *edges, ""] if edges else []),
        *(["Runs that did not finish (their cell above is the mean of the seeds that did):", "",
           *unfinished_lines(unfinished), ""] if unfinished is not None and len(unfinished) else []),
        "## Smallest effect of interest", "",
        f"Rule (declared): {sesoi['rule']}. Reference ({study.reference}) mean "
        f"{BY_NAME[study.primary_metric].label} {fmt(sesoi['reference_mean'])}; pooled seed-to-seed sd "
        f"{fmt(sesoi['pooled_sd'])} ({sesoi['pooled_df']} df): **δ = {fmt(sesoi['sesoi'])}**.", "",
        "## What each learner cost", "",
        "Wall time from MLflow's start and end of each run; one job trains every rate and seed of a learner, "
        "data set, scenario and training as one ensemble (its members' runs span it), two jobs at a time on "
        "the machine that ran the pilot.", "", markdown_table(costs), "",
        f"In all {table.groupby(['learner', 'task_sequence', 'scenario', 'joint', 'sweep_id'], dropna=False)['seconds'].max().sum() / 3600:.1f} "
        "hours of job wall time." + (f" {note}" if note else ""),
        *([] if budget is None else [
            "", f"**The study at these costs**: {budget['learners']} learners × {budget['runs_per_learner']} runs each "
            f"(`python analysis/run_study.py {budget['study']} --dry-run`) × the wall seconds per run above = "
            f"{budget['hours']:.0f} hours of job wall time, **about {budget['hours_on_workers']:.0f} hours on "
            f"{budget['workers']} cores** (two jobs at a time, one BLAS thread each), at the load the pilot ran under; "
            "`python benchmarks/study_cost.py` measures each learner's CPU per run at the study's job size "
            "(docs/performance.md)."]),
    ]
    return "\n".join(lines) + "\n"


def preset_of(experiment: str, preset: Path | None) -> Path:
    """The study's preset: ``preset``, or the one of the experiment's name without ``_pilot``."""
    return preset or PRESETS / f"{experiment.removesuffix('_pilot')}.yaml"


def build(experiment: str, tracking_uri: str, preset: Path | None = None, out: Path | None = None,
          doc: Path | None = None, cache_dir: Path | None = None, root: Path = PROJECT_ROOT,
          note: str = "", code_version: str | None = None) -> tuple[dict[str, Path], pd.DataFrame]:
    """Write the pilot's tables, doc and smallest effect of interest; (written files, learnability). The
    runs read are those of ``code_version`` (None: every code's)."""
    preset = preset_of(experiment, preset)
    study = read_declaration(preset, root)
    if study.selection is None or not study.selection.table.exists():
        raise NoRunsError(f"no selection table {study.selection.table if study.selection else '(none declared)'}: run "
                          f"`python analysis/select_lr.py --experiment {experiment} --criterion joint_acc` first")
    client = open_store(tracking_uri, create=False, key="--tracking-uri")
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    searched = latest_runs(client, experiment, code_version)  # one search for the runs used and those left
    used, table, code = load_runs(client, experiment, study.shown_outcomes, Path(cache_dir or REPORTS / ".cache"),
                                  SelectionTable.read(study.selection.table), code_version, searched)
    frame = learnability(table, study.gate, study.primary_metric)
    rates, costs, sesoi = rate_scores(table), cost_table(table), sesoi_by_rule(study, table)
    sizes = sweep_sizes(preset, [])
    budget = {**study_wall_time(costs, math.prod(n for key, n in sizes.items() if key != "learner")),
              "study": preset.stem} if sizes else None
    out = Path(out or REPORTS / experiment)
    out.mkdir(parents=True, exist_ok=True)
    written = {"pilot_csv": out / "pilot.csv", "rates_csv": out / "rates.csv", "pilot_md": out / "pilot.md"}
    frame.to_csv(written["pilot_csv"], index=False)
    rates.to_csv(written["rates_csv"], index=False)
    commits = sorted(table["git_commit"].dropna().astype(str).str[:12].unique())
    code_line = "; ".join([f"runs of code version(s) {code_versions_read(used, code.current)}",
                           *(line.removeprefix("- ") for line in older_code_line(code, commits))])
    text = pilot_markdown(study, experiment, frame, rates, costs, sesoi, table, note, budget, code_line,
                          unfinished_of(searched[0]))
    written["pilot_md"].write_text(text)
    if study.sesoi.file is not None:
        sweeps = "+".join(sorted(table["sweep_id"].dropna().astype(str).unique()))
        # JSON, not YAML: a .yaml file in a config group's directory would be one of its options
        study.sesoi.file.write_text(json.dumps({**{k: (float(v) if isinstance(v, (float, np.floating)) else v)
                                                   for k, v in sesoi.items()}, "pilot_sweeps": sweeps}, indent=2) + "\n")
        written["sesoi"] = study.sesoi.file
    if doc is not None:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text)
        written["doc"] = doc
    return written, frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="the pilot's MLflow experiment")
    parser.add_argument("--preset", type=Path, help="the study's preset (default conf/experiment/<experiment without _pilot>.yaml)")
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///<project root>/mlflow.db")
    parser.add_argument("--out", type=Path, help="default reports/<experiment>/")
    parser.add_argument("--doc", type=Path, help="also write the pilot's doc here (e.g. docs/credit_assignment_pilot.md)")
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="where the selection table and the smallest-effect file live (default: the project)")
    parser.add_argument("--note", default="", help="a sentence on the machine the pilot ran on (its load), for the doc")
    add_code_arguments(parser)
    args = parser.parse_args(argv)
    try:
        written, frame = build(args.experiment, args.tracking_uri or default_tracking_uri(), args.preset, args.out,
                               args.doc, root=args.root, note=args.note, code_version=code_version_asked(args))
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    print(written["pilot_md"].read_text().split("## Selection")[0].rstrip())
    print("\n" + "\n".join(f"wrote {p}" for p in written.values()))
    return GATE_FAILED if (frame["passes"] == False).any() else 0  # noqa: E712


if __name__ == "__main__":
    sys.exit(main())
