"""Gradient audit: the configured network and algorithm on random weights and data, the analytic
gradient against central finite differences, in float64.

    python -m forgetlab.gradcheck                                   # the default config
    python -m forgetlab.gradcheck network.activation=relu network.output=softmax network.loss=cross_entropy
    python -m forgetlab.gradcheck algorithm.l2=0.01 +dump=/tmp/mlp.npz
    python -m forgetlab.gradcheck network=rnn algorithm=rtrl network.loss_at=all +dump=/tmp/rnn.npz
    python -m forgetlab.gradcheck network=rnn algorithm=bptt_truncated algorithm.h=3 algorithm.h_prime=2

For BPTT(h; h') with h < T the reference is the truncated objective (each stretch run from the state
entering it, held fixed), of which the algorithm's gradient is the exact gradient.

Prints the worst relative error per parameter, max|g_analytic - g_numeric| / (max|g_analytic| + max|g_numeric|),
and exits 1 when any exceeds the tolerance (``+tol=``, default 1e-6); 2 on an invalid config.
With ``+dump=PATH.npz`` it writes the weights, the sample, the loss and the analytic gradient
(loadable with ``allow_pickle=False``; fields in the README).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from forgetlab.algorithms import AlgorithmConfig, LearningAlgorithm, build_algorithm
from forgetlab.config import Config, ConfigError, compose, typed
from forgetlab.data import Scenario, build_task_sequence
from forgetlab.networks import NETWORKS, build_network

DEFAULT_TOLERANCE = 1e-6
EPS = 1e-6


@dataclass
class Problem:
    """One random sample on which the gradient is checked."""

    algorithm: LearningAlgorithm
    x: np.ndarray  # (1, *input_shape)
    y: np.ndarray  # (1, n_outputs) one-hot target
    mask: np.ndarray  # (1, n_outputs), all units active


def make_problem(cfg: Config, seed: int = 0) -> Problem:
    """The configured network and algorithm, on the configured task's input shape and output count,
    with random weights, random nonzero biases and one random input and target."""
    rng = np.random.default_rng(seed)
    sequence = build_task_sequence(cfg.task_sequence)
    n_outputs = Scenario(cfg.task_sequence.scenario, sequence).n_outputs
    network = build_network(cfg.network, sequence.input_shape, n_outputs, rng)
    for name, p in network.params.items():
        if name not in network.weight_names:
            p[:] = rng.normal(scale=0.5, size=p.shape)
    x = rng.uniform(size=(1, *sequence.input_shape))
    y = np.zeros((1, n_outputs))
    y[0, rng.integers(n_outputs)] = 1.0
    return Problem(build_algorithm(cfg.algorithm, network), x, y, np.ones((1, n_outputs)))


def finite_difference(objective, params: dict[str, np.ndarray], eps: float = EPS) -> dict[str, np.ndarray]:
    """dE/dtheta by central differences, one entry at a time; ``objective()`` reads the live ``params``.

    An objective of several members (S,) is differentiated as its sum: each member's E depends on its
    own parameters only, so the derivative for member s's entries is member s's gradient."""
    grads = {}
    for name, p in params.items():
        g = np.empty_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            plus = float(np.sum(objective()))
            p[i] = old - eps
            minus = float(np.sum(objective()))
            p[i] = old
            g[i] = (plus - minus) / (2 * eps)
        grads[name] = g
    return grads


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max|a - b| / (max|a| + max|b|): scale-free, and 0 only when the two agree exactly."""
    return float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(a)) + np.max(np.abs(b))), 1e-12)


def numeric_gradient(problem: Problem, eps: float = EPS) -> dict[str, np.ndarray]:
    """Central differences of the objective the algorithm differentiates."""
    algo = problem.algorithm
    return finite_difference(algo.frozen_objective(problem.x, problem.y, problem.mask), algo.network.params, eps)


def relative_errors(analytic: dict[str, np.ndarray], numeric: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: relative_error(a, numeric[name]) for name, a in analytic.items()}


