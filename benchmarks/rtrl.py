"""Exact RTRL's two forms and BPTT(h; 1)'s step, measured against an earlier commit's code in one process.

    git archive 9b97730 | tar -x -C /tmp/forgetlab_before     # the code to compare against (any checkout)
    .venv/bin/python benchmarks/rtrl.py --before /tmp/forgetlab_before --json    # ~10 min on the 2-core machine
    .venv/bin/python benchmarks/rtrl.py --fit                                     # the auto rule's constants, ~3 min

``--before DIR`` imports the forgetlab of DIR/src beside this one (``sys.modules`` holds its modules
only while it composes, builds and runs), so "before" and "after" run in turn in one process, on
one BLAS thread, each timed in CPU seconds (``time.process_time``; the machine is shared), medians
of ``--repeats`` rounds that time every variant in turn. The load average is printed before and after.

- **runs**: the credit-assignment study's RTRL run (split MNIST read as rows: T = 28 steps of 28
  inputs, H = 32, 400 training images a task, 5 tasks, one epoch, an evaluation every 200 samples,
  untracked) with ``network.loss_at=last`` and ``all``: before, after with ``implementation=auto``
  and after with ``implementation=forward``. Numbers: the largest difference of any final weight and of
  any entry of the accuracy matrix against before.
- **bptt**: ``learn`` of BPTT(h; 1), h = 1, 4, 12, on the first ``--sequences`` sequences of that
  task sequence, loss at every step: microseconds per step, Python-level calls per step (cProfile's
  count), and whether the final weights are bit-identical to before.
- **--fit**: both RTRL forms' ``learn`` over a grid of H, T, loss placements and update periods, and
  the least-squares fit of the cost model in ``forgetlab.algorithms.rtrl.form_costs`` (the auto rule).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import cProfile  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import forgetlab  # noqa: E402, F401  (this checkout's package, imported first)

STUDY = ["learner=credit_assignment/rtrl", "task_sequence=split_mnist", "task_sequence.max_train_per_task=400",
         "task_sequence.val_size=0.2", "eval.every_samples=200", "tracking.enabled=false", "algorithm.lr=0.03"]


def _forgetlab_modules() -> dict:
    return {k: m for k, m in sys.modules.items() if k == "forgetlab" or k.startswith("forgetlab.")}


class Code:
    """One version of forgetlab: this checkout's (``root`` None) or the one at ``root``, whose modules
    are in ``sys.modules`` only inside ``active()``."""

    def __init__(self, root: Path | None) -> None:
        self.root, self.modules = root, None
        with self.active():
            config, assembly, algorithms, rnn = (importlib.import_module(f"forgetlab.{name}") for name in
                                                 ("config", "assembly", "algorithms", "networks.rnn"))
            self.api = types.SimpleNamespace(compose=config.compose, build_trainer=assembly.build_trainer,
                                             BPTTTruncated=algorithms.BPTTTruncated, RNN=rnn.RNN)

    @contextlib.contextmanager
    def active(self):
        if self.root is None:
            yield
            return
        ours = _forgetlab_modules()
        for name in ours:
            del sys.modules[name]
        if self.modules is None:
            sys.path.insert(0, str(self.root / "src"))
        else:
            sys.modules.update(self.modules)
        try:
            yield
        finally:
            if self.modules is None:
                sys.path.remove(str(self.root / "src"))
            self.modules = _forgetlab_modules()
            for name in self.modules:
                del sys.modules[name]
            sys.modules.update(ours)


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def final_weights(trainer) -> np.ndarray:
    return np.concatenate([np.asarray(p).ravel() for _, p in sorted(trainer.network.params.items())])


# --- the study's RTRL run -------------------------------------------------------------------------


def run_variants(before: Code | None, after: Code) -> dict:
    """name -> (code, overrides) of every variant of the study's RTRL run."""
    variants = {}
    for loss_at in ("last", "all"):
        common = [*STUDY, f"network.loss_at={loss_at}"]
        if before is not None:
            variants[f"{loss_at}/before"] = (before, common)
        variants[f"{loss_at}/auto"] = (after, [*common, "algorithm.implementation=auto"])
        variants[f"{loss_at}/forward"] = (after, [*common, "algorithm.implementation=forward"])
    return variants


