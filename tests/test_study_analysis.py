"""Learning-rate selection (analysis/select_lr.py) and the study verdict (analysis/study_report.py) on
hand-made runs with known answers."""

import numpy as np
import pandas as pd
import pytest

from analysis import select_lr, study_report
from forgetlab import contract
from forgetlab.metric_registry import BY_NAME
from tests.conftest import ROOT

STUDY = study_report.read_declaration(ROOT / "conf" / "experiment" / "credit_assignment.yaml")


def selection_frame(split: str = "val") -> pd.DataFrame:
    """Two learners x two lrs x three seeds; rtrl is best at 0.1, BPTT ties at 0.1 and 0.3."""
    rows = []
    scores = {("rtrl", "0.1"): [0.8, 0.82, 0.81], ("rtrl", "0.3"): [0.7, 0.75, 0.72],
              ("bptt_truncated", "0.1"): [0.6, 0.6, 0.6], ("bptt_truncated", "0.3"): [0.6, 0.6, 0.6]}
    for (algorithm, lr), values in scores.items():
        for seed, score in zip((1000, 1001, 1002), values):
            rows.append({
                "run_id": f"{algorithm}-{lr}-{seed}", "status": "FINISHED", "params.algorithm.name": algorithm,
                "params.algorithm.lr": lr, "params.seed": str(seed), "params.eval.split": split,
                "params.task_sequence.name": "delayed_recall", "params.task_sequence.scenario": "task",
                "params.network.name": "rnn", "params.algorithm.h": "1" if algorithm == "bptt_truncated" else None,
                "params.tracking.uri": "sqlite:///x", "metrics.final/acc": score,
                "tags.forgetlab.sweep_id": "sel-1", "tags.forgetlab.config_hash": f"{algorithm}{lr}{seed}",
                "tags.mlflow.runName": f"{algorithm}-{seed}",
            })
    return pd.DataFrame(rows)


def test_selection_takes_the_best_mean_validation_accuracy_and_the_smaller_rate_on_a_tie():
    table = select_lr.select(select_lr.selection_runs(selection_frame()))
    chosen = dict(zip(table["algorithm.name"], table["lr"]))
    assert chosen == {"rtrl": "0.1", "bptt_truncated": "0.1"}
    rtrl = table[table["algorithm.name"] == "rtrl"].iloc[0]
    assert rtrl["score"] == pytest.approx(0.81) and rtrl["n_seeds"] == 3 and rtrl["runner_up_lr"] == 0.3
    assert set(table["selected_by"]) == {"sel-1"}
    # keys: the core ones plus what varies (algorithm.h), never lr, seed or tracking
    assert [c for c in table.columns if "." in c] == ["task_sequence.name", "task_sequence.scenario", "network.name",
                                                      "algorithm.name", "algorithm.h"]
    assert table.loc[table["algorithm.name"] == "rtrl", "algorithm.h"].item() == ""


def test_a_rate_that_lost_a_seed_to_divergence_is_not_chosen_on_its_survivors():
    runs = selection_frame()
    runs.loc[(runs["params.algorithm.name"] == "rtrl") & (runs["params.algorithm.lr"] == "0.3"), "metrics.final/acc"] = 0.95
    diverged = (runs["params.algorithm.name"] == "rtrl") & (runs["params.algorithm.lr"] == "0.3") & (runs["params.seed"] == "1002")
    table = select_lr.select(select_lr.selection_runs(runs[~diverged]))  # its FAILED run is not among them
    rtrl = table[table["algorithm.name"] == "rtrl"].iloc[0]
    assert rtrl["lr"] == "0.1" and rtrl["lrs_missing_seeds"] == "0.3" and rtrl["lrs_tried"] == "0.1 0.3"
    bptt = table[table["algorithm.name"] == "bptt_truncated"].iloc[0]
    assert bptt["lrs_missing_seeds"] == ""


def test_selection_refuses_runs_that_scored_test_data():
    with pytest.raises(select_lr.SelectionError, match="scored test data"):
        select_lr.selection_runs(selection_frame(split="test"))


def test_the_declaration_is_read_from_the_preset():
    assert (STUDY.primary_metric, STUDY.primary_sequence, STUDY.primary_scenario) == ("bwt", "split_mnist", "domain")
    assert STUDY.reference == "BPTT(1; 1)" and STUDY.scenarios == ["task", "domain"]
    assert STUDY.min_seeds >= 20 and 0 < STUDY.margin and STUDY.alpha == 0.05
    with pytest.raises(study_report.NotDeclared):
        study_report.read_declaration(ROOT / "conf" / "experiment" / "quickstart.yaml")


