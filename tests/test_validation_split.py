"""task_sequence.val_size holds a validation set out of each task's training data; eval.split=val
scores it instead of the test set; val_size=0 leaves every number as it was."""

import numpy as np
import pytest

from forgetlab.data import Task, TaskSequence, build_task_sequence, digits
from forgetlab.data.tasks import with_validation
from forgetlab.assembly import build_trainer


def id_tasks() -> TaskSequence:
    """Two tasks whose inputs are their sample ids, so membership can be checked exactly."""
    rng = np.random.default_rng(0)
    tasks = []
    for k, (n_train, n_test) in enumerate([(100, 30), (61, 20)]):
        ids = 1000 * k + np.arange(n_train + n_test, dtype=np.float64)
        labels = 2 * k + rng.permutation(np.arange(n_train + n_test) % 2)  # balanced classes 2k, 2k + 1
        tasks.append(Task(f"t{k}", ids[:n_train, None], labels[:n_train], ids[n_train:, None], labels[n_train:],
                          np.array([2 * k, 2 * k + 1])))
    return TaskSequence("ids", tasks, n_classes=4)


def test_validation_is_held_out_of_training_stratified_and_disjoint_from_train_and_test():
    before = id_tasks()
    after = with_validation(before, 0.2, data_seed=0)
    for b, a in zip(before.tasks, after.tasks):
        train, val, test = a.x_train[:, 0], a.x_val[:, 0], a.x_test[:, 0]
        assert len(val) == int(np.ceil(0.2 * b.n_train)) and len(train) + len(val) == b.n_train
        assert not set(val) & set(train) and not set(val) & set(test)
        assert set(val) | set(train) == set(b.x_train[:, 0])
        # labels travel with their samples; both classes in (nearly) the training proportions
        lookup = dict(zip(b.x_train[:, 0], b.y_train))
        np.testing.assert_array_equal(a.y_val, [lookup[i] for i in val])
        np.testing.assert_array_equal(a.y_train, [lookup[i] for i in train])
        share = np.bincount(a.y_val - a.classes[0], minlength=2) / len(val)
        np.testing.assert_allclose(share, np.bincount(b.y_train - b.classes[0]) / b.n_train, atol=1 / len(val))
        assert np.all(np.diff(train) > 0)  # the remaining training samples keep their order
        np.testing.assert_array_equal(a.x_test, b.x_test)


def test_validation_split_is_fixed_by_data_seed():
    a = with_validation(id_tasks(), 0.2, data_seed=0).tasks[0].x_val
    b = with_validation(id_tasks(), 0.2, data_seed=0).tasks[0].x_val
    c = with_validation(id_tasks(), 0.2, data_seed=1).tasks[0].x_val
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_too_small_a_share_names_the_key():
    with pytest.raises(ValueError, match="task_sequence.val_size=0.01"):
        with_validation(id_tasks(), 0.01, data_seed=0)  # 1 sample cannot hold 2 classes


def test_val_size_zero_keeps_the_training_data_and_has_empty_validation_sets(compose_cfg):
    seq = build_task_sequence(compose_cfg().task_sequence)
    plain = digits.split_digits()
    for t, p in zip(seq.tasks, plain.tasks):
        np.testing.assert_array_equal(t.x_train, p.x_train)
        np.testing.assert_array_equal(t.y_train, p.y_train)
        assert t.x_val.shape == (0, 64) and t.y_val.shape == (0,)
    rows = build_task_sequence(compose_cfg("task_sequence.input=sequence").task_sequence)
    assert rows.tasks[0].x_val.shape == (0, 8, 8)


@pytest.mark.parametrize("name, input_form, shape", [
    ("split_mnist", "vector", (784,)),
    ("permuted_mnist", "sequence", (28, 28)),
    ("delayed_recall", "sequence", (12, 21)),
])
def test_every_task_of_a_configured_sequence_gets_its_validation_set(compose_cfg, name, input_form, shape):
    cfg = compose_cfg(f"task_sequence={name}", f"task_sequence.input={input_form}", "task_sequence.val_size=0.25")
    seq = build_task_sequence(cfg.task_sequence)
    for t in seq.tasks:
        assert t.x_val.shape[1:] == shape == t.x_train.shape[1:]
        assert len(t.y_val) == pytest.approx(t.n_train / 3, abs=1)  # a quarter of the original training data
        np.testing.assert_array_equal(np.unique(t.y_val), t.classes)
    if name == "split_mnist":  # 400 training images per digit: 100 of each held out, exactly
        np.testing.assert_array_equal(np.unique(seq.tasks[0].y_val, return_counts=True)[1], [100, 100])


# Correct test samples per task and stage (rows: init, after task 0, ...), split_digits in the task
# scenario, one epoch, seed 0: what the code produced before the validation split existed.
BEFORE_VALIDATION = {
    (): [[45, 44, 45, 45, 45], [91, 44, 45, 45, 45], [91, 84, 45, 45, 45], [91, 87, 90, 45, 45],
         [90, 90, 90, 90, 43], [91, 81, 88, 90, 84]],
    ("learner=rnn_bptt_epochwise", "network.hidden_size=8"): [
        [45, 46, 56, 36, 40], [91, 52, 46, 12, 46], [88, 81, 43, 43, 70], [48, 53, 88, 64, 47],
        [40, 48, 79, 90, 50], [63, 25, 52, 49, 77]],
}


@pytest.mark.parametrize("overrides", list(BEFORE_VALIDATION), ids=["mlp", "rnn"])
def test_val_size_zero_trains_and_scores_exactly_as_before(compose_cfg, overrides):
    cfg = compose_cfg("tracking.enabled=false", "trainer.epochs_per_task=1", "task_sequence.scenario=task",
                      *overrides)
    trainer = build_trainer(cfg)
    n_test = np.array([len(t.y_test) for t in trainer.sequence.tasks])
    correct = trainer.run()[0].accuracy_matrix * n_test
    np.testing.assert_allclose(correct, BEFORE_VALIDATION[overrides], atol=1e-9)


def test_eval_split_val_scores_the_validation_sets_only(compose_cfg):
    cfg = compose_cfg("tracking.enabled=false", "task_sequence.val_size=0.2", "eval.split=val", "seed=1")
    trainer = build_trainer(cfg)
    trainer.run()
    scored_now = trainer.evaluator.evaluate(trainer.network)
    acc, loss = scored_now.accuracy[0], scored_now.loss[0]  # the lone member
    net, scenario = trainer.network, trainer.scenario
    for k, task in enumerate(trainer.sequence.tasks):
        for x, y, scored in ((task.x_val, task.y_val, True), (task.x_test, task.y_test, False)):
            targets, mask, unit = scenario.targets(y, np.full(len(y), k))
            a = net.predict(x, mask)
            own_acc = np.mean(net.predicted_unit(a, mask) == unit)
            own_loss = np.mean(net.sample_loss(a, targets, mask))
            if scored:
                assert acc[k] == pytest.approx(own_acc) and loss[k] == pytest.approx(own_loss)
            else:
                assert loss[k] != pytest.approx(own_loss)  # the test set took no part
