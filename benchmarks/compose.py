"""Composing a sweep's job configs: Hydra's ``load_sweep_config`` per job against the sweeper's
``SweepComposer`` (one composition per choice of config groups, then the value overrides).

    .venv/bin/python benchmarks/compose.py [--seeds 2] [--json]

The jobs are the credit-assignment study's (conf/experiment/credit_assignment.yaml: 10 learners x 3
rates x 3 scenarios x joint or not) for ``--seeds`` seeds, composed as its pilot's (which reads no
selection table). Both ways compose
the same jobs in one process, the composer first (so Hydra's caches are warm for the per-job way,
not for it); CPU seconds of each, and a check that every job's config is the same both ways.

Then ``forgetlab.config.compose`` (what the tests, the gradient audit and the API call: a template per
choice of config groups, kept in the process) against composing each with Hydra afresh, as it did
before (``_compose_with_hydra``), on every ninth of the same jobs, each in a new order of both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from forgetlab.config import compose as forgetlab_compose  # noqa: E402
from forgetlab.config import register_configs  # noqa: E402
from forgetlab.config.compose import CONF_DIR, _compose_with_hydra  # noqa: E402
from hydra_plugins.forgetlab_sweeper.forgetlab_sweeper import SweepComposer  # noqa: E402

LEARNERS = [f"{name}{placement}" for name in ("bptt_epochwise", "bptt_1_1", "bptt_4_1", "bptt_14_1")
            for placement in ("", "_every_step")] + ["rtrl_every_step", "mlp_backprop"]


def study_jobs(seeds: int) -> list[list[str]]:
    return [["experiment=credit_assignment_pilot", f"learner=credit_assignment/{learner}",
             f"task_sequence.scenario={scenario}", f"task_sequence.joint={joint}", f"algorithm.lr={lr}", f"seed={seed}"]
            for learner, scenario, joint, lr, seed in itertools.product(
                LEARNERS, ["task", "domain", "class"], ["false", "true"], ["0.001", "0.002", "0.005"], range(seeds))]


def without_hydra(cfg) -> dict:
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(cfg):
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        master = compose("config", overrides=["experiment=credit_assignment_pilot"], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
        jobs = study_jobs(args.seeds)
        start = time.process_time()
        composer = SweepComposer(loader, master)
        mine = [composer.compose(job) for job in jobs]
        composer_s = time.process_time() - start
        start = time.process_time()
        hydras = [loader.load_sweep_config(master, job) for job in jobs]
        hydra_s = time.process_time() - start
    GlobalHydra.instance().clear()
    same = all(without_hydra(a) == without_hydra(b) for a, b in zip(mine, hydras))
    api_jobs = jobs[::9]
    start = time.process_time()
    api = [forgetlab_compose(job) for job in api_jobs]
    api_s = time.process_time() - start
    start = time.process_time()
    afresh = [_compose_with_hydra(job, CONF_DIR, "config", False, False) for job in api_jobs]
    afresh_s = time.process_time() - start
    api_same = all(OmegaConf.to_container(a) == OmegaConf.to_container(b) for a, b in zip(api, afresh))
    result = {"jobs": len(jobs), "templates": len(composer.templates), "hydra_per_job_cpu_s": hydra_s,
              "composer_cpu_s": composer_s, "ratio": hydra_s / composer_s, "identical": same,
              "api_calls": len(api_jobs), "api_afresh_cpu_s": afresh_s, "api_cpu_s": api_s,
              "api_ratio": afresh_s / api_s, "api_identical": api_same}
    print(json.dumps(result) if args.json else
          f"{len(jobs)} jobs: Hydra per job {hydra_s:.2f} s CPU, SweepComposer {composer_s:.2f} s CPU "
          f"({hydra_s / composer_s:.1f}x; {len(composer.templates)} compositions); configs identical: {same}\n"
          f"compose() of {len(api_jobs)} of them: Hydra afresh each {afresh_s:.2f} s CPU, from templates {api_s:.2f} s CPU "
          f"({afresh_s / api_s:.1f}x); configs identical: {api_same}")
    return result


if __name__ == "__main__":
    main()
