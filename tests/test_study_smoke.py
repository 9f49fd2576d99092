"""The credit-assignment study end to end, tiny (3 learners, 20 samples per task, 1 epoch, 2 rates, 2 seeds),
by its one command: the pilot sweep -> select_lr.py on joint accuracy -> pilot.py (gate, smallest effect)
-> the study sweep -> study_report.py, and again (it resumes: nothing left to train). Checks the
pipeline (files, columns, stamps, the selection sweep recorded in every study run), not the result."""

import shutil

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis import run_study
from forgetlab import contract
from tests.conftest import ROOT

LEARNERS = "credit_assignment/mlp_backprop,credit_assignment/bptt_epochwise,credit_assignment/bptt_1_1"
TINY = [f"learner={LEARNERS}", "task_sequence.scenario=domain", "seed=0,1", "algorithm.lr=0.01,0.05",
        "trainer.epochs_per_task=1", "task_sequence.max_train_per_task=20", "eval.every_samples=0", "hydra.launcher.n_jobs=1"]


@pytest.mark.slow
def test_the_one_command_runs_pilot_selection_gate_study_and_report_and_resumes(tmp_path, capfd):
    root = tmp_path / "root"
    shutil.copytree(ROOT / "conf", root / "conf")  # the tables this run writes go here, not into the project
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["credit_assignment", "--trial", "--root", str(root), "--docs", str(tmp_path / "docs"), "--tracking-uri", uri,
            *(x for o in [*TINY, f"hydra.sweep.dir={tmp_path}/multirun"] for x in ("--override", o))]
    assert run_study.main(args) == 0
    out = capfd.readouterr().out
    assert "[study] study (experiment=credit_assignment): 24 runs" in out and out.count("[study] step") == 5

    table = pd.read_csv(root / "conf" / "learner" / "credit_assignment" / "lr.csv", dtype=str, keep_default_na=False)
    assert len(table) == 3 and set(table["lr"]) <= {"0.01", "0.05"} and "task_sequence.joint" not in table
    assert set(table["criterion"]) == {"mean validation final/acc of joint training"}
    (selection_sweep,) = set(table["selected_by"])
    sesoi = yaml.safe_load((root / "conf" / "learner" / "credit_assignment" / "sesoi.json").read_text())
    assert sesoi["sesoi"] > 0 and sesoi["pilot_sweeps"] == selection_sweep
    pilot_doc = (tmp_path / "docs" / "credit_assignment_pilot.md").read_text()
    assert "## Learnability at the selected rate" in pilot_doc and selection_sweep in pilot_doc
    assert "| split_mnist | domain | backprop (MLP) |" in pilot_doc and "## What each learner cost" in pilot_doc

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("credit_assignment").experiment_id],
                              filter_string="tags.`forgetlab.kind` = 'train'")
    assert len(runs) == 3 * 2 * 2 * 2  # learners x rates x joint x seeds
    for run in runs:
        assert run.data.params["algorithm.lr_selected_by"] == selection_sweep and run.data.params["eval.split"] == "test"
    study_sweeps = {run.data.tags["forgetlab.sweep_id"] for run in runs}
    labels = {"backprop": "backprop (MLP)", "bptt_epochwise": "epochwise BPTT", "bptt_truncated": "BPTT(1; 1)"}
    assert all(run.data.tags[contract.TAG_LEARNER_LABEL] == labels[run.data.params["algorithm.name"]] for run in runs)

    out_dir = root / "reports" / "credit_assignment" / "study"
    verdict = pd.read_csv(out_dir / "verdict.csv")
    assert {"kind", "treatment", "reference", "mean", "ci_low", "ci_high", "d_z", "p", "p_holm", "p_tost", "p_tost_holm",
            "verdict", "refused"} <= set(verdict.columns)
    family = verdict[verdict["kind"] == "family"]
    assert len(family) == 8 and set(family["outcome"]) == {"bwt_normalized"}  # every declared comparison
    ran = family[family["n"] > 0]
    assert set(ran["treatment"]) == {"BPTT(1; 1), loss at the last step", "backprop (MLP)"} and (ran["n"] == 2).all()
    unrun = family.loc[family["n"] == 0, "verdict"]  # learners the trial left out: pending, unless a side is below the gate
    assert (unrun == "pending: not run yet").any()
    assert all(v == "pending: not run yet" or v.startswith("no verdict:") and v.endswith("below the gate") for v in unrun)
    assert {"learner", "rate", "seed", "selected_lr", "bwt_normalized"} <= set(pd.read_csv(out_dir / "rates.csv").columns)
    text = (tmp_path / "docs" / "credit_assignment.md").read_text()
    assert "Not the declared study" in text and selection_sweep in text and all(s in text for s in study_sweeps)
    assert "## Did the learners learn?" in text and "## The learning rate as a factor" in text
    assert "Learner × rate interaction" in text and f"{sesoi['sesoi']:g}" in text

    assert run_study.main(args) == 0  # again: every job is skipped, the tables and docs are written afresh
    assert "24 jobs: 24 skipped" in capfd.readouterr().out
