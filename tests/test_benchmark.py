"""The PyTorch loop of benchmarks/per_sample_backprop.py computes what forgetlab computes."""

import itertools

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks.per_sample_backprop import (  # noqa: E402
    TorchMLP,
    as_tensors,
    max_abs_difference,
    record_run,
    replay_in_torch,
    torch_params,
    torch_sgd,
    torch_train,
)
from forgetlab.algorithms.backprop import Backprop  # noqa: E402
from forgetlab.data import build_task_sequence  # noqa: E402
from forgetlab.networks import functions as F  # noqa: E402
from forgetlab.networks.mlp import MLP  # noqa: E402

COMBOS = list(itertools.product(F.HIDDEN_ACTIVATIONS, F.OUTPUTS, F.LOSSES))


def batches(rng, n, batch, n_in, n_out, masked):
    out = []
    for _ in range(n):
        x = rng.normal(size=(batch, n_in))
        y = np.zeros((batch, n_out))
        y[np.arange(batch), rng.integers(0, 3, size=batch)] = 1.0
        mask = np.ones((batch, n_out))
        if masked:
            mask[:, 3:] = 0.0
        out.append((x, y, mask))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("activation,output,loss", COMBOS)
@pytest.mark.parametrize("batch,masked,l2", [(1, False, 0.0), (4, True, 0.05)])
def test_torch_sgd_steps_equal_forgetlab_updates(activation, output, loss, batch, masked, l2):
    rng = np.random.default_rng(1)
    net = MLP([5, 7, 4, 6], activation, output, loss, init_scale=1.5, rng=rng)
    for b in net.b:
        b[:] = rng.normal(scale=0.5, size=b.shape)
    model = TorchMLP(net)  # copies the initial weights
    data = batches(rng, 5, batch, 5, 6, masked)
    algorithm = Backprop(net, lr=0.3, l2=l2)
    for x, y, mask in data:
        algorithm.learn(x, y, mask)
    torch_train(model, torch_sgd(model, lr=0.3, l2=l2), as_tensors(data), output, loss)
    assert max_abs_difference(net.params, torch_params(model)) < 1e-12


@pytest.mark.slow
def test_replaying_a_recorded_run_reaches_the_same_weights(compose_cfg):
    cfg = compose_cfg(
        "tracking.enabled=false", "task_sequence.n_tasks=2", "trainer.epochs_per_task=1",
        "trainer.batch_size=3", "algorithm.l2=0.001",
    )
    recording = record_run(cfg)
    presented = sum(len(x) for x, _, _ in recording.batches)
    assert presented == sum(t.n_train for t in build_task_sequence(cfg.task_sequence).tasks)
    timings = []
    model = replay_in_torch(recording.initial, cfg, as_tensors(recording.batches), timings)
    assert len(timings) == 1 and timings[0].wall > 0 and timings[0].cpu > 0
    assert max_abs_difference(recording.final, torch_params(model)) < 1e-10
    # and the replay is not trivially equal: training moved the weights
    assert max_abs_difference(recording.final, recording.initial.params) > 0.1
