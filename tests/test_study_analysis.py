"""Learning-rate selection (analysis/select_lr.py), the declared study and its runs (study_runs.py), the
pilot (pilot.py), the verdict (study_report.py) and the one command (run_study.py) on hand-made runs
with known answers."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from analysis import pilot, run_study, select_lr, study_report, study_runs
from forgetlab import contract
from forgetlab.metric_registry import BY_NAME
from tests.conftest import ROOT

STUDY = study_runs.read_declaration(ROOT / "conf" / "experiment" / "credit_assignment.yaml")
EPOCHWISE = "epochwise BPTT, loss at the last step"
TRUNCATED = "BPTT(4; 1), loss at the last step"
MLP = "backprop (MLP)"


def selection_frame(split: str = "val", joint: bool | None = None) -> pd.DataFrame:
    """Two learners x two lrs x three seeds; rtrl is best at 0.1, BPTT ties at 0.1 and 0.3."""
    rows = []
    scores = {("rtrl", "0.1"): [0.8, 0.82, 0.81], ("rtrl", "0.3"): [0.7, 0.75, 0.72],
              ("bptt_truncated", "0.1"): [0.6, 0.6, 0.6], ("bptt_truncated", "0.3"): [0.6, 0.6, 0.6]}
    for (algorithm, lr), values in scores.items():
        for seed, score in zip((1000, 1001, 1002), values):
            rows.append({
                "run_id": f"{algorithm}-{lr}-{seed}-{joint}", "status": "FINISHED", "params.algorithm.name": algorithm,
                "params.algorithm.lr": lr, "params.seed": str(seed), "params.eval.split": split,
                "params.task_sequence.name": "split_mnist", "params.task_sequence.scenario": "task",
                "params.network.name": "rnn", "params.algorithm.h": "1" if algorithm == "bptt_truncated" else None,
                "params.tracking.uri": "sqlite:///x", "metrics.final/acc": score,
                **({"params.task_sequence.joint": str(joint)} if joint is not None else {}),
                "tags.forgetlab.sweep_id": "sel-1", "tags.forgetlab.config_hash": f"{algorithm}{lr}{seed}{joint}",
                "tags.mlflow.runName": f"{algorithm}-{seed}",
            })
    return pd.DataFrame(rows)


def test_selection_takes_the_best_mean_validation_accuracy_and_the_smaller_rate_on_a_tie():
    table = select_lr.select(select_lr.selection_runs(selection_frame()))
    chosen = dict(zip(table["algorithm.name"], table["lr"]))
    assert chosen == {"rtrl": "0.1", "bptt_truncated": "0.1"}
    rtrl = table[table["algorithm.name"] == "rtrl"].iloc[0]
    assert rtrl["score"] == pytest.approx(0.81) and rtrl["n_seeds"] == 3 and rtrl["runner_up_lr"] == 0.3
    assert set(table["selected_by"]) == {"sel-1"} and set(table["criterion"]) == {"mean validation final/acc"}
    # keys: the core ones plus what varies (algorithm.h), never lr, seed or tracking
    assert [c for c in table.columns if "." in c] == ["task_sequence.name", "task_sequence.scenario", "network.name",
                                                      "algorithm.name", "algorithm.h"]
    assert table.loc[table["algorithm.name"] == "rtrl", "algorithm.h"].item() == ""


def test_selection_on_joint_accuracy_reads_the_joint_runs_and_applies_to_both_trainings():
    """Sequential final ACC rewards learning less (0.3 retains more); joint ACC asks what each rate can learn."""
    sequential = selection_frame(joint=False)
    joint = selection_frame(joint=True)
    joint.loc[(joint["params.algorithm.name"] == "rtrl") & (joint["params.algorithm.lr"] == "0.3"), "metrics.final/acc"] = 0.95
    runs = select_lr.selection_runs(pd.concat([sequential, joint], ignore_index=True))
    by_final = select_lr.select(runs)
    assert "task_sequence.joint" in by_final.columns  # final_acc: a row per training
    table = select_lr.select(runs, criterion="joint_acc")
    assert dict(zip(table["algorithm.name"], table["lr"])) == {"rtrl": "0.3", "bptt_truncated": "0.1"}
    assert "task_sequence.joint" not in table.columns and set(table["n_seeds"]) == {3}
    assert set(table["criterion"]) == {"mean validation final/acc of joint training"}
    with pytest.raises(select_lr.SelectionError, match="no FINISHED joint run"):
        select_lr.select(select_lr.selection_runs(sequential), criterion="joint_acc")


def test_a_rate_that_lost_a_seed_to_divergence_is_not_chosen_on_its_survivors():
    runs = selection_frame()
    runs.loc[(runs["params.algorithm.name"] == "rtrl") & (runs["params.algorithm.lr"] == "0.3"), "metrics.final/acc"] = 0.95
    diverged = (runs["params.algorithm.name"] == "rtrl") & (runs["params.algorithm.lr"] == "0.3") & (runs["params.seed"] == "1002")
    table = select_lr.select(select_lr.selection_runs(runs[~diverged]))  # its FAILED run is not among them
    rtrl = table[table["algorithm.name"] == "rtrl"].iloc[0]
    assert rtrl["lr"] == "0.1" and rtrl["lrs_missing_seeds"] == "0.3" and rtrl["lrs_tried"] == "0.1 0.3"


def test_selection_refuses_runs_that_scored_test_data():
    with pytest.raises(select_lr.SelectionError, match="scored test data"):
        select_lr.selection_runs(selection_frame(split="test"))


def test_runs_recorded_before_a_key_existed_group_with_its_neutral_value():
    """network.loss_last_steps came later: the old RNN runs lack it and ran at 1; new runs at 1 are the
    same learner (one row), new runs at 2 another; the MLP never has the key."""
    runs = selection_frame()
    runs["params.network.loss_last_steps"] = None
    newer = selection_frame().assign(**{"params.network.loss_last_steps": "2", "run_id": lambda f: f["run_id"] + "-new",
                                        "tags.forgetlab.config_hash": lambda f: f["tags.forgetlab.config_hash"] + "-new"})
    mlp = selection_frame().query("`params.algorithm.name` == 'rtrl'").assign(**{
        "params.network.name": "mlp", "params.algorithm.name": "backprop", "params.network.loss_last_steps": None,
        "run_id": lambda f: f["run_id"] + "-mlp", "tags.forgetlab.config_hash": lambda f: f["tags.forgetlab.config_hash"] + "-mlp"})
    table = select_lr.select(select_lr.selection_runs(pd.concat([runs, newer, mlp], ignore_index=True)))
    steps = dict(zip(zip(table["algorithm.name"], table["network.loss_last_steps"]), table["lr"]))
    assert set(steps) == {("rtrl", "1"), ("rtrl", "2"), ("bptt_truncated", "1"), ("bptt_truncated", "2"), ("backprop", "")}


# --- the declaration and the runs ----------------------------------------------------------------


def test_the_declaration_is_read_from_the_preset():
    assert (STUDY.primary_metric, STUDY.primary_sequence, STUDY.primary_scenario) == ("bwt_normalized", "split_mnist", "domain")
    assert "rewards not learning" in STUDY.primary_reason and STUDY.reference == EPOCHWISE
    assert len(STUDY.family) == 8 and all(p.reference.startswith("epochwise BPTT") for p in STUDY.family)
    assert study_runs.Pair(MLP, EPOCHWISE) in STUDY.family
    assert STUDY.gate == {"task": 0.95, "domain": 0.90, "class": 0.85}
    assert STUDY.rates == [0.001, 0.002, 0.005, 0.01] and STUDY.min_seeds >= 20 and STUDY.alpha == 0.05
    assert STUDY.selection.criterion == "joint_acc" and STUDY.selection.experiment == "credit_assignment_pilot"
    assert STUDY.sesoi.value is None and STUDY.sesoi.file.name == "sesoi.json" and "0.1 x" in STUDY.sesoi.rule
    assert STUDY.positive_controls == [study_runs.Pair("epochwise BPTT + replay, loss at the last step", EPOCHWISE)]
    with pytest.raises(study_runs.NotDeclared):
        study_runs.read_declaration(ROOT / "conf" / "experiment" / "quickstart.yaml")


def test_the_smallest_effect_comes_from_the_declaration_or_the_pilots_file(tmp_path):
    assert study_runs.Sesoi(value=0.07).resolve() == (0.07, "declared")
    written = tmp_path / "sesoi.json"
    with pytest.raises(ValueError, match="run the pilot"):
        study_runs.Sesoi(file=written).resolve()
    written.write_text('{"sesoi": 0.042, "pilot_sweeps": "s-1"}\n')
    value, source = study_runs.Sesoi(file=written).resolve()
    assert value == 0.042 and "s-1" in source


def test_a_learner_is_named_by_its_recorded_label_its_loss_placement_and_the_studys_factors():
    tag = f"tags.{contract.TAG_LEARNER_LABEL}"
    run = pd.Series({tag: "BPTT(4; 1)", "params.algorithm.name": "bptt_truncated", "params.trainer.batch_size": "1",
                     "params.trainer.epochs_per_task": "10", "params.network.loss_at": "last"})
    assert study_runs.learner_label(run, 10) == TRUNCATED
    assert study_runs.learner_label(run.replace({"last": "all"}), 10) == "BPTT(4; 1), loss at every step"
    # runs from before the label was recorded: the algorithm's name
    assert study_runs.learner_label(run.drop(tag), 10) == "bptt_truncated, loss at the last step"
    with_strategy = pd.concat([run, pd.Series({"params.strategy.name": "replay"})])
    assert study_runs.learner_label(with_strategy, 10) == "BPTT(4; 1), loss at the last step, replay"
    assert study_runs.learner_label(pd.concat([run, pd.Series({"params.strategy.name": "none"})]), 10) == TRUNCATED
    mlp = pd.Series({tag: "backprop (MLP), batch 4", "params.algorithm.name": "backprop", "params.trainer.batch_size": "4",
                     "params.trainer.epochs_per_task": "4"})
    assert study_runs.learner_label(mlp, 1) == "backprop (MLP), batch 4, 4 epochs"  # the batch named once


def test_learners_come_in_name_order_numbers_numerically():
    learners = ["RTRL", "BPTT(14; 1)", "epochwise BPTT", "BPTT(4; 1)", "BPTT(1; 1)", "backprop (MLP)"]
    assert study_runs.ordered_learners(learners) == [
        "backprop (MLP)", "BPTT(1; 1)", "BPTT(4; 1)", "BPTT(14; 1)", "epochwise BPTT", "RTRL"]


def test_outcomes_are_the_task_level_metric_records():
    assert set(STUDY.outcomes) <= set(study_runs.OUTCOMES)
    assert study_runs.OUTCOMES["bwt_normalized"] is BY_NAME["bwt_normalized"]
    assert "intransigence" not in study_runs.OUTCOMES  # it needs the joint runs, not one run's matrix
    assert STUDY.shown_outcomes == ["acc", "bwt", "learning_acc", "bwt_normalized"]


def test_a_run_gets_its_learners_selected_rate_from_the_table_it_recorded(tmp_path):
    path = tmp_path / "lr.csv"
    pd.DataFrame([{"task_sequence.scenario": "domain", "algorithm.h": "4", "lr": "0.002", "selected_by": "sel-1"},
                  {"task_sequence.scenario": "domain", "algorithm.h": "", "lr": "0.005", "selected_by": "sel-1"}]).to_csv(path, index=False)
    table = study_runs.SelectionTable.read(path)
    run = pd.Series({"params.task_sequence.scenario": "domain", "params.algorithm.h": "4", "params.algorithm.lr": "0.001",
                     "params.algorithm.lr_selected_by": "sel-1"})
    assert table.keys == ["task_sequence.scenario", "algorithm.h"] and study_runs.selected_rate(run, table) == 0.002
    assert study_runs.selected_rate(run.drop("params.algorithm.h"), table) == 0.005  # a learner without h: the empty cell
    assert math.isnan(study_runs.selected_rate(run.replace({"sel-1": "sel-2"}), table))  # the table was rewritten since
    assert study_runs.selected_rate(run.replace({"sel-1": ""}), table) == 0.002  # a run of the selection itself
    assert math.isnan(study_runs.selected_rate(run.replace({"domain": "task"}), table))
    assert study_runs.selected_rate(run, None) == 0.001  # a study of one rate per learner


# --- the verdict ---------------------------------------------------------------------------------


def synthetic_runs(effect: float, seeds=range(8), joint_acc: dict | None = None, rates=(0.002,),
                   selected: dict | None = None, scenarios=("domain",), joint_at: dict | None = None) -> pd.DataFrame:
    """The run table of the epochwise reference, BPTT(4; 1) and the MLP: the treatments' nBWT is the
    reference's plus ``effect`` (the MLP's minus it) plus N(0, 0.01) per seed, at every rate of ``rates``.
    Joint ACC: ``joint_at[(learner, rate)]``, else ``joint_acc[learner]``, else 0.95."""
    rng = np.random.default_rng(0)
    joint_acc = joint_acc or {}
    joint_at = joint_at or {}
    selected = selected or {}
    rows = []
    for seed in seeds:
        base = rng.uniform(-0.6, -0.4)
        for learner, shift in ((EPOCHWISE, 0.0), (TRUNCATED, effect), (MLP, -effect)):
            for rate, scenario in ((r, s) for r in rates for s in scenarios):
                y = base + shift + rng.normal(0, 0.01) + (rate - rates[0]) * 10
                chosen = selected.get(learner, rates[0])
                for joint in (False, True):
                    rows.append({"learner": learner, "task_sequence": "split_mnist", "scenario": scenario, "joint": joint,
                                 "seed": seed, "lr": rate, "selected_lr": chosen, "at_selected": rate == chosen,
                                 "chance": 0.5, "init_acc": 0.5, "n_tasks": 5,
                                 "bwt_normalized": np.nan if joint else y, "bwt": np.nan if joint else y * 0.45,
                                 "acc": joint_at.get((learner, rate), joint_acc.get(learner, 0.95)) if joint else 0.9 + y * 0.3,
                                 "learning_acc": np.nan if joint else 0.95})
    return pd.DataFrame(rows)


def family(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["kind"] == study_report.FAMILY].set_index("treatment")


# The declaration with a family of the two comparisons synthetic_runs has runs for: a complete family.
PRESENT = study_runs.Study(**{**STUDY.__dict__, "family": [study_runs.Pair(TRUNCATED, EPOCHWISE),
                                                            study_runs.Pair(MLP, EPOCHWISE)]})


def test_a_clear_effect_differs_and_no_effect_is_equivalent_with_holm_over_the_tost_p_values():
    clear = family(study_report.verdict_table(PRESENT, synthetic_runs(effect=0.2), margin=0.05))
    assert list(clear.index) == [TRUNCATED, MLP]  # the declared comparisons, in the declared order
    assert clear.loc[TRUNCATED, "mean"] == pytest.approx(0.2, abs=0.01) and clear.loc[TRUNCATED, "n"] == 8
    assert clear.loc[TRUNCATED, "verdict"] == "differs" and clear.loc[MLP, "verdict"] == "differs"
    none = family(study_report.verdict_table(PRESENT, synthetic_runs(effect=0.0), margin=0.05))
    assert set(none["verdict"]) == {"equivalent"}
    low, high = sorted(none["p_tost"])
    assert sorted(none["p_tost_holm"]) == pytest.approx([min(1, 2 * low), max(min(1, 2 * low), high)])


def test_holm_runs_over_the_family_only():
    """The same comparisons in other scenarios and outcomes are exploratory: unadjusted, no verdict,
    and their number does not change the family's adjustment."""
    runs = synthetic_runs(effect=0.05)
    alone = study_report.verdict_table(PRESENT, runs, margin=0.05)
    more = study_report.verdict_table(PRESENT, pd.concat([runs, runs.assign(scenario="task"), runs.assign(scenario="class")]),
                                      margin=0.05)
    assert len(more) > len(alone)
    np.testing.assert_allclose(family(more)["p_holm"], family(alone)["p_holm"])
    exploratory = more[more["kind"] == study_report.EXPLORATORY]
    assert exploratory["p_holm"].isna().all() and (exploratory["verdict"] == "").all()
    assert set(exploratory["scenario"]) == {"task", "domain", "class"}  # domain: the secondary outcomes


