"""The tracking contract of docs/tracking.md, checked on real runs of experiments/train.py."""

import json
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_train

FAST = ["trainer.epochs_per_task=1", "eval.every_samples=200", "task_sequence.n_tasks=2"]


def R_with_init(matrix: pd.DataFrame) -> np.ndarray:
    return matrix.drop(columns="after").to_numpy()


@pytest.mark.slow
def test_invalid_value_exits_2_before_any_run(tmp_path, sqlite_uri):
    proc = run_train("algorithm.lr=-1", f"tracking.uri={sqlite_uri}", f"hydra.run.dir={tmp_path}/out")
    assert proc.returncode == 2
    assert "algorithm.lr" in proc.stderr and "-1" in proc.stderr and "(0, inf)" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_multirun_is_a_parent_with_nested_jobs_following_the_contract(tmp_path, sqlite_uri, launcher):
    proc = run_train(
        "-m", "seed=0,1", "learner=mlp_backprop", *FAST, f"tracking.uri={sqlite_uri}", "tracking.experiment=contract",
        f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(sqlite_uri)
    exp = client.get_experiment_by_name("contract")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow's "Machine learning" type
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("forgetlab.kind") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("forgetlab.kind") == "train"]
    assert len(parents) == 1 and len(jobs) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"seed": "0, 1"}  # the swept keys only
    # The sweeper's process and heartbeat, so that a later sweep can tell if it died (end_stale_sweeps).
    assert parent.data.tags["forgetlab.process"].split()[3].isdigit() and "forgetlab.heartbeat" in parent.data.tags
    summary = parent.data.metrics
    assert (summary["sweep/jobs"], summary["sweep/jobs_finished"], summary["sweep/jobs_trained"],
            summary["sweep/jobs_failed"], summary["sweep/jobs_skipped"]) == (2, 2, 2, 0, 0)
    assert not [name for name in summary if "mean" in name]  # no grand mean over unlike runs
    # The results table (one condition here: the seeds are its rows' n), on the parent as a UI table and printed.
    results = json.loads(open(client.download_artifacts(parent.info.run_id, "sweep_results.json", str(tmp_path))).read())
    assert results["columns"] == ["n", "acc", "bwt", "forgetting", "fwt"] and results["data"][0][0] == 2
    acc = np.mean([j.data.metrics["final/acc"] for j in jobs])
    assert results["data"][0][1].startswith(f"{acc:.3f} ± ") and results["data"][0][1] in proc.stdout
    assert json.loads(parent.data.tags["mlflow.loggedArtifacts"]) == [{"path": "sweep_results.json", "type": "table"}]
    # final/* at step 0, their only step: MLflow's chart view draws such a metric as bars
    assert [m.step for m in client.get_metric_history(jobs[0].info.run_id, "final/acc")] == [0]
    assert f"[sweep] parent run {parent.info.run_id}: http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs/" in proc.stdout
    sweep_id = parent.data.tags["forgetlab.sweep_id"]
    for job in jobs:
        tags, params = job.data.tags, job.data.params
        assert job.info.status == "FINISHED"
        assert job.info.run_name == f"backprop·class·s{params['seed']}·split_digits"
        assert tags["forgetlab.full_name"].startswith(f"backprop on mlp, split_digits (class scenario), seed {params['seed']}; ")
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert tags["forgetlab.sweep_id"] == sweep_id
        assert len(tags["forgetlab.config_hash"]) == 16
        assert f"seed={params['seed']}" in tags["forgetlab.overrides"]
        assert params["algorithm.name"] == "backprop" and params["task_sequence.scenario"] == "class"
        assert params["learner"] == "mlp_backprop"
        assert json.loads(params["network.hidden_sizes"]) == [64]
        # Where the run was stored is a tag, not a param: params say what the run is.
        assert not {"tracking.uri", "tracking.artifact_location", "paths.root_dir"} & set(params)
        assert tags["forgetlab.tracking.uri"] == sqlite_uri and "forgetlab.paths.root_dir" in tags
        for key in ("final/acc", "final/bwt", "final/fwt", "final/forgetting", "acc/task_0", "acc/seen"):
            assert key in job.data.metrics

        history = client.get_metric_history(job.info.run_id, "acc/task_0")
        steps = [m.step for m in history]
        assert steps[0] == 0 and steps == sorted(steps) and len(steps) >= 3

        local = client.download_artifacts(job.info.run_id, "", str(tmp_path / job.info.run_id))
        matrix = pd.read_csv(f"{local}/eval/accuracy_matrix.csv")
        assert list(matrix.columns) == ["after", "task_0", "task_1"]
        assert list(matrix["after"].astype(str)) == ["init", "0", "1"]
        R = matrix[["task_0", "task_1"]].to_numpy()
        assert job.data.metrics["final/acc"] == pytest.approx(R[-1].mean())
        assert job.data.metrics["final/bwt"] == pytest.approx(R[2, 0] - R[1, 0])
        curve = pd.read_parquet(f"{local}/eval/task_curve.parquet")
        assert {"samples_seen", "updates", "task", "accuracy", "loss"} <= set(curve.columns)
        last = curve[curve.samples_seen == curve.samples_seen.max()].sort_values("task")
        np.testing.assert_allclose(last.accuracy, R[-1])
        with np.load(f"{local}/eval/sample_probe.npz", allow_pickle=False) as probe:
            assert probe["correct"].shape == (len(probe["samples_seen"]), len(probe["task"]))
            assert probe["correct"].dtype == bool
            np.testing.assert_array_equal(probe["chance"], [0.1, 0.1])  # class scenario: 10 active output units
            chance = probe["chance"]
        assert job.data.metrics["final/bwt_normalized"] == pytest.approx((R[2, 0] - R[1, 0]) / (R[1, 0] - chance[0]))
        assert "config.yaml" in {a.path for a in client.list_artifacts(job.info.run_id)}
        # For the UI: the two figures, and the accuracy matrix as a table MLflow shows.
        for figure in ("figures/task_accuracy.png", "figures/accuracy_matrix.png"):
            assert (tmp_path / job.info.run_id / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        table = json.loads((tmp_path / job.info.run_id / "accuracy_matrix.json").read_text())
        assert table["columns"] == ["after", "digits_01234", "digits_56789"]
        assert [row[0] for row in table["data"]] == ["before training", "after digits_01234", "after digits_56789"]
        np.testing.assert_allclose([row[1:] for row in table["data"]], R_with_init(matrix), atol=5e-5)
        assert {"path": "accuracy_matrix.json", "type": "table"} in json.loads(tags["mlflow.loggedArtifacts"])
    # different seeds: different hashes
    assert len({j.data.tags["forgetlab.config_hash"] for j in jobs}) == 2
    if launcher != "basic":
        return
    # The same sweep again: one skip line, the same parent with the same counts, its duration the time its
    # two calls ran (not the time since the first began), and the results table printed all the same.
    time.sleep(3)
    started = time.monotonic()
    rerun = run_train(
        "-m", "seed=0,1", "learner=mlp_backprop", *FAST, f"tracking.uri={sqlite_uri}", "tracking.experiment=contract",
        f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path}/sweep2",
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stdout.count("[sweep] skip") == 1 and "[sweep] skip 2 of 2 jobs: FINISHED before" in rerun.stdout
    assert results["data"][0][1] in rerun.stdout
    again = client.get_run(parent.info.run_id)
    assert {k: again.data.metrics[k] for k in summary} == summary
    took = (again.info.end_time - again.info.start_time) - (parent.info.end_time - parent.info.start_time)
    assert 0 <= took <= (time.monotonic() - started) * 1000  # the rerun's own time: not the time between the calls


@pytest.mark.slow
def test_an_exception_ends_the_run_failed_with_its_reason(tmp_path, sqlite_uri, monkeypatch):
    from forgetlab import experiment
    from forgetlab.algorithms.backprop import Backprop

    def explode(self, x, y, mask):
        raise FloatingPointError("boom at update 0")

    monkeypatch.setattr(Backprop, "gradient", explode)
    from forgetlab.config import compose

    cfg = compose([f"tracking.uri={sqlite_uri}", *FAST])
    with pytest.raises(FloatingPointError):
        experiment.run_experiment(cfg)
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("forgetlab").experiment_id])
    assert run.info.status == "FAILED"
    assert "boom at update 0" in run.data.tags["forgetlab.error"]
    assert "traceback.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}


