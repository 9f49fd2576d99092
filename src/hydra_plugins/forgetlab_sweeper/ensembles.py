"""Jobs of a sweep that train together as one ensemble (``forgetlab.assembly``).

Jobs whose configs differ only in member keys (``forgetlab.assembly.member_keys``: seed, learning
rate, …), that chose the same ``learner`` preset and whose algorithm gains from sharing an ensemble
(``LearningAlgorithm.shares_ensemble``) are grouped, in sweep order, into ensembles of at most
``max_ensemble_size`` members; a sweep also keeps at least as many launches as its launcher runs
jobs at a time (``parallel_jobs``), so that grouping never leaves a worker idle. Each ensemble is
one launch of Hydra's launcher: the first member's overrides plus
``+hydra.job.env_set.FORGETLAB_ENSEMBLE=<file>``, and ``hydra.sweep.subdir=<its first member's job number>``
(so the launch's folder is its first member's; every member logs to its own folder, experiments/train.py), where ``<file>`` (in ``<sweep dir>/forgetlab_ensembles/``)
holds every member's number, overrides, learner preset and config as the sweeper composed and
validated it. The job (experiments/train.py) trains them with ``forgetlab.experiment.run_ensemble``:
each member is its own MLflow run, and reports its own outcome.
"""

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from forgetlab.algorithms import ALGORITHMS
from forgetlab.assembly import ensemble_signature
from forgetlab.config import Config, config_from_container

ENSEMBLE_ENV = "FORGETLAB_ENSEMBLE"  # the job's environment variable naming its ensemble file
ENSEMBLES_DIR = "forgetlab_ensembles"


@dataclass
class Launch:
    """One job of the launcher: a lone sweep job (``ensemble_file`` None, launched as without
    grouping) or the members of an ensemble, named by their file."""

    jobs: list  # the sweeper's Jobs, in member order
    ensemble_file: str | None = None

    @property
    def numbers(self) -> tuple[int, ...]:
        """Each member's job number (its place among all the sweep's jobs): its folder and progress record."""
        return tuple(job.num for job in self.jobs)

    @property
    def overrides(self) -> list[str]:
        """The first member's overrides, its folder ``<sweep dir>/<job number>``, and the ensemble's file."""
        first = [*self.jobs[0].overrides, f"hydra.sweep.subdir={self.jobs[0].num}"]
        return first + ([f"+hydra.job.env_set.{ENSEMBLE_ENV}={self.ensemble_file}"] if self.ensemble_file else [])


@dataclass(frozen=True)
class MemberJob:
    """One member of an ensemble job, as its file gives it."""

    num: int  # its number among the sweep's jobs: its folder (its train.log) and its progress record
    overrides: list[str]
    learner: str | None
    cfg: Config


def parallel_jobs(launcher: Any) -> int:
    """How many jobs ``launcher`` runs at a time: joblib's ``n_jobs`` (negative: counted back from
    the CPU count, as joblib does), 1 for the basic launcher, and for others (a cluster) unknown: 1."""
    options = getattr(launcher, "joblib", None)
    n_jobs = options.get("n_jobs") if isinstance(options, dict) else None
    if not isinstance(n_jobs, int):
        return 1
    return n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)


def group_jobs(jobs: list, max_size: int, parallel: int = 1) -> list[list]:
    """``jobs`` as ensembles: equal ``ensemble_signature`` and learner preset, distinct config hashes,
    in sweep order, each group split evenly into parts of at most ``max_size`` members and of at most
    ceil(len(jobs) / parallel), so that there are at least ``parallel`` launches when there are
    that many jobs."""
    limit = max(1, min(max_size, math.ceil(len(jobs) / max(1, parallel))))
    groups: dict[tuple, list[list]] = {}
    for job in jobs:
        alone = not ALGORITHMS[job.cfg.algorithm.name].shares_ensemble
        buckets = groups.setdefault((job.config_hash if alone else ensemble_signature(job.cfg), job.learner), [])
        # The same config twice goes to another ensemble: launched on its own, its start-of-job
        # resume check finds the first one's run, as a job of its own would.
        bucket = next((b for b in buckets if all(j.config_hash != job.config_hash for j in b)), None)
        if bucket is None:
            buckets.append(bucket := [])
        bucket.append(job)
    parts = []
    for members in (bucket for buckets in groups.values() for bucket in buckets):
        n_parts = math.ceil(len(members) / limit)
        size, larger = divmod(len(members), n_parts)  # the first ``larger`` parts get one member more
        start = 0
        for k in range(n_parts):
            stop = start + size + (k < larger)
            parts.append(members[start:stop])
            start = stop
    order = {id(job): i for i, job in enumerate(jobs)}
    return sorted(parts, key=lambda part: order[id(part[0])])


def write_ensemble(sweep_dir: Path, name: str, members: list) -> str:
    """Write the ensemble file ``name`` of the sweeper's Jobs ``members``; returns ``name``."""
    folder = sweep_dir / ENSEMBLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    entries = [{"num": job.num, "overrides": list(job.overrides), "learner": job.learner,
                "config": asdict(job.cfg)} for job in members]
    (folder / name).write_text(json.dumps({"members": entries}))
    return name


def read_ensemble(sweep_dir: str | Path, name: str) -> list[MemberJob]:
    """The members of the ensemble file ``name`` of the sweep in ``sweep_dir``."""
    written = json.loads((Path(sweep_dir) / ENSEMBLES_DIR / name).read_text())
    return [MemberJob(e["num"], e["overrides"], e["learner"], config_from_container(e["config"]))
            for e in written["members"]]


def launches(jobs: list, sweep_dir: Path, *, ensemble: bool, max_size: int, parallel: int) -> list[Launch]:
    """What to launch for ``jobs`` (the sweep's jobs to run): one launch per job when ``ensemble`` is
    off, else one per ensemble, each with its file."""
    if not ensemble:
        return [Launch([job]) for job in jobs]
    return [ensemble_launch(sweep_dir, f"{k}.json", group) for k, group in enumerate(group_jobs(jobs, max_size, parallel))]


def ensemble_launch(sweep_dir: Path, name: str, members: list) -> Launch:
    """The launch of the ensemble of ``members`` (the sweeper's Jobs), its file written as ``name``."""
    return Launch(list(members), write_ensemble(sweep_dir, name, members))
