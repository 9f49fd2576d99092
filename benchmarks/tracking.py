"""What tracking costs: CPU time of a run (and of an ensemble) with MLflow on against off.

    .venv/bin/python benchmarks/tracking.py [--repeats 5] [--members 8] [--json] [hydra overrides ...]

In one process, on the config composed from ``conf/`` plus the overrides, interleaved and repeated
(medians): ``run_experiment`` tracked and untracked, and ``run_ensemble`` of ``--members`` seeds
tracked and untracked, every tracked run into one temporary sqlite store whose schema the warm-up
created (as in a sweep: creating a store costs ~1 s of CPU once).
Tracking overhead = (CPU tracked − CPU untracked) / CPU tracked: the share of the tracked run's CPU
time that tracking takes (the issue's measure; docs/performance.md). Where it goes: the same tracked
run with every metric write a no-op. The runs' figures are drawn once a run has ended, off its
training path (by a sweep's parent, or a single run's process: ``run_figures.add_sweep_figures``):
timed on their own, per run (``figures_per_run``), not part of the runs above. And a run's
resolved-config artifact written by ``config_yaml`` against ``OmegaConf.to_yaml`` (the same text,
checked), CPU per call.
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
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))

from forgetlab.config import compose, config_yaml, typed  # noqa: E402
from forgetlab.experiment import RunContext, run_ensemble, run_experiment  # noqa: E402
from forgetlab.tracking import mlflow_run, run_figures  # noqa: E402


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


def config_text_cpu(run, repeats: int, calls: int = 50) -> dict[str, float]:
    """CPU seconds per call of the resolved-config artifact's text, ``config_yaml`` against
    ``OmegaConf.to_yaml`` (what it replaced), interleaved; the texts must be equal."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    ways = {"config_yaml_per_call": lambda: config_yaml(run),
            "omegaconf_to_yaml_per_call": lambda: OmegaConf.to_yaml(asdict(run))}
    assert len({way() for way in ways.values()}) == 1, "config_yaml differs from OmegaConf.to_yaml"
    times: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(repeats):
        for name, way in ways.items():
            start = time.process_time()
            for _ in range(calls):
                way()
            times[name].append((time.process_time() - start) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


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

    def no_metrics(fn):
        def run():
            with patched(mlflow_run.MlflowRun, "on_eval", lambda self, trainer, points: None):
                fn()
        return run

    def figures():  # the figures of one run, drawn from its artifacts as a sweep's parent draws them
        sweep_id = uuid.uuid4().hex
        cfg = typed(compose([*args.overrides, *store(), "tracking.enabled=true"]))
        run_experiment(cfg, RunContext(quiet=True, sweep_id=sweep_id))
        return lambda: run_figures.add_sweep_figures(*mlflow_run.open_experiment(cfg), sweep_id)

    variants = {
        "solo_off": lambda: solo(False), "solo_on": lambda: solo(True), "solo_on_no_metrics": lambda: no_metrics(solo(True)),
        "ensemble_off": lambda: ensemble(False), "ensemble_on": lambda: ensemble(True),
        "figures_per_run": figures,
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
    med.update(config_text_cpu(typed(compose(args.overrides)), args.repeats))
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    result = {
        "cpu_s": med, "wall_s": med_wall, "repeats": args.repeats, "members": args.members,
        "load_average": os.getloadavg(),
        "solo_tracking_share_cpu": (med["solo_on"] - med["solo_off"]) / med["solo_on"],
        "ensemble_tracking_share_cpu": (med["ensemble_on"] - med["ensemble_off"]) / med["ensemble_on"],
        "solo_metrics_share_cpu": (med["solo_on"] - med["solo_on_no_metrics"]) / med["solo_on"],
    }
    for name in variants:
        print(f"{name:24s} CPU {med[name]:6.3f} s   wall {med_wall[name]:6.3f} s", file=sys.stderr)
    for name in ("config_yaml_per_call", "omegaconf_to_yaml_per_call"):
        print(f"{name:30s} CPU {1000 * med[name]:6.2f} ms", file=sys.stderr)
    for key, value in result.items():
        if key.endswith("share_cpu"):
            print(f"{key:30s} {100 * value:5.1f} %", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