def time_runs(variants: dict, repeats: int) -> dict:
    times = {name: [] for name in variants}
    results = {}
    for repeat in range(repeats):
        for name, (code, overrides) in variants.items():
            with code.active():
                trainer = code.api.build_trainer(code.api.compose(overrides))
                seconds = cpu_seconds(lambda: results.__setitem__(name, trainer.run()[0]))
                weights = final_weights(trainer)
                chosen = getattr(trainer.algorithm, "implementation_for", lambda T: "forward (before)")(28)
            times[name].append(seconds)
            results[name] = (results[name].accuracy_matrix, weights, chosen)
            print(f"  {name:<14} {seconds:6.2f} s CPU  ({chosen}; load {os.getloadavg()[0]:.1f})", file=sys.stderr,
                  flush=True)
    rows = {}
    for name in variants:
        loss_at, variant = name.split("/")
        reference = results.get(f"{loss_at}/before", results[f"{loss_at}/forward"])
        R, W, chosen = results[name]
        rows[name] = {"cpu_s": statistics.median(times[name]), "form": chosen,
                      "max_abs_weight_difference": float(np.max(np.abs(W - reference[1]))),
                      "max_abs_accuracy_difference": float(np.max(np.abs(R - reference[0])))}
    for name, row in rows.items():
        loss_at = name.split("/")[0]
        base = rows.get(f"{loss_at}/before", rows[f"{loss_at}/forward"])
        row["speedup"] = base["cpu_s"] / row["cpu_s"]
    return rows


# --- BPTT(h; 1) per step --------------------------------------------------------------------------


def bptt_problem(code: Code, sequences: int):
    """The first ``sequences`` training sequences of the study's task sequence (one member's order)."""
    with code.active():
        trainer = code.api.build_trainer(code.api.compose([*STUDY, "learner=credit_assignment/bptt_1_1"]))
    stage = trainer.stages[0]
    order = trainer.rngs[0].permutation(len(stage.x))[:sequences]
    return [(stage.x[i : i + 1], stage.y[i : i + 1], stage.mask[i : i + 1]) for i in order]


def bptt_learner(code: Code, h: int):
    net = code.api.RNN(28, 32, 10, "tanh", "sigmoid", "mse", "all", rng=np.random.default_rng(0))
    return code.api.BPTTTruncated(net, lr=0.05, h=h, h_prime=1), net


def time_bptt(codes: dict, batches, repeats: int, hs=(1, 4, 12)) -> dict:
    steps = sum(x.shape[-2] for x, _, _ in batches)
    rows = {}
    for h in hs:
        times = {name: [] for name in codes}
        weights = {}
        for _ in range(repeats):
            for name, code in codes.items():
                algorithm, net = bptt_learner(code, h)
                with code.active():
                    times[name].append(cpu_seconds(lambda: [algorithm.learn(*b) for b in batches]))
                weights[name] = np.concatenate([p.ravel() for _, p in sorted(net.params.items())])
        for name, code in codes.items():
            algorithm, _ = bptt_learner(code, h)
            profile = cProfile.Profile()
            with code.active():
                profile.runcall(lambda: [algorithm.learn(*b) for b in batches[:50]])
            calls = pstats.Stats(profile).total_calls / sum(x.shape[-2] for x, _, _ in batches[:50])
            first = next(iter(weights.values()))
            rows[f"h={h}/{name}"] = {"us_per_step": 1e6 * statistics.median(times[name]) / steps,
                                     "python_calls_per_step": calls,
                                     "bit_identical_to_first": bool(np.array_equal(weights[name], first))}
    return rows


# --- the auto rule's fit --------------------------------------------------------------------------


def fit(after: Code, repeats: int) -> dict:
    """Both forms' learn() over a grid of H, T, loss placements and update periods, and the fit."""
    from forgetlab.algorithms.rtrl import RTRL
    from forgetlab.algorithms.rtrl_reverse import chain_steps

    rows = []
    rng = np.random.default_rng(0)
    for H in (4, 8, 16, 32, 64):
        for T in (8, 28, 64):
            for loss_at, update_every in (("last", 1), ("all", 1), ("all", 4)):
                I, O = 28 if T == 28 else 8, 10
                x = rng.uniform(size=(1, T, I))
                y, mask = np.eye(O)[[3]], np.ones((1, O))
                for form in ("forward", "reverse"):
                    net = after.api.RNN(I, H, O, "tanh", "sigmoid", "mse", loss_at, rng=np.random.default_rng(1))
                    algorithm = RTRL(net, lr=1e-3, update_every=update_every, implementation=form)
                    n = max(1, int(0.05 / max(cpu_seconds(lambda: algorithm.learn(x, y, mask)), 1e-6)))
                    seconds = min(cpu_seconds(lambda: [algorithm.learn(x, y, mask) for _ in range(n)]) / n
                                  for _ in range(repeats))
                    n_loss = len(net.loss_steps(T))
                    products, passes = chain_steps(T, n_loss, update_every)
                    rows.append(dict(H=H, T=T, I=I, loss_at=loss_at, update_every=update_every, form=form,
                                     seconds=seconds, n_loss=n_loss, products=products, passes=passes))
                print(f"  H={H} T={T} {loss_at} every {update_every}: forward {rows[-2]['seconds'] * 1e3:.3f} ms, "
                      f"reverse {rows[-1]['seconds'] * 1e3:.3f} ms", file=sys.stderr, flush=True)
    return {"grid": rows, **least_squares(rows)}


