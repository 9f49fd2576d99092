"""The credit-assignment study end to end, tiny (2 learners, 12 samples per task, 2 seeds): selection
sweep -> select_lr.py -> study sweep -> study_report.py. Checks the pipeline (files, columns, stamps,
the selection sweep recorded in every study run), not the result."""

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis import select_lr, study_report
from forgetlab import contract
from tests.conftest import run_train

TINY = ["learner=credit_assignment/bptt_1_1,credit_assignment/rtrl", "task_sequence=split_mnist",
        "task_sequence.scenario=domain", "task_sequence.max_train_per_task=12", "eval.every_samples=0",
        "hydra.launcher.n_jobs=1"]


@pytest.mark.slow
def test_selection_then_study_then_verdict(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    where = [f"paths.root_dir={tmp_path}", f"tracking.uri={uri}"]

    selection = run_train("-m", "experiment=credit_assignment_lr", *where, *TINY, "algorithm.lr=0.1,0.3", "seed=1000")
    assert selection.returncode == 0, selection.stderr[-3000:]
    table_path = tmp_path / "conf" / "learner" / "credit_assignment" / "lr.csv"
    assert select_lr.main(["--experiment", "credit_assignment_lr", "--tracking-uri", uri, "--table", str(table_path)]) == 0
    table = pd.read_csv(table_path, dtype=str, keep_default_na=False)
    assert set(table["algorithm.name"]) == {"bptt_truncated", "rtrl"} and set(table["lr"]) <= {"0.1", "0.3"}
    (selection_sweep,) = set(table["selected_by"])

    study = run_train("-m", "experiment=credit_assignment", *where, *TINY, "seed=0,1")
    assert study.returncode == 0, study.stderr[-3000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("credit_assignment").experiment_id],
                              filter_string="tags.`forgetlab.kind` = 'train'")
    assert len(runs) == 2 * 2 * 2 * 2  # learners x joint x perturbation x seeds
    for run in runs:
        params = run.data.params
        assert params["algorithm.lr_selected_by"] == selection_sweep and params["eval.split"] == "test"
        chosen = table[table["algorithm.name"] == params["algorithm.name"]]["lr"].item()
        assert float(params["algorithm.lr"]) == float(chosen)
    study_sweeps = {run.data.tags["forgetlab.sweep_id"] for run in runs}
    labels = {"bptt_truncated": "BPTT(1; 1)", "rtrl": "RTRL"}  # as each learner class names itself
    assert all(run.data.tags[contract.TAG_LEARNER_LABEL] == labels[run.data.params["algorithm.name"]] for run in runs)

    doc = tmp_path / "docs" / "credit_assignment.md"
    out = tmp_path / "reports" / "study"
    assert study_report.main(["--experiment", "credit_assignment", "--tracking-uri", uri, "--out", str(out),
                              "--doc", str(doc)]) == 0
    verdict = pd.read_csv(out / "verdict.csv")
    assert {"treatment", "reference", "mean", "ci_low", "ci_high", "d_z", "p", "p_holm", "p_wilcoxon", "p_tost",
            "verdict", "noise_low", "noise_high", "clears_noise_floor"} <= set(verdict.columns)
    assert set(verdict["treatment"]) == {"RTRL"} and set(verdict["reference"]) == {"BPTT(1; 1)"}
    assert verdict["primary"].any() and (verdict["n"] == 2).all()
    conditions = pd.read_csv(out / "conditions.csv")
    assert {"acc_mean", "learning_acc_mean", "bwt_mean", "joint_acc_mean", "noise_sd"} <= set(conditions.columns)
    text = doc.read_text()
    assert "Not the declared study" in text  # 2 seeds < 20
    assert selection_sweep in text and all(s in text for s in study_sweeps)
    assert "| split_mnist | domain | RTRL − BPTT(1; 1) |" in text  # the verdict row of the primary cell
    assert (out / "verdict.md").exists() and (out / "runs.csv").exists()
    assert "## Split MNIST beside the published fine-tuning results" in text and "## Did the learners learn?" in text
    assert "| RTRL |" in text.split("## Split MNIST beside")[1]  # every learner's ACC beside the literature
    times = text.split("What the study's sweeps took")[1].split("##")[0]
    assert all(s in times for s in study_sweeps) and "minutes of wall time" in times
