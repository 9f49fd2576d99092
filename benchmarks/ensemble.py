"""Ensembles: per-member updates/s of S members trained as stacked arrays, against S = 1 and against
PyTorch doing the same S-member per-sample training.

    .venv/bin/pip install -e ".[bench]"          # torch (CPU), the `bench` extra; without it the peer is skipped
    .venv/bin/python benchmarks/ensemble.py --json [--sizes 1 8 32] [--repeats 3] [--sequences 150]

All in one process, one BLAS and one torch thread. Workloads: the default config (MLP 64-64-10,
per-sample backprop, split digits, 5 tasks x 5 epochs) and the RNN (H = 32, digits read row by row)
with each recurrent algorithm at its default settings, RTRL also in its forward form, and RTRL at the
credit-assignment study's size (MNIST rows, loss at every step) in each form. Members are the config
with seeds 0..S-1. For each workload and S:

- ``learn``: the learning algorithm alone, replaying the batches the trainer handed it (MLP: a whole
  training run; RNN: the first ``--sequences`` sequences of each member's order of task 0);
- ``run`` (MLP only): ``Trainer.run()`` of the default config, untracked: training with the default
  evaluation schedule (a point every 100 samples: all members scored on 450 test + 100 probe samples);
- ``torch vmap`` (MLP, and epochwise BPTT): PyTorch as a user would write S members: parameters stacked
  on a leading axis, ``torch.func.vmap(torch.func.grad(loss))`` per step, ``p -= lr * g``, replaying the
  same batches from the same initial weights; ``torch eager`` (S = 1): ``nn.Linear`` layers with
  ``torch.optim.SGD`` (benchmarks/per_sample_backprop.py). Their final weights are checked against
  forgetlab's before timing (``--tolerance``).

Per-member updates/s = S x weight updates / seconds. Times are medians over ``--repeats``
repetitions, each timing every workload and S in turn (round robin), in CPU time of this process (less disturbed by other processes than wall
time, which is reported too). ``os.getloadavg()`` is recorded before and after.
With ``--json`` the last line is one JSON object.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from forgetlab.config import register_configs, typed, validate  # noqa: E402
from forgetlab.assembly import build_ensemble_trainer  # noqa: E402

try:
    import torch
except ImportError:  # the peer is optional
    torch = None

WORKLOADS = {
    "mlp_backprop": [],
    "rnn_bptt_epochwise": ["learner=rnn_bptt_epochwise"],
    "rnn_bptt_truncated": ["learner=rnn_bptt_truncated"],
    "rnn_rtrl": ["learner=rnn_rtrl"],  # the auto rule runs its reverse form
    "rnn_rtrl_forward": ["learner=rnn_rtrl", "algorithm.implementation=forward"],
    # the credit-assignment study's RTRL (MNIST rows: T = 28 steps of 28 inputs, loss at every step), each form
    "rnn_rtrl_study_forward": ["learner=credit_assignment/rtrl", "task_sequence=split_mnist",
                               "task_sequence.max_train_per_task=400", "algorithm.implementation=forward"],
    "rnn_rtrl_study_reverse": ["learner=credit_assignment/rtrl", "task_sequence=split_mnist",
                               "task_sequence.max_train_per_task=400", "algorithm.implementation=reverse"],
}


def compose_configs(overrides: list[str], S: int):
    register_configs()
    cfgs = []
    for seed in range(S):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = typed(compose(config_name="config", overrides=[*overrides, "tracking.enabled=false", f"seed={seed}"]))
        validate(cfg)
        cfgs.append(cfg)
    GlobalHydra.instance().clear()
    return cfgs


class Timer:
    """Median CPU and wall seconds of the timed blocks."""

    def __init__(self) -> None:
        self.cpu, self.wall = [], []

    def __enter__(self):
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu.append(time.process_time() - self._cpu)
        self.wall.append(time.perf_counter() - self._wall)

    @property
    def median(self) -> tuple[float, float]:
        return statistics.median(self.cpu), statistics.median(self.wall)


def recorded_batches(trainer, sequences: int | None):
    """The (x, y, mask) batches, each (S, B, ...), that ``trainer`` hands its algorithm: a whole run
    (``sequences`` None, the run's results returned too), or the first ``sequences`` sequences of each
    member's order of the first task (nothing is trained)."""
    if sequences is None:
        batches, learn = [], trainer.algorithm.learn

        def recording(x, y, mask):
            batches.append((x.copy(), y.copy(), mask.copy()))
            return learn(x, y, mask)

        trainer.algorithm.learn = recording
        results = trainer.run()
        trainer.algorithm.learn = learn
        return batches, results
    stage = trainer.stages[0]
    orders = np.stack([rng.permutation(len(stage.x)) for rng in trainer.rngs])[:, :sequences]
    x, y, mask = stage.x[orders], stage.y[orders], stage.mask[orders]
    return [(x[:, i : i + 1], y[:, i : i + 1], mask[:, i : i + 1]) for i in range(sequences)], None


def replay(algorithm, batches) -> None:
    for x, y, mask in batches:
        algorithm.learn(x, y, mask)


# --- the PyTorch peer ---------------------------------------------------------------------------


def torch_mlp_loss(net):
    """The loss of one member as a function of its parameters (W0, b0, W1, b1, ...), for torch.func."""
    from benchmarks.per_sample_backprop import TORCH_ACTIVATIONS, torch_loss

    act, output, loss, L = TORCH_ACTIVATIONS[net.activation], net.output, net.loss, len(net.W)

    def member_loss(params, x, y, mask):
        a = x
        for l in range(L):
            z = a @ params[2 * l].T + params[2 * l + 1]
            if l < L - 1:
                a = act(z)
            elif output == "sigmoid":
                a = torch.sigmoid(z) * mask
            else:
                a = torch.softmax(z.masked_fill(mask == 0, -torch.inf), dim=-1)
        return torch_loss(output, loss, a, y, mask).mean()

    return member_loss


def torch_rnn_loss(net):
    """Epochwise BPTT's loss of one member's sequence x (1, T, I) (tanh or sigmoid units, the network's
    output and loss at its loss steps, mean over them), for torch.func."""
    from benchmarks.per_sample_backprop import TORCH_ACTIVATIONS, torch_loss

    act, output, loss, loss_at = TORCH_ACTIVATIONS[net.activation], net.output, net.loss, net.loss_at

    def member_loss(params, x, y, mask):
        W_xh, W_hh, b_h, W_hy, b_y = params
        T = x.shape[1]
        h = torch.zeros(x.shape[0], W_hh.shape[0], dtype=x.dtype)
        losses = []
        for t in range(T):
            h = act(h @ W_hh.T + x[:, t] @ W_xh.T + b_h)
            if loss_at == "all" or t == T - 1:
                z = h @ W_hy.T + b_y
                a = torch.sigmoid(z) * mask if output == "sigmoid" else torch.softmax(
                    z.masked_fill(mask == 0, -torch.inf), dim=-1)
                losses.append(torch_loss(output, loss, a, y, mask))
        return torch.stack(losses).mean()

    return member_loss


class TorchEnsemble:
    """S members as stacked parameter tensors, trained per sample with vmap(grad(loss)) and SGD."""

    def __init__(self, network, algorithm, member_loss) -> None:
        self.params = tuple(torch.tensor(p) for p in network.params.values())
        self.is_weight = [name in network.weight_names for name in network.params]
        self.lr = [torch.tensor(algorithm.lr_of[name]) for name in network.params]
        self.l2 = [torch.tensor(algorithm.l2_of[name]) for name in network.params]
        self.step = torch.func.vmap(torch.func.grad(member_loss))

    def train(self, batches) -> None:
        for x, y, mask in batches:
            grads = self.step(self.params, x, y, mask)
            with torch.no_grad():
                for p, g, lr, l2, weight in zip(self.params, grads, self.lr, self.l2, self.is_weight):
                    p -= lr * (g + l2 * p if weight else g)

    def weights(self) -> dict[str, np.ndarray]:
        return [p.numpy() for p in self.params]


def as_tensors(batches):
    return [tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in b) for b in batches]


