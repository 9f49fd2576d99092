"""Cluster launch: the SLURM preset (conf/hydra/launcher/slurm.yaml) renders a valid sbatch array, and
the same submitit code path runs a real sweep through `submitit_local`, jobs nested under the parent."""

import os
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_train

FAST = ["trainer.epochs_per_task=1", "eval.every_samples=200", "task_sequence.n_tasks=2"]


class Submitted(Exception):
    """Raised in place of calling sbatch; carries the submission script."""


def compose_with_hydra(*overrides: str):
    from forgetlab.config import compose

    return compose(overrides, return_hydra_config=True)


def test_slurm_preset_renders_an_sbatch_array_with_its_resources(tmp_path, monkeypatch):
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
    from submitit.slurm.slurm import SlurmExecutor

    cfg = compose_with_hydra(
        "hydra/launcher=slurm", "hydra.launcher.partition=cpu", "tracking=server",
        f"hydra.sweep.dir={tmp_path}/sweep", "hydra.job.name=train",
    )
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"

    def submit(self, command):
        raise Submitted(self._make_submission_file_text(command, "uid"))

    monkeypatch.setattr(SlurmExecutor, "_submit_command", submit)
    # submitit checks that srun exists before it builds anything; this one is never run.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:{os.environ['PATH']}")
    launcher = SlurmLauncher(**{k: v for k, v in cfg.hydra.launcher.items() if k != "_target_"})
    launcher.setup(hydra_context=None, task_function=lambda c: None, config=cfg)
    with pytest.raises(Submitted) as submitted:
        launcher.launch([["seed=0"], ["seed=1"]], initial_job_idx=0)
    sbatch = submitted.value.args[0]
    for line in (
        "#SBATCH --array=0-1%2", "#SBATCH --partition=cpu", "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=4GB", "#SBATCH --time=60", "#SBATCH --job-name=train",
        "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK",
    ):
        assert line in sbatch, f"{line!r} missing from:\n{sbatch}"
    assert f"{sys.executable} -u -m submitit.core._submit" in sbatch
    assert str(Path(tmp_path, "sweep", ".submitit")) in sbatch


def test_slurm_preset_rejects_a_misspelt_key():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="partiton"):
        compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.partiton=cpu")


@pytest.mark.slow
def test_submitit_local_sweep_is_a_parent_with_jobs_in_their_own_processes(tmp_path, sqlite_uri):
    sweep_dir = tmp_path / "sweep"
    proc = run_train(
        "-m", "seed=0,1", *FAST, f"tracking.uri={sqlite_uri}", "tracking.experiment=cluster",
        "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweeper.ensemble=false",  # one process per job (ensembled, the two seeds share one)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name("cluster").experiment_id])
    parents = [r for r in runs if r.data.tags["forgetlab.kind"] == "sweep"]
    jobs = [r for r in runs if r.data.tags["forgetlab.kind"] == "train"]
    assert len(parents) == 1 and len(jobs) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    for job in jobs:
        assert job.info.status == "FINISHED"
        assert job.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert job.data.tags["forgetlab.sweep_id"] == parent.data.tags["forgetlab.sweep_id"]
        assert "final/acc" in job.data.metrics
    assert sorted(j.data.params["seed"] for j in jobs) == ["0", "1"]
    # Each job ran in a submitit worker process of its own, and wrote its progress lines to its train.log
    # (a sweep job's console shows only warnings: the sweep's progress bar is there).
    logs = sorted((sweep_dir / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2
    assert all("Job completed successfully" in log.read_text() for log in logs)
    assert all("after digits_" in (sweep_dir / str(num) / "train.log").read_text() for num in (0, 1))
