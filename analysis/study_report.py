"""The verdict of a declared study: paired effects over seeds with intervals, tests, Holm's correction,
equivalence tests and the noise floor, as tables, and the study's doc, all from the MLflow runs.

    python analysis/study_report.py --experiment credit_assignment
    python analysis/study_report.py --experiment credit_assignment --doc docs/credit_assignment.md
    python analysis/study_report.py --experiment quickstart --if-declared     # nothing to do: exit 0

The study is declared in its preset, conf/experiment/<experiment>.yaml, in a comment block between
``# --- study declaration`` and ``# --- end of study declaration ---`` (YAML once the ``# `` is cut):
under ``study:`` the primary outcome, the reference learner, the scenarios of the verdict, extra pairs,
alpha, the equivalence margin and the number of seeds; under ``doc:`` how its doc presents it, a
template (the study's own prose, with a line ``<!-- study: NAME -->`` where each of the engine's
SECTIONS goes) and published results to set beside the learners'. Outcomes are the task-level metric
records of ``forgetlab.metric_registry``; learners are named by the label their runs record
(``forgetlab.learner_label``). Writes ``reports/<experiment>/study/``: ``verdict.csv`` (every
comparison and outcome), ``conditions.csv`` (every learner, data set and scenario: forgetting beside
learning accuracy and the joint ceiling, and the noise floor) and ``verdict.md``, the study's doc;
``--doc`` writes the doc there too. Statistics: ``analysis/paired_statistics.py``; what they mean: the
doc's section *Statistics*.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `analysis` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from analysis import paired_statistics as statistics  # noqa: E402
from analysis.aggregate import SCENARIO, value_rank  # noqa: E402
from analysis.load import NoRunsError, load_artifacts, mark_superseded, search_training_runs, tag_column  # noqa: E402
from analysis.report import REPORTS, default_tracking_uri, fmt, markdown_table  # noqa: E402
from forgetlab import contract  # noqa: E402
from forgetlab.metric_registry import BY_NAME, TASK, Metric, of_level, task_arrays  # noqa: E402
from forgetlab.tracking.store import StoreError, open_store  # noqa: E402

DECLARATION_START = "# --- study declaration"
DECLARATION_END = "# --- end of study declaration ---"
PRESETS = ROOT / "conf" / "experiment"

# The outcomes a study may declare: the task-level metrics of one run's accuracy matrix.
OUTCOMES: dict[str, Metric] = {m.name: m for m in of_level(TASK) if "joint_accuracy" not in m.inputs}
# What every study's tables show besides its declared outcomes: the joint ceiling is the joint runs'
# ACC, and the learning check compares learning accuracy with the untrained network's accuracy.
ALWAYS_SHOWN = ("acc", "learning_acc")
SWEEP_ID = tag_column(contract.TAG_SWEEP_ID)
GIT_COMMIT = tag_column(contract.TAG_GIT_COMMIT)
LEARNER_LABEL = tag_column(contract.TAG_LEARNER_LABEL)


class NotDeclared(LookupError):
    """The experiment's preset declares no study."""


@dataclass(frozen=True)
class Pair:
    treatment: str
    reference: str
    matched: str = ""  # "samples", "updates", or "" for the factor-1 comparisons


@dataclass(frozen=True)
class Literature:
    """Published final accuracies of one task sequence, set beside the learners' in the doc."""

    task_sequence: str
    label: str  # the row's name, e.g. "literature (fine-tuning, joint)"
    final_acc: dict[str, tuple[float, float]]  # scenario -> (sequential, joint)


@dataclass(frozen=True)
class Study:
    primary_metric: str
    primary_sequence: str
    primary_scenario: str
    reference: str
    scenarios: list[str]
    secondary: list[str] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    alpha: float = 0.05
    margin: float = 0.05
    min_seeds: int = 20
    selection_experiment: str | None = None
    template: Path | None = None  # the doc's template; None: DEFAULT_TEMPLATE
    literature: Literature | None = None

    @property
    def outcomes(self) -> list[str]:
        return [self.primary_metric] + [m for m in self.secondary if m != self.primary_metric]

    @property
    def shown_outcomes(self) -> list[str]:
        """The outcomes of the run and condition tables: the declared ones and ALWAYS_SHOWN, in the
        order of the metric records."""
        return [name for name in OUTCOMES if name in {*ALWAYS_SHOWN, *self.outcomes}]


