"""A declared study and its runs: the declaration in the study's preset, one row per analysed run (its
learner, cell, rate and outcomes), each learner's selected rate, and the learnability gate. The pilot
(``analysis/pilot.py``) and the verdict (``analysis/study_report.py``) read runs through here.

The study is declared in its preset, conf/experiment/<experiment>.yaml, in a comment block between
``# --- study declaration`` and ``# --- end of study declaration ---`` (YAML once the ``# `` is cut):
under ``study:`` the primary outcome (metric, data set, scenario, reason), the secondary outcomes, the
primary family (the declared comparisons), the scenarios, the gate, alpha, the smallest effect of
interest (a value, or the file the pilot writes it to, with its rule), the learning rates, the
selection (experiment, table, criterion), positive controls and the number of seeds; under ``doc:``
how its doc presents it (a template, published results: the ``literature`` accuracies and the
``published`` findings, ``Claim``s, set beside the study's own comparisons).

A learner is named by the label its runs record (``forgetlab.learner_label``, e.g. 'BPTT(4; 1)', with
its continual-learning strategy after a "+": 'backprop (MLP) + EWC'), with the loss placement of a
recurrent one (', loss at every step') and the study's factors that are not the learner's (', batch 4',
', 4 epochs').
"""

from __future__ import annotations

import csv
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis.load import CodeChoice, choose_code, load_artifacts, mark_superseded, search_training_runs, tag_column
from forgetlab import contract
from forgetlab.metric_registry import TASK, Metric, of_level, task_arrays

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "conf" / "experiment"
DECLARATION_START = "# --- study declaration"
DECLARATION_END = "# --- end of study declaration ---"

# The outcomes a study may declare: the task-level metrics of one run's accuracy matrix (and chance).
OUTCOMES: dict[str, Metric] = {m.name: m for m in of_level(TASK) if "joint_accuracy" not in m.inputs}
SWEEP_ID = tag_column(contract.TAG_SWEEP_ID)
GIT_COMMIT = tag_column(contract.TAG_GIT_COMMIT)
LEARNER_LABEL = tag_column(contract.TAG_LEARNER_LABEL)
NO_STRATEGY = ("", "none", "None", "fine_tuning")  # fine-tuning: what every run was before strategies existed


class NotDeclared(LookupError):
    """The experiment's preset declares no study."""


@dataclass(frozen=True)
class Pair:
    treatment: str
    reference: str


@dataclass(frozen=True)
class Literature:
    """Published final accuracies of one task sequence, set beside the learners' in the doc."""

    task_sequence: str
    label: str  # the row's name, e.g. "literature (fine-tuning, joint)"
    final_acc: dict[str, tuple[float, float]]  # scenario -> (sequential, joint)


@dataclass(frozen=True)
class Claim:
    """A published finding set beside the study's own comparison: ``treatment`` against the study's
    reference in ``scenario``, on the primary outcome, is ``expect``ed "higher" (the effect's
    interval above 0) or "equivalent" (within the smallest effect of interest, TOST)."""

    treatment: str
    scenario: str
    expect: str
    text: str  # the finding in words, as published


EXPECTATIONS = ("higher", "equivalent")


@dataclass(frozen=True)
class Selection:
    """Where each learner's headline rate comes from: the selection sweep's experiment, the table
    ``analysis/select_lr.py`` wrote from it, and its criterion."""

    experiment: str
    table: Path
    criterion: str = "joint_acc"


@dataclass(frozen=True)
class Sesoi:
    """The smallest effect of interest (the equivalence margin): declared, or derived by ``rule`` from
    the pilot and written to ``file`` by ``analysis/pilot.py`` before the study runs."""

    value: float | None = None
    rule: str = ""
    file: Path | None = None

    def resolve(self) -> tuple[float, str]:
        """(margin, where it comes from). Raises ValueError when neither a value nor its file exists."""
        if self.value is not None:
            return float(self.value), "declared"
        if self.file is not None and self.file.exists():
            written = yaml.safe_load(self.file.read_text())
            return float(written["sesoi"]), f"`{self.file.name}`, from pilot sweep(s) {written.get('pilot_sweeps', '?')}"
        raise ValueError(f"no smallest effect of interest: declare sesoi.value or run the pilot, which writes {self.file}")


