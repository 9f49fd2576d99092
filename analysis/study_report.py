"""The verdict of a declared study: its primary family (the declared comparisons of the primary outcome
in the primary cell, Holm over them for "differs" and for "equivalent" alike), the learnability gate
(no verdict for a learner that did not learn), the learning rate as a factor (learner x rate table and
interaction test), the other cells and outcomes as exploratory effects, positive controls, published
findings set beside the study's own comparisons, and the study's doc, all from the MLflow runs of the
current code (``--code-version VERSION``: another code's; ``--any-code``: every code's; the runs of other
code left out are counted in the doc's provenance).

    python analysis/study_report.py --experiment credit_assignment
    python analysis/study_report.py --experiment credit_assignment --doc docs/credit_assignment.md
    python analysis/study_report.py --experiment quickstart --if-declared     # nothing to do: exit 0

The declaration and the run table: ``analysis/study_runs.py``. Comparisons pair two learners by seed, each
at its selected rate (the selection table the declaration names; runs record the selection sweep in
``algorithm.lr_selected_by``, and that of a strategy's hyperparameter in ``strategy.selected_by``). Writes ``reports/<experiment>/study/``: ``verdict.csv`` (every comparison
and outcome), ``rates.csv`` (the primary outcome per learner and rate), ``conditions.csv``, ``runs.csv``
and ``verdict.md``, the study's doc; ``--doc`` writes the doc there too. Statistics:
``analysis/paired_statistics.py``; what they mean: the doc's section *Statistics*.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `analysis` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import paired_statistics as statistics  # noqa: E402
from analysis.aggregate import SCENARIO, value_rank  # noqa: E402
from analysis.load import (  # noqa: E402
    CodeChoice, NoRunsError, add_code_arguments, code_version_asked, code_versions_read, older_code_line,
)
from analysis.report import REPORTS, default_tracking_uri, fmt, markdown_table  # noqa: E402
from analysis.study_runs import (  # noqa: E402
    PRESETS, Claim, Literature, NotDeclared, Pair, SelectionTable, Study, latest_runs, learnability, load_runs, reaches_gate,
    ROOT as PROJECT_ROOT, git_head, ordered_learners, read_declaration, sweep_sizes, unfinished_lines, unfinished_of,
)
from forgetlab import contract  # noqa: E402
from forgetlab.metric_registry import BY_NAME  # noqa: E402
from forgetlab.tracking.store import StoreError, open_store  # noqa: E402

FAMILY, EXPLORATORY, CONTROL = "family", "exploratory", "positive control"


# --- statistics --------------------------------------------------------------------------------


def outcome_by_seed(table: pd.DataFrame, learner: str, sequence: str, scenario: str, outcome: str,
                    rate: float | None = None) -> dict[int, float]:
    """Seed -> outcome of the learner's sequential runs in one cell, at its selected rate (or at ``rate``)."""
    here = (table["learner"] == learner) & (table["task_sequence"] == sequence) & (table["scenario"] == scenario) & ~table["joint"]
    here &= table["at_selected"] if rate is None else np.isclose(table["lr"], rate)
    rows = table[here]
    return dict(zip(rows["seed"], rows[outcome]))


def gate_frame(study: Study, table: pd.DataFrame, primary: str | None = None) -> pd.DataFrame:
    """``learnability`` with the gate unknown (``passes`` None) for a learner without joint runs: not
    shown to have learned, nor shown not to have (its joint runs are still to come, or all failed)."""
    frame = learnability(table, study.gate, primary)
    if not frame.empty:
        frame["passes"] = frame["passes"].astype(object).where(frame["joint_n"] > 0, None)
    return frame


def gate_lookup(study: Study, table: pd.DataFrame) -> dict[tuple[str, str, str], bool | None]:
    frame = gate_frame(study, table)
    if frame.empty:
        return {}
    return {(r["task_sequence"], r["scenario"], r["learner"]): r["passes"] for _, r in frame.iterrows()}


def refusal(gate: dict, sequence: str, scenario: str, pair: Pair) -> str:
    """Why a comparison gets no verdict ('' when it gets one): a learner below the scenario's gate."""
    below = [name for name in (pair.treatment, pair.reference) if gate.get((sequence, scenario, name)) is False]
    return ", ".join(below) + " below the gate" if below else ""


def comparison_cells(study: Study, table: pd.DataFrame) -> list[tuple[str, str, str, Pair, str]]:
    """(kind, data set, scenario, pair, outcome) of every comparison with runs on both sides: the family
    (the declared pairs, primary outcome, primary cell), the positive controls (primary outcome and cell),
    and as exploratory the declared pairs in every other cell and outcome."""
    sequential = table[~table["joint"]]
    present = {(s, c): set(g["learner"]) for (s, c), g in sequential.groupby(["task_sequence", "scenario"])}
    out = []
    for sequence in sorted({s for s, _ in present}, key=lambda s: (s != study.primary_sequence, s)):
        for scenario in study.scenarios:
            here = present.get((sequence, scenario), set())
            primary_cell = (sequence, scenario) == (study.primary_sequence, study.primary_scenario)
            for outcome in study.outcomes:
                for pair in study.family:
                    if pair.treatment in here and pair.reference in here:
                        kind = FAMILY if primary_cell and outcome == study.primary_metric else EXPLORATORY
                        out.append((kind, sequence, scenario, pair, outcome))
            for pair in study.positive_controls if primary_cell else []:
                if pair.treatment in here and pair.reference in here:
                    out.append((CONTROL, sequence, scenario, pair, study.primary_metric))
    return out


