"""Sweeps train jobs that differ only in member keys as ensembles (hydra_plugins/forgetlab_sweeper/ensembles.py):
which jobs share one, the off switch, and end to end through experiments/train.py: every member's
MLflow run equals its job swept alone, resume of partly done ensembles, failure isolation and SIGTERM."""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, run_train
from tests.test_resilience import DIVERGING
from tests.test_stopping import signal_when

SMALL = ["trainer.epochs_per_task=1", "task_sequence.n_tasks=2", "network.hidden_sizes=[16]", "eval.every_samples=100"]


def job(compose_cfg, *overrides, learner=None, num=0):
    from forgetlab.tracking.mlflow_run import config_hash

    cfg = compose_cfg("tracking.enabled=false", *overrides)
    return SimpleNamespace(cfg=cfg, overrides=list(overrides), learner=learner, config_hash=config_hash(cfg), num=num)


def seeds_of(groups) -> list[list[int]]:
    return [[j.cfg.seed for j in group] for group in groups]


@pytest.mark.slow
def test_jobs_that_differ_only_in_member_keys_share_an_ensemble(compose_cfg):
    from hydra_plugins.forgetlab_sweeper.ensembles import group_jobs

    jobs = [job(compose_cfg, f"seed={s}", f"algorithm.lr={lr}", f"network.init_scale={scale}")
            for s, lr, scale in [(0, 0.5, 1.0), (1, 0.5, 1.0), (2, 0.1, 0.5), (3, 0.1, 1.0)]]
    other_scenario = [job(compose_cfg, f"seed={s}", "task_sequence.scenario=task") for s in (4, 5)]
    other_learner = [job(compose_cfg, "seed=6", learner="mlp_backprop")]  # same config, other preset
    joint = [job(compose_cfg, "seed=7", "task_sequence.joint=true")]
    sweep = [jobs[0], other_scenario[0], jobs[1], joint[0], jobs[2], other_scenario[1], jobs[3], other_learner[0]]
    # In sweep order of each ensemble's first member.
    assert seeds_of(group_jobs(sweep, max_size=8)) == [[0, 1, 2, 3], [4, 5], [7], [6]]
    # A larger group is split evenly, never into a full part and a remainder.
    many = [job(compose_cfg, f"seed={s}") for s in range(10)]
    assert seeds_of(group_jobs(many, max_size=8)) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert seeds_of(group_jobs(many, max_size=3)) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    # As many launches as the launcher runs at a time: no worker left idle.
    assert seeds_of(group_jobs(many, max_size=8, parallel=4)) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert seeds_of(group_jobs(many[:2], max_size=8, parallel=2)) == [[0], [1]]
    # The same config twice: never in one ensemble (the second one's own resume check skips it).
    twice = [many[0], job(compose_cfg, "seed=0"), many[1]]
    assert seeds_of(group_jobs(twice, max_size=8)) == [[0, 1], [0]]


@pytest.mark.slow
@pytest.mark.parametrize("setting, message", [
    ("hydra.sweeper.max_ensemble_size=0", "The 'hydra.sweeper.max_ensemble_size' parameter must be a whole number >= 1. Got 0."),
    ("hydra.sweeper.max_batch_size=-2", "The 'hydra.sweeper.max_batch_size' parameter must be a whole number >= 1 "
                                        "or null (all jobs in one batch). Got -2."),
])
def test_a_bad_sweeper_setting_is_refused_before_any_run(tmp_path, setting, message):
    proc = run_train("-m", "seed=0,1", *SMALL, setting, *store_args(tmp_path), f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"Invalid config: {message}" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "sweep").exists()


def test_the_off_switch_launches_every_job_alone_and_on_an_ensemble_file_holds_the_members(compose_cfg, tmp_path):
    from forgetlab.tracking.mlflow_run import config_hash
    from hydra_plugins.forgetlab_sweeper.ensembles import ENSEMBLE_ENV, launches, read_ensemble

    # jobs 2, 3 and 4 of a sweep whose jobs 0 and 1 were skipped: each keeps its number (its folder)
    jobs = [job(compose_cfg, f"seed={s}", learner="mlp_backprop", num=2 + s) for s in range(3)]
    alone = launches(jobs, tmp_path, ensemble=False, max_size=8, parallel=1)
    assert [u.overrides for u in alone] == [[f"seed={s}", f"hydra.sweep.subdir={2 + s}"] for s in range(3)]
    assert not (tmp_path / "forgetlab_ensembles").exists()

    (together,) = launches(jobs, tmp_path, ensemble=True, max_size=8, parallel=1)
    assert together.overrides == ["seed=0", "hydra.sweep.subdir=2", f"+hydra.job.env_set.{ENSEMBLE_ENV}=0.json"]
    members = read_ensemble(tmp_path, together.ensemble_file)
    assert [(m.num, m.overrides, m.learner) for m in members] == [(2 + s, [f"seed={s}"], "mlp_backprop") for s in range(3)]
    # The job trains the very configs the sweeper validated and checked for resume.
    assert [config_hash(m.cfg) for m in members] == [config_hash(j.cfg) for j in jobs]


