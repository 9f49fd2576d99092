"""The cost guard (src/forgetlab/cost.py): memory and time estimated from the config, a run that
cannot fit refused before anything is built, a long one announced."""

import re

import pytest

from forgetlab.config import ConfigError, check_command_line
from forgetlab.cost import available_memory, check_cost, data_size, estimate
from forgetlab.cost_model import DataSize
from forgetlab.assembly import build_trainer, total_samples
from tests.conftest import ROOT

GiB = 1024**3
SEQUENCE = DataSize(n_inputs=8, steps=8, n_outputs=10, train_samples=1000, eval_samples=500, eval_points=10,
                    data_values=10**5)


FORWARD = "algorithm.implementation=forward"


def rtrl(compose_cfg, hidden: int, *more: str):
    return compose_cfg("learner=rnn_rtrl", f"network.hidden_size={hidden}", "tracking.enabled=false", *more)


def test_forward_rtrl_needs_cubic_memory_and_quartic_time_in_the_hidden_size(compose_cfg):
    small, large = (estimate(rtrl(compose_cfg, h, FORWARD), SEQUENCE) for h in (512, 1024))
    assert large.memory_bytes / small.memory_bytes == pytest.approx(8, rel=0.05)
    assert large.seconds / small.seconds == pytest.approx(16, rel=0.05)
    H, K = 4096, 4096 + 8 + 1  # the MemoryError: one H x H x K float64 tensor is 513 GiB
    huge = estimate(rtrl(compose_cfg, H, FORWARD), SEQUENCE)
    assert huge.memory_bytes >= 2 * H * H * K * 8 and "sensitivity" in huge.largest_term


@pytest.mark.parametrize("implementation", ["auto", "reverse"])
def test_reverse_rtrl_needs_the_history_of_a_sequence_quadratic_in_the_hidden_size(compose_cfg, implementation):
    """The auto rule picks the reverse form here (loss at the last step): the guard counts its history,
    T (H^2 + 5H + I + 1) values, not the forward form's 2 H^2 (H + I + 1)."""
    few_evaluated = DataSize(n_inputs=8, steps=8, n_outputs=10, train_samples=1000, eval_samples=10, eval_points=10,
                             data_values=10**5)
    small, large = (estimate(rtrl(compose_cfg, h, f"algorithm.implementation={implementation}"), few_evaluated)
                    for h in (512, 1024))
    assert "history" in large.largest_term
    T, H, I = few_evaluated.steps, 1024, few_evaluated.n_inputs
    assert large.memory_bytes >= T * (H * H + 5 * H + I + 1) * 8
    assert large.memory_bytes / small.memory_bytes == pytest.approx(4, rel=0.1)
    forward = estimate(rtrl(compose_cfg, 1024, FORWARD), few_evaluated)
    assert large.memory_bytes < forward.memory_bytes / 100 and large.seconds < forward.seconds / 100
    stream = estimate(rtrl(compose_cfg, 1024, "algorithm.reset=never"), few_evaluated)  # a stream runs forward
    assert "sensitivity" in stream.largest_term


@pytest.mark.parametrize("overrides,form", [
    ([], "reverse"),  # loss at the last step: one reverse pass a sequence
    # a pass at every step of 40, and tiny products: forward; four times fewer passes: reverse
    (["network.loss_at=all", "network.hidden_size=8", "task_sequence=split_mnist1d"], "forward"),
    (["network.loss_at=all", "network.hidden_size=8", "task_sequence=split_mnist1d", "algorithm.update_every=4"],
     "reverse"),
    (["algorithm.reset=never"], "forward"),
])
def test_the_guard_estimates_the_form_the_algorithm_runs(compose_cfg, overrides, form):
    cfg = compose_cfg("learner=rnn_rtrl", "tracking.enabled=false", *overrides)
    size, trainer = data_size(cfg), build_trainer(cfg)
    assert trainer.algorithm.implementation_for(size.steps) == form
    pinned = compose_cfg(*pinned_overrides(overrides, form))
    assert estimate(cfg, size) == estimate(pinned, size)
    if "algorithm.reset=never" not in overrides:
        other = "forward" if form == "reverse" else "reverse"
        assert estimate(cfg, size) != estimate(compose_cfg(*pinned_overrides(overrides, other)), size)


def pinned_overrides(overrides, form):
    return ["learner=rnn_rtrl", "tracking.enabled=false", *overrides, f"algorithm.implementation={form}"]


def test_bptt_and_the_mlp_grow_with_their_parameters(compose_cfg):
    for learner, key in (("rnn_bptt_epochwise", "network.hidden_size"), ("rnn_bptt_truncated", "network.hidden_size")):
        small, large = (estimate(compose_cfg(f"learner={learner}", f"{key}={h}"), SEQUENCE) for h in (1024, 2048))
        assert large.seconds / small.seconds == pytest.approx(4, rel=0.1)  # O(H^2) per step
    vector = DataSize(64, 1, 10, 1000, 500, 10, 10**5)
    narrow, wide = (estimate(compose_cfg(f"network.hidden_sizes=[{w}]"), vector) for w in (10**6, 2 * 10**6))
    assert wide.memory_bytes / narrow.memory_bytes == pytest.approx(2, rel=0.01)


