"""Every config key is checked before any MLflow run exists: types, ranges, unknown keys and options."""

import pytest

from forgetlab.config import ConfigError, check_command_line, register_configs
from tests.conftest import ROOT, run_train

register_configs()

# (overrides, words the message must contain: the key, the bad value, what is allowed)
BAD_INPUTS = [
    (["algorithm.lr=-1"], ["'algorithm.lr'", "-1.0", "(0, inf)"]),
    (["algorithm.lr=nan"], ["'algorithm.lr'", "nan"]),
    (["algorithm.lr=abc"], ["'algorithm.lr'", "'abc'", "float"]),
    (["trainer.epochs_per_task=0"], ["'trainer.epochs_per_task'", "0", "[1, inf)"]),
    (["trainer.shuffle=maybe"], ["'trainer.shuffle'", "'maybe'", "bool"]),
    (["trainer.batch_size=0"], ["'trainer.batch_size'", "0", "[1, inf)"]),
    (["trainer.foo=1"], ["'trainer.foo'", "trainer.foo=1", "batch_size, epochs_per_task, shuffle"]),
    (["algorithm.epochs_per_task=2"], ["'algorithm.epochs_per_task'", "algorithm.epochs_per_task=2", "l2, lr, lr_selected_by, name"]),
    (["algorithm.foo=1"], ["'algorithm.foo'", "algorithm.foo=1", "l2, lr, lr_selected_by, name"]),
    (["+algorithm.foo=1"], ["'algorithm.foo'", "algorithm.foo=1", "l2, lr, lr_selected_by, name"]),
    (["+foo=1"], ["'foo'", "foo=1", "algorithm, backend, eval, guard, network"]),
    (["algorithm=nope"], ["'algorithm'", "'nope'", "'backprop'"]),
    (["task_sequence=nope"], ["'task_sequence'", "'nope'", "'split_digits'"]),
    (["experiment=nope"], ["'experiment'", "'nope'", "'quickstart'"]),
    (["network.activation=gelu"], ["'network.activation'", "'gelu'", "'relu'"]),
    (["network.hidden_sizes=[64,0]"], ["'network.hidden_sizes'", "[64, 0]", "positive ints"]),
    (["network.hidden_sizes=[a]"], ["'network.hidden_sizes'", "'a'", "list[int]"]),
    (["network.init_scale=0"], ["'network.init_scale'", "0", "(0, inf)"]),
    (["task_sequence.test_size=1.5"], ["'task_sequence.test_size'", "1.5", "(0, 1)"]),
    (["task_sequence.test_size=0"], ["'task_sequence.test_size'", "0", "(0, 1)"]),
    (["task_sequence.n_tasks=11"], ["'task_sequence.n_tasks'", "11", "[1, 10] for split_digits"]),
    (["task_sequence.scenario=both"], ["'task_sequence.scenario'", "'both'", "'class'"]),
    (["task_sequence.val_size=1"], ["'task_sequence.val_size'", "1", "[0, 1)"]),
    (["task_sequence.val_size=-0.1"], ["'task_sequence.val_size'", "-0.1", "[0, 1)"]),
    (["task_sequence=split_mnist", "task_sequence.n_tasks=11"],
     ["'task_sequence.n_tasks'", "11", "[1, 10] for split_mnist"]),
    (["eval.split=train"], ["'eval.split'", "'train'", "'test', 'val'"]),
    (["eval.split=val"], ["'eval.split'", "'val'", "'test' with task_sequence.val_size=0"]),
    (["task_sequence=delayed_recall"], ["'network.name'", "'mlp'", "'rnn' with task_sequence.name='delayed_recall'"]),
    (["task_sequence=delayed_recall", "task_sequence.input=vector"],
     ["'task_sequence.input'", "'vector'", "one of 'sequence' with task_sequence.name='delayed_recall'"]),
    (["task_sequence=delayed_recall", "learner=rnn_rtrl", "task_sequence.delay=-1"],
     ["'task_sequence.delay'", "-1", "[0, inf)"]),
    (["task_sequence=delayed_recall", "learner=rnn_rtrl", "task_sequence.n_symbols=1"],
     ["'task_sequence.n_symbols'", "1", "[2, inf)"]),
    (["task_sequence=delayed_recall", "learner=rnn_rtrl", "task_sequence.n_tasks=6", "task_sequence.n_symbols=4"],
     ["'task_sequence.n_tasks'", "6", "[1, task_sequence.n_symbols=4]"]),
    (["task_sequence=delayed_recall", "learner=rnn_rtrl", "task_sequence.noise=-1"],
     ["'task_sequence.noise'", "-1", "[0, inf)"]),
    (["task_sequence=delayed_recall", "learner=rnn_rtrl", "task_sequence.samples_per_symbol=1"],
     ["'task_sequence.samples_per_symbol'", "1", "[2, inf)"]),
    (["task_sequence.delay=3"], ["'task_sequence.delay'", "task_sequence.delay=3", "val_size"]),
    (["eval.probe_per_task=-1"], ["'eval.probe_per_task'", "-1", "'all'"]),
    (["eval.probe_per_task=some"], ["'eval.probe_per_task'", "'some'", "'all'"]),
    (["eval.every_samples=-5"], ["'eval.every_samples'", "-5", "[0, inf)"]),
    (["seed=-1"], ["'seed'", "-1", "non-negative"]),
    (["seed=abc"], ["'seed'", "'abc'", "int"]),
    (["tracking.resume=maybe"], ["'tracking.resume'", "'maybe'", "bool"]),
    (["tracking.stale_after_s=0"], ["'tracking.stale_after_s'", "0", "(0, inf)"]),
    (["algorithm.lr"], ["algorithm.lr", "override"]),
    # config-driven object creation: only forgetlab's registries and Hydra's registered plugins
    (["+network._target_=builtins.exec"], ["'network._target_'", "'builtins.exec'", "registries"]),
    (["+hydra.callbacks.x._target_=os.system"], ["'hydra.callbacks.x._target_'", "'os.system'", "registries"]),
    (["network.name=os.system"], ["'network.name'", "'os.system'", "'mlp'"]),
    # a typo gets the closest valid key or option; an algorithm chosen without its network the preset
    (["algorithm.lrr=0.1"], ["'algorithm.lrr'", "Did you mean 'algorithm.lr'?"]),
    (["sed=1"], ["'sed'", "Did you mean 'seed'?"]),
    (["algorithm=rtlr"], ["'algorithm'", "Did you mean 'rtrl'?"]),
    (["task_sequence.scenario=clas"], ["'task_sequence.scenario'", "Did you mean 'class'?"]),
    (["algorithm=rtrl"], ["'network.name'", "'mlp'", "Use learner=rnn_rtrl instead of algorithm=rtrl"]),
    (["algorithm=bptt_truncated"], ["Use learner=rnn_bptt_truncated instead"]),
]


