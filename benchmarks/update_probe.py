"""What the update-resolution probe costs: a run without it, with it (eval.probe_every=1) and with
the interference diagnostics on top (eval.interference=true), timed in one process.

    .venv/bin/python benchmarks/update_probe.py [--repeats 5] [--json] [hydra overrides ...]
    .venv/bin/python benchmarks/update_probe.py --json learner=rnn_rtrl

Each row is ``build_trainer(cfg).run()`` for the config composed from ``conf/`` plus the overrides
(default: the default config, MLP per-sample backprop on split digits, 5 tasks x 5 epochs = 6735
updates, evaluation every 100 samples), with tracking off: data, network, training, the scheduled
evaluations and, in the probed rows, one batched forward pass of the P probe samples
(eval.update_probe_per_task per task, default 20 x 5 = 100) after every update. "tracked" rows add
the MLflow run in a temporary sqlite store, eval/update_probe.npz included.

The configurations are interleaved and repeated; times are medians of wall and CPU time (CPU time is
far less sensitive to other processes on a shared machine). One BLAS thread, as the trainer runs.
With --json the last line is one JSON object.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from forgetlab.config import register_configs, typed, validate  # noqa: E402
from forgetlab.assembly import build_trainer  # noqa: E402
from forgetlab.experiment import RunContext, run_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "default": ["eval.probe_every=0"],
    "probe_every=1": ["eval.probe_every=1"],
    "probe_every=1 + interference": ["eval.probe_every=1", "eval.interference=true"],
}


def compose_config(overrides: list[str]):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = typed(compose(config_name="config", overrides=overrides))
    GlobalHydra.instance().clear()
    validate(cfg)
    return cfg


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tracked", action="store_true", help="also time each variant as a tracked run")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. learner=rnn_rtrl")
    args = parser.parse_args(argv)
    times: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="forgetlab-bench-") as tmp:
        store = [f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_location={tmp}/art", "tracking.resume=false"]
        configs = {}
        for name, extra in VARIANTS.items():
            configs[name] = compose_config([*args.overrides, *extra, "tracking.enabled=false"])
            if args.tracked:
                configs[f"{name}, tracked"] = compose_config([*args.overrides, *extra, *store, "tracking.enabled=true"])
        updates = build_trainer(configs["default"]).run()[0].points[-1].updates  # also warms up imports and caches
        for _ in range(args.repeats):
            for name, cfg in configs.items():
                if cfg.tracking.enabled:
                    with contextlib.redirect_stdout(io.StringIO()):
                        t = timed(lambda: run_experiment(cfg, RunContext(quiet=True)))
                else:
                    t = timed(lambda: build_trainer(cfg).run())
                times.setdefault(name, []).append(t)
    base_wall, base_cpu = (np.median([t[i] for t in times["default"]]) for i in (0, 1))
    rows = []
    for name, ts in times.items():
        wall, cpu = np.median([t[0] for t in ts]), np.median([t[1] for t in ts])
        rows.append({"variant": name, "wall_s": float(wall), "cpu_s": float(cpu),
                     "wall_ratio": float(wall / base_wall), "cpu_ratio": float(cpu / base_cpu),
                     "us_per_update_cpu": float(1e6 * cpu / updates)})
    print(f"overrides: {' '.join(args.overrides) or '(none)'}; {updates} updates; {args.repeats} repeats; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'variant':<40} {'wall s':>8} {'CPU s':>8} {'wall x':>7} {'CPU x':>7} {'CPU us/update':>14}")
    for r in rows:
        print(f"{r['variant']:<40} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} {r['wall_ratio']:>7.2f} "
              f"{r['cpu_ratio']:>7.2f} {r['us_per_update_cpu']:>14.1f}")
    result = {"overrides": args.overrides, "updates": int(updates), "repeats": args.repeats,
              "load_average": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
              "numpy": np.__version__, "rows": rows}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