def verdict_table(study: Study, table: pd.DataFrame, margin: float, unfinished: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per comparison: the paired statistics at each learner's selected rate; for the family,
    Holm's adjustment over its tested comparisons of the t-test p (differs) and of the TOST p (equivalent
    within ``margin``) and the verdict; a comparison with a learner below the gate gets none, nor one
    whose runs FAILED for some seeds (``unfinished``: ``study_runs.unfinished_of``)."""
    gate = gate_lookup(study, table)
    rows = []
    for kind, sequence, scenario, pair, outcome in comparison_cells(study, table):
        d = statistics.paired_differences(outcome_by_seed(table, pair.treatment, sequence, scenario, outcome),
                                          outcome_by_seed(table, pair.reference, sequence, scenario, outcome))
        result = statistics.compare(d, margin)
        rows.append({"kind": kind, "task_sequence": sequence, "scenario": scenario, "outcome": outcome,
                     "treatment": pair.treatment, "reference": pair.reference,
                     "refused": refusal(gate, sequence, scenario, pair),
                     **{k: getattr(result, k) for k in ("n", "mean", "ci_low", "ci_high", "d_z", "t", "p", "p_wilcoxon", "p_tost")}})
    rows = family_first(study, rows, gate)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["p_holm"], frame["p_tost_holm"], frame["verdict"] = np.nan, np.nan, ""
    for i in frame.index[(frame["kind"] == FAMILY) & (frame["refused"] == "")]:
        frame.at[i, "refused"] = failed_seeds(table, unfinished, frame.loc[i])
    frame["pending"] = pending_reasons(study, frame, gate)
    tested = frame.index[(frame["kind"] == FAMILY) & (frame["refused"] == "")]
    # A pending comparison counts as p = 1, the largest it can be: Holm's adjustment only falls as any one
    # p-value falls, so a verdict given while comparisons are pending stands once they are in.
    waiting = frame.loc[tested, "pending"] != ""
    frame.loc[tested, "p_holm"] = statistics.holm(frame.loc[tested, "p"].mask(waiting, 1.0).to_numpy())
    frame.loc[tested, "p_tost_holm"] = statistics.holm(frame.loc[tested, "p_tost"].mask(waiting, 1.0).to_numpy())
    frame.loc[frame["pending"] != "", ["p_holm", "p_tost_holm"]] = np.nan
    for i in frame.index[frame["kind"] == FAMILY]:
        frame.at[i, "verdict"] = (f"no verdict: {frame.at[i, 'refused']}" if frame.at[i, "refused"] else
                                  f"pending: {frame.at[i, 'pending']}" if frame.at[i, "pending"] else
                                  statistics.verdict(frame.at[i, "p_holm"], frame.at[i, "p_tost_holm"], study.alpha))
    return frame


def family_first(study: Study, rows: list[dict], gate: dict) -> list[dict]:
    """The family's rows first, in the declared order, every declared comparison among them: one without
    runs on both sides yet gets a row with n = 0 (a study in progress, or a learner whose runs failed)."""
    order = {(p.treatment, p.reference): i for i, p in enumerate(study.family)}
    family = {(r["treatment"], r["reference"]): r for r in rows if r["kind"] == FAMILY}
    for pair in study.family:
        if (pair.treatment, pair.reference) not in family:
            family[(pair.treatment, pair.reference)] = {
                "kind": FAMILY, "task_sequence": study.primary_sequence, "scenario": study.primary_scenario,
                "outcome": study.primary_metric, "treatment": pair.treatment, "reference": pair.reference,
                "refused": refusal(gate, study.primary_sequence, study.primary_scenario, pair), "n": 0,
                **dict.fromkeys(("mean", "ci_low", "ci_high", "d_z", "t", "p", "p_wilcoxon", "p_tost"), np.nan)}
    return sorted(family.values(), key=lambda r: order[(r["treatment"], r["reference"])]) + \
        [r for r in rows if r["kind"] != FAMILY]


def failed_seeds(table: pd.DataFrame, unfinished: pd.DataFrame | None, row: pd.Series) -> str:
    """Why a comparison gets no verdict because runs of its cell ended FAILED (a divergence: it fails again
    on every resume) at a learner's selected rate, '' when none did: a verdict on the seeds that survived
    would favour the learner that lost them."""
    if unfinished is None or unfinished.empty:
        return ""
    failed = unfinished[(unfinished["status"] == "FAILED") & ~unfinished["joint"].astype(bool)
                        & (unfinished["task_sequence"] == row["task_sequence"]) & (unfinished["scenario"] == row["scenario"])]
    said = []
    for name in (row["treatment"], row["reference"]):
        rates = table.loc[(table["learner"] == name) & (table["task_sequence"] == row["task_sequence"])
                          & (table["scenario"] == row["scenario"]), "selected_lr"].dropna().unique()
        seeds = sorted(failed.loc[(failed["learner"] == name) & failed["lr"].apply(
            lambda lr: any(np.isclose(lr, rate) for rate in rates)), "seed"])
        if seeds:
            said.append(f"{name} FAILED for seed(s) {', '.join(map(str, seeds))}")
    return "; ".join(said)


def pending_reasons(study: Study, frame: pd.DataFrame, gate: dict) -> list[str]:
    """Why each family comparison still waits ('' when it does not): no runs yet, fewer seeds than the
    study's (the declared ``min_seeds``; a trial's own count when the whole study ran fewer), or a learner
    whose gate is unknown (no joint runs) where the scenario has a gate."""
    family = (frame["kind"] == FAMILY) & (frame["refused"] == "")
    full = min(study.min_seeds, int(frame.loc[family, "n"].max())) if family.any() else 0
    reasons = []
    for here, (_, row) in zip(family, frame.iterrows()):
        ungated = [name for name in (row["treatment"], row["reference"])
                   if study.gate.get(row["scenario"]) is not None
                   and gate.get((row["task_sequence"], row["scenario"], name)) is None]
        reasons.append("" if not here else "not run yet" if row["n"] == 0 else
                       f"{row['n']} of {full} seeds" if row["n"] < full else
                       f"no joint runs of {', '.join(ungated)} (the gate)" if ungated else "")
    return reasons


def rate_learnability(study: Study, table: pd.DataFrame) -> pd.DataFrame:
    """The gate at every rate of the primary cell, one row per learner and rate: the mean joint ACC over
    seeds, the joint runs, and ``learned``: whether that mean reaches the primary scenario's gate (None
    where the study declares no gate or the rate has no joint runs yet). At a rate where a learner did
    not learn, its forgetting is no evidence about it (a run that learned little has a normalised BWT
    near 0/0), so the rate factor uses only the rates where it learned."""
    cell = table[(table["task_sequence"] == study.primary_sequence) & (table["scenario"] == study.primary_scenario)]
    threshold = study.gate.get(study.primary_scenario)
    rows = []
    for (learner, rate), group in cell.groupby(["learner", "lr"]):
        joint = group[group["joint"]]
        rows.append({"learner": learner, "rate": rate, "joint_acc": joint["acc"].mean() if len(joint) else math.nan,
                     "joint_n": len(joint), "learned": reaches_gate(joint["acc"], threshold)})
    # object: True, False or None, as Python values (``is False`` tells not learned from not known)
    return pd.DataFrame(rows, columns=["learner", "rate", "joint_acc", "joint_n", "learned"]).astype({"learned": object})


def rate_learned(study: Study, table: pd.DataFrame) -> dict[tuple[str, float], tuple[bool | None, float]]:
    """(learner, rate) -> (learned, mean joint ACC), from ``rate_learnability``."""
    return {(r["learner"], r["rate"]): (r["learned"], r["joint_acc"]) for r in rate_learnability(study, table).to_dict("records")}


def rate_frame(study: Study, table: pd.DataFrame) -> pd.DataFrame:
    """The primary outcome of sequential training in the primary cell, one row per run: learner, rate,
    seed, and whether the learner learned at that rate (``rate_learnability``)."""
    cell = table[(table["task_sequence"] == study.primary_sequence) & (table["scenario"] == study.primary_scenario)
                 & ~table["joint"]]
    runs = cell[["learner", "lr", "seed", "selected_lr", study.primary_metric]].rename(columns={"lr": "rate"})
    learned = rate_learnability(study, table)[["learner", "rate", "learned"]]
    return runs.merge(learned, on=["learner", "rate"], how="left").astype({"learned": object})


def rate_contrasts(study: Study, table: pd.DataFrame) -> pd.DataFrame:
    """Each family comparison at each common rate (both learners at that rate), beside the headline at
    the learners' selected rates: does the sign depend on the rate? ``not_learned``: the learners below
    the gate at that rate; ``not_known``: those without joint runs at that rate yet ('' for none)."""
    rows = []
    learned = {key: passes for key, (passes, _) in rate_learned(study, table).items()}
    for pair in study.family:
        for rate in sorted(table["lr"].unique()):
            d = statistics.paired_differences(
                *(outcome_by_seed(table, name, study.primary_sequence, study.primary_scenario, study.primary_metric, rate)
                  for name in (pair.treatment, pair.reference)))
            if len(d):
                mean, low, high = statistics.mean_ci(d)
                sides = (pair.treatment, pair.reference)
                below = [name for name in sides if learned.get((name, rate)) is False]
                unknown = [name for name in sides if learned.get((name, rate)) is None and study.gate.get(study.primary_scenario)]
                rows.append({"treatment": pair.treatment, "reference": pair.reference, "rate": rate, "n": len(d),
                             "mean": mean, "ci_low": low, "ci_high": high, "not_learned": ", ".join(below),
                             "not_known": ", ".join(unknown)})
    return pd.DataFrame(rows)


def condition_table(study: Study, table: pd.DataFrame) -> pd.DataFrame:
    """Every learner, data set and scenario at its selected rate: each outcome's mean and sd over the
    seeds of sequential training (the sd is the seed-to-seed noise), the joint ceiling, chance, the gate."""
    rows = []
    here = table[table["at_selected"]]
    gate = gate_lookup(study, table)
    for (sequence, scenario, learner), group in here.groupby(["task_sequence", "scenario", "learner"]):
        plain, joint = group[~group["joint"]], group[group["joint"]]
        row = {"task_sequence": sequence, "scenario": scenario, "learner": learner, "n": len(plain),
               "lr": ", ".join(f"{v:g}" for v in sorted(group["lr"].unique())),
               "strength": ", ".join(f"{v:g}" for v in sorted(group["strength"].dropna().unique()))
               if "strength" in group else ""}
        for outcome in study.shown_outcomes:
            row[f"{outcome}_mean"], row[f"{outcome}_sd"] = plain[outcome].mean(), plain[outcome].std(ddof=1)
        row.update({"joint_acc_mean": joint["acc"].mean(), "joint_n": len(joint), "chance": group["chance"].mean(),
                    "init_acc_mean": plain["init_acc"].mean(), "passes": gate.get((sequence, scenario, learner))})
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    learner_rank = {name: i for i, name in enumerate(ordered_learners(frame["learner"].unique()))}
    frame["_rank"] = [(s != study.primary_sequence, s, value_rank(SCENARIO, c), learner_rank[lr])
                      for s, c, lr in zip(frame["task_sequence"], frame["scenario"], frame["learner"])]
    return frame.sort_values("_rank").drop(columns="_rank").reset_index(drop=True)


# --- writing -----------------------------------------------------------------------------------


def interval(mean: float, low: float, high: float) -> str:
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def p_text(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def verdict_markdown(frame: pd.DataFrame, margin: float, family: bool) -> str:
    """The comparisons of ``frame``: with Holm's p and the verdict for the family, unadjusted otherwise."""
    shown = {
        "data": frame["task_sequence"], "scenario": frame["scenario"],
        "comparison": [f"{t} − {r}" for t, r in zip(frame["treatment"], frame["reference"])], "n": frame["n"],
        "effect [95 % CI]": [interval(m, lo, hi) for m, lo, hi in zip(frame["mean"], frame["ci_low"], frame["ci_high"])],
        "d_z": frame["d_z"].map(lambda v: fmt(v, 2)), "p (t)": frame["p"].map(p_text),
        "p Wilcoxon": frame["p_wilcoxon"].map(p_text),
        **({f"p TOST ±{margin:g}": frame["p_tost"].map(p_text)} if np.isfinite(margin) else {}),  # controls: no margin
    }
    if family:
        shown.update({"p Holm": frame["p_holm"].map(p_text), "p TOST Holm": frame["p_tost_holm"].map(p_text),
                      "verdict": frame["verdict"].map(lambda v: f"**{v}**")})
    else:
        shown["learned?"] = frame["refused"].map(lambda r: r or "yes")
    return markdown_table(pd.DataFrame(shown))


