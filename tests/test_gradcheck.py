"""The gradient audit (python -m forgetlab.gradcheck) for every activation/output/loss combination."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from forgetlab import gradcheck
from forgetlab.networks import functions as F

COMBOS = list(itertools.product(F.HIDDEN_ACTIVATIONS, F.OUTPUTS, F.LOSSES))


@pytest.mark.parametrize("activation,output,loss", COMBOS)
def test_audit_passes_for_every_combination(activation, output, loss):
    overrides = [f"network.activation={activation}", f"network.output={output}", f"network.loss={loss}",
                 "network.hidden_sizes=[7,5]", "algorithm.l2=0.02"]
    assert gradcheck.main(overrides) == 0


@pytest.mark.parametrize("algorithm,param,overrides", [
    ("backprop", "b0", ["network.hidden_sizes=[4]"]),
    ("rtrl", "W_hh", ["network=rnn", "network.hidden_size=4", "algorithm=rtrl"]),
    ("bptt_epochwise", "W_xh", ["network=rnn", "network.hidden_size=4", "algorithm=bptt_epochwise"]),
])
def test_audit_fails_on_a_wrong_gradient(monkeypatch, capsys, algorithm, param, overrides):
    from forgetlab.algorithms import ALGORITHMS

    cls = ALGORITHMS[algorithm]
    right = cls.gradient

    def off_by_a_bit(self, x, y, mask):
        loss, grads = right(self, x, y, mask)
        grads[param] = grads[param] * 1.001
        return loss, grads

    monkeypatch.setattr(cls, "gradient", off_by_a_bit)
    assert gradcheck.main(overrides) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.slow
def test_dump_is_self_describing_and_consistent(tmp_path):
    path = tmp_path / "g.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "forgetlab.gradcheck", "network.activation=tanh", "network.hidden_sizes=[6]",
         "algorithm.l2=0.1", f"+dump={path}"], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with np.load(path, allow_pickle=False) as d:
        meta = json.loads(str(d["meta"]))
        assert meta == {"activation": "tanh", "output": "sigmoid", "loss": "mse", "l2": 0.1,
                        "algorithm": "backprop", "network": "mlp"}
        W0, b0, W1, b1, x, y = (d[k] for k in ("W0", "b0", "W1", "b1", "x", "y"))
        assert W0.shape == (6, 64) and W1.shape == (10, 6) and x.shape == (64,) and y.shape == (10,)
        # independent forward pass and loss, written from the definitions
        a1 = np.tanh(W0 @ x + b0)
        a2 = 1 / (1 + np.exp(-(W1 @ a1 + b1)))
        E = 0.5 * np.sum((a2 - y) ** 2) + 0.05 * (np.sum(W0**2) + np.sum(W1**2))
        assert float(d["loss"]) == pytest.approx(E, rel=1e-12)
        # and the output-layer gradient from the same definitions
        delta2 = (a2 - y) * a2 * (1 - a2)
        np.testing.assert_allclose(d["grad_W1"], np.outer(delta2, a1) + 0.1 * W1, rtol=1e-10)
        np.testing.assert_allclose(d["grad_b1"], delta2, rtol=1e-10)


def test_invalid_config_exits_2(capsys):
    assert gradcheck.main(["network.init_scale=0"]) == 2
    assert "network.init_scale" in capsys.readouterr().err