def test_the_launchers_parallel_jobs():
    from hydra_plugins.forgetlab_sweeper.ensembles import parallel_jobs

    assert parallel_jobs(SimpleNamespace(joblib={"n_jobs": 3})) == 3
    assert parallel_jobs(SimpleNamespace(joblib={"n_jobs": -1})) == os.cpu_count()
    assert parallel_jobs(object()) == 1  # the basic launcher, or a cluster's


# --- end to end ----------------------------------------------------------------------------------


def store_args(tmp_path, experiment: str = "ens") -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"tracking.experiment={experiment}",
            f"tracking.artifact_location={tmp_path}/artifacts"]


def runs_of(tmp_path, experiment: str = "ens"):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    return (client, [r for r in runs if r.data.tags["forgetlab.kind"] == "sweep"],
            [r for r in runs if r.data.tags["forgetlab.kind"] == "train"])


def ensemble_files(sweep_dir, key: str = "seed") -> list[list[str]]:
    """Per ensemble file of the sweep, each member's override of ``key``."""
    folder = sweep_dir / "forgetlab_ensembles"
    return [[next(o for o in m["overrides"] if o.startswith(f"{key}=")) for m in json.loads(f.read_text())["members"]]
            for f in sorted(folder.glob("*.json"))]


@pytest.mark.slow
def test_a_member_run_equals_its_job_swept_alone(tmp_path):
    sweep = ["-m", "seed=0,1,2", "algorithm.lr=0.5,0.1", *SMALL]
    grouped = run_train(*sweep, *store_args(tmp_path / "grouped"), f"hydra.sweep.dir={tmp_path}/grouped/sweep")
    alone = run_train(*sweep, *store_args(tmp_path / "alone"), "hydra.sweeper.ensemble=false",
                      f"hydra.sweep.dir={tmp_path}/alone/sweep")
    for proc in (grouped, alone):
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "6 jobs: 0 skipped (same config and code), 6 trained, 0 failed" in proc.stdout
    assert len(ensemble_files(tmp_path / "grouped" / "sweep")) == 1  # one launch, one process, 6 members
    for name in ("alone", "grouped"):  # a folder per job either way: each member logs to its own job's train.log
        assert sorted(p.name for p in (tmp_path / name / "sweep").iterdir() if p.name.isdigit()) == list("012345")
    for num, (seed, lr) in enumerate((s, lr) for s in (0, 1, 2) for lr in ("0.5", "0.1")):
        log = (tmp_path / "grouped" / "sweep" / str(num) / "train.log").read_text()
        assert f"job {num} (seed={seed} algorithm.lr={lr} " in log.splitlines()[0]  # its overrides, then the others'
        assert log.splitlines()[0].endswith(") trains in an ensemble with jobs 0, 1, 2, 3, 4, 5")
        assert log.count("] after digits_") == 2 and log.count("final/acc=") == 1  # its own 2 tasks, its own result
        assert log.count(f"[backprop·class·s{seed}·split_digits]") == 5  # what it trains, 2 tasks, its result, its run's address

    runs = {}
    for name in ("grouped", "alone"):
        client, _, jobs = runs_of(tmp_path / name)
        assert len(jobs) == 6 and all(j.info.status == "FINISHED" for j in jobs)
        runs[name] = client, {(j.data.params["seed"], j.data.params["algorithm.lr"]): j for j in jobs}
    (gc, grouped_runs), (ac, alone_runs) = runs["grouped"], runs["alone"]
    assert grouped_runs.keys() == alone_runs.keys()
    for key, g in grouped_runs.items():
        a = alone_runs[key]
        assert g.info.run_name == a.info.run_name
        assert g.data.params == a.data.params
        for tag in ("forgetlab.config_hash", "forgetlab.overrides", "forgetlab.full_name", "forgetlab.code_version"):
            assert g.data.tags[tag].replace("grouped", "alone") == a.data.tags[tag], tag
        assert g.data.metrics.keys() == a.data.metrics.keys()
        for metric in g.data.metrics:  # every point of every metric: the same steps and the very same values
            history = [(m.step, m.value) for m in gc.get_metric_history(g.info.run_id, metric)]
            assert history == [(m.step, m.value) for m in ac.get_metric_history(a.info.run_id, metric)], metric
        for artifact in ("eval/accuracy_matrix.csv", "config.yaml"):
            g_file = gc.download_artifacts(g.info.run_id, artifact, str(tmp_path / "dl" / g.info.run_id))
            a_file = ac.download_artifacts(a.info.run_id, artifact, str(tmp_path / "dl" / a.info.run_id))
            assert open(g_file).read().replace(str(tmp_path / "grouped"), "") == \
                open(a_file).read().replace(str(tmp_path / "alone"), ""), artifact