def test_a_declared_comparison_without_runs_is_pending_and_counts_as_p_one_in_holm():
    """A study in progress: 2 of the 8 declared comparisons have runs. The other 6 are listed, pending, and
    enter Holm as p = 1, so a verdict given now stands whatever p-values they bring (Holm is monotone)."""
    rows = family(study_report.verdict_table(STUDY, synthetic_runs(effect=0.2), margin=0.05))
    assert list(rows.index) == [pair.treatment for pair in STUDY.family]
    pending = rows[rows["pending"] != ""]
    assert len(pending) == 6 and set(pending["verdict"]) == {"pending: not run yet"} and (pending["n"] == 0).all()
    assert pending[["p_holm", "p_tost_holm"]].isna().all().all()
    p = rows.loc[[TRUNCATED, MLP], "p"].to_numpy()
    now = study_report.statistics.holm(np.concatenate([p, np.ones(6)]))[:2]
    np.testing.assert_allclose(rows.loc[[TRUNCATED, MLP], "p_holm"], now)
    assert (now > study_report.statistics.holm(p)).all() and set(rows.loc[[TRUNCATED, MLP], "verdict"]) == {"differs"}
    rng = np.random.default_rng(1)
    for _ in range(300):
        later = study_report.statistics.holm(np.concatenate([p, rng.uniform(0, 1, 6) ** rng.uniform(0.2, 5)]))[:2]
        assert (later <= now * (1 + 1e-12)).all()
    text = study_report.primary_section(STUDY, study_report.verdict_table(STUDY, synthetic_runs(effect=0.2), 0.05),
                                        (0.05, "declared"))
    assert "**The family is not complete**: 6 of 8 declared comparisons are pending" in text
    assert f"- RTRL, loss at every step − epochwise BPTT, loss at every step: **pending: not run yet**." in text
    complete = study_report.primary_section(PRESENT, study_report.verdict_table(PRESENT, synthetic_runs(0.2), 0.05),
                                            (0.05, "declared"))
    assert "not complete" not in complete