def summary_sentences(study: Study, frame: pd.DataFrame, margin: float) -> list[str]:
    """What the primary family showed, comparison by comparison, in words with its numbers."""
    family = frame[frame["kind"] == FAMILY] if not frame.empty else frame
    label = BY_NAME[study.primary_metric].label
    if family.empty:
        return [f"No runs of the primary cell ({study.primary_sequence}, {study.primary_scenario}): nothing to conclude."]
    lines = []
    for _, row in family.iterrows():
        if row["n"] == 0:
            lines.append(f"- {row['treatment']} − {row['reference']}: **{row['verdict']}**.")
            continue
        numbers = (f"{label} difference {interval(row['mean'], row['ci_low'], row['ci_high'])} (n = {row['n']}, "
                   f"d_z = {fmt(row['d_z'], 2)}")
        lines.append(f"- {row['treatment']} − {row['reference']}: {numbers}, Holm p = {p_text(row['p_holm'])}, "
                     f"TOST ±{margin:g} Holm p = {p_text(row['p_tost_holm'])}): **{row['verdict']}**.")
    return lines


def gate_section(study: Study, table: pd.DataFrame) -> str:
    frame = gate_frame(study, table, study.primary_metric)
    if frame.empty:
        return "## Did the learners learn?\n\nNo runs."
    failed = frame[frame["passes"] == False]  # noqa: E712 (None is no gate)
    shown = pd.DataFrame({
        "data": frame["task_sequence"], "scenario": frame["scenario"], "learner": frame["learner"],
        "rate": frame["lr"].map(lambda v: f"{v:g}"), "joint ACC (ceiling)": frame["joint_acc"].map(fmt),
        "learning accuracy": frame["learning_acc"].map(fmt), "chance": frame["chance"].map(fmt),
        "gate": frame["gate"].map(lambda g: f"≥ {g:g}" if g is not None and np.isfinite(g) else "–"),
        "seeds at the gate": [f"{k:.0f} of {n}" if g is not None and n else "–"
                              for k, g, n in zip(frame["joint_passing"], frame["gate"], frame["joint_n"])],
        "passes": [{True: "yes", False: "**no**"}.get(p, "no joint runs" if g is not None and not n else "–")
                   for p, g, n in zip(frame["passes"], frame["gate"], frame["joint_n"])]})
    if not study.gate:  # nothing to pass: the table says what each learner learned
        return "\n".join(["## Did the learners learn?", "",
                          "The study declares no gate; joint ACC (all tasks shuffled together, the ceiling) and learning "
                          "accuracy (each task right after training it), means over seeds at the selected rate:", "",
                          markdown_table(shown.drop(columns=["gate", "seeds at the gate", "passes"]))])
    lines = ["## Did the learners learn?", "",
             "The gate: a learner's joint ACC (all tasks shuffled together; mean over seeds, at its selected rate) must "
             "reach " + ", ".join(f"{v:g} in {s}-IL" for s, v in study.gate.items()) + " for its comparisons in that "
             "scenario to get a verdict: a learner that did not learn cannot show forgetting. \"Seeds at the gate\": the "
             "seeds whose own joint run reaches it (a mean below it may be every seed short of it, or a few that "
             "collapsed).", "",
             markdown_table(shown), ""]
    if failed.empty:
        return "\n".join(lines + ["Every learner passes the gate where it applies."])
    lines.append("**Not learned** (below the gate; their comparisons get no verdict):")
    lines += [f"- {r['task_sequence']}, {r['scenario']}: {r['learner']} (joint ACC {fmt(r['joint_acc'])} < {r['gate']:g})"
              for _, r in failed.iterrows()]
    return "\n".join(lines)