def read_declaration(preset: Path) -> Study:
    """The study declared in ``preset``'s comment block. Raises NotDeclared."""
    if not preset.exists():
        raise NotDeclared(f"no preset {preset}")
    lines = preset.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(DECLARATION_START)]
    if not starts:
        raise NotDeclared(f"{preset} declares no study")
    end = lines.index(DECLARATION_END, starts[0])
    block = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[starts[0] + 1 : end])
    declared = yaml.safe_load(block)
    study, doc = declared["study"], declared.get("doc") or {}
    for key in ("primary", "reference", "scenarios"):
        if key not in study:
            raise ValueError(f"the study declaration in {preset} has no '{key}'")
    unknown = set([study["primary"]["metric"], *study.get("secondary", [])]) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"the study declaration in {preset} names unknown outcomes {sorted(unknown)}; known: {list(OUTCOMES)}")
    return Study(
        primary_metric=study["primary"]["metric"],
        primary_sequence=str(study["primary"]["task_sequence"]),
        primary_scenario=str(study["primary"]["scenario"]),
        reference=str(study["reference"]),
        scenarios=[str(s) for s in study["scenarios"]],
        secondary=list(study.get("secondary", [])),
        pairs=[Pair(**p) for p in study.get("pairs", [])],
        alpha=float(study.get("alpha", 0.05)),
        margin=float(study.get("equivalence_margin", 0.05)),
        min_seeds=int(study.get("min_seeds", 20)),
        selection_experiment=study.get("selection_experiment"),
        template=ROOT / doc["template"] if "template" in doc else None,
        literature=Literature(
            task_sequence=str(doc["literature"]["task_sequence"]), label=str(doc["literature"]["label"]),
            final_acc={str(s): (float(f), float(j)) for s, (f, j) in doc["literature"]["final_acc"].items()},
        ) if "literature" in doc else None,
    )


# --- runs --------------------------------------------------------------------------------------


def param(row: pd.Series, key: str, default: str = "") -> str:
    value = row.get(f"params.{key}")
    return default if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def learner_label(row: pd.Series, base_epochs: int) -> str:
    """A learner's name: the label its run recorded (``contract.TAG_LEARNER_LABEL``, e.g. 'BPTT(4; 1)';
    for runs from before it was recorded, the algorithm's name), with the study's factors that are not
    the learner's: ', batch B' when it updates on B samples at once and ', E epochs' when it trains for
    more epochs per task than the study's base."""
    label = row.get(LEARNER_LABEL)
    label = str(label) if isinstance(label, str) and label else param(row, "algorithm.name")
    batch = param(row, "trainer.batch_size", "1")
    label += f", batch {batch}" if batch != "1" else ""
    epochs = int(param(row, "trainer.epochs_per_task", str(base_epochs)))
    return label + (f", {epochs} epochs" if epochs != base_epochs else "")


def run_table(runs: pd.DataFrame, artifacts, outcomes: list[str]) -> pd.DataFrame:
    """One row per analysed run: learner, data set, scenario, training (sequential or joint),
    perturbation, seed, and the ``outcomes`` recomputed from its accuracy matrix (NaN where the run
    does not define one: a joint run has ACC only)."""
    base_epochs = int(pd.to_numeric(runs["params.trainer.epochs_per_task"]).min())
    rows = []
    for _, run in runs.iterrows():
        R = artifacts[run["run_id"]].R_with_init
        joint = param(run, "task_sequence.joint") == "True"
        row = {
            "run_id": run["run_id"],
            "learner": learner_label(run, base_epochs),
            "task_sequence": param(run, "task_sequence.name"),
            "scenario": param(run, "task_sequence.scenario"),
            "joint": joint,
            "perturbation": float(param(run, "network.init_perturbation", "0.0")),
            "seed": int(param(run, "seed")),
            "lr": float(param(run, "algorithm.lr")),
            "lr_selected_by": param(run, "algorithm.lr_selected_by"),
            "sweep_id": run.get(SWEEP_ID),
            "git_commit": run.get(GIT_COMMIT),
            "seconds": (pd.Timestamp(run["end_time"]) - pd.Timestamp(run["start_time"])).total_seconds(),
            "n_tasks": R.shape[1],
            "init_acc": float(np.mean(R[0])),  # the untrained network: what "learned" is measured from
            "loss_design": loss_design(run),
        }
        row.update({name: OUTCOMES[name].value(task_arrays(R, chance=artifacts[run["run_id"]].chance)) for name in outcomes})
        rows.append(row)
    return label_loss_designs(pd.DataFrame(rows))