def test_a_comparison_short_of_seeds_or_of_joint_runs_is_pending():
    runs = synthetic_runs(effect=0.2)
    fewer = runs[~((runs["learner"] == MLP) & (runs["seed"] >= 5))]  # the MLP still training seeds 5-7
    rows = family(study_report.verdict_table(PRESENT, fewer, margin=0.05))
    assert rows.loc[MLP, "verdict"] == "pending: 5 of 8 seeds" and math.isnan(rows.loc[MLP, "p_holm"])
    assert rows.loc[TRUNCATED, "verdict"] == "differs" and rows.loc[TRUNCATED, "n"] == 8
    unjoint = runs[~((runs["learner"] == MLP) & runs["joint"])]  # its gate unknown: neither passed nor failed
    rows = family(study_report.verdict_table(PRESENT, unjoint, margin=0.05))
    assert rows.loc[MLP, "verdict"] == f"pending: no joint runs of {MLP} (the gate)" and rows.loc[MLP, "refused"] == ""
    gate = study_report.gate_section(PRESENT, unjoint)
    assert f"| {MLP} | 0.002 | – |" in gate and "no joint runs |" in gate and "Not learned" not in gate


def test_a_comparison_with_failed_runs_gets_no_verdict_on_the_survivors():
    runs = synthetic_runs(effect=0.2)
    survivors = runs[~((runs["learner"] == MLP) & (runs["seed"] == 3) & ~runs["joint"])]
    failed = pd.DataFrame([{"learner": MLP, "task_sequence": "split_mnist", "scenario": "domain", "joint": False,
                            "lr": 0.002, "seed": 3, "status": "FAILED", "reason": "TrainingDiverged: weights not finite"}])
    rows = family(study_report.verdict_table(PRESENT, survivors, 0.05, failed))
    assert rows.loc[MLP, "verdict"] == f"no verdict: {MLP} FAILED for seed(s) 3" and math.isnan(rows.loc[MLP, "p_holm"])
    assert rows.loc[TRUNCATED, "p_holm"] == pytest.approx(rows.loc[TRUNCATED, "p"])  # it left the family, as below the gate
    for elsewhere in ({"lr": 0.005}, {"joint": True}, {"scenario": "task"}, {"status": "KILLED"}):
        rows = family(study_report.verdict_table(PRESENT, survivors, 0.05, failed.assign(**elsewhere)))
        assert rows.loc[MLP, "verdict"] == "pending: 7 of 8 seeds", elsewhere  # a KILLED run is trained again
    doc = study_doc(PRESENT, survivors, unfinished=failed)
    assert f"- split_mnist, domain: {MLP}, sequential, rate 0.002, seed 3: FAILED: TrainingDiverged" in doc