@pytest.mark.parametrize("overrides", [
    ["learner=mlp_backprop", "eval.every_samples=150"],
    ["learner=rnn_rtrl", "task_sequence=permuted_digits", "task_sequence.n_tasks=2", "eval.probe_per_task=all"],
    ["task_sequence=digit_stream", "task_sequence.joint=true"],
    ["task_sequence.val_size=0.2", "eval.split=val"],  # the evaluations score the validation set
])
def test_the_estimate_counts_the_samples_and_evaluations_the_trainer_will_do(compose_cfg, overrides):
    cfg = compose_cfg(*overrides, "tracking.enabled=false", "trainer.epochs_per_task=2")
    size, trainer = data_size(cfg), build_trainer(cfg)
    x_eval = trainer.evaluator.x
    assert size.train_samples == total_samples(trainer)
    assert size.eval_samples == len(x_eval)
    assert (size.steps, size.n_inputs) == (x_eval.shape[1:] if x_eval.ndim == 3 else (1, x_eval.shape[1]))
    assert size.n_outputs == trainer.scenario.n_outputs
    if "learner=rnn_rtrl" not in overrides:  # running RTRL here would make this test slow
        assert size.eval_points == len(trainer.run()[0].points)


def test_a_network_that_cannot_fit_is_refused_naming_the_key_and_value(compose_cfg):
    cfg = rtrl(compose_cfg, 4096, FORWARD)
    with pytest.raises(ConfigError, match=r"'network.hidden_size' parameter must give a network that fits in memory.*"
                                          r"about 1 TiB.*sensitivity.*more than the 8 GiB available\. Got 4096 instead"):
        check_cost(cfg, available=8 * GiB)
    check_cost(rtrl(compose_cfg, 32), available=8 * GiB)  # the preset fits


def test_a_billion_unit_layer_is_refused_without_allocating_it(compose_cfg):
    cfg = compose_cfg("network.hidden_sizes=[1000000000]", "tracking.enabled=false")
    with pytest.raises(ConfigError, match=r"'network.hidden_sizes'.*Got \[1000000000\] instead"):
        check_cost(cfg)  # the real available memory: far below the ~10 TiB this needs


def test_available_memory_is_positive_and_at_most_the_machine_total():
    available = available_memory()
    total = int(open("/proc/meminfo").read().split("MemTotal:")[1].split()[0]) * 1024
    assert available is not None and 0 < available <= total


def test_a_run_estimated_longer_than_the_guard_is_refused_until_the_limit_is_raised(compose_cfg, capsys):
    """Before, the time guard only warned, and the run went on for hours."""
    cfg = rtrl(compose_cfg, 256, FORWARD)  # ~2.5 h measured for one epoch of split digits
    with pytest.raises(ConfigError, match=r"estimated to train for about (2.\d+) h \(network.hidden_size=256, "
                                          r"algorithm.name='rtrl'\), longer than guard.max_hours=1\. To run it anyway, "
                                          r"raise the limit \(e.g. guard.max_hours=(\d+)") as refused:
        check_cost(cfg, available=64 * GiB)
    hours, suggested = (float(g) for g in re.search(r"about (\S+) h .*guard.max_hours=(\d+):", str(refused.value)).groups())  # the suggestion covers the estimate's error (3x)
    assert 3 * hours <= suggested < 3 * hours + 1
    cost = check_cost(rtrl(compose_cfg, 256, FORWARD, "guard.max_hours=100"), available=64 * GiB)
    assert cost.seconds > 3600
    check_cost(compose_cfg("tracking.enabled=false"))  # the default run is far below the limit
    assert capsys.readouterr().err == ""


def test_the_guard_settings_are_validated_and_left_out_of_the_config_hash(compose_cfg):
    from forgetlab.config import validate
    from forgetlab.tracking.mlflow_run import config_hash

    with pytest.raises(ConfigError, match=r"'guard.max_hours' parameter must be a number in the range \(0, inf\)"):
        validate(compose_cfg("guard.max_hours=0"))
    assert config_hash(compose_cfg("guard.max_hours=5")) == config_hash(compose_cfg())


def test_a_launcher_that_cannot_run_any_job_is_refused_before_the_sweep():
    with pytest.raises(ConfigError, match=r"'hydra.launcher.n_jobs' parameter must be a non-zero int.*Got 0 instead"):
        check_command_line(str(ROOT / "conf"), "config", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=0"], True)
    check_command_line(str(ROOT / "conf"), "config", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"], True)