def max_difference(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(p) - np.asarray(q)))) for p, q in zip(a, b))


# --- measurements -------------------------------------------------------------------------------


class Measurement:
    """One workload at one S: its recorded batches, checks, and the timed pieces."""

    def __init__(self, name: str, overrides: list[str], S: int, args) -> None:
        cfgs = compose_configs(overrides, S)
        self.cfgs, self.S, self.mlp = cfgs, S, cfgs[0].network.name == "mlp"
        recorder = build_ensemble_trainer(cfgs)
        self.batches, _ = recorded_batches(recorder, None if self.mlp else args.sequences)
        reference = build_ensemble_trainer(cfgs)
        replay(reference.algorithm, self.batches)  # the weights the peer must reach; warms every path
        final = [p.copy() for p in reference.network.params.values()]
        if self.mlp:
            np.testing.assert_array_equal(final[0], recorder.network.params["W0"])  # the replay is the run
        self.row = {"workload": name, "S": S, "updates": reference.algorithm.updates, "samples": len(self.batches)}
        self.timers = {k: Timer() for k in ("learn", "run", "torch_vmap", "torch_eager")}
        self.loss = None
        if torch is not None and (self.mlp or cfgs[0].algorithm.name == "bptt_epochwise"):
            fresh = build_ensemble_trainer(cfgs)
            self.loss = torch_mlp_loss(fresh.network) if self.mlp else torch_rnn_loss(fresh.network)
            self.tensors = as_tensors(self.batches)
            check = TorchEnsemble(fresh.network, fresh.algorithm, self.loss)
            check.train(self.tensors)
            self.row["torch_max_abs_weight_difference"] = difference = max_difference(check.weights(), final)
            if not difference <= args.tolerance:
                sys.exit(f"{name} S={S}: torch and forgetlab disagree: max |dW| = {difference:.3g} > {args.tolerance:g}")

    def time_once(self) -> None:
        fresh = build_ensemble_trainer(self.cfgs)
        with self.timers["learn"]:
            replay(fresh.algorithm, self.batches)
        if self.mlp:
            fresh = build_ensemble_trainer(self.cfgs)
            with self.timers["run"]:
                fresh.run()
        if self.loss is not None:
            fresh = build_ensemble_trainer(self.cfgs)
            model = TorchEnsemble(fresh.network, fresh.algorithm, self.loss)
            with self.timers["torch_vmap"]:
                model.train(self.tensors)
            if self.S == 1 and self.mlp:
                from benchmarks.per_sample_backprop import TorchMLP, torch_sgd, torch_train

                eager = TorchMLP(fresh.network)
                optimizer = torch_sgd(eager, self.cfgs[0].algorithm.lr, self.cfgs[0].algorithm.l2)
                one = [tuple(t[0] for t in b) for b in self.tensors]
                with self.timers["torch_eager"]:
                    torch_train(eager, optimizer, one, fresh.network.output, fresh.network.loss)

    def result(self) -> dict:
        row, updates = dict(self.row), self.row["updates"]
        for key, timer in self.timers.items():
            if timer.cpu:
                cpu, wall = timer.median
                row[f"{key}_member_updates_per_s"] = self.S * updates / cpu
                row[f"{key}_member_updates_per_s_wall"] = self.S * updates / wall
        return row