def test_a_learner_is_named_by_its_recorded_label_with_the_studys_factors():
    tag = f"tags.{contract.TAG_LEARNER_LABEL}"
    run = pd.Series({tag: "BPTT(4; 1)", "params.algorithm.name": "bptt_truncated", "params.trainer.batch_size": "1",
                     "params.trainer.epochs_per_task": "1"})
    assert study_report.learner_label(run, 1) == "BPTT(4; 1)"
    # runs from before the label was recorded: the algorithm's name
    assert study_report.learner_label(run.drop(tag), 1) == "bptt_truncated"
    assert study_report.learner_label(run.replace({"BPTT(4; 1)": np.nan}), 1) == "bptt_truncated"
    # samples per update and epochs per task are the study's factors, not the learner's
    mlp = pd.Series({tag: "backprop (MLP)", "params.algorithm.name": "backprop", "params.trainer.batch_size": "4",
                     "params.trainer.epochs_per_task": "4"})
    assert study_report.learner_label(mlp, 1) == "backprop (MLP), batch 4, 4 epochs"
    assert study_report.learner_label(mlp, 4) == "backprop (MLP), batch 4"
    assert {p.treatment for p in STUDY.pairs} >= {"backprop (MLP), batch 4, 4 epochs", "backprop (MLP), batch 4"}


def test_learners_come_in_name_order_numbers_numerically():
    learners = ["RTRL", "BPTT(12; 1)", "epochwise BPTT", "BPTT(4; 1)", "backprop (MLP), batch 4", "BPTT(1; 1)",
                "backprop (MLP)", "BPTT(112; 112) stream"]
    assert study_report.ordered_learners(learners) == [
        "backprop (MLP)", "backprop (MLP), batch 4", "BPTT(1; 1)", "BPTT(4; 1)", "BPTT(12; 1)",
        "BPTT(112; 112) stream", "epochwise BPTT", "RTRL"]


def test_outcomes_are_the_task_level_metric_records():
    assert set(STUDY.outcomes) <= set(study_report.OUTCOMES)
    assert study_report.OUTCOMES["bwt"] is BY_NAME["bwt"]
    assert "intransigence" not in study_report.OUTCOMES  # it needs the joint runs, not one run's matrix
    assert STUDY.shown_outcomes == ["acc", "bwt", "forgetting_max", "learning_acc"]  # the columns of conditions.csv