def _metric_calls(monkeypatch) -> list[int]:
    """Spy on the run's store writes (``tracking.batch.log_batch``): the number of metrics of every
    call that sends metrics."""
    from forgetlab.tracking import batch, mlflow_run

    calls: list[int] = []
    original = batch.log_batch

    def spy(client, run_id, *, metrics=(), **kwargs):
        if metrics:
            calls.append(len(metrics))
        return original(client, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(mlflow_run, "log_batch", spy)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("flush_seconds", [0.0, 3600.0])
def test_every_metric_point_reaches_the_store_however_it_is_batched(compose_cfg, sqlite_uri, tmp_path, monkeypatch,
                                                                   flush_seconds):
    from forgetlab.experiment import RunContext, run_experiment
    from forgetlab.tracking import mlflow_run

    monkeypatch.setattr(mlflow_run, "FLUSH_SECONDS", flush_seconds)
    calls = _metric_calls(monkeypatch)
    run_experiment(compose_cfg(f"tracking.uri={sqlite_uri}", *FAST), RunContext(quiet=True))
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("forgetlab").experiment_id])
    run_id = run.info.run_id

    def history(key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))

    # The task curve artifact holds every evaluation point: each one must be in the store too.
    curve = pd.read_parquet(client.download_artifacts(run_id, "eval/task_curve.parquet", str(tmp_path)))
    points = curve.drop_duplicates("samples_seen").sort_values("samples_seen")
    assert len(points) >= 5
    for task, rows in curve.groupby("task"):
        rows = rows.sort_values("samples_seen")
        assert history(f"acc/task_{task}") == list(zip(rows["samples_seen"], rows["accuracy"]))
        assert history(f"loss/task_{task}") == list(zip(rows["samples_seen"], rows["loss"]))
    assert history("updates") == list(zip(points["samples_seen"], points["updates"].astype(float)))
    for key in ("acc/seen", "loss/train"):  # every point after the one before training
        assert [step for step, _ in history(key)] == list(points["samples_seen"][1:])
    for key in ("final/acc", "final/bwt", "final/fwt", "final/forgetting"):  # once, at step 0: bars in the UI
        assert [step for step, _ in history(key)] == [0]
    if flush_seconds:  # a run shorter than the flush interval: the first point (with the params), the rest at the end
        assert len(calls) == 2
        assert calls[0] == 2 * len(curve["task"].unique()) + 1  # acc/task_j, loss/task_j, updates
    else:  # the store follows the run while it trains
        assert len(calls) > 1


