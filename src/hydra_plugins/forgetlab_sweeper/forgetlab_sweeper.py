"""forgetlab's Hydra sweeper (``hydra/sweeper=forgetlab``): a multirun that survives. Every job is
validated first, finished jobs are skipped, failures are isolated.

``ResumableSweeper`` (selected in ``conf/hydra/default.yaml``; Hydra finds sweepers only in the
``hydra_plugins`` namespace) expands the sweep like Hydra's basic sweeper and then, in the
launching process and before any job starts:

1. composes and validates every job's config; a bad one stops the sweep with exit code 2 before
   anything is written to MLflow;
2. creates the experiment (and the store's schema) once, so parallel jobs never race on set-up;
3. asks ``forgetlab.tracking.resume`` about each job's config hash: a job with a FINISHED run is
   skipped (one line each; ``tracking.resume=false`` trains it again), a RUNNING run whose process
   is gone is marked KILLED and its job trained again, a run that is still alive elsewhere is left
   to finish;
4. opens the parent run: the same sweep (same experiment and job hashes) re-run after an
   interruption reuses its parent and sweep id, so the resumed jobs nest beside the earlier ones.

Jobs find the parent through ``<sweep dir>/forgetlab_sweep.json`` (``read_sweep``), which also works
for jobs on other nodes that share the sweep directory. A failed job does not stop the others; at
the end the failed jobs are listed, the parent ends FAILED and the process exits with code 1.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve string annotations.
import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from hydra._internal.core_plugins import basic_sweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from forgetlab import contract
from forgetlab.config import ConfigError, check_targets, explain_composition_error, validate
from forgetlab.cost import check_cost
from forgetlab.tracking.mlflow_run import config_hash, get_or_create_experiment, new_sweep_id, resume_hashes
from forgetlab.tracking.resume import reason_to_skip
from forgetlab.tracking.store import RetryingClient, StoreError, open_store

SWEEP_FILE = "forgetlab_sweep.json"


@dataclass(frozen=True)
class Sweep:
    """What every job of a sweep needs to know: the sweep id and its parent run (None without tracking)."""

    sweep_id: str
    parent_run_id: str | None


def read_sweep(sweep_dir: str | Path) -> Sweep | None:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    written = json.loads(path.read_text())
    return Sweep(written["sweep_id"], written["parent_run_id"])


@dataclass
class Job:
    overrides: list[str]
    cfg: DictConfig  # the job's config without the hydra node, as the job will see it
    config_hash: str
    label: str = ""  # the overrides that tell this job from the others
    skip_reason: str | None = None
    # Every hash a run of this config may carry (runs recorded before a config layout change carry an older one).
    resume_hashes: tuple[str, ...] = ()


# --- before launch ------------------------------------------------------------------------------


def compose_jobs(config_loader, master: DictConfig, job_overrides: Sequence[Sequence[str]]) -> list[Job]:
    """Every job's config, composed as the launcher will and validated. Raises ConfigError."""
    jobs = []
    for overrides in job_overrides:
        overrides = list(overrides)
        try:
            cfg = config_loader.load_sweep_config(master, overrides)
        except Exception as error:
            explained = explain_composition_error(
                error, overrides, lambda kept: config_loader.load_sweep_config(master, kept)
            )
            if explained is None:
                raise
            raise ConfigError(f"{explained} (job {' '.join(overrides)})") from error
        check_targets(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            validate(cfg)
            check_cost(cfg, label=" ".join(overrides) or "(defaults)")
        except ConfigError as error:
            raise ConfigError(f"{error} (job {' '.join(overrides)})") from error
        for key in ("enabled", "uri", "experiment"):
            if cfg.tracking[key] != master.tracking[key]:
                raise ConfigError(
                    f"The 'tracking.{key}' parameter must be the same for every job of a sweep. "
                    f"Got {cfg.tracking[key]!r} instead of {master.tracking[key]!r} (job {' '.join(overrides)})."
                )
        jobs.append(Job(overrides, cfg, config_hash(cfg), resume_hashes=resume_hashes(cfg)))
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    for job in jobs:
        job.label = " ".join(o for o in job.overrides if o not in shared) or " ".join(job.overrides) or "(defaults)"
    return jobs


def sweep_key(experiment: str, jobs: list[Job]) -> str:
    """Identity of a sweep: its experiment and the set of its jobs' config hashes."""
    content = json.dumps([experiment, sorted(j.config_hash for j in jobs)])
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def jobs_manifest(jobs: list[Job]) -> list[dict[str, Any]]:
    """Every job of the sweep, trained now or skipped: its runs are the training runs with its
    config hash, whichever sweep id they carry."""
    return [{"overrides": j.overrides, "config_hash": j.config_hash, "skipped": j.skip_reason} for j in jobs]


def open_parent(client: RetryingClient, experiment_id: str, key: str, overrides: list[str]) -> Sweep:
    """The parent run of this sweep: the earlier one with the same key (set RUNNING again) or a new one."""
    same_sweep = [contract.tag_equals(contract.TAG_KIND, contract.KIND_SWEEP),
                  contract.tag_equals(contract.TAG_SWEEP_KEY, key)]
    earlier = client.search_runs(
        [experiment_id], filter_string=" and ".join(same_sweep), order_by=["attributes.start_time DESC"], max_results=1,
    )
    if earlier:
        parent = earlier[0]
        client.update_run(parent.info.run_id, status="RUNNING")
        return Sweep(parent.data.tags[contract.TAG_SWEEP_ID], parent.info.run_id)
    sweep_id = new_sweep_id()
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep {sweep_id}",
        tags={
            contract.TAG_SWEEP_ID: sweep_id,
            contract.TAG_KIND: contract.KIND_SWEEP,
            contract.TAG_OVERRIDES: " ".join(overrides),
            contract.TAG_SWEEP_KEY: key,
        },
    )
    return Sweep(sweep_id, parent.info.run_id)