def synthetic_runs(effect: float, noise: float, seeds=range(8)) -> pd.DataFrame:
    """The run table of two learners on one data set and scenario: the treatment's BWT is the
    reference's plus ``effect`` plus N(0, 0.01) per seed; the perturbed twin of every run differs by
    up to ``noise``."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        base = rng.uniform(-0.4, -0.2)
        for learner, shift in (("BPTT(1; 1)", 0.0), ("RTRL", effect + rng.normal(0, 0.01))):
            for perturbation, jitter in ((0.0, 0.0), (1e-12, rng.uniform(-noise, noise))):
                for joint in (False, True):
                    bwt = base + shift + jitter
                    rows.append({"learner": learner, "task_sequence": "split_mnist", "scenario": "domain",
                                 "joint": joint, "perturbation": perturbation, "seed": seed, "lr": 0.1,
                                 "bwt": np.nan if joint else bwt, "acc": 0.9 if joint else 0.6 + bwt / 2,
                                 "learning_acc": np.nan if joint else 0.8, "forgetting_max": np.nan if joint else -bwt})
    return pd.DataFrame(rows)


def test_a_clear_effect_differs_and_clears_a_small_noise_floor():
    frame = study_report.verdict_table(STUDY, synthetic_runs(effect=0.2, noise=0.01))
    bwt = frame[frame["outcome"] == "bwt"].iloc[0]
    assert bwt["primary"] and bwt["treatment"] == "RTRL" and bwt["n"] == 8
    assert bwt["mean"] == pytest.approx(0.2, abs=0.01) and bwt["verdict"] == "differs"
    assert -0.01 <= bwt["noise_low"] < 0 < bwt["noise_high"] <= 0.01 and bwt["noise_n"] == 16
    assert bwt["clears_noise_floor"] == True  # noqa: E712 (a numpy bool)


def test_no_effect_is_equivalent_and_a_large_noise_floor_is_not_cleared():
    frame = study_report.verdict_table(STUDY, synthetic_runs(effect=0.0, noise=0.3))
    bwt = frame[frame["outcome"] == "bwt"].iloc[0]
    assert bwt["mean"] == pytest.approx(0.0, abs=0.01) and bwt["verdict"] == "equivalent"
    assert not bwt["clears_noise_floor"]
    small = study_report.verdict_table(STUDY, synthetic_runs(effect=0.03, noise=0.3))
    assert small[small["outcome"] == "bwt"].iloc[0]["clears_noise_floor"] == False  # noqa: E712


def test_holm_runs_over_every_comparison_of_an_outcome():
    runs = pd.concat([synthetic_runs(0.05, 0.01).assign(scenario=s) for s in ("task", "domain")])
    frame = study_report.verdict_table(STUDY, runs)
    bwt = frame[frame["outcome"] == "bwt"]
    low, high = sorted(bwt["p"])
    first = min(1.0, 2 * low)
    assert sorted(bwt["p_holm"]) == pytest.approx([first, max(first, high)])


def test_the_conditions_table_sets_forgetting_beside_learning_accuracy_and_the_joint_ceiling():
    table = study_report.condition_table(STUDY, synthetic_runs(0.1, 0.01))
    assert list(table["learner"]) == ["BPTT(1; 1)", "RTRL"]
    row = table.iloc[1]
    assert row["n"] == 8 and row["joint_n"] == 8 and row["joint_acc_mean"] == pytest.approx(0.9)
    assert row["learning_acc_mean"] == pytest.approx(0.8) and np.isfinite(row["noise_sd"])
    assert {"bwt_mean", "forgetting_max_mean", "acc_mean"} <= set(table.columns)


def test_factor_two_learners_meet_only_their_declared_reference():
    learners = ["BPTT(1; 1)", "RTRL", "backprop (MLP)", "backprop (MLP), batch 4", "backprop (MLP), batch 4, 4 epochs"]
    table = pd.DataFrame([{"learner": name, "task_sequence": "split_mnist", "scenario": scenario, "joint": False}
                          for name in learners for scenario in ("task", "domain", "class")])
    found = {(scenario, pair.treatment, pair.reference, pair.matched)
             for _, scenario, pair in study_report.comparisons(STUDY, table)}
    expected = {(scenario, treatment, reference, matched) for scenario in ("task", "domain") for treatment, reference, matched in [
        ("RTRL", "BPTT(1; 1)", ""), ("backprop (MLP)", "BPTT(1; 1)", ""),
        ("backprop (MLP), batch 4", "backprop (MLP)", "samples"),
        ("backprop (MLP), batch 4, 4 epochs", "backprop (MLP)", "updates")]}
    assert found == expected  # class is no scenario of the verdict


def test_the_literature_table_checks_the_ordering_and_class_il_against_one_over_t():
    rows = []
    for learner, accs in (("backprop (MLP)", {"task": 0.95, "domain": 0.6, "class": 0.21}),
                          ("RTRL", {"task": 0.7, "domain": 0.75, "class": 0.2})):
        for scenario, acc in accs.items():
            rows.append({"task_sequence": "split_mnist", "scenario": scenario, "learner": learner,
                         "acc_mean": acc, "joint_acc_mean": 0.9})
    table = pd.DataFrame({"task_sequence": ["split_mnist"], "n_tasks": [5]})
    text = study_report.literature_markdown(STUDY.literature, pd.DataFrame(rows), table)
    assert text.splitlines()[0].split("|")[5].strip() == "class < domain < task"  # the published ordering
    lines = {line.split("|")[1].strip(): line for line in text.splitlines()[2:]}
    assert lines["backprop (MLP)"].split("|")[5].strip() == "yes"
    assert lines["RTRL"].split("|")[5].strip() == "**no**"  # domain above task breaks the ordering
    assert lines["backprop (MLP)"].split("|")[6].strip() == study_report.fmt(0.21 - 0.2)
    assert "≈ 0.85" in lines["literature (fine-tuning, joint)"]


def test_the_learning_check_names_the_learners_that_barely_learned():
    conditions = pd.DataFrame([
        {"task_sequence": "split_mnist", "scenario": "task", "learner": "RTRL", "learning_acc_mean": 0.52, "init_acc_mean": 0.5},
        {"task_sequence": "split_mnist", "scenario": "task", "learner": "BPTT(1; 1)", "learning_acc_mean": 0.9, "init_acc_mean": 0.5},
        {"task_sequence": "delayed_recall", "scenario": "domain", "learner": "RTRL", "learning_acc_mean": 0.8, "init_acc_mean": 0.5},
    ])
    lines = study_report.learning_check(STUDY, conditions)
    assert lines[-1] == "- split_mnist, task (1 of 2 learners): RTRL (0.520 vs 0.500)"
    assert not any("BPTT(1; 1)" in line or "delayed_recall" in line for line in lines)
    learned = conditions.assign(learning_acc_mean=0.9)
    assert study_report.learning_check(STUDY, learned)[0].startswith("Every learner's learning accuracy")


def test_runs_of_one_data_set_with_two_loss_designs_are_two_data_sets():
    table = pd.DataFrame({
        "task_sequence": ["delayed_recall", "delayed_recall", "split_mnist", "split_mnist"],
        "loss_design": ["loss at every step", "loss at the last 2 steps", "loss at every step", ""],
    })
    labelled = study_report.label_loss_designs(table.copy())
    assert list(labelled["task_sequence"]) == ["delayed_recall, loss at every step",
                                              "delayed_recall, loss at the last 2 steps", "split_mnist", "split_mnist"]
    run = pd.Series({"params.network.loss_at": "last", "params.network.loss_last_steps": "2"})
    assert study_report.loss_design(run) == "loss at the last 2 steps"
    assert study_report.loss_design(pd.Series({"params.network.loss_at": "last"})) == "loss at the last step"


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


def study_doc(study: study_report.Study, runs: pd.DataFrame) -> str:
    """The doc of a fabricated study of ``runs`` (synthetic_runs), as ``study_report.build`` writes it."""
    table = runs.assign(run_id=[f"run-{i}" for i in range(len(runs))], sweep_id="sweep-1", git_commit="abcdef123456",
                        lr_selected_by="selection-1", seconds=2.0, n_tasks=5, init_acc=0.5, loss_design="")
    times = pd.DataFrame([{"sweep": "sweep-1", "status": "FINISHED", "minutes": 1.5, "jobs": 64.0, "skipped": 0.0,
                           "failed": 0.0}])
    return study_report.write_markdown(study, "credit_assignment", study_report.verdict_table(study, table),
                                       study_report.condition_table(study, table), table, table, times)


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


def test_the_study_template_gives_the_sections_of_the_doc():
    """docs/credit_assignment.md is generated from runs not in the repository: the engine and the
    study's template (docs/templates/credit_assignment.md) must give its sections, in its order."""
    doc = study_doc(STUDY, synthetic_runs(effect=0.1, noise=0.01))
    committed = (ROOT / "docs" / "credit_assignment.md").read_text()

    def shape(text):  # a verdict per declared outcome, whatever the outcome's label was then
        return ["## Verdict" if h.startswith("## Verdict: ") else h for h in headings(text)]

    assert shape(doc) == shape(committed)
    assert [h for h in headings(doc) if h.startswith("## Verdict: ")] == [
        "## Verdict: BWT (primary outcome)", "## Verdict: ACC", "## Verdict: Learning accuracy",
        "## Verdict: Forgetting (max, RWalk)"]
    assert "<!-- study:" not in doc and "<!-- template:" not in doc
    assert doc.startswith("# Credit assignment and forgetting (`experiment=credit_assignment`)\n\n<!-- generated by")
    # the study's prose and published numbers come from its preset and template, the numbers from the runs
    assert "python experiments/train.py -m experiment=credit_assignment_recall_lr" in doc
    assert "| literature (fine-tuning, joint) | ≈ 0.850 (joint ≈ 0.980)" in doc
    assert "perturbed by 1e-12 · N(0, 1)" in doc
    assert "> **Not the declared study**: at most 8 seeds per condition" in doc
    assert doc.endswith("their noise floor is shown, not used.\n")


def test_a_study_without_a_template_gets_the_engines_sections():
    plain = study_report.Study(**{**STUDY.__dict__, "template": None, "literature": None})
    doc = study_doc(plain, synthetic_runs(effect=0.1, noise=0.01))
    assert headings(doc)[:3] == ["# Study verdict: `credit_assignment`", "## Primary outcome (declared before running)",
                                 "## Did the learners learn?"]
    assert headings(doc)[-3:] == ["## Design", "## Forgetting with learning accuracy and the joint ceiling", "## Statistics"]
    assert "Split MNIST" not in doc and "Caveats" not in doc


def test_a_template_that_names_no_section_is_refused():
    filled = {"primary": "## Primary"}
    assert study_report.fill_template("# T\n\n<!-- study: primary -->\n\ntext\n", filled) == "# T\n\n## Primary\n\ntext\n"
    with pytest.raises(ValueError, match="'verdict'"):
        study_report.fill_template("<!-- study: verdict -->", filled)


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
