"""Recurrent learning end to end: sequential task sequences, the trainer's counters for each
recurrent algorithm, stream mode, config validation, and a sweep across algorithms in MLflow."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from forgetlab.config import ConfigError, validate
from forgetlab.data import build_task_sequence, digits, mnist1d
from forgetlab.assembly import build_trainer
from tests.conftest import run_train

SMALL = ["tracking.enabled=false", "network.hidden_size=8", "task_sequence.n_tasks=2", "eval.every_samples=0",
         "trainer.epochs_per_task=1"]


def test_row_sequential_digits_read_each_image_row_by_row(compose_cfg):
    vectors = build_task_sequence(compose_cfg().task_sequence)
    rows = build_task_sequence(compose_cfg("task_sequence.input=sequence").task_sequence)
    assert rows.input_shape == (8, 8)
    for v, r in zip(vectors.tasks, rows.tasks):
        np.testing.assert_array_equal(r.x_train[:, 2], v.x_train[:, 16:24])  # step 2 = third row
        np.testing.assert_array_equal(r.x_test.reshape(len(r.x_test), -1), v.x_test)
        np.testing.assert_array_equal(r.y_train, v.y_train)


@pytest.mark.slow
def test_mnist1d_is_generated_offline_into_five_two_class_tasks(compose_cfg):
    seq = build_task_sequence(compose_cfg("task_sequence=split_mnist1d").task_sequence)
    assert seq.input_shape == (40, 1) and seq.n_tasks == 5
    assert [list(t.classes) for t in seq.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sum(t.n_train for t in seq.tasks) == 4000 and sum(len(t.y_test) for t in seq.tasks) == 1000
    for t in seq.tasks:
        assert set(np.unique(t.y_train)) == set(t.classes)
    # generated once per process: a second build reuses the arrays' values, and callers get copies
    a, b = mnist1d.load_split(), mnist1d.load_split()
    np.testing.assert_array_equal(a[0], b[0])
    a[0][:] = 0.0
    assert mnist1d.load_split()[0].any()
    vectors = build_task_sequence(compose_cfg("task_sequence=split_mnist1d", "task_sequence.input=vector").task_sequence)
    assert vectors.input_shape == (40,)


def test_mnist1d_stream_and_permuted_sequences_are_built_like_the_digit_ones():
    """The stream's blocks partition the training set and are single pass; permuted task 0 is the
    plain split, the others permute the same inputs, and labels are offset by 10 per task."""
    x_train, _, y_train, _ = mnist1d.load_split()
    stream = mnist1d.mnist1d_stream(n_tasks=4)
    assert stream.single_pass and [t.n_train for t in stream.tasks] == [1000] * 4
    blocks = np.concatenate([np.column_stack([t.x_train, t.y_train]) for t in stream.tasks])
    whole = np.column_stack([x_train, y_train])
    np.testing.assert_array_equal(blocks[np.lexsort(blocks.T)], whole[np.lexsort(whole.T)])
    permuted = mnist1d.permuted_mnist1d(n_tasks=3)
    np.testing.assert_array_equal(permuted.tasks[0].x_train, x_train)
    np.testing.assert_allclose(np.sort(permuted.tasks[2].x_train, axis=1), np.sort(x_train, axis=1))
    assert not np.array_equal(permuted.tasks[2].x_train, x_train)
    np.testing.assert_array_equal(permuted.tasks[2].y_train, y_train + 20)
    assert permuted.n_classes == 30 == digits.permuted_digits(n_tasks=3).n_classes


@pytest.mark.parametrize("learner,overrides,updates_per_sequence", [
    ("rnn_bptt_epochwise", [], 1),
    ("rnn_bptt_epochwise", ["network.loss_at=all"], 1),
    ("rnn_rtrl", ["network.loss_at=all", "algorithm.update_every=1"], 8),
    ("rnn_rtrl", ["network.loss_at=all", "algorithm.update_every=3"], 3),  # steps 3, 6 and the end (8)
    ("rnn_rtrl", ["network.loss_at=last"], 1),
    ("rnn_rtrl", ["network.loss_at=last", "network.loss_last_steps=2", "algorithm.update_every=1"], 2),
    ("rnn_bptt_epochwise", ["network.loss_at=last", "network.loss_last_steps=2"], 1),
    ("rnn_bptt_truncated", ["network.loss_at=all", "algorithm.h=4", "algorithm.h_prime=2"], 4),
    ("mlp_backprop", ["network.hidden_sizes=[8]"], 1),
])
def test_samples_count_sequences_and_updates_count_weight_changes(compose_cfg, learner, overrides,
                                                                  updates_per_sequence):
    small = [o for o in SMALL if "hidden_size" not in o or learner.startswith("rnn")]
    trainer = build_trainer(compose_cfg(f"learner={learner}", *small, *overrides))
    (result,) = trainer.run()
    sizes = np.cumsum([t.n_train for t in trainer.sequence.tasks])
    boundaries = [p for p in result.points if p.boundary][1:]
    assert [p.samples_seen for p in boundaries] == list(sizes)
    assert [p.updates for p in boundaries] == list(updates_per_sequence * sizes)
    assert result.accuracy_matrix.shape == (3, 2)


def test_recurrent_runs_learn_and_are_reproducible(compose_cfg):
    cfg = ["learner=rnn_rtrl", *SMALL, "task_sequence.n_tasks=1", "trainer.epochs_per_task=2", "algorithm.lr=0.3"]
    a = build_trainer(compose_cfg(*cfg, "seed=5")).run()[0].accuracy_matrix
    b = build_trainer(compose_cfg(*cfg, "seed=5")).run()[0].accuracy_matrix
    np.testing.assert_array_equal(a, b)
    assert a[0, 0] < 0.2 and a[-1, 0] > 0.4  # ten digits (chance 0.1), read row by row, are being learned


def test_stream_mode_carries_the_state_across_sequences_and_tasks(compose_cfg):
    trainer = build_trainer(compose_cfg("learner=rnn_rtrl", "task_sequence=digit_stream", "algorithm.reset=never",
                                        *SMALL))
    seen = []
    learn = trainer.algorithm.learn

    def spy(x, y, mask):
        seen.append(None if trainer.algorithm.state is None else trainer.algorithm.state.h.copy())
        return learn(x, y, mask)

    trainer.algorithm.learn = spy
    (result,) = trainer.run()
    assert seen[0] is None  # the very first sequence starts from h_0 = 0
    assert all(h is not None and np.abs(h).sum() > 0 for h in seen[1:])  # every later one where the last ended
    assert result.points[-1].samples_seen == sum(t.n_train for t in trainer.sequence.tasks) == len(seen)


@pytest.mark.parametrize("overrides,key", [
    (["algorithm=rtrl"], "network.name"),
    (["algorithm=bptt_epochwise"], "network.name"),
    (["network=rnn", "task_sequence.input=sequence"], "network.name"),  # backprop on the RNN
    (["network=rnn", "algorithm=rtrl"], "task_sequence.input"),  # an RNN on vectors
    (["learner=mlp_backprop", "task_sequence.input=sequence"], "task_sequence.input"),  # an MLP on sequences
    (["learner=rnn_bptt_truncated", "algorithm.h=0"], "algorithm.h"),
    (["learner=rnn_bptt_truncated", "algorithm.h=3", "algorithm.h_prime=4"], "algorithm.h_prime"),
    (["learner=rnn_bptt_truncated", "algorithm.h_prime=0"], "algorithm.h_prime"),
    (["learner=rnn_rtrl", "trainer.batch_size=4"], "trainer.batch_size"),
    (["learner=rnn_rtrl", "algorithm.update_every=0"], "algorithm.update_every"),
    (["learner=rnn_rtrl", "algorithm.reset=sometimes"], "algorithm.reset"),
    (["learner=rnn_rtrl", "network.activation=relu"], "network.activation"),
    (["learner=rnn_rtrl", "network.loss_at=first"], "network.loss_at"),
    (["learner=rnn_rtrl", "network.loss_at=all", "network.loss_last_steps=2"], "network.loss_last_steps"),
    (["learner=rnn_rtrl", "network.loss_last_steps=0"], "network.loss_last_steps"),
    (["learner=rnn_rtrl", "network.hidden_size=0"], "network.hidden_size"),
    (["learner=rnn_rtrl", "task_sequence.input=matrix"], "task_sequence.input"),
    (["learner=rnn_rtrl", "task_sequence=split_mnist1d", "task_sequence.n_tasks=11"], "task_sequence.n_tasks"),
])
def test_invalid_combinations_fail_validation_naming_the_key(compose_cfg, overrides, key):
    with pytest.raises(ConfigError, match=f"'{key}' parameter must be"):
        validate(compose_cfg(*overrides))


@pytest.mark.slow
def test_every_learner_preset_is_valid(compose_cfg):
    for learner in ("mlp_backprop", "rnn_bptt_epochwise", "rnn_bptt_truncated", "rnn_rtrl"):
        validate(compose_cfg(f"learner={learner}"))
        validate(compose_cfg(f"learner={learner}", "task_sequence=split_mnist1d"))


@pytest.mark.slow
def test_invalid_recurrent_config_exits_2_before_any_run(tmp_path, sqlite_uri):
    proc = run_train("learner=rnn_bptt_truncated", "algorithm.h=2", "algorithm.h_prime=5",
                     f"tracking.uri={sqlite_uri}", f"hydra.run.dir={tmp_path}/out")
    assert proc.returncode == 2
    assert "algorithm.h_prime" in proc.stderr and "5" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_a_sweep_across_learners_follows_the_tracking_contract(tmp_path, sqlite_uri):
    proc = run_train(
        "-m", "learner=mlp_backprop,rnn_bptt_epochwise,rnn_bptt_truncated,rnn_rtrl", "task_sequence.n_tasks=2",
        "trainer.epochs_per_task=1", "eval.every_samples=100",
        f"tracking.uri={sqlite_uri}", "tracking.experiment=learners", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name("learners").experiment_id])
    jobs = {r.data.params["algorithm.name"]: r for r in runs if r.data.tags.get("forgetlab.kind") == "train"}
    assert set(jobs) == {"backprop", "bptt_epochwise", "bptt_truncated", "rtrl"}
    n_train = None
    for job in jobs.values():
        assert job.info.status == "FINISHED"
        assert "final/acc" in job.data.metrics and "final/forgetting" in job.data.metrics
        updates = client.get_metric_history(job.info.run_id, "updates")
        last = max(updates, key=lambda m: m.step)
        n_train = n_train or last.step
        assert last.step == n_train  # the same samples for every algorithm
        assert last.value == n_train  # loss at the last step only (the default): one update per sequence
    assert jobs["rtrl"].data.params["network.name"] == "rnn"
    assert jobs["rtrl"].data.params["task_sequence.input"] == "sequence"
    assert jobs["backprop"].data.params["task_sequence.input"] == "vector"


DEFAULT_LR = {"mlp_backprop": 0.5, "rnn_bptt_epochwise": 0.1, "rnn_bptt_truncated": 0.05, "rnn_rtrl": 0.1}


@pytest.mark.parametrize("preset", ["quickstart"])
def test_study_presets_match_data_samples_and_the_documented_learning_rates(compose_cfg, preset):
    """Every job of the study is valid, sees the same data and number of samples, and trains with the
    learning rate chosen on the joint task (documented in docs/default_learning_rates.md)."""
    from omegaconf import OmegaConf

    from tests.conftest import ROOT

    sweep = OmegaConf.load(ROOT / "conf" / "experiment" / f"{preset}.yaml").hydra.sweeper.params
    learners = sweep.learner.split(",")
    assert sorted(learners) == sorted(DEFAULT_LR)
    for learner in learners:
        cfg = compose_cfg(f"experiment={preset}", f"learner={learner}")
        validate(cfg)
        assert cfg.algorithm.lr == DEFAULT_LR[learner]
        assert cfg.trainer.epochs_per_task == 2
        assert cfg.task_sequence.name == "split_digits"
        assert cfg.network.output == "sigmoid" and cfg.network.loss == "mse"
    assert len(sweep.seed.split(",")) >= 3