@dataclass(frozen=True)
class Study:
    primary_metric: str
    primary_sequence: str
    primary_scenario: str
    reference: str
    scenarios: list[str]
    primary_reason: str = ""
    secondary: list[str] = field(default_factory=list)
    family: list[Pair] = field(default_factory=list)
    gate: dict[str, float] = field(default_factory=dict)  # scenario -> joint ACC a learner must reach
    alpha: float = 0.05
    sesoi: Sesoi = Sesoi(value=0.05)
    rates: list[float] = field(default_factory=list)
    selection: Selection | None = None
    positive_controls: list[Pair] = field(default_factory=list)
    min_seeds: int = 20
    template: Path | None = None  # the doc's template; None: the engine's default
    literature: Literature | None = None
    published: list[Claim] = field(default_factory=list)  # published findings set beside ours
    published_source: str = ""

    @property
    def outcomes(self) -> list[str]:
        return [self.primary_metric] + [m for m in self.secondary if m != self.primary_metric]

    @property
    def shown_outcomes(self) -> list[str]:
        """The outcomes of the run and condition tables: the declared ones, ACC and learning accuracy,
        in the order of the metric records."""
        return [name for name in OUTCOMES if name in {"acc", "learning_acc", *self.outcomes}]


def declaration_block(preset: Path) -> dict:
    """The YAML of ``preset``'s declaration comment. Raises NotDeclared."""
    if not preset.exists():
        raise NotDeclared(f"no preset {preset}")
    lines = preset.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(DECLARATION_START)]
    if not starts:
        raise NotDeclared(f"{preset} declares no study")
    end = lines.index(DECLARATION_END, starts[0])
    return yaml.safe_load("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#")
                                    for line in lines[starts[0] + 1 : end]))


def read_declaration(preset: Path, root: Path = ROOT) -> Study:
    """The study declared in ``preset``, its selection table and smallest-effect file under ``root`` (the
    project's, or a stand-in with its own conf/ for a trial run). Raises NotDeclared, or ValueError."""
    declared = declaration_block(preset)
    study, doc = declared["study"], declared.get("doc") or {}
    for key in ("primary", "reference", "scenarios"):
        if key not in study:
            raise ValueError(f"the study declaration in {preset} has no '{key}'")
    unknown = {study["primary"]["metric"], *study.get("secondary", [])} - set(OUTCOMES)
    if unknown:
        raise ValueError(f"the study declaration in {preset} names unknown outcomes {sorted(unknown)}; known: {list(OUTCOMES)}")
    sesoi, selection = study.get("sesoi") or {}, study.get("selection")
    return Study(
        primary_metric=study["primary"]["metric"], primary_sequence=str(study["primary"]["task_sequence"]),
        primary_scenario=str(study["primary"]["scenario"]), primary_reason=str(study["primary"].get("reason", "")),
        reference=str(study["reference"]), scenarios=[str(s) for s in study["scenarios"]],
        secondary=list(study.get("secondary", [])),
        family=[Pair(**p) for p in study.get("family", [])],
        gate={str(k): float(v) for k, v in (study.get("gate") or {}).items()},
        alpha=float(study.get("alpha", 0.05)),
        sesoi=Sesoi(value=sesoi.get("value", None if "file" in sesoi else 0.05), rule=str(sesoi.get("rule", "")),
                    file=root / sesoi["file"] if "file" in sesoi else None),
        rates=[float(r) for r in study.get("rates", [])],
        selection=Selection(str(selection["experiment"]), root / selection["table"], str(selection.get("criterion", "joint_acc")))
        if selection else None,
        positive_controls=[Pair(p["learner"], p["of"]) for p in study.get("positive_controls") or []],
        min_seeds=int(study.get("min_seeds", 20)),
        template=ROOT / doc["template"] if "template" in doc else None,
        literature=Literature(
            task_sequence=str(doc["literature"]["task_sequence"]), label=str(doc["literature"]["label"]),
            final_acc={str(s): (float(f), float(j)) for s, (f, j) in doc["literature"]["final_acc"].items()},
        ) if "literature" in doc else None,
        published=read_claims(preset, (doc.get("published") or {}).get("claims") or []),
        published_source=str((doc.get("published") or {}).get("source", "")),
    )


def read_claims(preset: Path, declared: list[dict]) -> list[Claim]:
    """The published findings of a declaration's ``doc: published: claims:``. Raises ValueError on an
    ``expect`` not in EXPECTATIONS."""
    claims = [Claim(**{k: str(v) for k, v in c.items()}) for c in declared]
    for claim in claims:
        if claim.expect not in EXPECTATIONS:
            raise ValueError(f"the published claim {claim.text!r} in {preset} expects {claim.expect!r}; "
                             f"known: {list(EXPECTATIONS)}")
    return claims