def rates_section(study: Study, table: pd.DataFrame) -> str:
    data = rate_frame(study, table)
    outcome, label = study.primary_metric, BY_NAME[study.primary_metric].label
    if data.empty:
        return "## The learning rate as a factor\n\nNo runs of the primary cell."
    cells = data.groupby(["learner", "rate"])[outcome].agg(["mean", "std", "count"]).reset_index()
    gated = rate_learned(study, table)
    gate = study.gate.get(study.primary_scenario)
    selected = data.groupby("learner")["selected_lr"].first()
    rows = []
    rates = sorted({*study.rates, *cells["rate"]})  # the declared grid, runs or not
    for learner in ordered_learners(cells["learner"].unique()):
        row = {"learner": learner, **{f"rate {rate:g}": "–" for rate in rates}}
        for _, c in cells[cells["learner"] == learner].iterrows():
            mark = " (selected)" if np.isclose(c["rate"], selected[learner]) else ""
            passes, joint_acc = gated.get((learner, c["rate"]), (None, math.nan))
            if passes is False:
                mark += f"; **not learned** (joint ACC {fmt(joint_acc)})"
            elif passes is None and gate is not None:
                mark += "; learned? not known (no joint runs yet)"
            row[f"rate {c['rate']:g}"] = f"{fmt(c['mean'])} ± {fmt(c['std'])} (n = {int(c['count'])}){mark}"
        rows.append(row)
    learned = data if gate is None else data[data["learned"] == True]  # noqa: E712 (None: not shown to have learned)
    test = statistics.interaction_test(learned.rename(columns={outcome: "y"}), "y", a="learner", b="rate", block="seed")
    contrasts = rate_contrasts(study, table)
    contrast_view = pd.DataFrame({
        "comparison": [f"{t} − {r}" for t, r in zip(contrasts.get("treatment", []), contrasts.get("reference", []))],
        "rate": contrasts.get("rate", pd.Series(dtype=float)).map(lambda v: f"{v:g}"), "n": contrasts.get("n", []),
        "effect [95 % CI]": [interval(m, lo, hi) for m, lo, hi in zip(contrasts.get("mean", []), contrasts.get("ci_low", []),
                                                                     contrasts.get("ci_high", []))],
        "both learned?": [f"no: {below} below the gate" if below else f"not known: no joint runs of {unknown} yet"
                          if unknown else "yes" for below, unknown in zip(contrasts.get("not_learned", []),
                                                                         contrasts.get("not_known", []))]})
    over = ("every learner at every rate" if gate is None else
            f"the learners at the rates where they learned (joint ACC ≥ {gate:g} at that rate; "
            f"{learned.groupby(['learner', 'rate']).ngroups} of {cells.shape[0]} learner × rate cells)")
    return "\n".join([
        "## The learning rate as a factor", "",
        f"{label} of sequential training in the primary cell, every learner at every rate (mean ± sd over seeds); "
        "the verdicts above compare each learner at its selected rate. At a rate where a learner's mean joint ACC is "
        "below the gate it did not learn, and its forgetting there is no evidence (marked, and left out of the test).",
        "", markdown_table(pd.DataFrame(rows)), "",
        f"Learner × rate interaction (least squares with seed blocks, `paired_statistics.interaction_test`) over {over}: "
        + (f"F({test.df_effect}, {test.df_residual}) = {fmt(test.F, 2)}, p = {p_text(test.p)} ({test.n} runs)."
           if test.df_effect else f"not estimable from these runs ({test.n}): no two learners share two rates yet."), "",
        "The family's comparisons at each common rate (both learners at that rate):", "",
        markdown_table(contrast_view) if len(contrast_view) else "No comparison has runs at a common rate."])