@pytest.mark.slow
def test_a_failing_run_keeps_the_metrics_it_had_buffered(compose_cfg, sqlite_uri, monkeypatch):
    from forgetlab.algorithms.backprop import Backprop
    from forgetlab.experiment import RunContext, run_experiment

    gradient, count = Backprop.gradient, [0]

    def fail_late(self, x, y, mask):
        count[0] += 1
        if count[0] > 450:
            raise FloatingPointError("boom at update 450")
        return gradient(self, x, y, mask)

    monkeypatch.setattr(Backprop, "gradient", fail_late)
    with pytest.raises(FloatingPointError):
        run_experiment(compose_cfg(f"tracking.uri={sqlite_uri}", *FAST), RunContext(quiet=True))
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("forgetlab").experiment_id])
    assert run.info.status == "FAILED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "acc/task_0")]
    assert steps == [0, 200, 400]


def test_metrics_carry_the_wall_clock_time_of_their_evaluation(tmp_path, sqlite_uri, compose_cfg):
    import time

    from forgetlab.experiment import run_experiment

    before = int(time.time() * 1000)
    run_experiment(compose_cfg(f"tracking.uri={sqlite_uri}", *FAST))
    after = int(time.time() * 1000)
    client = MlflowClient(sqlite_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("forgetlab").experiment_id])
    for key in ("acc/task_0", "final/acc"):
        stamps = [m.timestamp for m in client.get_metric_history(run.info.run_id, key)]
        assert all(before <= t <= after for t in stamps), key
        assert stamps == sorted(stamps)