def git_head() -> str:
    """The checkout's commit (12 digits), marked when it has uncommitted changes."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip()[:12] + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# --- a preset's sweep ------------------------------------------------------------------------


def sweep_sizes(preset: Path, overrides: list[str]) -> dict[str, int]:
    """How many values each swept key of ``preset`` has (its own ``hydra.sweeper.params``, the presets
    it builds on first), with ``overrides`` of the same keys in their place."""
    params: dict[str, str] = {}
    text = yaml.safe_load(preset.read_text()) or {}
    for parent in text.get("defaults", []):
        if isinstance(parent, str) and parent != "_self_" and (PRESETS / f"{parent}.yaml").exists():
            params.update({k: v for k, v in sweep_params(PRESETS / f"{parent}.yaml").items()})
    params.update(sweep_params(preset))
    params.update(dict(o.split("=", 1) for o in overrides if "=" in o and o.split("=", 1)[0] in params))
    return {key: count_values(value) for key, value in params.items()}


def sweep_params(preset: Path) -> dict[str, str]:
    text = yaml.safe_load(preset.read_text()) or {}
    return {k: str(v) for k, v in (((text.get("hydra") or {}).get("sweeper") or {}).get("params") or {}).items()}


def count_values(value: str) -> int:
    """Values of one sweep override: 'a,b,c' -> 3, 'range(0,20)' -> 20, 'range(0,20,5)' -> 4."""
    found = re.fullmatch(r"\s*range\((\d+)\s*,\s*(\d+)(?:\s*,\s*(\d+))?\)\s*", value)
    if found:
        start, stop, step = int(found[1]), int(found[2]), int(found[3] or 1)
        return max(0, math.ceil((stop - start) / step))
    return len([v for v in value.split(",") if v.strip()])


# --- a run's names ---------------------------------------------------------------------------


def param(row: pd.Series, key: str, default: str = "") -> str:
    value = row.get(f"params.{key}")
    return default if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def loss_design(run: pd.Series) -> str:
    """Which steps of a sequence carry loss ('' for the MLP)."""
    where = param(run, "network.loss_at")
    if where == "all":
        return "loss at every step"
    if where == "last":
        k = int(param(run, "network.loss_last_steps", "1"))
        return "loss at the last step" if k == 1 else f"loss at the last {k} steps"
    return ""


def learner_label(row: pd.Series, base_epochs: int) -> str:
    """A learner's name: the label its run recorded (for runs from before it was recorded, the
    algorithm's name; since strategies exist it names the strategy after a "+", none for fine-tuning),
    its loss placement, its strategy where the label does not name it, and ', batch B' / ', E epochs'
    where it updates on B samples at once or trains more epochs per task than the study's base."""
    label = row.get(LEARNER_LABEL)
    label = str(label) if isinstance(label, str) and label else param(row, "algorithm.name")
    parts = [label, loss_design(row)]
    strategy = param(row, "strategy.name")
    parts.append("" if strategy in NO_STRATEGY or " + " in label else strategy)
    batch = param(row, "trainer.batch_size", "1")
    parts.append(f"batch {batch}" if batch != "1" and "batch" not in label else "")
    epochs = int(param(row, "trainer.epochs_per_task", str(base_epochs)))
    parts.append(f"{epochs} epochs" if epochs != base_epochs else "")
    return ", ".join(p for p in parts if p)


def ordered_learners(learners) -> list[str]:
    """Learners in name order, numbers numerically and case aside: 'BPTT(4; 1)' before 'BPTT(14; 1)'."""
    def natural(name: str) -> list:
        return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]

    return sorted(learners, key=lambda name: (natural(name), name))


# --- selected rates --------------------------------------------------------------------------


@dataclass(frozen=True)
class SelectionTable:
    """The rows of a selection table (``analysis/select_lr.py``): its key columns are dotted config keys."""

    keys: list[str]
    rows: list[dict[str, str]]

    @classmethod
    def read(cls, path: Path) -> SelectionTable:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return cls([c for c in (rows[0] if rows else []) if "." in c], rows)

    def row_of(self, run: pd.Series) -> dict[str, str] | None:
        """The one row whose every key equals the run's recorded param ('' where it has none), as the
        resolver ``forgetlab.selected`` matched its config; None without exactly one."""
        found = [row for row in self.rows if all(row[k] == param(run, k) for k in self.keys)]
        return found[0] if len(found) == 1 else None