def test_a_partial_study_says_how_many_of_its_declared_runs_it_has():
    runs = synthetic_runs(effect=0.1, seeds=range(20))
    declared = {"learner": 3, "algorithm.lr": 1, "task_sequence.scenario": 3, "task_sequence.joint": 2, "seed": 20}
    line = [text for text in study_report.partial_study(STUDY, runs, declared) if text]
    assert line == ["> **A partial study**: 120 of the 360 declared runs so far (60 per scenario and training; task-IL "
                    "sequential 0, task-IL joint 0, domain-IL sequential 60, domain-IL joint 60, class-IL sequential 0, "
                    "class-IL joint 0). Every section uses the runs there are; a comparison of the primary family "
                    "without the runs of every seed is pending."]
    assert study_report.partial_study(STUDY, runs, {**declared, "task_sequence.scenario": 1}) == []
    assert study_report.partial_study(STUDY, runs, {}) == []


def test_a_learner_below_the_gate_gets_no_verdict_and_leaves_the_family():
    frame = study_report.verdict_table(PRESENT, synthetic_runs(effect=0.2, joint_acc={MLP: 0.7}), margin=0.05)
    rows = family(frame)
    assert rows.loc[MLP, "verdict"] == f"no verdict: {MLP} below the gate" and math.isnan(rows.loc[MLP, "p_holm"])
    assert rows.loc[TRUNCATED, "p_holm"] == pytest.approx(rows.loc[TRUNCATED, "p"])  # a family of one tested comparison
    conditions = study_report.condition_table(STUDY, synthetic_runs(effect=0.2, joint_acc={MLP: 0.7}))
    assert dict(zip(conditions["learner"], conditions["passes"])) == {MLP: False, TRUNCATED: True, EPOCHWISE: True}


def test_each_learner_enters_at_its_own_selected_rate_and_the_rates_section_shows_the_rest():
    runs = synthetic_runs(effect=0.0, rates=(0.001, 0.005), selected={TRUNCATED: 0.005})
    rows = family(study_report.verdict_table(STUDY, runs, margin=0.05))
    assert rows.loc[TRUNCATED, "mean"] == pytest.approx(0.04, abs=0.01)  # (0.005 - 0.001) x 10 apart by construction
    contrasts = study_report.rate_contrasts(STUDY, runs)
    at = contrasts[contrasts["treatment"] == TRUNCATED].set_index("rate")["mean"]
    assert at.to_dict() == pytest.approx({0.001: 0.0, 0.005: 0.0}, abs=0.01)  # at a common rate: no difference
    text = study_report.rates_section(STUDY, runs)
    assert "(selected)" in text and "Learner × rate interaction" in text and "F(2, " in text
    header = next(line for line in text.splitlines() if line.startswith("| learner"))
    assert header == "| learner | rate 0.001 | rate 0.002 | rate 0.005 | rate 0.01 |"  # the declared grid, in order
    row = next(line for line in text.splitlines() if line.startswith(f"| {MLP} |"))
    assert "(n = 8)" in row.split("|")[2] and row.split("|")[3].strip() == "–"  # 0.002: not run
    one_rate = study_report.rates_section(STUDY, synthetic_runs(effect=0.0))  # a study that has run its selected rates only
    assert "not estimable from these runs (24): no two learners share two rates yet." in one_rate and "nan" not in one_rate


def test_a_rate_where_a_learner_did_not_learn_is_marked_and_left_out_of_the_interaction_test():
    runs = synthetic_runs(effect=0.0, rates=(0.001, 0.005), joint_at={(TRUNCATED, 0.005): 0.6})
    frame = study_report.rate_frame(STUDY, runs)
    assert set(frame.loc[(frame["learner"] == TRUNCATED) & (frame["rate"] == 0.005), "learned"]) == {False}
    assert set(frame.loc[frame["learner"] != TRUNCATED, "learned"]) == {True}
    text = study_report.rates_section(STUDY, runs)
    row = next(line for line in text.splitlines() if line.startswith(f"| {TRUNCATED} |")).split("|")
    assert "**not learned** (joint ACC 0.600)" in row[4] and "not learned" not in row[2]  # rate 0.005, not 0.001
    assert "; 5 of 6 learner × rate cells)" in text and "(40 runs)." in text  # 8 seeds in each learned cell
    assert f"| no: {TRUNCATED} below the gate |" in text
    contrasts = study_report.rate_contrasts(STUDY, runs)
    at = contrasts[contrasts["treatment"] == TRUNCATED].set_index("rate")["not_learned"]
    assert at.to_dict() == {0.001: "", 0.005: TRUNCATED}
    pending = runs[~(runs["joint"] & (runs["learner"] == MLP) & (runs["lr"] == 0.005))]  # its joint runs still to come
    text = study_report.rates_section(STUDY, pending)
    row = next(line for line in text.splitlines() if line.startswith(f"| {MLP} |")).split("|")
    assert "learned? not known (no joint runs yet)" in row[4] and "; 4 of 6 learner × rate cells)" in text
    assert f"| not known: no joint runs of {MLP} yet |" in text and text.count("| yes |") == 2  # both comparisons at 0.001
    everywhere = study_report.rates_section(STUDY, synthetic_runs(effect=0.0, rates=(0.001, 0.005)))
    assert "; 6 of 6 learner × rate cells)" in everywhere and "(48 runs)." in everywhere and "not learned**" not in everywhere