def controls_section(study: Study, frame: pd.DataFrame) -> str:
    lines = ["## Positive controls", ""]
    controls = frame[frame["kind"] == CONTROL] if not frame.empty else frame
    if not study.positive_controls:
        return "\n".join(lines + ["None declared yet: strategies that should forget less (replay, EWC) slot in here as "
                                  "`positive_controls` of the declaration, each against its own learner without it."])
    if controls.empty:
        return "\n".join(lines + ["The declared positive controls have no runs."])
    return "\n".join(lines + ["Each control against the same learner without its strategy, primary outcome and cell "
                              "(unadjusted):", "", verdict_markdown(controls, np.nan, family=False)])


def conditions_markdown(study: Study, frame: pd.DataFrame) -> str:
    """Every learner's outcomes at its selected rate (mean ± sd over seeds), its strategy's strength
    where any learner has one, the untrained network's ACC, chance, the joint ceiling and whether it
    passes the gate."""
    def cell(row, name):
        mean, sd = row[f"{name}_mean"], row[f"{name}_sd"]
        return fmt(mean) + (f" ± {fmt(sd)}" if np.isfinite(sd) else "")

    shown = ["acc", "learning_acc", *(o for o in study.outcomes if o not in ("acc", "learning_acc"))]
    strengths = {"strength": frame["strength"]} if "strength" in frame and frame["strength"].astype(bool).any() else {}
    table = pd.DataFrame({
        "data": frame["task_sequence"], "scenario": frame["scenario"], "learner": frame["learner"],
        "lr": frame["lr"], **strengths, "n": frame["n"], "untrained ACC": frame["init_acc_mean"].map(fmt), "chance": frame["chance"].map(fmt),
        **{BY_NAME[name].label: [cell(r, name) for _, r in frame.iterrows()] for name in shown},
        "joint ACC (ceiling)": [fmt(v) + f" (n = {n})" for v, n in zip(frame["joint_acc_mean"], frame["joint_n"])],
        "passes the gate": frame["passes"].map({True: "yes", False: "**no**", None: "–"}),
    })
    return markdown_table(table)


STATISTICS = """\
Every comparison pairs two learners by seed: the same seed gives both the same sample order and, to
learners of one network, the same initial weights, so d_s = y_treatment(s) − y_reference(s) removes
what the seeds share. Each learner enters at its selected rate (the best mean joint validation ACC of
the pilot); only sequential runs enter an effect.

- **effect**: the mean paired difference over the n seeds, with its 95 % Student-t interval
  (mean ± t_{0.975, n−1} · s_d/√n); **d_z** = mean/s_d, Cohen's standardised paired effect (undefined
  when every seed moved by the same amount up to rounding).
- **primary family**: the declared comparisons of the primary outcome in the primary cell, and only
  those. **p Holm**: Holm's step-down adjustment of the paired t-tests over the family's tested
  comparisons; **p TOST Holm**: the same adjustment of the family's TOST p-values, so that
  "equivalent" has the error control of "differs".
- **p TOST**: two one-sided t-tests of "the difference is at least the margin δ" (Schuirmann 1987);
  p < alpha shows equivalence within ±δ. δ, the smallest effect of interest, comes from the pilot by
  the declared rule (section *Primary outcome*).
- **verdict** (family only): *differs* when p Holm < alpha; *equivalent* when p TOST Holm < alpha;
  *differs, within margin* when both; *inconclusive* when neither; *no verdict* for a comparison with
  a learner below the gate. **p Wilcoxon**: the signed-rank test as a check that does not assume
  normal differences (unadjusted).
- **exploratory** tables (other scenarios, secondary outcomes) give effects, intervals and unadjusted
  p-values: no verdict is drawn from them.
- **noise**: the seed-to-seed sd of each learner's outcome (conditions table) is the run-to-run
  variability, and the paired interval already carries it. The first edition's noise floor (every run
  repeated with its weights perturbed by 1e-12) is gone: it left many runs bit-identical to their twin
  (48 of 136 noise bands were exactly [0, 0]), and a perturbation large enough to decorrelate the
  trajectories is another seed, whose spread the seeds already measure.
- **learner × rate**: an F-test of the interaction in a least-squares model with seed blocks, learner,
  rate and learner:rate as factors (`paired_statistics.interaction_test`), on the primary outcome in the
  primary cell, over the learners at the rates where they learned (the gate at each rate: a run that
  learned little has a normalised BWT near 0/0, and one such seed moves a mean by more than any effect).
"""