def loss_design(run: pd.Series) -> str:
    """Which steps of a sequence carry loss ('' for the MLP)."""
    where = param(run, "network.loss_at")
    if where == "all":
        return "loss at every step"
    if where == "last":
        k = int(param(run, "network.loss_last_steps", "1"))
        return "loss at the last step" if k == 1 else f"loss at the last {k} steps"
    return ""


def label_loss_designs(table: pd.DataFrame) -> pd.DataFrame:
    """A data set whose RNN runs used more than one loss design is several data sets of the study
    (its runs are no pairs across designs): each design's runs get it in their data label."""
    if table.empty:
        return table
    designs = table[table["loss_design"] != ""].groupby("task_sequence")["loss_design"].nunique()
    mixed = table["task_sequence"].isin(designs[designs > 1].index) & (table["loss_design"] != "")
    table.loc[mixed, "task_sequence"] = table.loc[mixed, "task_sequence"] + ", " + table.loc[mixed, "loss_design"]
    return table


def outcome_by_seed(table: pd.DataFrame, learner: str, sequence: str, scenario: str, outcome: str,
                    perturbed: bool = False, joint: bool = False) -> dict[int, float]:
    rows = table[(table["learner"] == learner) & (table["task_sequence"] == sequence) & (table["scenario"] == scenario)
                 & (table["joint"] == joint) & ((table["perturbation"] > 0) == perturbed)]
    return dict(zip(rows["seed"], rows[outcome]))


def perturbation_deltas(table: pd.DataFrame, learner: str, sequence: str, scenario: str, outcome: str) -> np.ndarray:
    """delta_s = outcome(perturbed run of seed s) - outcome(unperturbed run of seed s), sequential training."""
    return statistics.paired_differences(
        outcome_by_seed(table, learner, sequence, scenario, outcome, perturbed=True),
        outcome_by_seed(table, learner, sequence, scenario, outcome),
    )


# --- statistics --------------------------------------------------------------------------------


def comparisons(study: Study, table: pd.DataFrame) -> list[tuple[str, str, Pair]]:
    """(data set, scenario, pair) of the verdict: every learner against the reference, except the
    treatments of the declared pairs (factor 2), which meet only their own reference; then the
    declared pairs; in each data set and scenario of the verdict where both have runs."""
    out = []
    paired_only = {p.treatment for p in study.pairs}
    sequential = table[~table["joint"]]
    for sequence in sorted(sequential["task_sequence"].unique(), key=lambda s: (s != study.primary_sequence, s)):
        for scenario in study.scenarios:
            here = set(sequential[(sequential["task_sequence"] == sequence) & (sequential["scenario"] == scenario)]["learner"])
            pairs = [Pair(learner, study.reference) for learner in ordered_learners(here)
                     if learner != study.reference and learner not in paired_only]
            pairs += study.pairs
            out += [(sequence, scenario, p) for p in pairs if p.treatment in here and p.reference in here]
    return out


def ordered_learners(learners) -> list[str]:
    """Learners in name order, numbers numerically and case aside: 'BPTT(4; 1)' before 'BPTT(12; 1)'."""
    def natural(name: str) -> list:
        return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]

    return sorted(learners, key=lambda name: (natural(name), name))


