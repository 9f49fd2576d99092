"""The gradient audit for the RNN: python -m forgetlab.gradcheck network=rnn algorithm=<...>."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from forgetlab import gradcheck
from forgetlab.networks import functions
from forgetlab.networks.rnn import LOSS_AT, RNN_ACTIVATIONS

SMALL = ["network=rnn", "network.hidden_size=4", "algorithm.l2=0.02"]
ALGORITHMS = ["bptt_epochwise", "rtrl", "bptt_truncated"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("activation,output,loss,loss_at",
                         list(itertools.product(RNN_ACTIVATIONS, functions.OUTPUTS, functions.LOSSES, LOSS_AT)))
def test_audit_passes_for_every_algorithm_and_combination(algorithm, activation, output, loss, loss_at):
    overrides = [*SMALL, f"algorithm={algorithm}", f"network.activation={activation}", f"network.output={output}",
                 f"network.loss={loss}", f"network.loss_at={loss_at}"]
    assert gradcheck.main(overrides) == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_audit_passes_with_the_loss_on_the_last_steps(algorithm):
    assert gradcheck.main([*SMALL, f"algorithm={algorithm}", "network.loss_at=last", "network.loss_last_steps=3"]) == 0


@pytest.mark.parametrize("h,h_prime", [(3, 2), (1, 1), (8, 8), (5, 3)])
def test_audit_of_truncated_bptt_passes_with_and_without_truncation(h, h_prime):
    overrides = [*SMALL, "algorithm=bptt_truncated", f"algorithm.h={h}", f"algorithm.h_prime={h_prime}",
                 "network.loss_at=all"]
    assert gradcheck.main(overrides) == 0


def _dump(tmp_path, algorithm, *extra):
    path = tmp_path / f"{algorithm}.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "forgetlab.gradcheck", "network=rnn", f"algorithm={algorithm}",
         "network.hidden_size=5", "network.loss_at=all", "algorithm.l2=0.1", *extra, f"+dump={path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(path, allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


@pytest.mark.slow
def test_dump_is_self_describing_and_the_algorithms_agree(tmp_path):
    d = _dump(tmp_path, "rtrl", "algorithm.update_every=3")
    meta = json.loads(str(d["meta"]))
    assert meta == {"activation": "tanh", "output": "sigmoid", "loss": "mse", "l2": 0.1, "algorithm": "rtrl",
                    "network": "rnn", "loss_at": "all", "update_every": 3, "reset": "per_sequence",
                    "implementation": "auto"}
    W_xh, W_hh, b_h, W_hy, b_y, x, y, mask = (d[k] for k in ("W_xh", "W_hh", "b_h", "W_hy", "b_y", "x", "y", "mask"))
    assert W_xh.shape == (5, 8) and W_hh.shape == (5, 5) and b_h.shape == (5,) and W_hy.shape == (10, 5)
    assert x.shape == (8, 8) and y.shape == (8, 10) and mask.shape == (8,) and (mask == 1).all()
    # independent forward pass, loss and readout gradient, written from the definitions
    h, E, g_W_hy = np.zeros(5), 0.0, np.zeros_like(W_hy)
    for t in range(8):
        h = np.tanh(W_hh @ h + W_xh @ x[t] + b_h)
        a = 1 / (1 + np.exp(-(W_hy @ h + b_y)))
        E += mask[t] * 0.5 * np.sum((a - y[t]) ** 2) / mask.sum()
        g_W_hy += np.outer(mask[t] * (a - y[t]) * a * (1 - a) / mask.sum(), h)
    E += 0.05 * (np.sum(W_xh**2) + np.sum(W_hh**2) + np.sum(W_hy**2))
    assert float(d["loss"]) == pytest.approx(E, rel=1e-12)
    np.testing.assert_allclose(d["grad_W_hy"], g_W_hy + 0.1 * W_hy, rtol=1e-10)
    # the same problem (same seed) through epochwise BPTT: the same gradient
    bptt = _dump(tmp_path, "bptt_epochwise")
    for name in ("W_xh", "W_hh", "b_h", "W_hy", "b_y"):
        np.testing.assert_array_equal(bptt[name], d[name])
        np.testing.assert_allclose(bptt[f"grad_{name}"], d[f"grad_{name}"], rtol=1e-9, atol=1e-14)


def test_invalid_recurrent_config_exits_2(capsys):
    assert gradcheck.main(["network=rnn", "algorithm=bptt_truncated", "algorithm.h=2", "algorithm.h_prime=3"]) == 2
    assert "algorithm.h_prime" in capsys.readouterr().err