def design_markdown(table: pd.DataFrame) -> str:
    """What was run, learner by learner: data sets, scenarios, seeds, learning rates and run time."""
    rows = []
    for learner in ordered_learners(table["learner"].unique()):
        runs = table[table["learner"] == learner]
        plain = runs[~runs["joint"]]
        rows.append({
            "learner": learner,
            "data": "; ".join(sorted(runs["task_sequence"].unique())),
            "scenarios": ", ".join(sorted(runs["scenario"].unique(), key=lambda s: value_rank(SCENARIO, s))),
            "seeds": plain["seed"].nunique(),
            "learning rates": ", ".join(f"{v:g}" for v in sorted(runs["lr"].unique())),
            "runs": len(runs),
            "seconds per run (mean)": f"{runs['seconds'].mean():.1f}",
        })
    return markdown_table(pd.DataFrame(rows))


def literature_markdown(literature: Literature, conditions: pd.DataFrame, table: pd.DataFrame) -> str:
    """Every learner's ACC of sequential training on the literature's task sequence, per scenario, beside
    the published values; whether it shows their ordering of the scenarios; class-IL against chance."""
    sequence = literature.task_sequence
    rows = conditions[conditions["task_sequence"] == sequence]
    if rows.empty:
        return f"No sequential runs on `{sequence}`."
    n_tasks = table.loc[table["task_sequence"] == sequence, "n_tasks"].max()
    scenarios = list(literature.final_acc)
    published = sorted(scenarios, key=lambda s: literature.final_acc[s][0])  # e.g. class < domain < task
    ordering = " < ".join(published)
    floor = f"class-IL − 1/T (T = {n_tasks})" if "class" in scenarios else None
    shown = []
    for learner in ordered_learners(rows["learner"].unique()):
        mine = rows[rows["learner"] == learner].set_index("scenario")
        acc = {s: mine.at[s, "acc_mean"] if s in mine.index else np.nan for s in scenarios}
        joint = {s: mine.at[s, "joint_acc_mean"] if s in mine.index else np.nan for s in scenarios}
        ordered = all(acc[a] < acc[b] for a, b in zip(published, published[1:])) if all(np.isfinite(list(acc.values()))) else None
        shown.append({"learner": learner, **{f"{s}-IL": f"{fmt(acc[s])} (joint {fmt(joint[s])})" for s in scenarios},
                      ordering: {True: "yes", False: "**no**", None: "–"}[ordered],
                      **({floor: fmt(acc["class"] - 1 / n_tasks)} if floor else {})})
    shown.append({"learner": literature.label,
                  **{f"{s}-IL": f"≈ {fmt(f)} (joint ≈ {fmt(j)})" for s, (f, j) in literature.final_acc.items()},
                  ordering: "yes", **({floor: fmt(literature.final_acc["class"][0] - 1 / n_tasks)} if floor else {})})
    return markdown_table(pd.DataFrame(shown))


def claim_verdict(row: pd.Series | None, alpha: float) -> tuple[str, bool]:
    """(the verdict of the comparison a published claim names, whether it is Holm-adjusted): the family's
    own verdict in the primary family; elsewhere (an exploratory comparison) the same rule on the
    unadjusted p-values. "–" without runs, "no verdict: ..." for a learner below the gate."""
    if row is None or row["n"] == 0:
        return "–", False
    if row["refused"]:
        return f"no verdict: {row['refused']}", False
    if row["kind"] == FAMILY:
        return row["verdict"], True
    return statistics.verdict(row["p"], row["p_tost"], alpha), False


def claim_holds(claim: Claim, verdict: str, mean: float) -> str:
    """Whether our comparison shows the published finding: "yes", "no", "not shown" (inconclusive, or no
    verdict) or "no runs"."""
    if verdict == "–":
        return "no runs"
    differs = verdict in ("differs", "differs, within margin")
    equivalent = verdict in ("equivalent", "differs, within margin")
    if claim.expect == "higher":
        return "yes" if differs and mean > 0 else "no" if differs or equivalent else "not shown"
    return "yes" if equivalent else "no" if differs else "not shown"


def published_markdown(study: Study, frame: pd.DataFrame, margin: float) -> str:
    """Each published finding beside our paired effect on the primary outcome (``treatment`` − the study's
    reference, in the claim's scenario of the primary data set), and whether our runs show it."""
    if not study.published:
        return "The study declares no published findings to compare with."
    label, rows = BY_NAME[study.primary_metric].label, []
    primary = frame[(frame["outcome"] == study.primary_metric) & (frame["task_sequence"] == study.primary_sequence)
                    & (frame["reference"] == study.reference)] if not frame.empty else frame
    for claim in study.published:
        match = primary[(primary["treatment"] == claim.treatment) & (primary["scenario"] == claim.scenario)] \
            if not primary.empty else primary
        row = match.iloc[0] if len(match) else None
        verdict, adjusted = claim_verdict(row, study.alpha)
        rows.append({
            "published": claim.text, "scenario": claim.scenario,
            "comparison": f"{claim.treatment} − {study.reference}",
            f"ours: {label} effect [95 % CI]": interval(row["mean"], row["ci_low"], row["ci_high"]) if row is not None else "–",
            "n": row["n"] if row is not None else 0,
            "verdict": verdict + ("" if adjusted or verdict == "–" or verdict.startswith("no verdict") else " (unadjusted)"),
            "shown by our runs": claim_holds(claim, verdict, row["mean"] if row is not None else np.nan),
        })
    source = f"Published: {study.published_source}. " if study.published_source else ""
    return (source + "Expected *higher*: the paired t-test shows a difference above 0; *equivalent*: the TOST shows "
            f"it within ±{margin:g}; each at alpha = {study.alpha:g}, Holm-adjusted in the primary family (the "
            "primary cell) and unadjusted elsewhere (marked).\n\n" + markdown_table(pd.DataFrame(rows)))


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