def check(cfg: Config, seed: int = 0) -> tuple[Problem, dict[str, np.ndarray], dict[str, float]]:
    """(problem, analytic gradient, worst relative error per parameter)."""
    problem = make_problem(cfg, seed)
    _, analytic = problem.algorithm.gradient(problem.x, problem.y, problem.mask)
    return problem, analytic, relative_errors(analytic, numeric_gradient(problem))


def dump(problem: Problem, analytic: dict[str, np.ndarray], cfg: Config, path: str | Path) -> None:
    """Weights, sample, loss and analytic gradient as an .npz (no pickled objects), of the audited
    network's one member: arrays without the member axis."""
    algo = problem.algorithm
    net = algo.network
    meta = {"activation": net.activation, "output": net.output, "loss": net.loss, "l2": float(algo.l2[0]),
            "algorithm": cfg.algorithm.name, "network": cfg.network.name}
    arrays = {name: p[0].copy() for name, p in net.params.items()}
    arrays.update({f"grad_{name}": g[0] for name, g in analytic.items()})
    x, y = problem.x[0], problem.y[0]
    if NETWORKS[cfg.network.name].reads == "sequence":
        # A sequence: the target repeated at every step, and which steps carry loss.
        meta["loss_at"] = net.loss_at
        base = {f.name for f in fields(AlgorithmConfig)}
        meta.update({f.name: getattr(cfg.algorithm, f.name) for f in fields(cfg.algorithm) if f.name not in base})
        T = len(x)
        y = np.tile(y, (T, 1))
        arrays["mask"] = np.isin(np.arange(T), net.loss_steps(T)).astype(np.float64)
    arrays.update(x=x, y=y, loss=np.float64(algo.objective(problem.x, problem.y, problem.mask)[0]),
                  meta=np.array(json.dumps(meta)))
    np.savez(path, **arrays)


def parse_arguments(argv: list[str]) -> list[str]:
    """``--help`` answers with this module's doc; everything else is a Hydra override or an option
    (``+dump=``, ``+tol=``), passed through as written."""
    parser = argparse.ArgumentParser(
        prog="python -m forgetlab.gradcheck", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config groups and keys: python experiments/train.py --help",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="Hydra overrides of the config (as for experiments/train.py), +dump=PATH.npz, +tol=X")
    return parser.parse_args(argv).overrides


def main(argv: list[str] | None = None) -> int:
    argv = parse_arguments(list(sys.argv[1:] if argv is None else argv))
    options = {a.split("=", 1)[0][1:]: a.split("=", 1)[1] for a in argv if a.startswith(("+dump=", "+tol="))}
    overrides = [a for a in argv if not a.startswith(("+dump=", "+tol="))]
    tolerance = float(options.get("tol", DEFAULT_TOLERANCE))
    composed = compose(overrides)
    reads = NETWORKS[composed.network.name].reads if composed.network.name in NETWORKS else None
    if reads and not any(o.startswith("task_sequence.input=") for o in overrides):
        composed.task_sequence.input = reads  # the audit takes only the input shape from the task
    try:
        cfg = typed(composed)
    except ConfigError as error:
        print(f"Invalid config: {error}", file=sys.stderr)
        return 2
    problem, analytic, errors = check(cfg)
    net = problem.algorithm.network
    print(f"gradient audit: network={cfg.network.name} algorithm={cfg.algorithm.name} activation={net.activation} "
          f"output={net.output} loss={net.loss} l2={float(problem.algorithm.l2[0])} tolerance={tolerance:g}")
    for name in net.params:
        err = errors[name]
        flag = "ok" if err <= tolerance else "FAIL"
        print(f"  {name:<8} shape={str(analytic[name].shape[1:]):<12} worst relative error {err:.2e}  {flag}")
    if "dump" in options:
        dump(problem, analytic, cfg, options["dump"])
        print(f"wrote {options['dump']}")
    worst = max(errors.values())
    print(f"{'PASS' if worst <= tolerance else 'FAIL'}: worst relative error {worst:.2e}")
    return 0 if worst <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