@pytest.mark.parametrize("overrides, words", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_rejected_with_key_value_and_allowed(overrides, words):
    with pytest.raises(ConfigError) as error:
        check_command_line(str(ROOT / "conf"), "config", overrides, multirun=False)
    for word in words:
        assert word in str(error.value)


def test_good_inputs_pass():
    check_command_line(str(ROOT / "conf"), "config", ["experiment=quickstart", "algorithm.lr=0.1"], multirun=False)
    check_command_line(str(ROOT / "conf"), "config", ["seed=0,1", "algorithm.lr=0.1,0.2"], multirun=True)
    check_command_line(str(ROOT / "conf"), "config", ["task_sequence=delayed_recall", "learner=rnn_bptt_truncated"],
                       multirun=False)
    check_command_line(str(ROOT / "conf"), "config", ["task_sequence=split_mnist", "task_sequence.val_size=0.1",
                                                      "eval.split=val"], multirun=False)


# In a subprocess: exit code 2, the message, and nothing written, for single runs and for sweeps
# (in a sweep one bad job stops the whole sweep before any job runs).
COMMAND_LINES = [
    (["algorithm=nope"], "'algorithm'"),
    (["-m", "seed=0,1", "algorithm.lr=0.1,-1"], "'algorithm.lr'"),
    (["-m", "seed=0,abc"], "'seed'"),
    (["-m", "algorithm=backprop,nope"], "'algorithm'"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, key", COMMAND_LINES, ids=[" ".join(a) for a, _ in COMMAND_LINES])
def test_bad_command_line_exits_2_and_writes_nothing(tmp_path, args, key):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_train(
        *args, f"tracking.uri={uri}", f"tracking.artifact_location={tmp_path}/artifacts",
        f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Invalid config:" in proc.stderr and key in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "sweep").exists()