def test_the_positive_controls_show_no_equivalence_margin():
    runs = synthetic_runs(effect=0.3)
    study = study_runs.Study(**{**PRESENT.__dict__, "positive_controls": [study_runs.Pair(MLP, EPOCHWISE)]})
    text = study_report.controls_section(study, study_report.verdict_table(study, runs, 0.05))
    assert "| p Wilcoxon | learned? |" in text and "TOST" not in text and "nan" not in text


def test_the_conditions_table_sets_forgetting_beside_learning_accuracy_chance_and_the_joint_ceiling():
    table = study_report.condition_table(STUDY, synthetic_runs(0.1))
    assert list(table["learner"]) == [MLP, TRUNCATED, EPOCHWISE]
    row = table.iloc[1]
    assert row["n"] == 8 and row["joint_n"] == 8 and row["joint_acc_mean"] == pytest.approx(0.95)
    assert row["learning_acc_mean"] == pytest.approx(0.95) and row["chance"] == 0.5
    assert np.isfinite(row["bwt_normalized_sd"]) and {"bwt_mean", "acc_mean"} <= set(table.columns)


def test_the_literature_table_checks_the_ordering_and_class_il_against_one_over_t():
    rows = []
    for learner, accs in ((MLP, {"task": 0.95, "domain": 0.6, "class": 0.21}),
                          ("RTRL", {"task": 0.7, "domain": 0.75, "class": 0.2})):
        for scenario, acc in accs.items():
            rows.append({"task_sequence": "split_mnist", "scenario": scenario, "learner": learner,
                         "acc_mean": acc, "joint_acc_mean": 0.9})
    table = pd.DataFrame({"task_sequence": ["split_mnist"], "n_tasks": [5]})
    text = study_report.literature_markdown(STUDY.literature, pd.DataFrame(rows), table)
    assert text.splitlines()[0].split("|")[5].strip() == "class < domain < task"  # the published ordering
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert lines[MLP].split("|")[5].strip() == "yes" and lines["RTRL"].split("|")[5].strip() == "**no**"
    assert lines[MLP].split("|")[6].strip() == study_report.fmt(0.21 - 0.2)


def study_doc(study: study_runs.Study, runs: pd.DataFrame, unfinished: pd.DataFrame | None = None) -> str:
    """The doc of a fabricated study of ``runs`` (synthetic_runs), as ``study_report.build`` writes it."""
    table = runs.assign(run_id=[f"run-{i}" for i in range(len(runs))], sweep_id="sweep-1", git_commit="abcdef123456",
                        lr_selected_by="selection-1", seconds=2.0, loss_design="")
    times = pd.DataFrame([{"sweep": "sweep-1", "status": "FINISHED", "minutes": 1.5, "jobs": 64.0, "skipped": 0.0,
                           "failed": 0.0}])
    frame = study_report.verdict_table(study, table, 0.05, unfinished)
    return study_report.write_markdown(study, "credit_assignment", frame, study_report.condition_table(study, table),
                                       table, table, (0.05, "declared"), times, unfinished=unfinished)


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


def test_the_study_template_gives_the_sections_of_the_doc():
    """docs/credit_assignment.md is generated from runs not in the repository: the engine and the
    study's template (docs/templates/credit_assignment.md) must give its sections, in its order."""
    doc = study_doc(STUDY, synthetic_runs(effect=0.1))
    committed = (ROOT / "docs" / "credit_assignment.md").read_text()
    fixed = [h for h in headings(doc) if not h.startswith("### ")]  # exploratory subsections follow the outcomes
    if "generated by analysis/study_report.py" in committed:
        assert fixed == [h for h in headings(committed) if not h.startswith("### ")]
    else:  # until the study has run, the page says so and carries no numbers of its own
        assert "has not been run" in committed and "credit_assignment_pilot.md" in committed
        assert not re.search(r"\d\.\d{3}", committed), "a number in a doc no command generated"
    assert fixed[:8] == ["# Credit assignment and forgetting (`experiment=credit_assignment`), second edition",
                         "## What the study varies, and why", "## Primary outcome (declared before running)",
                         "## Did the learners learn?", "## Verdict: BWT / (learning − chance) (primary family)",
                         "## Exploratory: the same comparisons in the other cells and outcomes",
                         "## The learning rate as a factor", "## Positive controls"]
    assert "<!-- study:" not in doc and "<!-- template:" not in doc
    assert "python analysis/run_study.py credit_assignment" in doc
    assert "| literature (fine-tuning, joint) | ≈ 0.850 (joint ≈ 0.980)" in doc
    assert "> **Not the declared study**: at most 8 seeds per condition" in doc


def test_a_study_without_a_template_gets_the_engines_sections():
    plain = study_runs.Study(**{**STUDY.__dict__, "template": None, "literature": None})
    doc = study_doc(plain, synthetic_runs(effect=0.1))
    assert headings(doc)[:3] == ["# Study verdict: `credit_assignment`", "## Primary outcome (declared before running)",
                                 "## Did the learners learn?"]
    assert headings(doc)[-3:] == ["## Design", "## Forgetting with learning accuracy, chance and the joint ceiling",
                                  "## Statistics"]
    assert "Split MNIST" not in doc and "Caveats" not in doc


def test_a_template_that_names_no_section_is_refused():
    filled = {"primary": "## Primary"}
    assert study_report.fill_template("# T\n\n<!-- study: primary -->\n\ntext\n", filled) == "# T\n\n## Primary\n\ntext\n"
    with pytest.raises(ValueError, match="'verdict'"):
        study_report.fill_template("<!-- study: verdict -->", filled)


# --- the pilot and the one command -----------------------------------------------------------


def test_the_smallest_effect_follows_the_declared_rule():
    runs = synthetic_runs(effect=0.1).assign(sweep_id="p-1")
    found = pilot.sesoi_by_rule(STUDY, runs)
    cell = runs[~runs["joint"]]
    reference = cell.loc[cell["learner"] == EPOCHWISE, "bwt_normalized"]
    variances = cell.groupby("learner")["bwt_normalized"].var(ddof=1)
    pooled = math.sqrt(variances.mean())  # equal seeds per learner: the plain mean of the variances
    assert found["reference_mean"] == pytest.approx(reference.mean()) and found["pooled_sd"] == pytest.approx(pooled)
    assert found["pooled_df"] == 3 * 7
    assert found["sesoi"] == pytest.approx(round(max(0.1 * abs(reference.mean()), 0.5 * pooled), 4))


def test_the_pilots_gate_passes_and_fails_by_the_joint_ceiling():
    frame = study_runs.learnability(synthetic_runs(0.0, joint_acc={MLP: 0.85}), STUDY.gate, "bwt_normalized")
    assert dict(zip(frame["learner"], frame["passes"])) == {MLP: False, TRUNCATED: True, EPOCHWISE: True}
    assert pilot.not_learned(frame) == [f"- split_mnist, domain: {MLP} (0.850 < 0.9)"]
    ungated = study_runs.learnability(synthetic_runs(0.0), {}, None)
    assert set(ungated["passes"]) == {None} and set(ungated["joint_passing"]) == {None}