def selected_rate(run: pd.Series, table: SelectionTable | None) -> float:
    """The rate the selection chose for the run's learner and cell; NaN where the table has no row for
    it or the run recorded another selection sweep than the table's (the table was rewritten after
    the study ran). A run of the selection itself records none. Without a table, the run's own rate
    (a study of one rate per learner)."""
    if table is None:
        return float(param(run, "algorithm.lr"))
    row = table.row_of(run)
    recorded = param(run, "algorithm.lr_selected_by")
    if row is None or (recorded and row["selected_by"] != recorded):
        return math.nan
    return float(row["lr"])


# --- the run table ---------------------------------------------------------------------------


def run_row(run: pd.Series, artifact, outcomes: list[str], base_epochs: int, table: SelectionTable | None) -> dict:
    R = artifact.R_with_init
    chance = artifact.chance
    lr = float(param(run, "algorithm.lr"))
    selected = selected_rate(run, table)
    row = {
        "run_id": run["run_id"], "learner": learner_label(run, base_epochs),
        "task_sequence": param(run, "task_sequence.name"), "scenario": param(run, "task_sequence.scenario"),
        "joint": param(run, "task_sequence.joint") == "True",
        "perturbation": float(param(run, "network.init_perturbation", "0.0")),
        "seed": int(param(run, "seed")), "lr": lr, "selected_lr": selected, "at_selected": bool(np.isclose(lr, selected)),
        "lr_selected_by": param(run, "algorithm.lr_selected_by"),
        "strength": float(param(run, "strategy.strength", "nan")),  # a penalty strategy's (EWC, SI)
        "strategy_selected_by": param(run, "strategy.selected_by"), "sweep_id": run.get(SWEEP_ID),
        "git_commit": run.get(GIT_COMMIT),
        "seconds": (pd.Timestamp(run["end_time"]) - pd.Timestamp(run["start_time"])).total_seconds(),
        "n_tasks": R.shape[1],
        "init_acc": float(np.mean(R[0])),  # the untrained network
        "chance": float(np.mean(chance)) if chance is not None else math.nan,
        "loss_design": loss_design(run),
    }
    arrays = task_arrays(R, chance=chance)
    row.update({name: OUTCOMES[name].value(arrays) for name in outcomes})
    return row


def run_table(runs: pd.DataFrame, artifacts, outcomes: list[str], table: SelectionTable | None = None) -> pd.DataFrame:
    """One row per analysed run: learner, data set, scenario, training (sequential or joint),
    perturbation, seed, rate and the selected rate, and the ``outcomes`` recomputed from its accuracy
    matrix (NaN where the run does not define one: a joint run has ACC only)."""
    base_epochs = int(pd.to_numeric(runs["params.trainer.epochs_per_task"]).min())
    rows = [run_row(run, artifacts[run["run_id"]], outcomes, base_epochs, table) for _, run in runs.iterrows()]
    return pd.DataFrame(rows)


def latest_runs(client, experiment: str, code_version: str | None) -> tuple[pd.DataFrame, CodeChoice]:
    """The training runs of ``experiment`` of code ``code_version`` (``analysis.load.choose_code``), each
    marked with the run that supersedes it (``mark_superseded``), and the code choice. Raises NoRunsError."""
    runs, code = choose_code(search_training_runs(client, experiment), code_version)
    return mark_superseded(runs), code


def load_runs(client, experiment: str, outcomes: list[str], cache_dir: Path, table: SelectionTable | None = None,
              code_version: str | None = None, searched: tuple[pd.DataFrame, CodeChoice] | None = None,
              ) -> tuple[pd.DataFrame, pd.DataFrame, CodeChoice]:
    """(the runs used: FINISHED, not superseded, readable, of code ``code_version`` (every code's when
    None; ``analysis.load.choose_code``); their run table, unperturbed runs only; the code choice).
    ``searched``: what ``latest_runs`` returned for the same arguments, when the caller has it (the
    search is most of a large store's loading time). Raises NoRunsError."""
    from analysis.load import NoRunsError

    runs, code = searched or latest_runs(client, experiment, code_version)
    used = runs[(runs["status"] == "FINISHED") & (runs["superseded_by"] == "")]
    artifacts, problems = load_artifacts(client, list(used["run_id"]), cache_dir)
    used = used[used["run_id"].isin(artifacts)]
    if used.empty:
        raise NoRunsError(f"no FINISHED run of {experiment!r} with readable eval artifacts ({len(problems)} unreadable)")
    frame = run_table(used, artifacts, outcomes, table)
    return used, frame[frame["perturbation"] == 0].reset_index(drop=True), code


