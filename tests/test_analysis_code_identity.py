"""Reports and the learning-rate selection read the runs of the current code (issue 20): the runs of
other code are left out and counted, ``--code-version`` and ``--any-code`` choose otherwise, and the
code versions read are printed in report.md and the study doc."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis import report, select_lr, study_report
from analysis.load import CodeChoice
from forgetlab import contract
from forgetlab.tracking.code_version import code_version

OTHER = "b" * 16  # a code version that is not this checkout's
FAST = ["trainer.epochs_per_task=1", "eval.every_samples=200", "task_sequence.n_tasks=2"]


def test_analysis_computes_the_code_version_training_records():
    assert contract.package_hash() == code_version().code_hash


@pytest.mark.slow
def test_a_report_reads_the_current_codes_runs_though_other_codes_are_newer(tmp_path, capsys):
    """The issue's sequence: a sweep, an edit, a re-run (newer runs of other code), a revert (the
    current code again, its jobs skipped). Before, the report analysed the newest runs, those of the
    other code, and listed the current code's as superseded."""
    from forgetlab.config import compose
    from forgetlab.experiment import RunContext, run_experiment

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = [f"tracking.uri={uri}", "tracking.experiment=coded", f"tracking.artifact_location={tmp_path}/art", *FAST]
    for seed in (0, 1):
        run_experiment(compose([*common, f"seed={seed}"]), RunContext(quiet=True))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("coded").experiment_id
    current = client.search_runs([experiment], order_by=["attributes.start_time ASC"])
    run_experiment(compose([*common, "seed=0"]), RunContext(quiet=True))  # newer, then marked as of other code
    (newer,) = [r for r in client.search_runs([experiment]) if r.info.run_id not in {c.info.run_id for c in current}]
    client.set_tag(newer.info.run_id, contract.TAG_CODE_VERSION, OTHER)

    built = report.build_report(uri, "coded", out=tmp_path / "report", cache_dir=tmp_path / "cache", log_to_mlflow=False)
    analysed = built.runs[built.runs["analysed"]]
    assert sorted(analysed["run_id"]) == sorted(r.info.run_id for r in current)
    assert newer.info.run_id not in set(built.runs["run_id"])  # left out, not "superseded"
    text = (tmp_path / "report" / "report.md").read_text()
    assert f"- code versions analysed: `{contract.package_hash()}` (2 runs, the current code)" in text
    assert f"1 run(s) of other code left out (`{OTHER}`: 1)" in text
    report.print_summary(built)
    assert f"Note: 1 run(s) of other code left out ({OTHER}: 1)" in capsys.readouterr().out

    everything = report.build_report(uri, "coded", out=tmp_path / "any", cache_dir=tmp_path / "cache",
                                     log_to_mlflow=False, any_code=True)
    analysed = everything.runs[everything.runs["analysed"]]
    assert newer.info.run_id in set(analysed["run_id"]) and len(analysed) == 2  # the newest run of each config
    assert f"`{OTHER}` (1 runs)" in (tmp_path / "any" / "report.md").read_text()

    assert report.main(["--experiment", "coded", "--tracking-uri", uri, "--out", str(tmp_path / "other"),
                        "--cache-dir", str(tmp_path / "cache"), "--no-mlflow", "--code-version", OTHER]) == 0
    assert "`" + OTHER + "` (1 runs)" in (tmp_path / "other" / "report.md").read_text()
    assert report.main(["--experiment", "coded", "--tracking-uri", uri, "--no-mlflow", "--code-version", "c" * 16,
                        "--out", str(tmp_path / "none")]) == 1
    assert f"None of the 3 selected training runs was trained by code version {'c' * 16}" in capsys.readouterr().err


def selection_run(client, experiment: str, lr: float, acc: float, code: str) -> None:
    params = {"task_sequence.name": "split_digits", "task_sequence.scenario": "class", "network.name": "mlp",
              "algorithm.name": "backprop", "algorithm.lr": str(lr), "seed": "0", "eval.split": "val"}
    run = client.create_run(experiment, tags={contract.TAG_KIND: contract.KIND_TRAIN, contract.TAG_CODE_VERSION: code,
                                              contract.TAG_CONFIG_HASH: f"{lr}", contract.TAG_SWEEP_ID: "s"})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    client.log_metric(run.info.run_id, contract.FINAL_ACC, acc)
    client.set_terminated(run.info.run_id, "FINISHED")


@pytest.mark.slow
def test_select_lr_chooses_among_the_current_codes_runs_unless_told_otherwise(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("pick_lr")
    selection_run(client, experiment, 0.1, 0.5, contract.package_hash())
    selection_run(client, experiment, 0.3, 0.6, contract.package_hash())
    selection_run(client, experiment, 1.0, 0.9, OTHER)  # the best score, but of other code

    def chosen(*options: str) -> str:
        table = tmp_path / "lr.csv"
        assert select_lr.main(["--experiment", "pick_lr", "--tracking-uri", uri, "--table", str(table), *options]) == 0
        return pd.read_csv(table, dtype=str)["lr"].item()

    assert chosen() == "0.3"
    assert f"Note: 1 run(s) of other code left out ({OTHER}: 1)" in capsys.readouterr().out
    assert chosen("--any-code") == "1.0"
    assert chosen("--code-version", OTHER) == "1.0"


def test_the_study_doc_names_the_code_versions_it_read():
    runs = pd.DataFrame({"tags.forgetlab.code_version": [contract.package_hash()] * 3})
    table = pd.DataFrame({"sweep_id": ["s1"], "git_commit": ["abc"], "lr_selected_by": [""]})
    code = CodeChoice(contract.package_hash(), contract.package_hash(), {OTHER: 2})
    lines = study_report.stamps(runs, table, code)
    assert f"- 3 runs analysed, of code version(s) `{contract.package_hash()}` (3 runs, the current code)" in lines
    assert any(f"2 run(s) of other code left out (`{OTHER}`: 2)" in line for line in lines)