def test_the_gate_shows_how_many_seeds_reach_it_on_their_own():
    """A mean below the gate from three collapsed seeds reads differently from every seed short of it."""
    runs = synthetic_runs(0.0)
    collapsed = (runs["learner"] == MLP) & runs["joint"] & (runs["seed"] < 3)
    runs.loc[collapsed, "acc"] = 0.80  # mean (3 x 0.80 + 5 x 0.95) / 8 = 0.894 < 0.9
    frame = study_runs.learnability(runs, STUDY.gate, "bwt_normalized").set_index("learner")
    assert not frame.loc[MLP, "passes"] and frame.loc[MLP, "joint_passing"] == 5
    assert frame.loc[EPOCHWISE, "joint_passing"] == 8
    gate = study_report.gate_section(PRESENT, runs)
    assert "| seeds at the gate |" in gate and "| 5 of 8 | **no** |" in gate and "| 8 of 8 | yes |" in gate


def test_a_rate_selected_at_the_edge_of_the_grid_is_flagged():
    runs = synthetic_runs(0.0, seeds=range(2), rates=(0.001, 0.002, 0.005))
    chosen = {MLP: 0.005, TRUNCATED: 0.002, EPOCHWISE: 0.001}
    runs["selected_lr"] = runs["learner"].map(chosen)
    rates = pilot.rate_scores(runs).set_index("learner")
    assert rates["edge"].to_dict() == {MLP: "highest", TRUNCATED: "", EPOCHWISE: "lowest"}
    lines = pilot.at_the_edge(rates.reset_index())
    assert lines == [f"- split_mnist, domain: {MLP} at the highest rate tried (0.005): its best rate may lie above the grid",
                     f"- split_mnist, domain: {EPOCHWISE} at the lowest rate tried (0.001): its best rate may lie below the grid"]
    two = synthetic_runs(0.0, seeds=range(2), rates=(0.001, 0.002)).assign(selected_lr=0.002)
    assert set(pilot.rate_scores(two)["edge"]) == {""}  # two rates have no inside


def test_the_studys_wall_time_is_each_learners_cost_per_run_times_its_runs():
    costs = pd.DataFrame({"learner": ["a", "b"], "wall s per run": ["10.0", "26.0"]})
    budget = pilot.study_wall_time(costs, runs_per_learner=360)
    assert budget["hours"] == pytest.approx(36 * 360 / 3600) and budget["hours_on_workers"] == pytest.approx(1.8)


def test_the_costs_share_an_ensemble_jobs_time_among_its_runs():
    runs = synthetic_runs(0.0, seeds=range(2), rates=(0.001, 0.002, 0.005)).assign(sweep_id="p-1", seconds=60.0, run_id="r")
    costs = pilot.cost_table(runs).set_index("learner")
    assert costs.loc[MLP, "runs"] == 12 and costs.loc[MLP, "jobs"] == 2  # 3 rates x 2 seeds, sequential and joint
    assert costs.loc[MLP, "wall s per run"] == "10.0"