def unfinished_of(runs: pd.DataFrame) -> pd.DataFrame:
    """Of ``latest_runs``'s runs, those that did not finish and that no later run of the same config
    replaced: learner, data set, scenario, training, rate, seed, status and the reason recorded with
    it (``contract.TAG_ERROR``). Their config's cell is averaged over the seeds that did finish, so a
    reader must see them."""
    left = runs[(runs["status"] != "FINISHED") & (runs["superseded_by"] == "")]
    if left.empty:
        return pd.DataFrame(columns=["learner", "task_sequence", "scenario", "joint", "lr", "seed", "status", "reason"])
    base_epochs = int(pd.to_numeric(runs["params.trainer.epochs_per_task"]).min())
    return pd.DataFrame([{
        "learner": learner_label(run, base_epochs), "task_sequence": param(run, "task_sequence.name"),
        "scenario": param(run, "task_sequence.scenario"), "joint": param(run, "task_sequence.joint") == "True",
        "lr": float(param(run, "algorithm.lr")), "seed": int(param(run, "seed")), "status": run["status"],
        "reason": str(run.get(tag_column(contract.TAG_ERROR)) or "").strip() or "(no reason recorded)",
    } for _, run in left.iterrows()])


def unfinished_lines(unfinished: pd.DataFrame) -> list[str]:
    """One line per run that did not finish: where it was, its status and its reason's first line."""
    return [f"- {r.task_sequence}, {r.scenario}: {r.learner}, {'joint' if r.joint else 'sequential'}, rate {r.lr:g}, "
            f"seed {r.seed}: {r.status}: {str(r.reason).splitlines()[0][:300]}"
            for r in unfinished.sort_values(["task_sequence", "scenario", "learner", "joint", "lr", "seed"]).itertuples()]


# --- learnability ----------------------------------------------------------------------------


def reaches_gate(joint_acc: pd.Series, threshold: float | None) -> bool | None:
    """Whether a learner learned: the mean final ACC of its joint runs over seeds at or above the
    scenario's gate. None where the study declares no gate, or without joint runs (not yet shown
    either way)."""
    if threshold is None or not len(joint_acc):
        return None
    return bool(joint_acc.mean() >= threshold)


def learnability(table: pd.DataFrame, gate: dict[str, float], primary: str | None = None) -> pd.DataFrame:
    """One row per data set, scenario and learner at its selected rate: the joint ceiling (mean final
    ACC of joint training over seeds, with its sd), the learning accuracy and ACC of sequential training,
    chance, the primary outcome, seeds, whether the joint ceiling reaches the scenario's ``gate``
    (True / False, False without joint runs; None where the study sets no gate for the scenario) and
    how many seeds' joint runs reach it on their own (``joint_passing``)."""
    rows = []
    here = table[table["at_selected"]]
    for (sequence, scenario, learner), group in here.groupby(["task_sequence", "scenario", "learner"]):
        joint, sequential = group[group["joint"]], group[~group["joint"]]
        ceiling = joint["acc"].mean() if len(joint) else math.nan
        threshold = gate.get(scenario)
        rows.append({
            "task_sequence": sequence, "scenario": scenario, "learner": learner, "lr": group["lr"].iloc[0],
            "joint_acc": ceiling, "joint_acc_sd": joint["acc"].std(ddof=1), "joint_n": len(joint),
            "learning_acc": sequential["learning_acc"].mean() if "learning_acc" in sequential else math.nan,
            "acc": sequential["acc"].mean(), "n": len(sequential), "chance": group["chance"].mean(),
            **({primary: sequential[primary].mean(), f"{primary}_sd": sequential[primary].std(ddof=1)} if primary else {}),
            "gate": threshold,
            # a mean below the gate may be every seed short of it or a few that collapsed: the reader must see which
            "joint_passing": None if threshold is None else int((joint["acc"] >= threshold).sum()),
            # without joint runs a learner cannot show that it learned: it does not pass a declared gate
            "passes": None if threshold is None else bool(reaches_gate(joint["acc"], threshold)),
        })
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    rank = {name: i for i, name in enumerate(ordered_learners(frame["learner"].unique()))}
    scenario_rank = {"task": 0, "domain": 1, "class": 2}
    order = sorted(frame.index, key=lambda i: (frame.at[i, "task_sequence"], scenario_rank.get(frame.at[i, "scenario"], 9),
                                               rank[frame.at[i, "learner"]]))
    return frame.loc[order].reset_index(drop=True)


if __name__ == "__main__":
    from analysis import explain_module

    explain_module(__doc__, __file__)