@pytest.mark.slow
def test_mlflow_telemetry_is_off_unless_asked_for():
    """No network at run time. Run outside pytest's and CI's variables, which MLflow also honours."""
    import os
    import subprocess
    import sys

    ci_markers = ("PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
    env = {k: v for k, v in os.environ.items() if k not in ci_markers}
    probe = "import mlflow.telemetry.utils as u; print(u.is_telemetry_disabled())"
    with_forgetlab = subprocess.run([sys.executable, "-c", "import forgetlab; " + probe],
                                    capture_output=True, text=True, env=env, timeout=120)
    assert with_forgetlab.stdout.strip() == "True", with_forgetlab.stderr
    user_choice = subprocess.run([sys.executable, "-c", "import forgetlab, os; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"],
                                 capture_output=True, text=True, env={**env, "MLFLOW_DISABLE_TELEMETRY": "false"}, timeout=120)
    assert user_choice.stdout.strip() == "false"


def test_the_params_and_the_first_point_are_stored_before_training_goes_on(compose_cfg, sqlite_uri, monkeypatch):
    """What a run killed -9 leaves: everything up to the last flush, the first evaluation point's
    flush carrying the params (docs/tracking.md, "Metrics")."""
    from forgetlab.experiment import RunContext, run_experiment
    from forgetlab.tracking.mlflow_run import MlflowRun

    seen = []
    on_eval = MlflowRun.on_eval

    def check_after_first_point(self, trainer, points):
        on_eval(self, trainer, points)
        if not seen:
            stored = MlflowClient(sqlite_uri).get_run(self.run_id).data
            seen.append((stored.params.get("seed"), stored.metrics.get("acc/task_0")))

    monkeypatch.setattr(MlflowRun, "on_eval", check_after_first_point)
    run_experiment(compose_cfg(f"tracking.uri={sqlite_uri}", "seed=5", *FAST), RunContext(quiet=True))
    assert seen[0][0] == "5" and seen[0][1] is not None


def test_figures_are_drawn_once_the_run_has_ended_from_its_artifacts(compose_cfg, sqlite_uri, tmp_path):
    from PIL import Image

    from forgetlab.experiment import RunContext, run_experiment
    from forgetlab.tracking.mlflow_run import open_experiment
    from forgetlab.tracking.run_figures import add_sweep_figures

    cfg = compose_cfg(f"tracking.uri={sqlite_uri}", f"tracking.artifact_location={tmp_path}/art", *FAST)
    run_experiment(cfg, RunContext(quiet=True, sweep_id="s1"))
    client, experiment_id = open_experiment(cfg)
    (run,) = client.search_runs([experiment_id])
    assert "figures" not in {a.path for a in client.list_artifacts(run.info.run_id)}  # not on the training path
    assert add_sweep_figures(client, experiment_id, "s1") == 1
    for figure in ("figures/task_accuracy.png", "figures/accuracy_matrix.png"):
        with Image.open(tmp_path / "art" / run.info.run_id / "artifacts" / figure) as image:
            assert image.format == "PNG" and image.size[0] > 300
    assert add_sweep_figures(client, experiment_id, "s1") == 0  # it has them
    assert add_sweep_figures(client, experiment_id, "another sweep") == 0


@pytest.mark.slow  # a joblib sweep of its own: ~30 s of two cores
def test_a_joblib_sweeps_idle_workers_draw_its_runs_figures_and_a_failed_share_is_left_to_the_parent(
        compose_cfg, sqlite_uri, tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from forgetlab import stopping
    from forgetlab.experiment import RunContext, run_experiment
    from forgetlab.tracking import run_figures
    from forgetlab.tracking.mlflow_run import open_experiment
    from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import draw_in_workers

    cfg = compose_cfg(f"tracking.uri={sqlite_uri}", f"tracking.artifact_location={tmp_path}/art", *FAST)
    for seed in range(3):
        run_experiment(compose_cfg(f"tracking.uri={sqlite_uri}", f"tracking.artifact_location={tmp_path}/art",
                                   f"seed={seed}", *FAST), RunContext(quiet=True, sweep_id="s1"))
    client, experiment_id = open_experiment(cfg)
    run_ids = [run.info.run_id for run in client.search_runs([experiment_id])]

    def has_figures(run_id: str) -> bool:
        return "figures" in {a.path for a in client.list_artifacts(run_id)}

    # Not drawn here: a call in this process would draw with this module, which the workers cannot see.
    monkeypatch.setattr(run_figures, "add_figures", lambda *a: pytest.fail("drawn in the parent"))
    draw_in_workers(SimpleNamespace(joblib={"n_jobs": 1}), sqlite_uri, run_ids)  # one worker: the parent draws
    assert not any(map(has_figures, run_ids))
    draw_in_workers(SimpleNamespace(joblib={"n_jobs": 2, "backend": "loky", "initializer": stopping.init_worker}),
                    sqlite_uri, run_ids)
    assert all(map(has_figures, run_ids))
    draw_in_workers(SimpleNamespace(joblib={"n_jobs": 2, "backend": "loky"}), f"sqlite:///{tmp_path}/none/x.db",
                    run_ids)  # the workers fail: a warning, no exception (the parent draws what is missing)
    assert "the workers could not draw the runs' figures" in capsys.readouterr().err
