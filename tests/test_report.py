"""analysis/report.py on a real store: runs trained by forgetlab, plus a failed and an unfinished one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from scipy import stats

from analysis import aggregate
from analysis import report
from forgetlab import contract

EXPERIMENT = "reporting"
FAST = ["trainer.epochs_per_task=1", "eval.every_samples=200", "task_sequence.n_tasks=2"]


def _compose(*overrides: str):
    from forgetlab.config import compose

    return compose(overrides)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """2 conditions (sequential, joint) x 2 seeds, an older duplicate of one run, a FAILED run, a run
    left RUNNING and a FINISHED run without eval artifacts."""
    from forgetlab.experiment import RunContext, run_experiment

    tmp = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{tmp}/mlflow.db"
    common = [f"tracking.uri={uri}", f"tracking.experiment={EXPERIMENT}", f"tracking.artifact_location={tmp}/art", *FAST]
    run_experiment(_compose(*common, "seed=0"), RunContext(quiet=True))  # superseded by the repeat below
    for joint in ("false", "true"):
        for seed in (0, 1):
            run_experiment(_compose(*common, f"seed={seed}", f"task_sequence.joint={joint}"), RunContext(quiet=True))
    client = MlflowClient(uri)
    exp_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    code = {"forgetlab.code_version": contract.package_hash()}  # runs of the current code: the ones a report reads
    failed = client.create_run(exp_id, run_name="diverged-seed7", tags={"forgetlab.kind": "train", "forgetlab.config_hash": "f" * 16, **code})
    client.log_param(failed.info.run_id, "seed", "7")
    client.set_tag(failed.info.run_id, "forgetlab.error", "FloatingPointError: loss is nan at update 12")
    client.set_terminated(failed.info.run_id, "FAILED")
    running = client.create_run(exp_id, run_name="still-running", tags={"forgetlab.kind": "train", "forgetlab.config_hash": "e" * 16, **code})
    client.log_param(running.info.run_id, "seed", "8")
    hollow = client.create_run(exp_id, run_name="no-artifacts", tags={"forgetlab.kind": "train", "forgetlab.config_hash": "d" * 16, **code})
    client.log_param(hollow.info.run_id, "seed", "9")
    client.set_terminated(hollow.info.run_id, "FINISHED")
    return uri, tmp


@pytest.fixture(scope="module")
def built(store, tmp_path_factory):
    uri, tmp = store
    out = tmp_path_factory.mktemp("report")
    return report.build_report(uri, EXPERIMENT, out=out, cache_dir=tmp / "cache", workers=4)


@pytest.mark.slow
def test_report_numbers_agree_with_every_runs_logged_final_metrics(built, store):
    runs = pd.read_csv(built.out / "runs.csv")
    analysed = runs[runs["analysed"]]
    assert len(analysed) == 4
    assert analysed["matches_logged_final"].all()
    for mine, logged in [("acc", "final/acc"), ("bwt", "final/bwt"), ("fwt", "final/fwt"), ("forgetting_max", "final/forgetting")]:
        np.testing.assert_allclose(analysed[mine], analysed[f"logged.{logged}"], rtol=0, atol=1e-12)
    # the condition statistics in summary.csv, against final/acc read straight from MLflow
    client = MlflowClient(store[0])
    final_acc = {
        r.info.run_id: r.data.metrics["final/acc"]
        for r in client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], "attributes.status = 'FINISHED'")
        if r.data.tags.get("forgetlab.kind") == "train" and "final/acc" in r.data.metrics
    }
    np.testing.assert_allclose(analysed["acc"], [final_acc[r] for r in analysed["run_id"]], rtol=0, atol=1e-12)
    summary = pd.read_csv(built.out / "summary.csv").set_index("condition")
    assert set(summary.index) == {"joint=False", "joint=True"}
    for joint in ("False", "True"):
        values = pd.Series([final_acc[r] for r in analysed.loc[analysed["condition"] == f"joint={joint}", "run_id"]])
        assert len(values) == 2
        assert summary.loc[f"joint={joint}", "acc_mean"] == pytest.approx(values.mean())
        assert summary.loc[f"joint={joint}", "acc_std"] == pytest.approx(values.std(ddof=1))
        low, high = summary.loc[f"joint={joint}", ["acc_ci_low", "acc_ci_high"]]
        half = stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)  # a t-interval over 2 seeds
        assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half), abs=1e-12)
        assert summary.loc[f"joint={joint}", "acc_n"] == 2
    assert np.isnan(summary.loc["joint=True", "bwt_mean"])  # a joint run has no sequence of tasks
    assert np.isfinite(summary.loc["joint=False", "intransigence_mean"])


@pytest.mark.slow
def test_failed_unfinished_and_superseded_runs_are_listed_not_dropped(built):
    runs = pd.read_csv(built.out / "runs.csv", keep_default_na=False)
    by_name = runs.set_index("run_name")
    assert by_name.loc["diverged-seed7", "status"] == "FAILED"
    assert "loss is nan at update 12" in by_name.loc["diverged-seed7", "problem"]
    assert by_name.loc["still-running", "status"] == "RUNNING"
    assert by_name.loc["no-artifacts", "status"] == "FINISHED" and by_name.loc["no-artifacts", "analysed"] in (False, "False")
    assert "eval" in by_name.loc["no-artifacts", "problem"]
    superseded = runs[runs["superseded_by"] != ""]
    assert len(superseded) == 1 and superseded["superseded_by"].iloc[0] in set(runs["run_id"])
    assert not runs.loc[~runs["status"].eq("FINISHED") | runs["superseded_by"].ne(""), "analysed"].astype(str).eq("True").any()
    text = (built.out / "report.md").read_text()
    assert "Runs not analysed" in text
    for name in ("diverged-seed7", "still-running", "no-artifacts", "loss is nan at update 12", "superseded by"):
        assert name in text


@pytest.mark.slow
def test_report_has_every_figure_as_png_and_pdf_its_latex_tables_and_sections(built):
    from analysis import style

    text = (built.out / "report.md").read_text()
    names = ("seen_accuracy", "final_metrics", "accuracy_matrices", "task_curves", "retention_curves",
             "flips_to_wrong")
    for name in names:
        assert f"figures/{name}.png" in text and f"figures/{name}.pdf" in text and f"figures/{name}-column.pdf" in text
        for suffix, inches in (("", style.PAGE), ("-column", style.COLUMN)):  # page and column width
            png, pdf = built.out / "figures" / f"{name}{suffix}.png", built.out / "figures" / f"{name}{suffix}.pdf"
            with Image.open(png) as image:
                assert image.info["dpi"][0] == pytest.approx(style.DPI, abs=1)
                assert image.size[0] == pytest.approx(inches * style.DPI, abs=1)
            assert pdf.read_bytes().startswith(b"%PDF")
            assert png.stat().st_size < 1_000_000 and pdf.stat().st_size < 1_000_000
    for table in ("summary_task_level", "summary_sample_level"):
        latex = (built.out / "tables" / f"{table}.tex").read_text()
        assert "\\toprule" in latex and "joint" in latex and "\\label{tab:" in latex
        assert f"tables/{table}.tex" in text
    for section in ("## Summary", "## Metric definitions", "## Runs", "## Configuration"):
        assert section in text
    assert "t-interval" in text and "bootstrap CI" not in text
    retention = pd.read_csv(built.out / "retention.csv")
    assert set(retention["condition"]) == {"joint=False", "joint=True"}
    assert retention["retained_mean"].dropna().between(0, 1).all()


@pytest.mark.slow
def test_a_selection_with_more_panels_than_allowed_gets_its_tables_and_a_note_instead_of_figures(store, tmp_path, capsys):
    uri, tmp = store
    out = tmp_path / "crowded"
    assert report.main(["--experiment", EXPERIMENT, "--tracking-uri", uri, "--out", str(out), "--cache-dir",
                        str(tmp / "cache"), "--no-mlflow", "--max-panels", "0"]) == 0
    text = (out / "report.md").read_text()
    assert "Not drawn: this selection's largest figure would have 1 panel (the limit is 0: `--max-panels`)" in text
    assert "figures/" not in text and not list((out / "figures").iterdir())
    assert (out / "summary.csv").exists() and "joint" in (out / "tables" / "summary_task_level.tex").read_text()
    assert "on the params that vary: `task_sequence.joint` (2)." in text
    assert "Narrow it with --sweep-id or --filter" in capsys.readouterr().out


@pytest.mark.slow
def test_report_is_logged_as_a_report_run_that_is_never_analysed_as_training(built, store, tmp_path):
    uri, tmp = store
    client = MlflowClient(uri)
    run = client.get_run(built.report_run_id)
    assert run.data.tags["forgetlab.kind"] == "report" and run.info.status == "FINISHED"
    assert {"report.md", "summary.csv", "runs.csv", "figures"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    again = report.build_report(uri, EXPERIMENT, out=tmp_path, cache_dir=tmp / "cache", log_to_mlflow=False)
    assert built.report_run_id not in set(again.runs["run_id"])
    assert len(again.runs) == len(built.runs)
    # The same selection reported again: its report run replaces the earlier one (deleted), another selection's stays.
    where = "params.`task_sequence.joint` = 'True'"
    filtered = report.build_report(uri, EXPERIMENT, filter_string=where, out=tmp_path / "f", cache_dir=tmp / "cache")
    newer = report.build_report(uri, EXPERIMENT, out=tmp_path / "newer", cache_dir=tmp / "cache")
    active = client.search_runs([run.info.experiment_id], "tags.`forgetlab.kind` = 'report'")
    assert {r.info.run_id for r in active} == {newer.report_run_id, filtered.report_run_id}
    assert client.get_run(built.report_run_id).info.lifecycle_stage == "deleted"


@pytest.mark.slow
def test_a_filtered_report_goes_to_its_own_directory_and_leaves_the_full_one_alone(store, tmp_path, monkeypatch):
    uri, tmp = store
    monkeypatch.setattr(report, "REPORTS", tmp_path / "reports")
    full = report.build_report(uri, EXPERIMENT, cache_dir=tmp / "cache", log_to_mlflow=False)
    assert full.out == tmp_path / "reports" / EXPERIMENT
    before = {p: p.read_bytes() for p in full.out.rglob("*") if p.is_file()}
    where = "params.`task_sequence.joint` = 'True'"
    filtered = report.build_report(uri, EXPERIMENT, filter_string=where, cache_dir=tmp / "cache", log_to_mlflow=False)
    assert filtered.out == report.default_out(EXPERIMENT, filter_string=where) and filtered.out.parent == full.out
    assert {p: p.read_bytes() for p in before} == before  # not one file of the full report changed
    assert where in (filtered.out / "report.md").read_text() and where not in (full.out / "report.md").read_text()
    # a full report written beside a filtered one logs its own files only
    again = report.build_report(uri, EXPERIMENT, cache_dir=tmp / "cache")
    client = MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(again.report_run_id)}
    assert not any(path.startswith("filtered-") for path in logged)
    assert {"report.md", "summary.csv", "figures", "tables"} <= logged


@pytest.mark.slow
def test_the_report_does_not_depend_on_the_order_mlflow_returns_params_and_runs_in(store, built, tmp_path, monkeypatch):
    uri, tmp = store
    search = report.search_training_runs

    def reordered(*args, **kwargs):
        runs = search(*args, **kwargs)
        columns = np.random.default_rng(0).permutation(runs.columns)
        # MLflow promises newest first and nothing else: any other order of the columns, the same rows
        return runs[columns].iloc[::-1].sort_values("start_time", ascending=False, kind="stable")

    monkeypatch.setattr(report, "search_training_runs", reordered)
    other = report.build_report(uri, EXPERIMENT, out=tmp_path, cache_dir=tmp / "cache", log_to_mlflow=False)
    assert (other.out / "summary.csv").read_bytes() == (built.out / "summary.csv").read_bytes()
    for png in (built.out / "figures").glob("*.png"):
        assert (other.out / "figures" / png.name).read_bytes() == png.read_bytes(), png.name
    generated = lambda text: [line for line in text.splitlines() if not line.startswith("- generated:")]  # noqa: E731
    assert generated((other.out / "report.md").read_text()) == generated((built.out / "report.md").read_text())


@pytest.mark.slow
def test_sweep_id_and_filter_narrow_the_selection(store, tmp_path):
    uri, tmp = store
    chosen = report.build_report(
        uri, EXPERIMENT, filter_string="params.`task_sequence.joint` = 'True'", out=tmp_path / "f",
        cache_dir=tmp / "cache", log_to_mlflow=False,
    )
    assert set(chosen.runs["condition"]) == {"all runs"} and chosen.runs["analysed"].sum() == 2
    one = chosen.runs["sweep_id"].iloc[0]
    single = report.build_report(uri, EXPERIMENT, sweep_id=one, out=tmp_path / "s", cache_dir=tmp / "cache", log_to_mlflow=False)
    assert list(single.runs["sweep_id"]) == [one]


@pytest.mark.slow
def test_no_matching_runs_is_a_clear_error_with_nonzero_exit(store, tmp_path, capsys):
    uri, _ = store
    assert report.main(["--experiment", "nope", "--tracking-uri", uri, "--out", str(tmp_path), "--no-mlflow"]) == 1
    assert "No experiment named 'nope'" in capsys.readouterr().err
    code = report.main(
        ["--experiment", EXPERIMENT, "--tracking-uri", uri, "--out", str(tmp_path), "--no-mlflow", "--sweep-id", "no-such-sweep"]
    )
    assert code == 1
    assert "No training runs" in capsys.readouterr().err


def test_conditions_are_the_varying_params_except_seed_and_run_specific_ones():
    runs = pd.DataFrame(
        {
            "params.seed": ["0", "1", "0", "1"],
            "params.algorithm.name": ["backprop"] * 4,
            "params.task_sequence.joint": ["False", "False", "True", "True"],
            "params.algorithm.lr": ["0.5", "0.5", "0.1", "0.1"],
            "params.tracking.uri": ["a", "b", "c", "d"],
            "params.paths.root_dir": ["x", "y", "x", "y"],
        }
    )
    keys = aggregate.condition_keys(runs)
    assert keys == ["params.algorithm.lr", "params.task_sequence.joint"]
    labelled = aggregate.add_conditions(runs, keys)
    assert list(labelled["condition"].unique()) == ["lr=0.5 joint=False", "lr=0.1 joint=True"]
    assert aggregate.condition_order(labelled, keys) == ["lr=0.1 joint=True", "lr=0.5 joint=False"]


def test_condition_labels_leave_out_keys_that_follow_from_the_others():
    runs = pd.DataFrame(
        {
            "params.seed": ["0", "1", "0", "1", "0"],
            "params.algorithm.name": ["backprop", "backprop", "rtrl", "rtrl", "bptt_truncated"],
            "params.network.name": ["mlp", "mlp", "rnn", "rnn", "rnn"],
            "params.algorithm.h": [None, None, None, None, "4"],
        }
    )
    keys = aggregate.condition_keys(runs)
    assert set(keys) == {"params.algorithm.name", "params.network.name", "params.algorithm.h"}
    labelled = aggregate.add_conditions(runs, keys)
    assert list(labelled["condition"].unique()) == ["algorithm=backprop", "algorithm=rtrl", "algorithm=bptt_truncated"]


def test_a_run_with_an_empty_probe_gets_task_metrics_and_nan_sample_metrics(tmp_path):
    from analysis import figures
    from analysis.load import RunArtifacts

    R = np.array([[0.5, 0.5], [0.9, 0.4], [0.6, 0.95]])  # init, after task 0, after task 1
    seen = np.array([0, 100, 200])
    art = RunArtifacts(
        matrix=pd.DataFrame({"after": ["init", "0", "1"], "task_0": R[:, 0], "task_1": R[:, 1]}),
        curve=pd.DataFrame({"samples_seen": np.repeat(seen, 2), "task": np.tile([0, 1], 3), "accuracy": R.ravel(),
                            "stage": np.repeat([-1, 0, 1], 2), "boundary": True}),
        probe={"correct": np.zeros((3, 0), bool), "samples_seen": seen, "updates": seen // 2,
               "presented_at": np.zeros((0, 0), np.int64), "task_names": np.array(["a", "b"])},
    )
    values, retention = aggregate.run_metrics(art, np.linspace(0, 200, 5))
    assert values["acc"] == pytest.approx(0.775) and values["bwt"] == pytest.approx(-0.3)
    assert values["forgetting_after"] == pytest.approx(0.3) and values["learning_acc"] == pytest.approx(0.925)
    for name in ("flips_to_wrong", "unforgettable", "never_learned", "drop_per_update", "toneva_forgetting_events"):
        assert np.isnan(values[name])
    assert np.isnan(retention).all()
    one = pd.DataFrame({"algorithm": ["backprop"], "training": ["sequential"], "runs": [1]}, index=["c"])
    layout = figures.build_layout(one, [])
    lags = pd.DataFrame({"condition": "c", "run_id": "r", "lag": [25.0, 75.0, 125.0, 175.0], "retained": retention})
    figures.retention_curves(lags, layout, tmp_path / "r")
    no_events = pd.DataFrame({"condition": [], "run_id": [], "flips_to_wrong": []})
    figures.forgetting_event_histograms(no_events, layout, tmp_path / "h")
    for name in ("r.png", "r.pdf", "h.png", "h.pdf"):
        assert (tmp_path / name).stat().st_size > 0