def verdict_table(study: Study, table: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison and outcome: the paired statistics, Holm's adjusted p (one family per
    outcome: every comparison of the verdict), the TOST verdict, and the noise floor."""
    rows = []
    for sequence, scenario, pair in comparisons(study, table):
        for outcome in study.outcomes:
            d = statistics.paired_differences(
                outcome_by_seed(table, pair.treatment, sequence, scenario, outcome),
                outcome_by_seed(table, pair.reference, sequence, scenario, outcome),
            )
            result = statistics.compare(d, study.margin)
            deltas = np.concatenate([perturbation_deltas(table, learner, sequence, scenario, outcome)
                                     for learner in (pair.treatment, pair.reference)])
            band = statistics.noise_band(deltas)
            rows.append({
                "task_sequence": sequence, "scenario": scenario, "outcome": outcome,
                "primary": outcome == study.primary_metric and sequence == study.primary_sequence
                and scenario == study.primary_scenario,
                "treatment": pair.treatment, "reference": pair.reference, "matched": pair.matched,
                **{k: getattr(result, k) for k in ("n", "mean", "ci_low", "ci_high", "d_z", "t", "p", "p_wilcoxon", "p_tost")},
                "noise_low": band[0], "noise_high": band[1], "noise_n": len(deltas),
                "clears_noise_floor": statistics.clears_noise_floor(result.ci_low, result.ci_high, band),
            })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["p_holm"] = np.nan
    for outcome, group in frame.groupby("outcome"):
        frame.loc[group.index, "p_holm"] = statistics.holm(group["p"].to_numpy())
    frame["verdict"] = [statistics.verdict(ph, pt, study.alpha) for ph, pt in zip(frame["p_holm"], frame["p_tost"])]
    return frame


def condition_table(study: Study, table: pd.DataFrame) -> pd.DataFrame:
    """Every learner, data set and scenario (class included): each outcome's mean and sd over the
    unperturbed sequential seeds, the joint ceiling (mean final ACC of joint training), the learning
    rate and the noise floor of the primary outcome (sd of the perturbation differences)."""
    rows = []
    keys = ["task_sequence", "scenario", "learner"]
    for (sequence, scenario, learner), group in table.groupby(keys):
        plain = group[(~group["joint"]) & (group["perturbation"] == 0)]
        joint = group[group["joint"] & (group["perturbation"] == 0)]
        row = {"task_sequence": sequence, "scenario": scenario, "learner": learner, "n": len(plain),
               "lr": ", ".join(f"{v:g}" for v in sorted(group["lr"].unique()))}
        for outcome in study.shown_outcomes:
            row[f"{outcome}_mean"] = plain[outcome].mean()
            row[f"{outcome}_sd"] = plain[outcome].std(ddof=1)
        row["joint_acc_mean"], row["joint_n"] = joint["acc"].mean(), len(joint)
        row["init_acc_mean"] = plain["init_acc"].mean() if "init_acc" in plain else np.nan
        deltas = perturbation_deltas(table, learner, sequence, scenario, study.primary_metric)
        row["noise_sd"] = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else np.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    learner_rank = {name: i for i, name in enumerate(ordered_learners(frame["learner"].unique()))}
    frame["_rank"] = [(s != study.primary_sequence, s, value_rank(SCENARIO, c), learner_rank[lr])
                      for s, c, lr in zip(frame["task_sequence"], frame["scenario"], frame["learner"])]
    return frame.sort_values("_rank").drop(columns="_rank").reset_index(drop=True)


# --- writing -----------------------------------------------------------------------------------


def git_head() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip()[:12] + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def interval(mean: float, low: float, high: float) -> str:
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def p_text(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def verdict_markdown(frame: pd.DataFrame, outcome: str, margin: float) -> str:
    rows = frame[frame["outcome"] == outcome]
    shown = pd.DataFrame({
        "data": rows["task_sequence"], "scenario": rows["scenario"],
        "comparison": [f"{t} − {r}" + (f" (matched {m})" if m else "") for t, r, m in
                       zip(rows["treatment"], rows["reference"], rows["matched"])],
        "n": rows["n"],
        "effect [95 % CI]": [interval(m, lo, hi) for m, lo, hi in zip(rows["mean"], rows["ci_low"], rows["ci_high"])],
        "d_z": rows["d_z"].map(lambda v: fmt(v, 2)),
        "p (t)": rows["p"].map(p_text), "p Holm": rows["p_holm"].map(p_text),
        "p Wilcoxon": rows["p_wilcoxon"].map(p_text), f"p TOST ±{margin:g}": rows["p_tost"].map(p_text),
        "verdict": rows["verdict"],
        "noise band": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(rows["noise_low"], rows["noise_high"])],
        "clears noise floor": rows["clears_noise_floor"].map({True: "yes", False: "no", None: "–"}),
    })
    return markdown_table(shown)


def conditions_markdown(study: Study, frame: pd.DataFrame) -> str:
    """Every learner's outcomes (ACC and learning accuracy first, then the other declared ones), the
    untrained network's ACC, the joint ceiling and the noise sd."""
    def cell(row, name):
        mean, sd = row[f"{name}_mean"], row[f"{name}_sd"]
        return fmt(mean) + (f" ± {fmt(sd)}" if np.isfinite(sd) else "")

    shown = [*ALWAYS_SHOWN, *(o for o in study.outcomes if o not in ALWAYS_SHOWN)]
    table = pd.DataFrame({
        "data": frame["task_sequence"], "scenario": frame["scenario"], "learner": frame["learner"],
        "lr": frame["lr"], "n": frame["n"],
        "untrained ACC": frame["init_acc_mean"].map(fmt),
        **{BY_NAME[name].label: [cell(r, name) for _, r in frame.iterrows()] for name in shown},
        "joint ACC (ceiling)": [fmt(v) + f" (n = {n})" for v, n in zip(frame["joint_acc_mean"], frame["joint_n"])],
        "noise sd": frame["noise_sd"].map(fmt),
    })
    return markdown_table(table)