def stamps(runs_used: pd.DataFrame, table: pd.DataFrame, code: CodeChoice | None = None) -> list[str]:
    sweeps = sorted(table["sweep_id"].dropna().astype(str).unique())
    commits = sorted(table["git_commit"].dropna().astype(str).str[:12].unique())
    selected_by = [table[c] for c in ("lr_selected_by", "strategy_selected_by") if c in table]
    selection = sorted({s for column in selected_by for s in column.dropna().astype(str).unique() if s})
    return [
        f"- generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `python analysis/study_report.py` at commit `{git_head()}`",
        f"- study sweeps: {', '.join(f'`{s}`' for s in sweeps) or 'none'}; runs trained at commit(s) "
        + (", ".join(f"`{c}`" for c in commits) or "unknown"),
        f"- learning rates and strategy hyperparameters selected on validation sets by sweep(s) "
        f"{', '.join(f'`{s}`' for s in selection) or 'none recorded'} (the runs' `algorithm.lr_selected_by` and "
        "`strategy.selected_by`)",
        f"- {len(runs_used)} runs analysed"
        + (f", of code version(s) {code_versions_read(runs_used, code.current)}" if code else ""),
        *([f"- {code.note()}"] if code is not None and code.left_out else []),
        *older_code_line(code, commits),
    ]


# The engine's sections: a template line ``<!-- study: NAME -->`` becomes section NAME.
SECTIONS = ("provenance", "primary", "gate", "verdicts", "rates", "controls", "design", "literature", "published",
            "conditions", "statistics")
PLACEHOLDER = re.compile(r"^<!-- study: ([a-z-]+) -->$")
TEMPLATE_NOTE = "<!-- template:"  # a template's own comment, left out of the doc
DEFAULT_TEMPLATE = "# Study verdict: `{experiment}`\n\n" + "\n\n".join(f"<!-- study: {name} -->" for name in SECTIONS
                                                                        if name not in ("literature", "published")) + "\n"


def write_markdown(study: Study, experiment: str, frame: pd.DataFrame, conditions: pd.DataFrame, runs_used: pd.DataFrame,
                   table: pd.DataFrame, margin: tuple[float, str], times: pd.DataFrame | None = None,
                   code: CodeChoice | None = None, declared: dict[str, int] | None = None,
                   unfinished: pd.DataFrame | None = None) -> str:
    """The study's doc: its template (``study.template``, else DEFAULT_TEMPLATE) with the sections filled in;
    ``declared``: the values of each swept key of the study's sweep (``study_runs.sweep_sizes``)."""
    template = study.template.read_text() if study.template else DEFAULT_TEMPLATE.format(experiment=experiment)
    return fill_template(template, sections(study, frame, conditions, runs_used, table, margin, times, code, declared,
                                            unfinished))


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


def primary_section(study: Study, frame: pd.DataFrame, margin: tuple[float, str]) -> str:
    value, source = margin
    label = BY_NAME[study.primary_metric].label
    family = "; ".join(f"{p.treatment} − {p.reference}" for p in study.family)
    return "\n".join([
        "## Primary outcome (declared before running)", "",
        f"**{label}** (`{study.primary_metric}`) on `{study.primary_sequence}`, {study.primary_scenario} scenario, "
        f"sequential training, each learner at its selected rate. Why: {study.primary_reason or 'not stated'}.", "",
        f"The primary family, {len(study.family)} declared comparisons (Holm over these only, for *differs* and for "
        f"*equivalent*): {family}. alpha = {study.alpha:g}; smallest effect of interest δ = {value:g} ({source}; rule: "
        f"{study.sesoi.rule or 'declared'}).", "",
        *incomplete_family(study, frame),
        *summary_sentences(study, frame, value)])


def incomplete_family(study: Study, frame: pd.DataFrame) -> list[str]:
    """A paragraph on the family's pending comparisons, when it has any."""
    pending = frame[(frame["kind"] == FAMILY) & (frame["pending"] != "")] if "pending" in frame else frame.iloc[:0]
    if pending.empty:
        return []
    return [f"**The family is not complete**: {len(pending)} of {len(study.family)} declared comparisons are pending "
            f"(why: in the list below). Holm counts each of them as p = 1, the largest it can be. Holm's "
            "adjusted p-values can only fall as the pending p-values come in, so a *differs* or *equivalent* shown "
            "now stands; an *inconclusive* may still change.", ""]


def verdicts_section(study: Study, frame: pd.DataFrame, margin: float) -> str:
    if frame.empty:
        return "## Verdict\n\nNo comparison has runs."
    lines = [f"## Verdict: {BY_NAME[study.primary_metric].label} (primary family)", "",
             verdict_markdown(frame[frame["kind"] == FAMILY], margin, family=True), "",
             "## Exploratory: the same comparisons in the other cells and outcomes", "",
             "Effects at the selected rates with unadjusted p-values; no verdict is drawn from them.", ""]
    for outcome in study.outcomes:
        rows = frame[(frame["kind"] == EXPLORATORY) & (frame["outcome"] == outcome)]
        if len(rows):
            lines += [f"### {BY_NAME[outcome].label}", "", verdict_markdown(rows, margin, family=False), ""]
    return "\n".join(lines)