@pytest.mark.slow
def test_a_diverging_member_fails_only_its_own_run(tmp_path):
    proc = run_train("-m", "algorithm.lr=1e6,0.01", *SMALL, *DIVERGING[:-1], *store_args(tmp_path),
                     f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert ensemble_files(tmp_path / "sweep", "algorithm.lr") == [["algorithm.lr=1000000.0", "algorithm.lr=0.01"]]
    assert "2 jobs: 0 skipped (same config and code), 1 trained, 1 failed" in proc.stdout
    assert "[sweep] FAILED algorithm.lr=1000000.0: TrainingDiverged: Training diverged at update 7" in proc.stderr
    client, (parent,), jobs = runs_of(tmp_path)
    assert parent.info.status == "FAILED"
    by_lr = {float(j.data.params["algorithm.lr"]): j for j in jobs}
    assert by_lr[1e6].info.status == "FAILED"
    assert "diverged at update 7" in by_lr[1e6].data.tags["forgetlab.error"]
    assert "traceback.txt" in {a.path for a in client.list_artifacts(by_lr[1e6].info.run_id)}
    assert by_lr[0.01].info.status == "FINISHED" and "final/acc" in by_lr[0.01].data.metrics


@pytest.mark.slow
def test_a_sweep_over_partly_done_ensembles_trains_only_the_missing_members(tmp_path):
    first = run_train("-m", "seed=0,1", *SMALL, *store_args(tmp_path), f"hydra.sweep.dir={tmp_path}/first")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_train("-m", "seed=0,1,2,3", *SMALL, *store_args(tmp_path), f"hydra.sweep.dir={tmp_path}/second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "4 jobs: 2 skipped (same config and code), 2 trained, 0 failed" in second.stdout
    assert ensemble_files(tmp_path / "second") == [["seed=2", "seed=3"]]  # the done members left out
    _, _, jobs = runs_of(tmp_path)
    assert Counter(j.data.params["seed"] for j in jobs) == {"0": 1, "1": 1, "2": 1, "3": 1}
    assert all(j.info.status == "FINISHED" for j in jobs)


@pytest.mark.slow
@pytest.mark.parametrize("launcher, target", [("basic", "parent"), ("joblib", "group")])
def test_sigterm_ends_every_member_of_an_ensemble_killed(tmp_path, launcher, target):
    seeds = "seed=0,1,2" if launcher == "basic" else "seed=0,1,2,3"  # joblib: two ensembles of two
    args = ["-m", seeds, *SMALL, "trainer.epochs_per_task=2", "eval.every_samples=25", *store_args(tmp_path),
            f"hydra/launcher={launcher}", *(["hydra.launcher.n_jobs=2"] if launcher == "joblib" else [])]
    sweep = subprocess.Popen([sys.executable, str(ROOT / "experiments" / "train.py"), *args,
                              f"hydra.sweep.dir={tmp_path}/first"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        def send():
            (os.killpg if target == "group" else os.kill)(sweep.pid, signal.SIGTERM)

        output = signal_when(sweep, tmp_path / "first" / "1" / "train.log", "[backprop·class·s1·split_digits] after",
                             send)
        assert sweep.wait(timeout=120) == 128 + signal.SIGTERM, output[-3000:]
    finally:
        sweep.kill()
        sweep.wait()
    assert "Traceback" not in output, output[-3000:]
    assert ensemble_files(tmp_path / "first")[0][:2] == ["seed=0", "seed=1"]
    client, (parent,), jobs = runs_of(tmp_path)
    assert parent.info.status == "KILLED"
    assert jobs and not [j for j in jobs if j.info.status == "RUNNING"]
    for run in jobs:
        if run.info.status != "FINISHED":
            # Its job's own handler ends it, or, when the worker went first (seen under load), the parent
            # ends it with "(its sweep ended before the job did)" appended: either way KILLED by the signal.
            assert run.info.status == "KILLED" and run.data.tags["forgetlab.error"].startswith("Terminated by SIGTERM")
    members = [j for j in jobs if j.data.params["seed"] in ("0", "1")]  # the first ensemble's
    assert {j.info.status for j in members} == {"KILLED"}

    rerun = run_train(*args, f"hydra.sweep.dir={tmp_path}/second")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _, _, jobs = runs_of(tmp_path)
    finished = Counter(j.data.params["seed"] for j in jobs if j.info.status == "FINISHED")
    assert finished == Counter(seeds.removeprefix("seed=").split(","))