STATISTICS = """\
Every comparison pairs two learners by seed: the same seed gives both the same sample order and, to
learners of one network, the same initial weights, so d_s = y_treatment(s) − y_reference(s) removes
what the seeds share. Only unperturbed sequential runs enter an effect.

- **effect**: the mean paired difference over the n seeds, with its 95 % Student-t interval
  (mean ± t_{0.975, n−1} · s_d/√n); **d_z** = mean/s_d, Cohen's standardised paired effect.
- **p (t)**: paired t-test of "no difference"; **p Holm**: Holm's step-down adjustment over every
  comparison of the verdict for this outcome (one family per outcome: all data sets, scenarios and
  comparisons of the table); **p Wilcoxon**: the signed-rank test as a check that does not assume
  normal differences (unadjusted).
- **p TOST**: two one-sided t-tests of "the difference is at least the margin" (Schuirmann 1987);
  p < alpha shows equivalence within ±margin (the 90 % interval lies inside it). Every "no
  difference" in this doc is a TOST statement.
- **verdict**: *differs* when p Holm < alpha; *equivalent* when p TOST < alpha; *differs, within
  margin* when both; *inconclusive* when neither.
- **noise floor**: every run is repeated with every weight perturbed by {epsilon} · N(0, 1) after
  initialisation (`network.init_perturbation={epsilon}`, its own random stream, same sample order). For
  one learner δ_s = y(s, perturbed) − y(s, unperturbed) is what a rounding-level change alone does to
  a run. A comparison's **noise band** is the central 95 % range (2.5 % and 97.5 % empirical
  quantiles) of the δ_s of both its learners pooled; the effect **clears the noise floor** when its
  95 % interval lies entirely outside the band. The band is a spread of single runs, the interval
  one of a mean over n seeds: clearing it says that the mean effect is larger than what chaos moves a
  single run, a stricter demand than p < alpha. **noise sd** (conditions table) is the sd of δ_s of
  the primary outcome.
"""


def design_markdown(table: pd.DataFrame) -> str:
    """What was run, learner by learner: data sets, scenarios, seeds, learning rates and run time."""
    rows = []
    for learner in ordered_learners(table["learner"].unique()):
        runs = table[table["learner"] == learner]
        plain = runs[(~runs["joint"]) & (runs["perturbation"] == 0)]
        rows.append({
            "learner": learner,
            "data": "; ".join(sorted(runs["task_sequence"].unique())),  # labels may hold commas
            "scenarios": ", ".join(sorted(runs["scenario"].unique(), key=lambda s: value_rank(SCENARIO, s))),
            "seeds": plain["seed"].nunique(),
            "learning rates": ", ".join(f"{v:g}" for v in sorted(runs["lr"].unique())),
            "runs": len(runs),
            "seconds per run (mean)": f"{runs['seconds'].mean():.1f}",
        })
    return markdown_table(pd.DataFrame(rows))


def literature_markdown(literature: Literature, conditions: pd.DataFrame, table: pd.DataFrame) -> str:
    """Every learner's ACC of sequential training on the literature's task sequence, per scenario, beside
    the published values; whether it shows their ordering of the scenarios; class-IL against chance, 1/T."""
    sequence = literature.task_sequence
    rows = conditions[conditions["task_sequence"] == sequence]
    if rows.empty:
        return f"No sequential runs on `{sequence}`."
    n_tasks = table.loc[table["task_sequence"] == sequence, "n_tasks"].max()
    scenarios = list(literature.final_acc)
    published = sorted(scenarios, key=lambda s: literature.final_acc[s][0])  # e.g. class < domain < task
    ordering = " < ".join(published)
    chance = f"class-IL − 1/T (T = {n_tasks})" if "class" in scenarios else None
    shown = []
    for learner in ordered_learners(rows["learner"].unique()):
        mine = rows[rows["learner"] == learner].set_index("scenario")
        acc = {s: mine.at[s, "acc_mean"] if s in mine.index else np.nan for s in scenarios}
        joint = {s: mine.at[s, "joint_acc_mean"] if s in mine.index else np.nan for s in scenarios}
        ordered = all(acc[a] < acc[b] for a, b in zip(published, published[1:])) if all(np.isfinite(list(acc.values()))) else None
        shown.append({"learner": learner, **{f"{s}-IL": f"{fmt(acc[s])} (joint {fmt(joint[s])})" for s in scenarios},
                      ordering: {True: "yes", False: "**no**", None: "–"}[ordered],
                      **({chance: fmt(acc["class"] - 1 / n_tasks)} if chance else {})})
    shown.append({"learner": literature.label,
                  **{f"{s}-IL": f"≈ {fmt(f)} (joint ≈ {fmt(j)})" for s, (f, j) in literature.final_acc.items()},
                  ordering: "yes", **({chance: fmt(literature.final_acc["class"][0] - 1 / n_tasks)} if chance else {})})
    return markdown_table(pd.DataFrame(shown))