def gemm_rate() -> float:
    """GFLOP/s of a bare (256 x 256) @ (256 x 256) float64 GEMM on one thread: the machine's limit."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(256, 256)), rng.normal(size=(256, 256))
    best = np.inf
    for _ in range(20):
        start = time.process_time()
        for _ in range(20):
            a @ b
        best = min(best, (time.process_time() - start) / 20)
    return 2 * 256**3 / best / 1e9


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32], help="ensemble sizes S")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each measurement")
    parser.add_argument("--sequences", type=int, default=150, help="sequences per member for the RNN workloads")
    parser.add_argument("--tolerance", type=float, default=1e-10, help="max |W_forgetlab - W_torch| allowed")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    args = parser.parse_args()
    if torch is not None:
        torch.set_num_threads(1)

    load_before = os.getloadavg()
    with threadpool_limits(limits=1, user_api="blas"):
        peak = gemm_rate()
        measurements = [Measurement(name, WORKLOADS[name], S, args) for name in args.workloads for S in args.sizes]
        for repeat in range(args.repeats):  # round robin, so that load from other processes hits all alike
            for m in measurements:
                m.time_once()
            print(f"  repeat {repeat + 1} of {args.repeats} done, load average {os.getloadavg()[0]:.1f}", flush=True)
    load_after = os.getloadavg()
    rows = [m.result() for m in measurements]

    for row in rows:
        base = next(r for r in rows if r["workload"] == row["workload"] and r["S"] == min(args.sizes))
        for key in ("learn", "run"):
            if f"{key}_member_updates_per_s" in row:
                row[f"{key}_vs_S1"] = row[f"{key}_member_updates_per_s"] / base[f"{key}_member_updates_per_s"]
        if "torch_vmap_member_updates_per_s" in row:
            for key in ("learn", "run"):
                if f"{key}_member_updates_per_s" in row:
                    row[f"{key}_vs_torch_vmap"] = row[f"{key}_member_updates_per_s"] / row["torch_vmap_member_updates_per_s"]
        if "torch_eager_member_updates_per_s" in row:
            for key in ("learn", "run"):
                row[f"{key}_vs_torch_eager"] = row[f"{key}_member_updates_per_s"] / row["torch_eager_member_updates_per_s"]

    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, load average {load_before[0]:.1f} -> {load_after[0]:.1f} "
          f"(5 min {load_before[1]:.1f} -> {load_after[1]:.1f}); python {platform.python_version()}, numpy "
          f"{np.__version__}, torch {torch.__version__ if torch else 'absent'}; one thread; bare GEMM {peak:.1f} GFLOP/s")
    print(f"per-member updates/s (CPU time; medians of {args.repeats})")
    header = f"{'workload':<24} {'S':>3} {'learn':>9} {'run':>9} {'torch vmap':>11} {'torch eager':>11} " \
             f"{'learn/S1':>9} {'run/S1':>7} {'run/vmap':>9} {'run/eager':>9} {'max |dW|':>9}"
    print(header)

    def fmt(row, key, spec):
        value = row.get(key)
        return format(value, spec) if value is not None else "-"

    for r in rows:
        print(f"{r['workload']:<24} {r['S']:>3} {fmt(r, 'learn_member_updates_per_s', ',.0f'):>9} "
              f"{fmt(r, 'run_member_updates_per_s', ',.0f'):>9} {fmt(r, 'torch_vmap_member_updates_per_s', ',.0f'):>11} "
              f"{fmt(r, 'torch_eager_member_updates_per_s', ',.0f'):>11} {fmt(r, 'learn_vs_S1', '.2f'):>9} "
              f"{fmt(r, 'run_vs_S1', '.2f'):>7} {fmt(r, 'run_vs_torch_vmap', '.2f'):>9} "
              f"{fmt(r, 'run_vs_torch_eager', '.2f'):>9} {fmt(r, 'torch_max_abs_weight_difference', '.1e'):>9}")
    result = {"rows": rows, "load_before": load_before, "load_after": load_after, "gemm_gflops": peak,
              "repeats": args.repeats, "sequences": args.sequences}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