def test_the_one_command_declares_its_budget_and_refuses_fewer_seeds_than_declared(capsys):
    assert [study_runs.count_values(v) for v in ("a,b,c", "range(0,20)", "range(0, 20, 5)", "0.1")] == [3, 20, 4, 1]
    assert run_study.main(["credit_assignment", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "5280 runs = 11 learner x 4 algorithm.lr x 3 task_sequence.scenario x 2 task_sequence.joint x 20 seed" in out
    assert "528 runs" in out and out.count("[study] step") == 5
    assert run_study.main(["credit_assignment", "--dry-run", "--override", "seed=0,1"]) == 2
    assert "fewer than the declared 20" in capsys.readouterr().err
    assert run_study.main(["credit_assignment", "--dry-run", "--trial", "--override", "seed=0,1"]) == 0


def test_the_one_command_goes_on_past_failed_jobs_and_stops_at_any_other_failure(monkeypatch, capsys):
    """A pilot's diverged run fails again on every resume: the study goes on past a sweep's exit code 1
    (some jobs failed) and ends with it; a sweep's 2 (nothing ran) or a failing analysis step stops it."""
    def with_codes(codes: dict[int, int]) -> list[int]:
        ran = []

        def fake_run(command, cwd):
            ran.append(len(ran) + 1)
            return type("Done", (), {"returncode": codes.get(len(ran), 0)})()
        monkeypatch.setattr(run_study.subprocess, "run", fake_run)
        return ran

    ran = with_codes({1: 1, 3: pilot.GATE_FAILED, 4: 1})
    assert run_study.main(["credit_assignment"]) == 1 and ran == [1, 2, 3, 4, 5]
    assert capsys.readouterr().err.count("some jobs failed") == 2
    ran = with_codes({1: 2})
    assert run_study.main(["credit_assignment"]) == 2 and ran == [1]
    ran = with_codes({2: 1})  # select_lr's 1 is an error, not failed jobs
    assert run_study.main(["credit_assignment"]) == 1 and ran == [1, 2]
    ran = with_codes({})
    assert run_study.main(["credit_assignment"]) == 0 and ran == [1, 2, 3, 4, 5]


def strength_frame() -> pd.DataFrame:
    """EWC and SI at two strengths each, three seeds; replay (no strength) and a run from before
    strategies existed (no strategy params) in the same experiment."""
    rows = []
    scores = {("ewc", "1.0"): [0.5, 0.52, 0.51], ("ewc", "10.0"): [0.6, 0.61, 0.59],
              ("si", "0.01"): [0.7, 0.7, 0.71], ("si", "0.1"): [0.4, 0.4, 0.4], ("replay", None): [0.9, 0.9, 0.9]}
    for (strategy, strength), values in scores.items():
        for seed, score in zip((1000, 1001, 1002), values):
            rows.append({
                "run_id": f"{strategy}-{strength}-{seed}", "status": "FINISHED", "params.algorithm.name": "backprop",
                "params.algorithm.lr": "0.01", "params.seed": str(seed), "params.eval.split": "val",
                "params.task_sequence.name": "split_mnist", "params.task_sequence.scenario": "class",
                "params.network.name": "mlp", "params.strategy.name": strategy, "params.strategy.strength": strength,
                "params.strategy.selected_by": "", "metrics.final/acc": score, "tags.forgetlab.sweep_id": "sel-2",
                "tags.forgetlab.config_hash": f"{strategy}{strength}{seed}", "tags.mlflow.runName": f"{strategy}-{seed}",
            })
    return pd.DataFrame(rows)


def test_a_strategy_strength_is_selected_per_strategy_from_the_runs_that_have_one():
    table = select_lr.select(select_lr.selection_runs(strength_frame()), "strategy.strength")
    assert dict(zip(table["strategy.name"], table["strength"])) == {"ewc": "10.0", "si": "0.01"}
    assert [c for c in table.columns if "." in c] == ["task_sequence.name", "task_sequence.scenario", "network.name",
                                                      "algorithm.name", "strategy.name"]
    assert set(table["strengths_tried"]) == {"1 10", "0.01 0.1"} and "runner_up_strength" in table
    assert select_lr.default_table("strategies_select", "strategy.strength").parts[-3:] == ("learner", "strategies",
                                                                                            "strength.csv")
    with pytest.raises(select_lr.SelectionError, match="no selection run has the param"):
        select_lr.select(select_lr.selection_runs(strength_frame()), "strategy.ratio")


def test_runs_from_before_strategies_group_with_fine_tuning():
    runs = selection_frame()
    newer = selection_frame().assign(**{"params.strategy.name": "fine_tuning", "run_id": lambda f: f["run_id"] + "-new",
                                        "tags.forgetlab.config_hash": lambda f: f["tags.forgetlab.config_hash"] + "-new"})
    filled = select_lr.with_neutral_params(pd.concat([runs, newer], ignore_index=True))
    assert set(filled["params.strategy.name"]) == {"fine_tuning"}


def test_the_report_names_a_learner_by_its_algorithm_and_strategy():
    from analysis.aggregate import add_conditions, condition_keys

    runs = pd.DataFrame({
        "params.algorithm.name": ["backprop"] * 6, "params.seed": ["0", "1"] * 3,
        "params.strategy.name": ["fine_tuning", "fine_tuning", "ewc", "ewc", None, None],
        "params.strategy.strength": [None, None, "10.0", "10.0", None, None],
        "params.task_sequence.scenario": ["class"] * 6, "params.task_sequence.name": ["split_mnist"] * 6,
    })
    keys = condition_keys(runs)
    labelled = add_conditions(runs, keys)
    assert list(labelled["algorithm"]) == ["backprop", "backprop", "backprop + ewc", "backprop + ewc", "backprop", "backprop"]
    assert keys[0] == "params.strategy.name" and "params.strategy.strength" in keys
    assert not any("strength" in c for c in labelled["condition"])  # it follows from the learner: no split


def test_within_a_tolerance_the_preferred_end_is_chosen():
    """rtrl: 0.1 scores 0.81, 0.3 scores 0.723; within 0.1 the larger rate wins, within 0.05 the best."""
    runs = select_lr.selection_runs(selection_frame())
    rtrl = lambda table: table[table["algorithm.name"] == "rtrl"].iloc[0]  # noqa: E731
    larger = rtrl(select_lr.select(runs, within=0.1, prefer="larger"))
    assert larger["lr"] == "0.3" and larger["score"] == pytest.approx(0.7233333) and larger["runner_up_lr"] == 0.1
    assert "larger value within 0.1" in larger["rule"]
    assert rtrl(select_lr.select(runs, within=0.05, prefer="larger"))["lr"] == "0.1"
    assert rtrl(select_lr.select(runs))["rule"] == "best mean"


# --- the strategies study's features in the second edition's engine ---------------------------


def test_every_declared_preset_parses():
    declared = [p for p in sorted((ROOT / "conf" / "experiment").glob("*.yaml"))
                if study_runs.DECLARATION_START in p.read_text()]
    studies = {p.stem: study_runs.read_declaration(p) for p in declared}
    assert {"credit_assignment", "strategies"} <= set(studies)
    strategies = studies["strategies"]
    assert strategies.reference == MLP and [p.treatment for p in strategies.family] == [
        f"{MLP} + EWC", f"{MLP} + SI", f"{MLP} + replay", f"{MLP} + A-GEM"]
    assert strategies.sesoi.resolve() == (0.05, "declared") and strategies.min_seeds == 10
    assert len(strategies.published) == 7 and strategies.published_source.startswith("van de Ven")
    assert {c.expect for c in strategies.published} == set(study_runs.EXPECTATIONS)
    template = strategies.template.read_text()
    names = {line.strip()[len("<!-- study: "):-len(" -->")] for line in template.splitlines()
             if study_report.PLACEHOLDER.match(line.strip())}
    assert names <= set(study_report.SECTIONS) and "published" in names


def test_a_published_claim_must_expect_higher_or_equivalent(tmp_path):
    preset = tmp_path / "claims.yaml"
    text = (ROOT / "conf" / "experiment" / "strategies.yaml").read_text()
    preset.write_text(text.replace("expect: equivalent", "expect: lower", 1))
    with pytest.raises(ValueError, match="expects 'lower'"):
        study_runs.read_declaration(preset)


def test_published_claims_are_set_beside_our_comparisons():
    """In the primary cell (domain) the family's Holm verdict; in another scenario (task) the same rule on
    the unadjusted p-values, marked so."""
    claims = [study_runs.Claim(TRUNCATED, "domain", "higher", "truncation forgets less"),
              study_runs.Claim("backprop (MLP)", "domain", "higher", "the MLP forgets less"),
              study_runs.Claim(TRUNCATED, "task", "higher", "also in task-IL"),
              study_runs.Claim("RTRL, loss at every step", "domain", "equivalent", "no runs of it")]
    study = study_runs.Study(**{**STUDY.__dict__, "published": claims, "published_source": "Someone (2020)"})
    frame = study_report.verdict_table(study, synthetic_runs(effect=0.2, scenarios=("domain", "task")), 0.05)
    text = study_report.published_markdown(study, frame, 0.05)
    assert text.startswith("Published: Someone (2020). ")
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()[4:]}
    assert rows["truncation forgets less"][-2:] == ["differs", "yes"]
    assert rows["the MLP forgets less"][-2:] == ["differs", "no"]  # it forgets more
    assert rows["also in task-IL"][-2:] == ["differs (unadjusted)", "yes"]
    assert rows["no runs of it"][-2:] == ["–", "no runs"]
    assert "The study declares no published findings" in study_report.published_markdown(STUDY, frame, 0.05)


def test_the_conditions_show_a_strength_and_the_provenance_both_selections():
    runs = synthetic_runs(effect=0.1)
    runs = runs.assign(strength=np.where(runs["learner"] == TRUNCATED, 10.0, np.nan), sweep_id="s", git_commit="c",
                       lr_selected_by="lr-sweep", strategy_selected_by=np.where(runs["learner"] == TRUNCATED, "str-sweep", ""))
    conditions = study_report.condition_table(STUDY, runs)
    assert dict(zip(conditions["learner"], conditions["strength"])) == {EPOCHWISE: "", TRUNCATED: "10", MLP: ""}
    header = study_report.conditions_markdown(STUDY, conditions).splitlines()[0]
    assert [c.strip() for c in header.split("|")][4:6] == ["lr", "strength"]
    plain = study_report.conditions_markdown(STUDY, study_report.condition_table(STUDY, synthetic_runs(effect=0.1)))
    assert "strength" not in plain.splitlines()[0]
    (line,) = [s for s in study_report.stamps(runs, runs) if "selected on validation sets" in s]
    assert "`lr-sweep`, `str-sweep`" in line and "`strategy.selected_by`" in line


def test_a_strategys_learner_is_named_once():
    """Since strategies exist the recorded label names the strategy ('backprop (MLP) + EWC'); fine-tuning
    adds nothing."""
    run = pd.Series({"tags.forgetlab.learner_label": "epochwise BPTT + replay", "params.strategy.name": "replay",
                     "params.network.loss_at": "last", "params.trainer.epochs_per_task": "10"})
    assert study_runs.learner_label(run, 10) == "epochwise BPTT + replay, loss at the last step"
    tuned = run.copy()
    tuned["tags.forgetlab.learner_label"], tuned["params.strategy.name"] = "epochwise BPTT", "fine_tuning"
    assert study_runs.learner_label(tuned, 10) == EPOCHWISE


def test_a_doc_of_older_code_s_runs_says_where_to_see_what_changed_since():
    from analysis.load import CodeChoice
    from analysis.study_report import older_code_line

    assert older_code_line(None, ["abc"]) == [] and older_code_line(CodeChoice(None, "cur", {}), ["abc"]) == []
    assert older_code_line(CodeChoice("cur", "cur", {}), ["abc"]) == []  # the current code's runs: nothing to say
    (line,) = older_code_line(CodeChoice("old", "cur", {}), ["abc123"])
    assert "--code-version old" in line and "`cur`" in line and "`git diff abc123 -- src/forgetlab`" in line


@pytest.mark.parametrize("flags, asked", [([], "current"), (["--code-version", "b" * 16], "b" * 16), (["--any-code"], None)])
def test_the_pilot_reads_the_current_codes_runs_unless_told_otherwise(monkeypatch, flags, asked):
    seen = []

    def no_runs(client, experiment, code_version=None):
        seen.append(code_version)
        raise pilot.NoRunsError("none")

    monkeypatch.setattr(pilot, "open_store", lambda *args, **kwargs: object())
    monkeypatch.setattr(pilot, "latest_runs", no_runs)  # the one search of the store, for the runs used and left
    assert pilot.main(["--experiment", "credit_assignment_pilot", "--tracking-uri", "sqlite:///unused.db", *flags]) == 1
    assert seen == [contract.package_hash() if asked == "current" else asked]


@pytest.mark.parametrize("script", [study_report, pilot])
def test_the_report_and_the_pilot_search_the_store_once_for_the_runs_used_and_those_left(monkeypatch, script):
    """The search is most of a large store's loading time: the runs used and the runs that did not finish
    come from the same ``latest_runs`` frame."""
    searched = (pd.DataFrame({"status": ["FAILED"], "superseded_by": [""]}), "code choice")
    calls, handed = [], []

    def one_search(client, experiment, code_version=None):
        calls.append(code_version)
        return searched

    def load_runs(*args, **kwargs):
        handed.append(args[-1] if len(args) == 7 else kwargs.get("searched"))
        raise pilot.NoRunsError("stop here")  # what follows is tested elsewhere

    monkeypatch.setattr(script, "open_store", lambda *args, **kwargs: object())
    monkeypatch.setattr(script, "latest_runs", one_search)
    monkeypatch.setattr(script, "load_runs", load_runs)
    experiment = "credit_assignment" if script is study_report else "credit_assignment_pilot"
    assert script.main(["--experiment", experiment, "--tracking-uri", "sqlite:///unused.db", "--any-code"]) == 1
    assert calls == [None] and handed == [searched]


@pytest.mark.slow
def test_the_pilot_lists_the_runs_that_did_not_finish_unless_a_later_run_of_their_config_did(tmp_path):
    """A diverged run leaves its cell averaged over fewer seeds: the doc names it with its reason; a failed
    run that a resumed sweep redid is not listed."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("pilot_x", artifact_location=str(tmp_path / "art"))
    common = {"task_sequence.name": "split_mnist", "task_sequence.scenario": "class", "algorithm.name": "rtrl",
              "network.loss_at": "all", "strategy.name": "fine_tuning", "trainer.epochs_per_task": "10"}

    def run(config_hash: str, status: str, joint: bool, seed: int, error: str | None = None) -> None:
        tags = {contract.TAG_KIND: contract.KIND_TRAIN, contract.TAG_CONFIG_HASH: config_hash,
                contract.TAG_LEARNER_LABEL: "RTRL", **({contract.TAG_ERROR: error} if error else {})}
        created = client.create_run(experiment_id, tags=tags)
        for key, value in {**common, "task_sequence.joint": str(joint), "algorithm.lr": "0.005", "seed": str(seed)}.items():
            client.log_param(created.info.run_id, key, value)
        client.set_terminated(created.info.run_id, status)

    run("a", "FAILED", True, 1000, "TrainingDiverged: Training diverged by update 9\nTraceback ...")
    run("b", "FAILED", False, 1001, "stopped")
    run("b", "FINISHED", False, 1001)  # the resumed sweep redid it
    run("c", "FINISHED", True, 1001)
    left = study_runs.unfinished_of(study_runs.latest_runs(client, "pilot_x", None)[0])
    assert len(left) == 1
    (line,) = study_runs.unfinished_lines(left)
    assert line == ("- split_mnist, class: RTRL, loss at every step, joint, rate 0.005, seed 1000: FAILED: "
                    "TrainingDiverged: Training diverged by update 9")
    with pytest.raises(pilot.NoRunsError):  # the code choice is load_runs's: the same runs, the same refusal
        study_runs.latest_runs(client, "pilot_x", code_version="another")


def test_reaches_gate_is_the_mean_joint_acc_at_or_above_it_and_unknown_without_runs():
    reaches_gate = study_runs.reaches_gate
    assert reaches_gate(pd.Series([0.88, 0.93]), 0.9) is True       # the mean, not every seed
    assert reaches_gate(pd.Series([0.9, 0.9]), 0.9) is True         # at the gate passes
    assert reaches_gate(pd.Series([0.95, 0.84]), 0.9) is False
    assert reaches_gate(pd.Series([], dtype=float), 0.9) is None    # no joint runs yet: not known
    assert reaches_gate(pd.Series([0.5]), None) is None              # no gate declared