def sweep_times(client, experiment: str, sweep_ids: list[str]) -> pd.DataFrame:
    """Wall time of each study sweep from its parent runs (a resumed sweep has one per launch)."""
    exp = client.get_experiment_by_name(experiment)
    rows = []
    for sweep_id in sweep_ids:
        for run in client.search_runs([exp.experiment_id], max_results=100, filter_string=" and ".join([
                contract.tag_equals(contract.TAG_KIND, contract.KIND_SWEEP), contract.tag_equals(contract.TAG_SWEEP_ID, sweep_id)])):
            if run.info.end_time:
                rows.append({"sweep": sweep_id, "status": run.info.status,
                             "minutes": (run.info.end_time - run.info.start_time) / 60_000,
                             "jobs": run.data.metrics.get(contract.METRIC_SWEEP_JOBS),
                             "skipped": run.data.metrics.get(contract.METRIC_SWEEP_SKIPPED),
                             "failed": run.data.metrics.get(contract.METRIC_SWEEP_FAILED)})
    return pd.DataFrame(rows)


def sweep_times_markdown(times: pd.DataFrame) -> str:
    if times.empty:
        return "The sweeps' parent runs record no end time."
    count = lambda v: "–" if pd.isna(v) else f"{v:.0f}"  # noqa: E731
    shown = times.assign(minutes=times["minutes"].map(lambda m: f"{m:.1f}"),
                         **{k: times[k].map(count) for k in ("jobs", "skipped", "failed")})
    return (markdown_table(shown) + "\n\n" + f"In all {times['minutes'].sum():.1f} minutes of wall time "
            "(from each sweep's parent run: composing and checking every job, training, tracking).")


