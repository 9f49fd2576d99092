"""benchmarks/recurrent_cost.py: its PyTorch peer makes forgetlab's epochwise BPTT update, and its
--json line carries the RTRL/GEMM ratio."""

import json
import subprocess
import sys

import numpy as np
import pytest

from forgetlab.algorithms.bptt_epochwise import BPTTEpochwise
from tests.conftest import ROOT


def test_torch_peer_makes_the_same_update_as_epochwise_bptt():
    torch = pytest.importorskip("torch")
    from benchmarks.recurrent_cost import problem, torch_bptt

    net, x, y, mask = problem(H=6, T=5, seed=3)
    params, learn = torch_bptt(net, lr=0.3)
    for _ in range(3):
        learn(torch.tensor(x[0]), torch.tensor(y[0]))
        BPTTEpochwise(net, lr=0.3).learn(x, y, mask)
    for name, p in net.params.items():
        np.testing.assert_allclose(params[name].detach().numpy(), p[0], rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_json_line_holds_the_rtrl_gemm_ratio_per_hidden_size():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recurrent_cost.py"), "--hidden", "4", "8", "--lengths", "3",
         "--bptt-hidden", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["rtrl_gemm_ratio"]) == {"4", "8"}
    assert all(r > 0 for r in result["rtrl_gemm_ratio"].values())
    algorithms = {row["algorithm"] for row in result["steps"]}
    assert {"bptt", "tbptt", "rtrl"} <= algorithms
    rtrl_memory = [row["peak_kib"] for row in result["steps"] if row["algorithm"] == "rtrl"]
    assert rtrl_memory[1] > rtrl_memory[0]  # the sensitivity tensor grows with H
