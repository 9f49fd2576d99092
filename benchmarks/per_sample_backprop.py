"""Per-sample backprop: forgetlab's trainer against a PyTorch eager SGD loop on the identical network.

    .venv/bin/pip install -e ".[bench]"            # torch (CPU), the `bench` extra
    .venv/bin/python benchmarks/per_sample_backprop.py [--repeats 7] [--json] [hydra overrides ...]

All in one process, on the config composed from ``conf/`` (defaults plus the overrides given):

(a) forgetlab, tracked: ``run_experiment(cfg)`` end to end (build data, network and trainer, train,
    evaluate on the configured schedule, log to a temporary sqlite MLflow store, write artifacts);
(b) the same with ``tracking.enabled=false``; tracking overhead = (t_on - t_off) / t_off; and, to show
    where the time goes, also with ``eval.every_samples=0`` (evaluated only before training and at task ends);
(c) PyTorch eager: the same network (sizes, activations, output, loss, L2 on weights only), initial
    weights copied from forgetlab, replaying the very (x, y, mask) batches forgetlab's trainer handed
    its algorithm, in order, in float64: zero_grad, forward, loss, backward, SGD step per batch, and
    nothing else (no evaluation, no tracking, no data loading: only the loop is timed).

Updates/s = weight updates of the run / wall time. Each measurement is repeated, interleaved with the
others, and the medians of wall and CPU time are reported (the machine is shared and noisy). With ``--json`` the last line is one JSON object.
Before timing, the script checks that torch computes the same thing: after replaying every batch the
torch weights must equal forgetlab's to ``--tolerance``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))



def arguments() -> argparse.ArgumentParser:
    """The command line; defined before torch is imported, so that --help answers without it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the benchmarked config")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions of each measurement")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--tolerance", type=float, default=1e-8, help="max |W_forgetlab - W_torch| allowed")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    return parser


if __name__ == "__main__":
    arguments().parse_args()  # --help, or a bad option, ends here
try:
    import torch  # noqa: E402
except ModuleNotFoundError as missing:  # the comparison needs it; forgetlab itself does not
    raise SystemExit("benchmarks/per_sample_backprop.py compares forgetlab with torch, which is not installed: "
                     "pip install -e '.[bench]'") from missing
from omegaconf import DictConfig  # noqa: E402

from forgetlab.config import compose, typed, validate  # noqa: E402
from forgetlab.assembly import build_trainer  # noqa: E402
from forgetlab.experiment import RunContext, run_experiment  # noqa: E402
from forgetlab.networks.mlp import MLP  # noqa: E402

TORCH_ACTIVATIONS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
_EPS = 1e-12  # as forgetlab.networks.functions: keeps log() finite