def stamps(runs_used: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    sweeps = sorted(table["sweep_id"].dropna().astype(str).unique())
    commits = sorted(table["git_commit"].dropna().astype(str).str[:12].unique())
    selection = sorted(s for s in table["lr_selected_by"].dropna().astype(str).unique() if s)
    return [
        f"- generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `python analysis/study_report.py` at commit `{git_head()}`",
        f"- study sweeps: {', '.join(f'`{s}`' for s in sweeps) or 'none'}; runs trained at commit(s) "
        + (", ".join(f"`{c}`" for c in commits) or "unknown"),
        f"- learning rates selected on validation sets by sweep(s) {', '.join(f'`{s}`' for s in selection) or 'none recorded'}"
        " (the runs' `algorithm.lr_selected_by`)",
        f"- {len(runs_used)} runs analysed",
    ]


def learning_check(study: Study, conditions: pd.DataFrame) -> list[str]:
    """The conditions whose learners barely learned: mean learning accuracy (each task right after
    it was trained) less than the equivalence margin above the untrained network's. Forgetting is
    measured from what was learned, so their BWT and forgetting say little."""
    gain = conditions["learning_acc_mean"] - conditions["init_acc_mean"]
    weak = conditions[gain < study.margin]
    if weak.empty:
        return [f"Every learner's learning accuracy lies at least {study.margin:g} above the untrained network's "
                "in every data set and scenario."]
    lines = [f"In these conditions the learner's mean learning accuracy lies less than {study.margin:g} (the "
             "equivalence margin) above the untrained network's: it barely learned the tasks, so its BWT and "
             "forgetting cannot show forgetting, and a comparison involving it says little:", ""]
    for (sequence, scenario), group in weak.groupby(["task_sequence", "scenario"], sort=False):
        learners = ", ".join(f"{r['learner']} ({fmt(r['learning_acc_mean'])} vs {fmt(r['init_acc_mean'])})"
                             for _, r in group.iterrows())
        total = int(((conditions["task_sequence"] == sequence) & (conditions["scenario"] == scenario)).sum())
        lines.append(f"- {sequence}, {scenario} ({len(group)} of {total} learners): {learners}")
    return lines


def summary_sentences(study: Study, frame: pd.DataFrame) -> list[str]:
    """What the primary outcome showed, comparison by comparison, in words with its numbers."""
    primary = frame[frame["primary"]] if not frame.empty else frame
    label = BY_NAME[study.primary_metric].label
    if primary.empty:
        return [f"No runs of the primary cell ({study.primary_sequence}, {study.primary_scenario}): nothing to conclude."]
    lines = []
    for _, row in primary.iterrows():
        floor = {True: "clears the noise floor", False: "does not clear the noise floor", None: "noise floor unknown"}
        lines.append(
            f"- {row['treatment']} − {row['reference']}: {label} difference {interval(row['mean'], row['ci_low'], row['ci_high'])}"
            f" (n = {row['n']}, d_z = {fmt(row['d_z'], 2)}, Holm p = {p_text(row['p_holm'])}, TOST p = {p_text(row['p_tost'])}):"
            f" **{row['verdict']}**; {floor[row['clears_noise_floor']]}."
        )
    return lines


# The engine's sections: a template line ``<!-- study: NAME -->`` becomes section NAME.
SECTIONS = ("provenance", "primary", "learning-check", "verdicts", "design", "literature", "conditions", "statistics")
PLACEHOLDER = re.compile(r"^<!-- study: ([a-z-]+) -->$")
TEMPLATE_NOTE = "<!-- template:"  # a template's own comment, left out of the doc
DEFAULT_TEMPLATE = """\
# Study verdict: `{experiment}`

<!-- study: provenance -->

<!-- study: primary -->

<!-- study: learning-check -->

<!-- study: verdicts -->

<!-- study: design -->

<!-- study: conditions -->

<!-- study: statistics -->
"""


def write_markdown(study: Study, experiment: str, frame: pd.DataFrame, conditions: pd.DataFrame, runs_used: pd.DataFrame,
                   table: pd.DataFrame, times: pd.DataFrame | None = None) -> str:
    """The study's doc: its template (``study.template``, else DEFAULT_TEMPLATE) with the sections filled in."""
    template = study.template.read_text() if study.template else DEFAULT_TEMPLATE.format(experiment=experiment)
    return fill_template(template, sections(study, frame, conditions, runs_used, table, times))


def fill_template(template: str, filled: dict[str, str]) -> str:
    """``template`` with each placeholder line replaced by its section and the template's own
    comments left out. Raises ValueError on a placeholder that names no section."""
    lines = []
    for line in template.splitlines():
        if line.startswith(TEMPLATE_NOTE):
            continue
        match = PLACEHOLDER.match(line.strip())
        if match and match.group(1) not in filled:
            raise ValueError(f"the template names the section {match.group(1)!r}; the sections are {list(filled)}")
        lines.append(filled[match.group(1)].rstrip("\n") if match else line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n") + "\n"


def sections(study: Study, frame: pd.DataFrame, conditions: pd.DataFrame, runs_used: pd.DataFrame,
             table: pd.DataFrame, times: pd.DataFrame | None) -> dict[str, str]:
    """Every section of SECTIONS as markdown, for any declared study."""
    n_seeds = int(conditions["n"].max()) if len(conditions) else 0
    provenance = ["<!-- generated by analysis/study_report.py from the MLflow runs; do not edit by hand -->", "",
                  *stamps(runs_used, table), ""]
    if n_seeds < study.min_seeds:
        provenance += [f"> **Not the declared study**: at most {n_seeds} seeds per condition, fewer than the declared "
                       f"{study.min_seeds}. The numbers below check the pipeline; they are not a result."]
    perturbations = sorted(p for p in table["perturbation"].unique() if p > 0) if len(table) else []
    epsilon = ", ".join(f"{p:g}" for p in perturbations) or "ε"
    return {
        "provenance": "\n".join(provenance),
        "primary": "\n".join(["## Primary outcome (declared before running)", "",
                              f"{BY_NAME[study.primary_metric].label} on `{study.primary_sequence}`, "
                              f"{study.primary_scenario} scenario; every learner against {study.reference}, paired by "
                              f"seed; alpha = {study.alpha:g}, equivalence margin ±{study.margin:g}.", "",
                              *summary_sentences(study, frame)]),
        "learning-check": "\n".join(["## Did the learners learn?", "", *learning_check(study, conditions)]),
        "verdicts": verdicts_markdown(study, frame),
        "design": design_section(table, times),
        "literature": literature_markdown(study.literature, conditions, table) if study.literature
        else "The study declares no published results to compare with.",
        "conditions": "\n".join(["## Forgetting with learning accuracy and the joint ceiling", "",
                                 "Mean ± sd over the unperturbed seeds of sequential training; joint ACC: all tasks "
                                 "shuffled together (the ceiling); noise sd: sd of the perturbation differences of the "
                                 "primary outcome.", "", conditions_markdown(study, conditions)]),
        "statistics": "## Statistics\n\n" + STATISTICS.replace("{epsilon}", epsilon),
    }


def verdicts_markdown(study: Study, frame: pd.DataFrame) -> str:
    lines = []
    for outcome in study.outcomes:
        name = BY_NAME[outcome].label
        lines += [f"## Verdict: {name}" + (" (primary outcome)" if outcome == study.primary_metric else ""), "",
                  verdict_markdown(frame, outcome, study.margin) if not frame.empty else "No comparison has runs.", ""]
    return "\n".join(lines)


def design_section(table: pd.DataFrame, times: pd.DataFrame | None) -> str:
    lines = ["## Design", "", "Every learner, with the runs this doc comes from (all variants: sequential and joint, "
             "plain and perturbed; seeds counted on plain sequential runs); run time from MLflow's start and end:", "",
             design_markdown(table), "",
             f"In all: {len(table)} runs, {table['seconds'].sum() / 60:.1f} minutes of run time "
             "(summed over runs; jobs ran in parallel, members of an ensemble share their time)."]
    if times is not None:
        lines += ["", "What the study's sweeps took on the machine that ran them:", "", sweep_times_markdown(times)]
    return "\n".join(lines)


def build(experiment: str, tracking_uri: str, out: Path | None = None, doc: Path | None = None,
          preset: Path | None = None, cache_dir: Path | None = None) -> dict[str, Path]:
    import mlflow

    study = read_declaration(preset or PRESETS / f"{experiment}.yaml")
    # The store must exist already: a report never creates an empty one (StoreError instead).
    client = open_store(tracking_uri, create=False, key="--tracking-uri")
    mlflow.set_tracking_uri(tracking_uri)
    runs = mark_superseded(search_training_runs(client, experiment))
    used = runs[(runs["status"] == "FINISHED") & (runs["superseded_by"] == "")]
    artifacts, problems = load_artifacts(client, list(used["run_id"]), Path(cache_dir or REPORTS / ".cache"))
    used = used[used["run_id"].isin(artifacts)]
    if used.empty:
        raise NoRunsError(f"no FINISHED run of {experiment!r} with readable eval artifacts ({len(problems)} unreadable)")
    table = run_table(used, artifacts, study.shown_outcomes)
    frame = verdict_table(study, table)
    conditions = condition_table(study, table)
    out = Path(out or REPORTS / experiment / "study")
    out.mkdir(parents=True, exist_ok=True)
    written = {"verdict_csv": out / "verdict.csv", "conditions_csv": out / "conditions.csv",
               "runs_csv": out / "runs.csv", "verdict_md": out / "verdict.md"}
    frame.to_csv(written["verdict_csv"], index=False)
    conditions.to_csv(written["conditions_csv"], index=False)
    table.to_csv(written["runs_csv"], index=False)
    times = sweep_times(client, experiment, sorted(table["sweep_id"].dropna().astype(str).unique()))
    text = write_markdown(study, experiment, frame, conditions, used, table, times=times)
    written["verdict_md"].write_text(text)
    if doc is not None:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text)
        written["doc"] = doc
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--tracking-uri", help="default $MLFLOW_TRACKING_URI or sqlite:///<project root>/mlflow.db")
    parser.add_argument("--out", type=Path, help="default reports/<experiment>/study/")
    parser.add_argument("--doc", type=Path, help="also write the study's doc (verdict.md) here (e.g. docs/credit_assignment.md)")
    parser.add_argument("--preset", type=Path, help="the preset that declares the study (default conf/experiment/<experiment>.yaml)")
    parser.add_argument("--if-declared", action="store_true", help="exit 0 without output when no study is declared")
    args = parser.parse_args(argv)
    try:
        written = build(args.experiment, args.tracking_uri or default_tracking_uri(), args.out, args.doc, args.preset)
    except NotDeclared as error:
        if args.if_declared:
            return 0
        print(f"error: {error}", file=sys.stderr)
        return 1
    except NoRunsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    print(written["verdict_md"].read_text().split("## Verdict")[0].rstrip())
    print("\n" + "\n".join(f"wrote {p}" for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
