"""Studies recorded before ``epochs_per_task``, ``batch_size`` and ``shuffle`` moved from ``algorithm``
into the ``trainer`` group stay resumable: their runs carry the old layout's config hash, and a sweep
still finds them.

The hashes below were logged by forgetlab at commit 2f9a9a6 (the last one before the move) for
these configs; they change only when a default of these configs changes.
"""

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from forgetlab.tracking.mlflow_run import config_hash, config_hash_before_trainer_group, resume_hashes
from tests.conftest import run_train

PRE_MOVE_HASHES = {
    (): "489630a582953f5e",
    ("learner=rnn_rtrl",): "0d0edce475be555f",
}
SMALL = ["trainer.epochs_per_task=1", "task_sequence.n_tasks=2", "network.hidden_sizes=[16]", "eval.every_samples=100"]
SMALL_SEED0_PRE_MOVE_HASH = "7d598345f05115e3"  # seed=0 + SMALL, with trainer.epochs_per_task=1


@pytest.mark.parametrize("overrides", list(PRE_MOVE_HASHES), ids=lambda o: " ".join(o) or "defaults")
def test_the_pre_move_hash_is_the_one_the_old_layout_logged(compose_cfg, overrides):
    cfg = compose_cfg(*overrides)
    before = OmegaConf.to_yaml(cfg)
    assert config_hash_before_trainer_group(cfg) == PRE_MOVE_HASHES[overrides]
    assert OmegaConf.to_yaml(cfg) == before  # the config is left as it was
    assert resume_hashes(cfg) == (config_hash(cfg), PRE_MOVE_HASHES[overrides])
    assert config_hash(cfg) != PRE_MOVE_HASHES[overrides]  # runs recorded from now on carry the new hash


def test_the_pre_move_hash_tells_trainer_settings_apart(compose_cfg):
    one, two = compose_cfg("trainer.epochs_per_task=1"), compose_cfg("trainer.epochs_per_task=2")
    assert config_hash_before_trainer_group(one) != config_hash_before_trainer_group(two)


@pytest.mark.slow
def test_a_job_started_later_skips_a_config_finished_under_the_old_layout(tmp_path, sqlite_uri, compose_cfg, capsys):
    from forgetlab.experiment import RunContext, run_experiment

    client = MlflowClient(sqlite_uri)
    experiment_id = client.create_experiment("layouts", artifact_location=f"{tmp_path}/artifacts")
    old = client.create_run(experiment_id, tags={"forgetlab.kind": "train", "forgetlab.config_hash": SMALL_SEED0_PRE_MOVE_HASH})
    client.set_terminated(old.info.run_id, "FINISHED")
    # An old-layout run was trained by older code: only a resume that ignores the code skips it.
    cfg = compose_cfg("seed=0", *SMALL, f"tracking.uri={sqlite_uri}", "tracking.experiment=layouts",
                      "tracking.resume_ignores_code=true")
    assert run_experiment(cfg, RunContext(parent_run_id="a sweep's parent", quiet=True)) == {}
    assert len(client.search_runs([experiment_id])) == 1


@pytest.mark.slow
def test_a_sweep_skips_a_config_finished_under_the_old_layout(tmp_path, sqlite_uri):
    client = MlflowClient(sqlite_uri)
    experiment_id = client.create_experiment("layouts", artifact_location=f"{tmp_path}/artifacts")
    old = client.create_run(experiment_id, tags={"forgetlab.kind": "train", "forgetlab.config_hash": SMALL_SEED0_PRE_MOVE_HASH})
    client.set_terminated(old.info.run_id, "FINISHED")

    proc = run_train(
        "-m", "seed=0,1", *SMALL, f"tracking.uri={sqlite_uri}", "tracking.experiment=layouts",
        f"tracking.artifact_location={tmp_path}/artifacts", f"hydra.sweep.dir={tmp_path}/sweep",
        "tracking.resume_ignores_code=true",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[sweep] skip 1 of 2 jobs: FINISHED before (same config;" in proc.stdout  # the old layout's run, below
    assert "2 jobs: 1 skipped" in proc.stdout and "1 trained, 0 failed" in proc.stdout
    trained = client.search_runs([experiment_id], "tags.`forgetlab.kind` = 'train'")
    assert sorted(r.data.params.get("seed") for r in trained if r.info.run_id != old.info.run_id) == ["1"]