def sections(study: Study, frame: pd.DataFrame, conditions: pd.DataFrame, runs_used: pd.DataFrame,
             table: pd.DataFrame, margin: tuple[float, str], times: pd.DataFrame | None,
             code: CodeChoice | None = None, declared: dict[str, int] | None = None,
             unfinished: pd.DataFrame | None = None) -> dict[str, str]:
    """Every section of SECTIONS as markdown, for any declared study."""
    n_seeds = int(conditions["n"].max()) if len(conditions) else 0
    provenance = ["<!-- generated by analysis/study_report.py from the MLflow runs; do not edit by hand -->", "",
                  *stamps(runs_used, table, code), ""]
    if n_seeds < study.min_seeds:
        provenance += [f"> **Not the declared study**: at most {n_seeds} seeds per condition, fewer than the declared "
                       f"{study.min_seeds}. The numbers below check the pipeline; they are not a result."]
    provenance += partial_study(study, table, declared or {})
    return {
        "provenance": "\n".join(provenance),
        "primary": primary_section(study, frame, margin),
        "gate": gate_section(study, table),
        "verdicts": verdicts_section(study, frame, margin[0]),
        "rates": rates_section(study, table),
        "controls": controls_section(study, frame),
        "design": design_section(table, times, unfinished),
        "literature": literature_markdown(study.literature, conditions, table) if study.literature
        else "The study declares no published results to compare with.",
        "published": published_markdown(study, frame, margin[0]),
        "conditions": "\n".join(["## Forgetting with learning accuracy, chance and the joint ceiling", "",
                                 "At each learner's selected rate; mean ± sd over the seeds of sequential training (the "
                                 "sd is the seed-to-seed noise); joint ACC: all tasks shuffled together (the ceiling).", "",
                                 conditions_markdown(study, conditions)]),
        "statistics": "## Statistics\n\n" + STATISTICS,
    }


def partial_study(study: Study, table: pd.DataFrame, declared: dict[str, int]) -> list[str]:
    """A line saying how much of the declared sweep has runs, when not all of it does."""
    total = math.prod(declared.values()) if declared else 0
    if len(table) >= total:
        return []
    trainings = (False, True) if declared.get("task_sequence.joint", 1) == 2 else (False,)
    per_cell = total // (declared.get("task_sequence.scenario", 1) * len(trainings))
    counts = table.groupby(["scenario", "joint"]).size().to_dict() if len(table) else {}
    cells = ", ".join(f"{scenario}-IL {'joint' if joint else 'sequential'} {counts.get((scenario, joint), 0):,}"
                      for scenario in study.scenarios for joint in trainings)
    return ["", f"> **A partial study**: {len(table):,} of the {total:,} declared runs so far ({per_cell:,} per scenario "
            f"and training; {cells}). Every section uses the runs there are; a comparison of the primary family "
            "without the runs of every seed is pending."]


def design_section(table: pd.DataFrame, times: pd.DataFrame | None, unfinished: pd.DataFrame | None = None) -> str:
    lines = ["## Design", "", "Every learner, with the runs this doc comes from (sequential and joint, every rate; seeds "
             "counted on sequential runs); run time from MLflow's start and end:", "",
             design_markdown(table), "",
             f"In all: {len(table)} runs, {table['seconds'].sum() / 60:.1f} minutes of run time "
             "(summed over runs; jobs ran in parallel, members of an ensemble share their time)."]
    if times is not None:
        lines += ["", "What the study's sweeps took on the machine that ran them:", "", sweep_times_markdown(times)]
    if unfinished is not None and len(unfinished):
        lines += ["", f"Runs that did not finish ({len(unfinished)}; no later run of the same config replaced "
                  "them): a FAILED run of the primary cell takes the verdict from its comparisons, a KILLED or RUNNING "
                  "one is trained again when the study resumes.", "", *unfinished_lines(unfinished)]
    return "\n".join(lines)


def build(experiment: str, tracking_uri: str, out: Path | None = None, doc: Path | None = None,
          preset: Path | None = None, cache_dir: Path | None = None, root: Path = PROJECT_ROOT,
          code_version: str | None = None, any_code: bool = False) -> dict[str, Path]:
    """The study's verdict from ``experiment``'s runs of code ``code_version`` (default: the current
    code's; every code's with ``any_code``)."""
    import mlflow

    preset = preset or PRESETS / f"{experiment}.yaml"
    study = read_declaration(preset, root)
    margin = study.sesoi.resolve()
    # The store must exist already: a report never creates an empty one (StoreError instead).
    client = open_store(tracking_uri, create=False, key="--tracking-uri")
    mlflow.set_tracking_uri(tracking_uri)
    selection = SelectionTable.read(study.selection.table) if study.selection and study.selection.table.exists() else None
    version = None if any_code else code_version or contract.package_hash()
    searched = latest_runs(client, experiment, version)  # one search for the runs used and those left
    used, table, code = load_runs(client, experiment, study.shown_outcomes, Path(cache_dir or REPORTS / ".cache"),
                                  selection, version, searched)
    unfinished = unfinished_of(searched[0])
    frame = verdict_table(study, table, margin[0], unfinished)
    conditions = condition_table(study, table)
    out = Path(out or REPORTS / experiment / "study")
    out.mkdir(parents=True, exist_ok=True)
    written = {name: out / name for name in ("verdict.csv", "rates.csv", "conditions.csv", "runs.csv", "verdict.md")}
    frame.to_csv(written["verdict.csv"], index=False)
    rate_frame(study, table).to_csv(written["rates.csv"], index=False)
    conditions.to_csv(written["conditions.csv"], index=False)
    table.to_csv(written["runs.csv"], index=False)
    times = sweep_times(client, experiment, sorted(table["sweep_id"].dropna().astype(str).unique()))
    text = write_markdown(study, experiment, frame, conditions, used, table, margin, times=times, code=code,
                          declared=sweep_sizes(preset, []), unfinished=unfinished)
    written["verdict.md"].write_text(text)
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
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="where the selection table and the smallest-effect file live (default: the project)")
    add_code_arguments(parser)
    args = parser.parse_args(argv)
    try:
        written = build(args.experiment, args.tracking_uri or default_tracking_uri(), args.out, args.doc, args.preset,
                        root=args.root, code_version=code_version_asked(args), any_code=args.any_code)
    except NotDeclared as error:
        if args.if_declared:
            return 0
        print(f"error: {error}", file=sys.stderr)
        return 1
    except (NoRunsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    print(written["verdict.md"].read_text().split("## Verdict")[0].rstrip())
    print("\n" + "\n".join(f"wrote {p}" for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
