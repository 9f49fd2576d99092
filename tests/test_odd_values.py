"""Values that were accepted without a word (issue 20) now get a clear error or a one-line note."""

from __future__ import annotations

import pytest

from forgetlab.config import ConfigError, validate
from forgetlab.cost import check_cost
from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import parallelism_note
from tests.conftest import run_train


def test_a_batch_larger_than_a_training_stage_is_refused(compose_cfg):
    """Every batch would have been the whole task: one update per epoch, under the batch size given."""
    with pytest.raises(ConfigError, match=r"'trainer.batch_size' parameter must be at most 266, the training samples "
                                          r"of the smallest training stage of 'split_digits'.*Got 100000 instead"):
        check_cost(validate(compose_cfg("trainer.batch_size=100000")))
    check_cost(validate(compose_cfg("trainer.batch_size=266")))  # the whole smallest task: allowed
    # a joint run trains every task in one stage
    check_cost(validate(compose_cfg("trainer.batch_size=1000", "task_sequence.joint=true")))


def test_an_mlp_without_a_hidden_layer_is_refused(compose_cfg):
    with pytest.raises(ConfigError, match=r"'network.hidden_sizes' parameter must be a non-empty list of positive ints"):
        validate(compose_cfg("network.hidden_sizes=[]"))


class JoblibLauncher:
    def __init__(self, n_jobs):
        self.joblib = {"n_jobs": n_jobs}


def test_negative_n_jobs_is_run_as_joblib_counts_it_and_said_in_one_line(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert parallelism_note(JoblibLauncher(-1)) == ("[sweep] hydra.launcher.n_jobs=-1: 8 jobs at a time on this machine "
                                                     "(8 CPUs; joblib counts negative values back from the CPU count)")
    assert "7 jobs at a time" in parallelism_note(JoblibLauncher(-2))
    assert parallelism_note(JoblibLauncher(2)) is None and parallelism_note(object()) is None


@pytest.mark.slow
def test_a_diverged_single_run_ends_with_one_line_and_exit_1(tmp_path):
    """Before, it ended FAILED correctly but printed a traceback."""
    proc = run_train("algorithm.lr=1e6", "trainer.epochs_per_task=1", "task_sequence.n_tasks=2",
                     "network.hidden_sizes=[16]", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                     f"hydra.run.dir={tmp_path}/run")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    shown = [line.rpartition("\r")[2].strip() for line in proc.stderr.split("\n")]  # as a terminal shows it
    visible = [line for line in shown if line and "sample/s]" not in line]  # but the progress bar
    assert len(visible) == 1, proc.stderr
    assert visible[0].startswith("Training diverged by update 100 (100 samples seen"), proc.stderr