def least_squares(rows: list[dict]) -> dict:
    """One non-negative least-squares fit of both forms' seconds per sequence (relative residuals, so
    that small problems count): what both do, per step and per loss step, plus what each does alone,
    in the terms of ``forgetlab.algorithms.rtrl.form_costs``; and how often the fitted rule picks the
    form that was measured faster, and what a wrong pick costs."""
    from scipy.optimize import nnls

    def terms(r):
        H, T, K, n_loss, products, passes = r["H"], r["T"], r["H"] + r["I"] + 1, r["n_loss"], r["products"], r["passes"]
        shared = [T, n_loss]
        if r["form"] == "forward":
            return [*shared, T, n_loss, T * 2 * H**3 * K + n_loss * 2 * H * H * K, 0, 0, 0]
        return [*shared, 0, 0, 0, passes, products, T * H * H + products * 2 * H * H + (products + passes) * 2 * H * K]

    A, b = np.array([terms(r) for r in rows], dtype=float), np.array([r["seconds"] for r in rows])
    c, _ = nnls(A / b[:, None], np.ones_like(b))
    predicted = A @ c
    pairs = [(i, i + 1) for i in range(0, len(rows), 2)]  # (forward, reverse) of one problem
    wrong = [max(b[f], b[r]) / min(b[f], b[r]) for f, r in pairs if (b[r] < b[f]) != (predicted[r] < predicted[f])]
    names = ["shared seconds per step", "shared seconds per loss step", "FORWARD_SECONDS_PER_STEP",
             "FORWARD_SECONDS_PER_LOSS_STEP", "1 / FORWARD_FLOPS_PER_S", "REVERSE_SECONDS_PER_PASS",
             "REVERSE_SECONDS_PER_PRODUCT", "1 / REVERSE_FLOPS_PER_S"]
    return {"constants": dict(zip(names, c.tolist())), "max_relative_error": float(np.max(np.abs(predicted / b - 1))),
            "problems": len(pairs), "wrong_picks": len(wrong), "worst_wrong_pick_slowdown": max(wrong, default=1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare against")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequences", type=int, default=300, help="sequences for the BPTT(h; 1) measurement")
    parser.add_argument("--only", choices=("runs", "bptt"), help="one of the two measurements")
    parser.add_argument("--fit", action="store_true", help="measure the grid and fit the auto rule's cost model")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    load = os.getloadavg()
    out: dict = {"load_before": load}
    with threadpool_limits(limits=1, user_api="blas"):
        after = Code(None)
        before = Code(args.before.resolve()) if args.before else None
        if args.fit:
            out["fit"] = fit(after, args.repeats)
        else:
            if args.only in (None, "runs"):
                out["runs"] = time_runs(run_variants(before, after), args.repeats)
            if args.only in (None, "bptt"):
                codes = {"before": before, "after": after} if before else {"after": after}
                out["bptt"] = time_bptt(codes, bptt_problem(after, args.sequences), args.repeats)
    out["load_after"] = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} -> {out['load_after'][0]:.2f} {out['load_after'][1]:.2f}")
    for name, row in out.get("runs", {}).items():
        print(f"run {name:<14} {row['cpu_s']:7.2f} s CPU  x{row['speedup']:.2f}  form {row['form']:<16} "
              f"max |dW| {row['max_abs_weight_difference']:.2e}  max |dR| {row['max_abs_accuracy_difference']:.2e}")
    for name, row in out.get("bptt", {}).items():
        print(f"BPTT {name:<12} {row['us_per_step']:6.1f} us/step  {row['python_calls_per_step']:5.1f} calls/step  "
              f"bit-identical: {row['bit_identical_to_first']}")
    if "fit" in out:
        fitted = out["fit"]
        for name, value in fitted["constants"].items():
            print(f"fit {name:<32} {value:.3g}")
        print(f"fit: max relative error {fitted['max_relative_error']:.2f}; the rule picks the slower form in "
              f"{fitted['wrong_picks']} of {fitted['problems']} problems, at worst "
              f"{fitted['worst_wrong_pick_slowdown']:.2f}x slower")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
