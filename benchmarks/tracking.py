"""What tracking costs: CPU time of a run (and of an ensemble) with MLflow on against off.

    .venv/bin/python benchmarks/tracking.py [--repeats 5] [--members 8] [--json] [hydra overrides ...]

In one process, on the config composed from ``conf/`` plus the overrides, interleaved and repeated
(medians): ``run_experiment`` tracked and untracked, and ``run_ensemble`` of ``--members`` seeds
tracked and untracked, every tracked run into one temporary sqlite store whose schema the warm-up
created (as in a sweep: creating a store costs ~1 s of CPU once).
Tracking overhead = (CPU tracked − CPU untracked) / CPU tracked: the share of the tracked run's CPU
time that tracking takes (the issue's measure; docs/performance.md). Where it goes: the same tracked
run without the figures (``mlflow_run.write_figures`` a no-op) and with every metric write a no-op.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))

from forgetlab.config import compose, typed  # noqa: E402
from forgetlab.experiment import RunContext, run_ensemble, run_experiment  # noqa: E402
from forgetlab.tracking import mlflow_run  # noqa: E402


@contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def cpu_of(fn) -> tuple[float, float]:
    """CPU and wall seconds of ``fn``, with collecting its garbage (matplotlib figures are reference
    cycles): each variant pays for its own objects, not for those of the variant before it. The
    warm-up's objects are frozen (``gc.freeze``), so a collection visits only what ``fn`` made."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    gc.collect()
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    context = RunContext(quiet=True)

    tmp = tempfile.mkdtemp(prefix="forgetlab-tracking-bench-")

    def store() -> list[str]:  # one store, its schema created by the warm-up: as in a sweep
        return [f"tracking.uri=sqlite:///{tmp}/mlflow.db", f"tracking.artifact_location={tmp}/artifacts",
                "tracking.experiment=benchmark"]

    def solo(enabled: bool):
        cfg = typed(compose([*args.overrides, *store(), f"tracking.enabled={str(enabled).lower()}"]))
        return lambda: run_experiment(cfg, context)

    def ensemble(enabled: bool):
        tracked = store()
        cfgs = [typed(compose([*args.overrides, *tracked, f"seed={s}", f"tracking.enabled={str(enabled).lower()}"]))
                for s in range(args.members)]
        return lambda: run_ensemble(cfgs, [context] * len(cfgs))

    def no_figures(fn):
        def run():
            with patched(mlflow_run, "write_figures", lambda *a, **k: None):
                fn()
        return run

    def no_metrics(fn):
        def run():
            with patched(mlflow_run.MlflowRun, "on_eval", lambda self, point: None):
                fn()
        return run

    variants = {
        "solo_off": lambda: solo(False), "solo_on": lambda: solo(True),
        "solo_on_no_figures": lambda: no_figures(solo(True)), "solo_on_no_metrics": lambda: no_metrics(solo(True)),
        "ensemble_off": lambda: ensemble(False), "ensemble_on": lambda: ensemble(True),
        "ensemble_on_no_figures": lambda: no_figures(ensemble(True)),
    }
    for make in variants.values():  # warm up: imports, the data cache, the store's schema
        make()()
    gc.collect()
    gc.freeze()
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, make in variants.items():
            fn = make()
            c, w = cpu_of(fn)
            cpu[name].append(c), wall[name].append(w)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    result = {
        "cpu_s": med, "wall_s": med_wall, "repeats": args.repeats, "members": args.members,
        "load_average": os.getloadavg(),
        "solo_tracking_share_cpu": (med["solo_on"] - med["solo_off"]) / med["solo_on"],
        "ensemble_tracking_share_cpu": (med["ensemble_on"] - med["ensemble_off"]) / med["ensemble_on"],
        "solo_figures_share_cpu": (med["solo_on"] - med["solo_on_no_figures"]) / med["solo_on"],
        "solo_metrics_share_cpu": (med["solo_on"] - med["solo_on_no_metrics"]) / med["solo_on"],
        "ensemble_figures_share_cpu": (med["ensemble_on"] - med["ensemble_on_no_figures"]) / med["ensemble_on"],
    }
    for name in variants:
        print(f"{name:24s} CPU {med[name]:6.3f} s   wall {med_wall[name]:6.3f} s", file=sys.stderr)
    for key, value in result.items():
        if key.endswith("share_cpu"):
            print(f"{key:30s} {100 * value:5.1f} %", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