class TorchMLP(torch.nn.Module):
    """forgetlab's MLP in torch: z = W a + b per layer, hidden f(z), output g(z) with the unit mask."""

    def __init__(self, mlp: MLP) -> None:
        super().__init__()
        self.activation, self.output = TORCH_ACTIVATIONS[mlp.activation], mlp.output
        self.layers = torch.nn.ModuleList()
        for W, b in zip(mlp.W, mlp.b):  # the network's one member
            layer = torch.nn.Linear(W.shape[2], W.shape[1], dtype=torch.float64)
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(W[0]))
                layer.bias.copy_(torch.from_numpy(b[0]))
            self.layers.append(layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        z = self.layers[-1](x)
        if self.output == "sigmoid":
            return torch.sigmoid(z) * mask
        return torch.softmax(z.masked_fill(mask == 0, -torch.inf), dim=-1)


def torch_loss(output: str, loss: str, a: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample loss, the same formulas as forgetlab.networks.functions.loss."""
    if loss == "mse":
        return 0.5 * (mask * (a - y) ** 2).sum(dim=-1)
    log_a = torch.log(a.clamp(min=_EPS))
    if output == "softmax":
        return -(mask * y * log_a).sum(dim=-1)
    log_1ma = torch.log((1.0 - a).clamp(min=_EPS))
    return -(mask * (y * log_a + (1.0 - y) * log_1ma)).sum(dim=-1)


def torch_sgd(model: TorchMLP, lr: float, l2: float) -> torch.optim.SGD:
    """Plain SGD; L2 (weight decay) on the weights only, as forgetlab's objective."""
    weights = [layer.weight for layer in model.layers]
    biases = [layer.bias for layer in model.layers]
    return torch.optim.SGD([{"params": weights, "weight_decay": l2}, {"params": biases, "weight_decay": 0.0}], lr=lr)


def torch_train(model: TorchMLP, optimizer: torch.optim.Optimizer, batches, output: str, loss: str) -> None:
    """The eager per-sample (per-batch) SGD loop that is timed."""
    for x, y, mask in batches:
        optimizer.zero_grad()
        E = torch_loss(output, loss, model(x, mask), y, mask).mean()
        E.backward()
        optimizer.step()


class RecordingAlgorithm:
    """Hands every batch to a learning algorithm and keeps a copy of it (the data torch replays)."""

    def __init__(self, algorithm) -> None:
        self.algorithm, self.batches = algorithm, []

    def learn(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.batches.append((x[0].copy(), y[0].copy(), mask[0].copy()))  # the batch of the one member
        return self.algorithm.learn(x, y, mask)

    def __getattr__(self, name):
        return getattr(self.algorithm, name)


@dataclass
class Recording:
    initial: MLP  # a copy of the network before training
    final: dict[str, np.ndarray]  # its parameters after training
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (x, y, mask) of every update, in order
    eval_points: int


def record_run(cfg: DictConfig) -> Recording:
    """Train once with forgetlab, without tracking, recording what the algorithm was handed."""
    trainer = build_trainer(cfg)
    initial = _copy_network(trainer.network)
    recorder = RecordingAlgorithm(trainer.algorithm)
    trainer.algorithm = recorder
    (result,) = trainer.run()
    final = {k: v[0].copy() for k, v in trainer.network.params.items()}
    return Recording(initial, final, recorder.batches, len(result.points))


def _copy_network(mlp: MLP) -> MLP:
    clone = MLP(mlp.sizes, mlp.activation, mlp.output, mlp.loss)
    for name, value in mlp.params.items():
        clone.params[name][...] = value
    return clone


def as_tensors(batches) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(torch.from_numpy(np.ascontiguousarray(arr)) for arr in batch) for batch in batches]


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds: what updates/s are computed from
    cpu: float  # seconds of this process's CPU time: less sensitive to other processes' load


@contextlib.contextmanager
def timed(into: list[Timing]):
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append(Timing(time.perf_counter() - wall, time.process_time() - cpu))


def replay_in_torch(init_net: MLP, cfg: DictConfig, batches, timings: list[Timing] | None = None) -> TorchMLP:
    """A torch copy of ``init_net`` trained on ``batches``; the loop's timing is appended to ``timings``."""
    model = TorchMLP(init_net)
    optimizer = torch_sgd(model, cfg.algorithm.lr, cfg.algorithm.l2)
    with timed(timings if timings is not None else []):
        torch_train(model, optimizer, batches, init_net.output, init_net.loss)
    return model


def torch_params(model: TorchMLP) -> dict[str, np.ndarray]:
    out = {}
    for l, layer in enumerate(model.layers):
        out[f"W{l}"] = layer.weight.detach().numpy().copy()
        out[f"b{l}"] = layer.bias.detach().numpy().copy()
    return out


def max_abs_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def time_run(cfg: DictConfig, timings: list[Timing] | None = None) -> None:
    """One ``run_experiment`` (as a multirun job: no progress bar, its task lines discarded)."""
    with contextlib.redirect_stdout(io.StringIO()), timed(timings if timings is not None else []):
        run_experiment(cfg, RunContext(quiet=True))


def describe(cfg: DictConfig, rec: Recording) -> str:
    net, alg, trainer, ts = cfg.network, cfg.algorithm, cfg.trainer, cfg.task_sequence
    sizes = "-".join(map(str, rec.initial.sizes))
    return (
        f"mlp {sizes} {net.activation}/{net.output}/{net.loss}, float64; {alg.name} lr={alg.lr} l2={alg.l2} "
        f"batch={trainer.batch_size} epochs/task={trainer.epochs_per_task}; {ts.name} {ts.scenario}-IL joint={ts.joint}; "
        f"eval every {cfg.eval.every_samples} samples ({rec.eval_points} points), probe {cfg.eval.probe_per_task}/task; "
        f"{len(rec.batches)} updates"
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = arguments().parse_args(argv)
    torch.set_num_threads(args.torch_threads)

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="forgetlab-bench-") as tmp:
        store = [
            f"tracking.uri=sqlite:///{tmp}/mlflow.db",
            f"tracking.artifact_location={tmp}/artifacts",
            "tracking.experiment=benchmark",
        ]
        cfg_on = typed(compose([*args.overrides, *store, "tracking.enabled=true"]))
        cfg_off = typed(compose([*args.overrides, *store, "tracking.enabled=false"]))
        # Where the time goes: the same run evaluated only before training and at task ends.
        cfg_loop = typed(compose([*args.overrides, *store, "tracking.enabled=false", "eval.every_samples=0"]))
        validate(cfg_on)
        if cfg_on.network.name != "mlp" or cfg_on.algorithm.name != "backprop":
            parser.error("this benchmark compares network=mlp with algorithm=backprop")

        # Untimed: the batches torch replays, the equivalence check, and warm-up of every path
        # (imports, the sqlite store's schema, torch's first-call set-up).
        rec = record_run(cfg_off)
        updates = len(rec.batches)
        tensors = as_tensors(rec.batches)
        model = replay_in_torch(rec.initial, cfg_on, tensors)
        difference = max_abs_difference(rec.final, torch_params(model))
        if not difference <= args.tolerance:
            sys.exit(f"torch and forgetlab disagree: max |W_forgetlab - W_torch| = {difference:.3g} > {args.tolerance:g}")
        time_run(cfg_on)
        time_run(cfg_off)
        time_run(cfg_loop)

        timings: dict[str, list[Timing]] = {"on": [], "off": [], "loop": [], "torch": []}
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits all alike
            time_run(cfg_on, timings["on"])
            time_run(cfg_off, timings["off"])
            time_run(cfg_loop, timings["loop"])
            replay_in_torch(rec.initial, cfg_on, tensors, timings["torch"])

    wall = {name: statistics.median(t.wall for t in ts) for name, ts in timings.items()}
    cpu = {name: statistics.median(t.cpu for t in ts) for name, ts in timings.items()}
    result = {
        "forgetlab_updates_per_s": updates / wall["on"],
        "torch_updates_per_s": updates / wall["torch"],
        "ratio": wall["torch"] / wall["on"],
        "tracking_overhead": (wall["on"] - wall["off"]) / wall["off"],
        "forgetlab_untracked_updates_per_s": updates / wall["off"],
        "forgetlab_boundary_eval_only_updates_per_s": updates / wall["loop"],
        "cpu_ratio": cpu["torch"] / cpu["on"],
        "cpu_tracking_overhead": (cpu["on"] - cpu["off"]) / cpu["off"],
        "updates": updates,
        "repeats": args.repeats,
        "max_abs_weight_difference": difference,
    }

    print(f"config: {' '.join(args.overrides) or '(defaults)'}: {describe(cfg_on, rec)}")
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f}; "
        f"python {platform.python_version()}, numpy {np.__version__} (BLAS threads {_blas_threads()}; 1 inside "
        f"Trainer.run), torch {torch.__version__} (threads {torch.get_num_threads()})"
    )
    print(f"check: max |W_forgetlab - W_torch| after {updates} updates = {difference:.2e}")
    print(f"medians of {args.repeats}:{'wall s':>37} {'updates/s':>10} {'CPU s':>8}   all wall times")
    labels = {
        "on": "forgetlab, tracking on",
        "off": "forgetlab, tracking off",
        "loop": "forgetlab, off, eval at task ends only",
        "torch": "torch eager loop",
    }
    for name, label in labels.items():
        times = " ".join(f"{t.wall:.3f}" for t in timings[name])
        print(f"  {label:40s} {wall[name]:8.4f} {updates / wall[name]:10.0f} {cpu[name]:8.4f}   [{times}]")
    print(f"ratio forgetlab (tracked) / torch = {result['ratio']:.2f}x wall, {result['cpu_ratio']:.2f}x CPU   (target >= 5x)")
    print(
        f"tracking overhead = {100 * result['tracking_overhead']:.1f} % wall, "
        f"{100 * result['cpu_tracking_overhead']:.1f} % CPU   (target <= 5 %)"
    )
    if args.json:
        print(json.dumps(result))
    return result


def _blas_threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ",".join(str(p["num_threads"]) for p in threadpool_info() if p["user_api"] == "blas") or "?"
    except ImportError:
        return "?"


if __name__ == "__main__":
    main()