# --- the sweeper --------------------------------------------------------------------------------


class ResumableSweeper(Sweeper):
    """Hydra's basic sweeper (same ``params`` and ``max_batch_size``) with the steps of the module doc.

    It reuses the basic sweeper's expansion but does not subclass it: Hydra's plugin scan re-executes
    the basic sweeper's module, so its class object changes after import and ``super()`` breaks."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        super().__init__()
        self.max_batch_size, self.params = max_batch_size, dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{key}={value}" for key, value in self.params.items()]
        overrides = parser.parse_overrides(params + list(arguments))
        batches = basic_sweeper.BasicSweeper.split_arguments(overrides, None)
        job_overrides = [job for batch in batches for job in batch]
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            jobs = compose_jobs(self.hydra_context.config_loader, self.config, job_overrides)
        except ConfigError as error:
            print(f"Invalid config: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        tracking = self.config.tracking
        client = None
        if tracking.enabled:
            try:
                client = open_store(tracking.uri)
                experiment_id = get_or_create_experiment(client, tracking.experiment, tracking.artifact_location)
                for job in jobs:
                    job.skip_reason = reason_to_skip(
                        client, experiment_id, job.resume_hashes or (job.config_hash,), resume=tracking.resume,
                        stale_after_s=tracking.stale_after_s, label=job.label,
                    )
                task_overrides = list(self.config.hydra.overrides.task)
                sweep = open_parent(client, experiment_id, sweep_key(tracking.experiment, jobs), task_overrides)
                client.log_dict(sweep.parent_run_id, jobs_manifest(jobs), contract.ARTIFACT_SWEEP_JOBS)
            except StoreError as error:
                print(f"Tracking store error: {error}", file=sys.stderr, flush=True)
                sys.exit(2)
        else:
            sweep = Sweep(new_sweep_id(), None)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(sweep)))

        for job in jobs:
            if job.skip_reason:
                print(f"[sweep] skip {job.label}: {job.skip_reason}", flush=True)
        to_run = [job for job in jobs if job.skip_reason is None]
        returns: list[Sequence[JobReturn]] = []
        failed: list[tuple[Job, JobReturn]] = []
        status = "FAILED"
        try:
            size = self.max_batch_size or len(to_run) or 1
            for start in range(0, len(to_run), size):
                batch = to_run[start : start + size]
                results = self.launcher.launch([job.overrides for job in batch], initial_job_idx=start)
                failed += [(job, r) for job, r in zip(batch, results) if r.status != JobStatus.COMPLETED]
                returns.append(results)
            status = "FAILED" if failed else "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException:  # the launcher itself broke (e.g. a worker killed by the OS)
            print("[sweep] the launcher failed; re-run the same command to resume the sweep", file=sys.stderr)
            raise
        finally:
            if client is not None and sweep.parent_run_id is not None:
                try:
                    client.set_terminated(sweep.parent_run_id, status)
                except StoreError as error:  # the summary below matters more than the parent's status
                    print(f"[sweep] could not end the parent run {status}: {error}", file=sys.stderr, flush=True)

        print(
            f"[sweep] {sweep.sweep_id}: {len(jobs)} jobs, {len(jobs) - len(to_run)} skipped, "
            f"{len(to_run) - len(failed)} completed, {len(failed)} failed",
            flush=True,
        )
        if failed:
            for job, result in failed:
                error = result._return_value
                where = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result.hydra_cfg else None
                print(f"[sweep] FAILED {job.label}: {type(error).__name__}: {error} (job dir {where})",
                      file=sys.stderr, flush=True)
            sys.exit(1)
        return returns


@dataclass
class ResumableSweeperConf:
    _target_: str = "hydra_plugins.forgetlab_sweeper.forgetlab_sweeper.ResumableSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="forgetlab", node=ResumableSweeperConf, provider="forgetlab")
