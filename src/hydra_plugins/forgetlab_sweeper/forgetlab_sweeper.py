"""forgetlab's Hydra sweeper (``hydra/sweeper=forgetlab``): a multirun that survives. Every job is
validated first, finished jobs are skipped, failures are isolated.

``ResumableSweeper`` (selected in ``conf/hydra/default.yaml``; Hydra finds sweepers only in the
``hydra_plugins`` namespace) expands the sweep like Hydra's basic sweeper and then, in the
launching process and before any job starts:

1. composes and validates every job's config; a bad one stops the sweep with exit code 2 before
   anything is written to MLflow;
2. creates the experiment (and the store's schema) once, so parallel jobs never race on set-up;
3. asks ``forgetlab.tracking.resume`` about each job's config hash and this code's version: a job
   with a FINISHED run of the same config and code is skipped (one line for them all;
   ``tracking.resume=false`` trains it again, ``tracking.resume_ignores_code=true`` skips it
   whatever code trained it), a RUNNING run whose process is gone is marked KILLED and its job
   trained again; a run still alive elsewhere is waited for when its own sweep is dead (its worker
   ends it within seconds), else left to finish, its job reported "still RUNNING elsewhere" and not
   counted done;
4. opens the parent run: the same sweep (same experiment, job hashes and code) re-run after an
   interruption reuses its parent and sweep id, so the resumed jobs nest beside the earlier ones.
   The parent's params are the swept keys with their values.

While the jobs run, their progress is shown (``progress.py``: a bar at a terminal, plain lines in a
file); when they are done, the parent gets the sweep's counts (``contract.METRIC_SWEEP_*``) and its
results table (``results.py``), which is also printed. Each job's folder is ``<sweep dir>/<job num>``,
numbered among all the sweep's jobs (``Job.num``; ensemble members log to their own, ``ensembles.py``).

Jobs find the parent through ``<sweep dir>/forgetlab_sweep.json`` (``read_sweep``), which also works
for jobs on other nodes that share the sweep directory. A failed job does not stop the others; at
the end the failed jobs are listed, the parent ends FAILED and the process exits with code 1.

A launcher that loses a worker process (killed by the OS: joblib raises ``TerminatedWorkerError``
and SIGKILLs the batch's other workers) does not end the sweep: the batch's runs left RUNNING are
ended KILLED with the reason, and its jobs that did not finish run again one at a time, so a job
that loses its worker again is the one that fails. SIGTERM and Ctrl-C stop the sweep as
``forgetlab.stopping`` describes: the running jobs end their runs KILLED, the parent ends KILLED
with the reason.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses cannot resolve string annotations.
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from concurrent.futures import BrokenExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from hydra._internal.core_plugins import basic_sweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

from forgetlab import contract, stopping
from forgetlab.config import Config, ConfigError, check_targets, explain_composition_error, typed
from forgetlab.config.compose import shapes_defaults, with_values
from forgetlab.cost import check_cost
from forgetlab.experiment import EnsembleReturn, JobSkipped, JobStopped, MemberFailed, RunningElsewhere
from forgetlab.server import ui_url
from forgetlab.tracking.code_version import code_version
from forgetlab.tracking.liveness import Heartbeat, beat_value, process_identity
from forgetlab.tracking.mlflow_run import (
    failure_reason, get_or_create_experiment, log_code_diff, new_sweep_id, now_ms, resume_hashes,
    source_tags,
)
from forgetlab.tracking.resume import (
    ORPHAN_WAIT_S, end_dead_runs, end_orphaned_runs, end_stale_sweeps, is_orphan, nested_runs, newest_finished_run,
    resume_decision, wait_for_runs,
)
from forgetlab.tracking.run_figures import add_figures_of, add_missing_figures, finished_runs
from forgetlab.tracking.storage import check_artifact_location
from forgetlab.tracking.store import RetryingClient, StoreError, open_store
from hydra_plugins.forgetlab_sweeper.config import ResumableSweeperConf  # noqa: F401  (the node of this sweeper)
from hydra_plugins.forgetlab_sweeper.ensembles import Launch, ensemble_launch, launches, parallel_jobs
from hydra_plugins.forgetlab_sweeper.progress import SweepProgress
from hydra_plugins.forgetlab_sweeper.results import format_table, results_table

SWEEP_FILE = "forgetlab_sweep.json"
LOST_STORE = "StoreError: "  # how a job that lost its tracking store failed (``Outcome.error``)
STOP_FILE = "forgetlab_stop"  # written when a stop signal reaches the sweeper: later jobs create no run


@dataclass(frozen=True)
class Sweep:
    """What every job of a sweep needs to know: the sweep id, its parent run (None without tracking)
    and the sweeper's process (``liveness.process_identity``), to tell its own jobs from a worker's."""

    sweep_id: str
    parent_run_id: str | None
    process: str = ""


def read_sweep(sweep_dir: str | Path) -> Sweep | None:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.exists():
        return None
    written = json.loads(path.read_text())
    return Sweep(written["sweep_id"], written["parent_run_id"], written.get("process", ""))


@dataclass
class Job:
    overrides: list[str]
    cfg: Config  # the job's config, typed (``forgetlab.config.typed``), as the job will see it
    config_hash: str
    label: str = ""  # the overrides that tell this job from the others
    skip_reason: str | None = None
    # Every hash a run of this config may carry (runs recorded before a config layout change carry an older one).
    resume_hashes: tuple[str, ...] = ()
    retrain_reason: str | None = None  # it has a FINISHED run, but of other code
    running_reason: str | None = None  # a run of its config and code is RUNNING in another live process
    learner: str | None = None  # the learner preset it chose (conf/learner/)
    artifact_bytes: float = 0.0  # an upper bound on its run's artifacts (cost.Cost.artifact_bytes)
    num: int = 0  # its place among the sweep's jobs: its folder <sweep dir>/<num> (train.log) and its progress record


@dataclass
class Outcome:
    job: Job
    result: str  # "trained", "skipped", "failed" or "running" (elsewhere: not done)
    error: str = ""
    job_dir: str | None = None


# --- before launch ------------------------------------------------------------------------------


class SweepComposer:
    """Composes job configs as the launcher will (``load_sweep_config``), once per distinct choice of
    config groups. Hydra builds a config in two steps: it merges the configs of the defaults list,
    which only the config-group overrides (``learner=…``, ``hydra/launcher=…``) and ``+``/``~``
    overrides change, then applies the value overrides (``seed=3``) to the result in order. Jobs that
    differ only in values share the first step, which is ~90 % of the cost (0.2 s a job: a study of
    2,400 jobs took 8 minutes to compose before it trained anything); the second is Hydra's own
    ``_apply_overrides_to_config``. ``tests/test_sweeps.py`` checks the result equals Hydra's own
    composition, job by job."""

    def __init__(self, config_loader, master: DictConfig) -> None:
        self.config_loader, self.master = config_loader, master
        self.parser = OverridesParser.create(config_loader=config_loader)
        self.templates: dict[tuple[str, ...], DictConfig] = {}

    def compose(self, overrides: list[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(overrides)
        repository = getattr(self.config_loader, "repository", None)
        shapes = [shapes_defaults(o, repository) for o in parsed]
        if all(shapes):
            return self.config_loader.load_sweep_config(self.master, overrides)
        structural = tuple(o.input_line for o, shaping in zip(parsed, shapes) if shaping)
        template = self.templates.get(structural)
        if template is None:
            template = self.templates[structural] = self.config_loader.load_sweep_config(self.master, list(structural))
        return with_values(template, [o for o, shaping in zip(parsed, shapes) if not shaping])


def check_sweeper_settings(max_batch_size: int | None, max_ensemble_size: int) -> None:
    """The sweeper's own keys, checked before anything is composed or created. Raises ConfigError."""
    for key, value, allowed_none in (("max_batch_size", max_batch_size, True),
                                     ("max_ensemble_size", max_ensemble_size, False)):
        if (value is None and not allowed_none) or (value is not None and value < 1):
            allowed = "a whole number >= 1" + (" or null (all jobs in one batch)" if allowed_none else "")
            raise ConfigError(f"The 'hydra.sweeper.{key}' parameter must be {allowed}. Got {value!r}.")


def compose_jobs(config_loader, master: DictConfig, job_overrides: Sequence[Sequence[str]]) -> list[Job]:
    """Every job's config, composed as the launcher will and validated. Raises ConfigError."""
    jobs = []
    composer = SweepComposer(config_loader, master)
    for overrides in job_overrides:
        overrides = list(overrides)
        try:
            cfg = composer.compose(overrides)
        except Exception as error:
            explained = explain_composition_error(
                error, overrides, lambda kept: config_loader.load_sweep_config(master, kept)
            )
            if explained is None:
                raise
            raise ConfigError(f"{explained} (job {' '.join(overrides)})") from error
        check_targets(cfg)
        learner = OmegaConf.select(cfg, "hydra.runtime.choices.learner")
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            run = typed(cfg)
            cost = check_cost(run)
        except ConfigError as error:
            raise ConfigError(f"{error} (job {' '.join(overrides)})") from error
        for key in ("enabled", "uri", "experiment"):
            if getattr(run.tracking, key) != master.tracking[key]:
                raise ConfigError(
                    f"The 'tracking.{key}' parameter must be the same for every job of a sweep. "
                    f"Got {getattr(run.tracking, key)!r} instead of {master.tracking[key]!r} (job {' '.join(overrides)})."
                )
        hashes = resume_hashes(run)  # the current layout's hash first
        jobs.append(Job(overrides, run, hashes[0], resume_hashes=hashes, learner=learner,
                        artifact_bytes=cost.artifact_bytes, num=len(jobs)))
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    for job in jobs:
        job.label = " ".join(o for o in job.overrides if o not in shared) or " ".join(job.overrides) or "(defaults)"
    return jobs


def sweep_key(experiment: str, jobs: list[Job], code: str | None) -> str:
    """Identity of a sweep: its experiment, the set of its jobs' config hashes and the code version
    (None when resume ignores the code)."""
    content = json.dumps([experiment, sorted(j.config_hash for j in jobs)] + ([code] if code else []))
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def jobs_manifest(jobs: list[Job]) -> list[dict[str, Any]]:
    """Every job of the sweep, trained now or skipped: its runs are the training runs with its
    config hash, whichever sweep id they carry."""
    return [{"overrides": j.overrides, "config_hash": j.config_hash, "skipped": j.skip_reason} for j in jobs]


def open_parent(client: RetryingClient, experiment_id: str, key: str, overrides: list[str],
                code_tags: dict[str, str]) -> tuple[Sweep, int, int]:
    """The parent run of this sweep: the earlier one with the same key (set RUNNING again, the
    reason it stopped removed) or a new one. It names this process (``forgetlab.process``, and a
    heartbeat the caller keeps up), so that a later sweep can tell when it died (``end_stale_sweeps``).
    Returns it with its start time and the time its earlier calls ran (ms; its end time minus its
    start time, as ``_end_parent`` sets them)."""
    same_sweep = [contract.tag_equals(contract.TAG_KIND, contract.KIND_SWEEP),
                  contract.tag_equals(contract.TAG_SWEEP_KEY, key)]
    earlier = client.search_runs(
        [experiment_id], filter_string=" and ".join(same_sweep), order_by=["attributes.start_time DESC"], max_results=1,
    )
    me = process_identity()
    owner = {contract.TAG_PROCESS: me, contract.TAG_HEARTBEAT: beat_value()}
    if earlier:
        parent = earlier[0]
        ended = parent.info.end_time or int(float(parent.data.tags.get(contract.TAG_HEARTBEAT, 0)) * 1000)
        active = max(0, (ended or parent.info.start_time) - parent.info.start_time)
        client.update_run(parent.info.run_id, status="RUNNING")
        if contract.TAG_ERROR in parent.data.tags:
            client.delete_tag(parent.info.run_id, contract.TAG_ERROR)
        for tag, value in {**code_tags, **owner}.items():
            client.set_tag(parent.info.run_id, tag, value)
        return Sweep(parent.data.tags[contract.TAG_SWEEP_ID], parent.info.run_id, me), parent.info.start_time, active
    sweep_id = new_sweep_id()
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep {sweep_id}",
        tags={
            contract.TAG_SWEEP_ID: sweep_id,
            contract.TAG_KIND: contract.KIND_SWEEP,
            contract.TAG_OVERRIDES: " ".join(overrides),
            contract.TAG_SWEEP_KEY: key,
            **code_tags,
            **owner,
        },
    )
    return Sweep(sweep_id, parent.info.run_id, me), parent.info.start_time, 0


def resume_lines(jobs: list[Job], same: str) -> list[str]:
    """The console's account of what resume decided, one line per kind of decision (not one per job):
    ``[sweep] skip 72 of 72 jobs: FINISHED before (same config and code)``; jobs still running
    elsewhere are named, as they may be a mistake."""
    finished = [j for j in jobs if j.skip_reason and j.skip_reason.startswith("FINISHED")]
    other = [j for j in jobs if j.skip_reason and not j.skip_reason.startswith("FINISHED")]
    running = [j for j in jobs if j.running_reason]
    retrain = [j for j in jobs if j.retrain_reason]
    lines = []
    if finished:
        lines.append(f"[sweep] skip {len(finished)} of {len(jobs)} jobs: FINISHED before ({same}; "
                     "tracking.resume=false trains them again)")
    lines += [f"[sweep] skip {j.label}: {j.skip_reason}" for j in other]
    lines += [f"[sweep] not trained {j.label}: {j.running_reason}" for j in running]
    if retrain:
        lines.append(f"[sweep] retrain {len(retrain)} of {len(jobs)} jobs: their runs FINISHED with other code "
                     f"(e.g. {retrain[0].label}: {retrain[0].retrain_reason}; tracking.resume_ignores_code=true "
                     "skips them)")
    return lines


def start_line(sweep_id: str, jobs: list[Job], to_run: list[Job], launches: int, parallel: int, sweep_dir: Path) -> str:
    """The sweep's first line: how many jobs, how they run, and where each job's log is."""
    ensembles = f" in {launches} launch{'es' * (launches != 1)}" if launches != len(to_run) else ""
    return (f"[sweep] {sweep_id}: {len(jobs)} jobs, {len(to_run)} to train{ensembles}, {parallel} at a time; "
            f"each job's log: {sweep_dir}/<job num>/train.log")


def report_dead_runs(dead: list) -> None:
    """One line for the runs ``end_dead_runs`` ended: left RUNNING by a process that is gone."""
    if dead:
        print(f"[sweep] ended KILLED {len(dead)} run(s) that a process now gone (a lost server, kill -9, a lost node) "
              "had left RUNNING", flush=True)


def entry_point(root_dir: str) -> str:
    """The script this process runs, relative to the project root when it lies inside it."""
    script = Path(sys.argv[0]).resolve()
    try:
        return script.relative_to(Path(root_dir).resolve()).as_posix()
    except ValueError:
        return str(script)


def describe_lost_worker(error: BaseException) -> str:
    """One line for a launcher's lost worker: the error's first sentence and the exit codes loky reports."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    first_sentence = lines[0].split(". ")[0].rstrip(".")
    exit_codes = [line.rstrip(".") for line in lines if "exit code" in line]
    return f"{type(error).__name__}: {'. '.join([first_sentence, *exit_codes])}"


# MLflow's rule for param names; an override key outside it (rare) is left out of the parent's params.
PARAM_KEY = re.compile(r"^[/\w.\- :]+$")


def swept_params(jobs: list[Job]) -> dict[str, str]:
    """The override keys whose value differs across jobs, each with its values in sweep order, set
    apart so that the UI wraps them: ``{"seed": "0, 1, 2", "learner": "mlp_backprop, rnn_rtrl"}``."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for override in job.overrides:
            key, _, value = override.partition("=")
            seen = values.setdefault(key.lstrip("+~"), [])
            if value not in seen:
                seen.append(value)
    return {k: ", ".join(v) for k, v in values.items() if len(v) > 1 and PARAM_KEY.match(k)}


def log_swept_params(client: RetryingClient, parent_run_id: str, jobs: list[Job]) -> None:
    """The parent's params; a reused parent keeps the values it has (MLflow params never change)."""
    logged = client.get_run(parent_run_id).data.params
    new = [Param(k, v) for k, v in swept_params(jobs).items() if k not in logged]
    for i in range(0, len(new), 100):
        client.log_batch(parent_run_id, params=new[i : i + 100])


def job_runs(client: RetryingClient, experiment_id: str, jobs: list[Job], code_identity: str | None) -> dict[int, Any]:
    """Job number -> the newest FINISHED run of its config and code (trained now or before, like
    ``sweep_jobs.json``; any code when ``code_identity`` is None), for the jobs that have one."""
    runs = {}
    for job in jobs:
        run = newest_finished_run(client, experiment_id, job.resume_hashes or (job.config_hash,),
                                  code_version=code_identity)
        if run is not None:
            runs[job.num] = run
    return runs


def finals_of(runs: dict[int, Any]) -> dict[int, dict[str, float]]:
    """Job number -> the ``final/*`` metrics of its run."""
    return {num: {k: v for k, v in run.data.metrics.items() if k.startswith("final/")} for num, run in runs.items()}


def log_sweep_summary(client: RetryingClient, parent_run_id: str, jobs: list[Job], runs: dict[int, Any],
                      failed: int, table: pd.DataFrame) -> dict[str, float]:
    """The parent's summary: job counts as metrics at step 0 (which MLflow's chart view draws as bars),
    and the results table (``results.results_table``) as a table artifact the UI shows. The counts
    describe the sweep, not one call of it: ``jobs_finished`` have a FINISHED run, ``jobs_trained`` of
    them were trained by this sweep (in any of its calls), ``jobs_skipped`` had one from before it."""
    trained = sum(run.data.tags.get(contract.TAG_PARENT_RUN_ID) == parent_run_id for run in runs.values())
    summary = {
        contract.METRIC_SWEEP_JOBS: len(jobs),
        contract.METRIC_SWEEP_FINISHED: len(runs),
        contract.METRIC_SWEEP_TRAINED: trained,
        contract.METRIC_SWEEP_SKIPPED: len(runs) - trained,
        contract.METRIC_SWEEP_FAILED: failed,
    }
    client.log_batch(parent_run_id, metrics=[Metric(k, float(v), now_ms(), 0) for k, v in summary.items()])
    if not table.empty:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / contract.ARTIFACT_SWEEP_RESULTS
            table.to_json(path, orient="split", index=False)
            client.log_artifact(parent_run_id, str(path))
        client.set_tag(parent_run_id, MLFLOW_LOGGED_ARTIFACTS,
                       json.dumps([{"path": contract.ARTIFACT_SWEEP_RESULTS, "type": "table"}]))
    return summary


# --- the sweeper --------------------------------------------------------------------------------


class ResumableSweeper(Sweeper):
    """Hydra's basic sweeper (same ``params`` and ``max_batch_size``) with the steps of the module doc.

    It reuses the basic sweeper's expansion but does not subclass it: Hydra's plugin scan re-executes
    the basic sweeper's module, so its class object changes after import and ``super()`` breaks."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None,
                 ensemble: bool = True, max_ensemble_size: int = 8) -> None:
        super().__init__()
        self.max_batch_size, self.params = max_batch_size, dict(params or {})
        self.ensemble, self.max_ensemble_size = ensemble, max_ensemble_size  # see ensembles.py
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None
        # set by sweep() for the launches and their recovery
        self.client: RetryingClient | None = None
        self.experiment_id: str | None = None
        self.code_identity: str | None = None  # the code version resume matches; None when it ignores the code
        self.sweep_run: Sweep | None = None
        self.finals: dict[int, dict[str, float]] = {}  # job number -> final metrics, as the jobs reported them
        self.results: pd.DataFrame | None = None  # the results table (results.py)
        self.call_started = time.monotonic()
        self.parent_start_ms, self.parent_active_ms = now_ms(), 0  # the parent run's start, and its earlier calls' time

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        stopping.handle_stop_signals()
        self.call_started = time.monotonic()
        sweep_dir = Path(self.config.hydra.sweep.dir)
        jobs = self._compose(arguments)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        code = code_version(Path(self.config.paths.root_dir) / "conf")
        self.code_identity = None if self.config.tracking.resume_ignores_code else code.code_hash
        self.sweep_run = sweep = self._open_parent(jobs, code)
        to_run = [job for job in jobs if job.skip_reason is None and job.running_reason is None]
        outcomes, store_error = self._run_and_end_parent(jobs, to_run, sweep, sweep_dir, code)
        failed = [o for o in outcomes if o.result == "failed"]
        self._print_summary(jobs, to_run, outcomes, failed)
        if store_error is None and not any(o.error.startswith(LOST_STORE) for o in failed):
            self._add_figures(sweep)  # not after a lost store: the LOST line above says why there are none
        if store_error is not None:
            print(f"{store_error.label}: {store_error}", file=sys.stderr, flush=True)
            sys.exit(2)
        if failed or outcome_counts(jobs, to_run, outcomes)["running"]:
            sys.exit(1)
        return outcomes

    def _compose(self, arguments: list[str]) -> list[Job]:
        """Every job of the sweep, composed and validated; a bad one exits with code 2 before anything is written."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        params = [f"{key}={value}" for key, value in self.params.items()]
        overrides = parser.parse_overrides(params + list(arguments))
        batches = basic_sweeper.BasicSweeper.split_arguments(overrides, None)
        job_overrides = [job for batch in batches for job in batch]
        try:
            check_sweeper_settings(self.max_batch_size, self.max_ensemble_size)
            return compose_jobs(self.hydra_context.config_loader, self.config, job_overrides)
        except ConfigError as error:
            print(f"Invalid config: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    def _open_parent(self, jobs: list[Job], code) -> Sweep:
        """Open the store, decide each job's resume, end stale sweeps and open (or reopen) the parent run;
        a store that cannot be used exits with code 2 before any job runs. Without tracking, a sweep id only."""
        tracking = self.config.tracking
        self.client = None
        if not tracking.enabled:
            return Sweep(new_sweep_id(), None, process_identity())
        try:
            self.client = client = open_store(tracking.uri, create_dir=tracking.create_store_dir)
            report_dead_runs(end_dead_runs(client, stale_after_s=tracking.stale_after_s))
            self.experiment_id = get_or_create_experiment(client, tracking.experiment, tracking.artifact_location)
            self._decide(jobs)
            check_artifact_location(tracking.uri, tracking.experiment, tracking.artifact_location,
                                    sum(j.artifact_bytes for j in jobs if not (j.skip_reason or j.running_reason)))
            end_stale_sweeps(client, self.experiment_id, stale_after_s=tracking.stale_after_s)
            key = sweep_key(tracking.experiment, jobs, self.code_identity)
            sweep, self.parent_start_ms, self.parent_active_ms = open_parent(
                client, self.experiment_id, key, list(self.config.hydra.overrides.task),
                source_tags(code, entry_point(self.config.paths.root_dir)))
            return sweep
        except StoreError as error:  # nothing has run yet: stop as a bad config does
            print(f"{error.label}: {error}", file=sys.stderr, flush=True)
            sys.exit(2)

    def _decide(self, jobs: list[Job]) -> None:
        """Each job's resume decision (module doc, step 3). Runs of its config and code RUNNING for a
        sweep whose process died are waited for (at most ``ORPHAN_WAIT_S``) while their workers end
        them, then decided again: a job is done only by a FINISHED run."""
        tracking = self.config.tracking

        def decide(job: Job):
            decision = resume_decision(
                self.client, self.experiment_id, job.resume_hashes or (job.config_hash,),
                code_version=self.code_identity, resume=tracking.resume,
                stale_after_s=tracking.stale_after_s, label=job.label,
            )
            job.skip_reason, job.retrain_reason, job.running_reason = (decision.skip, decision.retrain,
                                                                       decision.running_reason)
            return decision.running

        running = {job.label: run for job in jobs if (run := decide(job)) is not None}
        orphans = [run for run in running.values() if is_orphan(self.client, run)]
        if not orphans:
            return
        print(f"[sweep] waiting (at most {ORPHAN_WAIT_S:.0f} s) for {len(orphans)} run(s) of a sweep whose process "
              "died: their workers end them", flush=True)
        wait_for_runs(self.client, orphans, timeout_s=ORPHAN_WAIT_S)
        for job in jobs:
            if job.label in running:
                decide(job)

    def _run_and_end_parent(self, jobs: list[Job], to_run: list[Job], sweep: Sweep, sweep_dir: Path, code
                            ) -> tuple[list[Outcome], StoreError | None]:
        """Run the jobs; whatever happens from here on, the parent run ends with a status (and the reason)."""
        tracking = self.config.tracking
        heartbeat = None
        if self.client is not None:
            heartbeat = Heartbeat(self.client, sweep.parent_run_id, tracking.stale_after_s / 10, beat_now=False)
        outcomes: list[Outcome] = []
        status, reason, store_error = "FAILED", None, None
        quiet_launcher_log(self.launcher)
        try:
            outcomes = self._run_jobs(jobs, to_run, sweep, sweep_dir, code)
            summary = self._log_summary(jobs, to_run, outcomes, sweep)
            status, reason = final_status(jobs, outcome_counts(jobs, to_run, outcomes), summary)
        except KeyboardInterrupt as stop:
            status, reason = "KILLED", failure_reason(stop)
            print(f"[sweep] {sweep.sweep_id} stopped: {reason}. Re-run the same command to resume: "
                  "finished jobs are skipped.", file=sys.stderr, flush=True)
            raise
        except StoreError as error:  # the store failed under the sweeper before its jobs ran (e.g. its server died)
            reason, store_error = failure_reason(error), error
        except BaseException as error:  # the launcher itself broke
            reason = failure_reason(error)
            print("[sweep] the launcher failed; re-run the same command to resume the sweep", file=sys.stderr)
            raise
        finally:
            if heartbeat is not None:
                heartbeat.stop()
            self._end_parent(sweep, status, reason)
        return outcomes, store_error

    def _run_jobs(self, jobs: list[Job], to_run: list[Job], sweep: Sweep, sweep_dir: Path, code) -> list[Outcome]:
        """Record the sweep on its parent, then launch its jobs (as ensembles where they can share one) in batches."""
        if self.client is not None:
            log_code_diff(self.client, sweep.parent_run_id, code)
            self.client.log_dict(sweep.parent_run_id, jobs_manifest(jobs), contract.ARTIFACT_SWEEP_JOBS)
            log_swept_params(self.client, sweep.parent_run_id, jobs)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(sweep)))
        for line in resume_lines(jobs, same="same config and code" if self.code_identity else "same config"):
            print(line, flush=True)
        init_launcher_workers(self.launcher)
        if (note := parallelism_note(self.launcher)) is not None:
            print(note, flush=True)
        outcomes: list[Outcome] = []
        units = launches(to_run, sweep_dir, ensemble=self.ensemble, max_size=self.max_ensemble_size,
                         parallel=parallel_jobs(self.launcher))
        print(start_line(sweep.sweep_id, jobs, to_run, len(units), parallel_jobs(self.launcher), sweep_dir), flush=True)
        with stopping.jobs_elsewhere(sweep_dir / STOP_FILE), \
                SweepProgress(sweep_dir, len(jobs), len(jobs) - len(to_run), f"sweep {sweep.sweep_id}") as progress:
            size = self.max_batch_size or len(units) or 1
            for start in range(0, len(units), size):
                outcomes += self._launch(units[start : start + size], start)
            # The jobs' own records miss those that lost their worker: the bar ends on the sweeper's counts.
            counts = outcome_counts(jobs, to_run, outcomes)  # the bar counts a job running elsewhere as skipped
            progress.settle(skipped=counts["skipped"] + counts["running"], trained=counts["trained"],
                            failed=counts["failed"])
        self.finals = progress.finals
        return outcomes

    def _log_summary(self, jobs: list[Job], to_run: list[Job], outcomes: list[Outcome], sweep: Sweep
                     ) -> dict[str, float] | None:
        """The results table (from the jobs' runs with tracking, else from what the jobs reported) and,
        with tracking, the parent's summary metrics (``log_sweep_summary``, returned; None without them)
        and its address."""
        if self.client is None or sweep.parent_run_id is None:
            self.results = results_table(jobs, self.finals)
            return None
        tracking = self.config.tracking
        try:
            runs = job_runs(self.client, self.experiment_id, jobs, self.code_identity)
            self.results = results_table(jobs, finals_of(runs))
            summary = log_sweep_summary(self.client, sweep.parent_run_id, jobs, runs,
                                        outcome_counts(jobs, to_run, outcomes)["failed"], self.results)
            print(f"[sweep] parent run {sweep.parent_run_id}: "
                  f"{ui_url(tracking.uri, self.experiment_id, sweep.parent_run_id)}\n"
                  f"[sweep] compare the runs (their final metrics as columns; the chart view draws them as bars): "
                  f"{ui_url(tracking.uri, self.experiment_id)}", flush=True)
            return summary
        except StoreError as error:  # the jobs are over: their outcome decides the exit code
            print(f"[sweep] could not record the summary on the parent run: {error}", file=sys.stderr, flush=True)
            return None

    def _add_figures(self, sweep: Sweep) -> None:
        """The figures of the sweep's finished runs, drawn once its jobs are done rather than in each
        job (tracking/run_figures.py; a cluster's jobs never import matplotlib): the UI shows them in
        each run's artifacts. With a joblib launcher its idle workers draw them, a share each
        (drawing is ~0.3 s of CPU a run, on one core the largest part of `make study`'s wall time
        after its jobs); here, what they did not draw."""
        if self.client is None or sweep.parent_run_id is None:
            return
        try:
            runs = finished_runs(self.client, self.experiment_id, sweep_id=sweep.sweep_id)
            draw_in_workers(self.launcher, self.config.tracking.uri, [run.info.run_id for run in runs])
            add_missing_figures(self.client, runs)  # none left, unless a worker could not draw its share
        except StoreError as error:  # the runs are complete without them: `python -m forgetlab.tracking.run_figures`
            print(f"[sweep] could not add the runs' figures: {error}", file=sys.stderr, flush=True)

    def _end_parent(self, sweep: Sweep, status: str, reason: str | None) -> None:
        if self.client is None or sweep.parent_run_id is None:
            return
        try:
            if reason is not None:
                end_orphaned_runs(self.client, self.experiment_id, sweep.parent_run_id,
                                  reason=f"{reason} (its sweep ended before the job did)",
                                  stale_after_s=self.config.tracking.stale_after_s)
                self.client.set_tag(sweep.parent_run_id, contract.TAG_ERROR, reason[:5000])
            # Its duration is the time its calls ran, not the time since its first call began.
            self.client.set_terminated(sweep.parent_run_id, status,
                                       end_time=self.parent_start_ms + self.parent_active_ms + self._call_ms())
        except StoreError as error:  # the summary below matters more than the parent's status
            print(f"[sweep] could not end the parent run {status}: {error}", file=sys.stderr, flush=True)

    def _call_ms(self) -> int:
        return int((time.monotonic() - self.call_started) * 1000)

    def _print_summary(self, jobs: list[Job], to_run: list[Job], outcomes: list[Outcome], failed: list[Outcome]) -> None:
        """The results table, then the counts line and the failed jobs."""
        if getattr(self, "results", None) is not None and not self.results.empty:
            print("\n" + format_table(self.results) + "\n", flush=True)
        counts = outcome_counts(jobs, to_run, outcomes)
        same = "same config and code" if self.code_identity else "same config"
        running = f", {counts['running']} still RUNNING elsewhere (not done)" if counts["running"] else ""
        print(f"[sweep] {self.sweep_run.sweep_id}: {len(jobs)} jobs: {counts['skipped']} skipped ({same}), "
              f"{counts['trained']} trained, {counts['failed']} failed{running}", flush=True)
        lost = [o for o in failed if o.error.startswith(LOST_STORE)]
        for outcome in failed:
            if outcome not in lost:
                where = f" (job dir {outcome.job_dir})" if outcome.job_dir else ""
                print(f"[sweep] FAILED {outcome.job.label}: {outcome.error}{where}", file=sys.stderr, flush=True)
        if lost:
            print(f"[sweep] LOST the tracking store: {len(lost)} job(s) failed with it: "
                  f"{', '.join(o.job.label for o in lost)} ({lost[0].error}). Runs it holds RUNNING end KILLED at "
                  "the next sweep or run, or by `python -m forgetlab.server repair`.", file=sys.stderr, flush=True)
        elsewhere = [(job.label, job.running_reason) for job in jobs if job.running_reason]
        elsewhere += [(o.job.label, o.error) for o in outcomes if o.result == "running"]
        for label, reason in elsewhere:
            print(f"[sweep] NOT DONE {label}: {reason}; re-run the same command once it has ended",
                  file=sys.stderr, flush=True)

    def _launch(self, batch: list[Launch], first_index: int) -> list[Outcome]:
        """Launch ``batch`` (job numbers from ``first_index``); a lost worker fails only its launch's jobs."""
        started_ms = now_ms()
        try:
            results = self.launcher.launch([unit.overrides for unit in batch], initial_job_idx=first_index)
        except BrokenExecutor as error:  # a worker process died: killed by the OS, out of memory, ...
            stopping.raise_if_stopped()  # it died of a stop signal (one that came before it could ignore it)
            return self._relaunch_lost(batch, first_index, describe_lost_worker(error), started_ms)
        return [outcome for unit, result in zip(batch, results) for outcome in outcomes_of(unit, result)]

    def _relaunch_lost(self, batch: list[Launch], first_index: int, lost: str, started_ms: int) -> list[Outcome]:
        """After ``batch`` lost a worker: end its orphaned runs KILLED, keep what its jobs recorded
        before, and run the others again one job at a time (an ensemble's members too)."""
        client, parent = self.client, self.sweep_run.parent_run_id
        if client is not None and parent is not None:
            end_orphaned_runs(client, self.experiment_id, parent, reason=f"Its worker process was lost ({lost})",
                              stale_after_s=self.config.tracking.stale_after_s)
        if len(batch) == 1 and len(batch[0].jobs) == 1:
            job = batch[0].jobs[0]
            print(f"[sweep] {job.label} lost its worker process again: {lost}", file=sys.stderr, flush=True)
            return [Outcome(job, "failed", f"its worker process was lost ({lost})")]
        print(f"[sweep] a worker process was lost ({lost}); the jobs of its batch that did not end run again "
              "one at a time", file=sys.stderr, flush=True)
        outcomes = []
        index = first_index
        for unit in batch:
            for k, job in enumerate(unit.jobs):
                ended = None
                if client is not None and parent is not None:
                    runs = nested_runs(client, self.experiment_id, parent, config_hash=job.config_hash,
                                       since_ms=started_ms)
                    ended = next((r for r in runs if r.info.status in ("FINISHED", "FAILED")), None)
                if ended is None:
                    alone = Launch([job])
                    if unit.ensemble_file is not None:
                        alone = ensemble_launch(Path(self.config.hydra.sweep.dir),
                                                f"{Path(unit.ensemble_file).stem}-{k}.json", [job])
                    outcomes += self._launch([alone], index)
                    index += 1
                elif ended.info.status == "FINISHED":
                    outcomes.append(Outcome(job, "trained"))
                else:
                    outcomes.append(Outcome(job, "failed", ended.data.tags.get(contract.TAG_ERROR, "FAILED")))
        return outcomes


def outcome_counts(jobs: list[Job], to_run: list[Job], outcomes: list[Outcome]) -> dict[str, int]:
    """The sweep's ``skipped``/``trained``/``failed``/``running`` counts, as its summary line, progress
    bar and parent metrics give them: skipped before launch or found done by the job itself; running:
    trained by another live process (found before launch or by the job itself), not done."""
    running_before = sum(job.running_reason is not None for job in jobs)
    return {
        "skipped": len(jobs) - len(to_run) - running_before + sum(o.result == "skipped" for o in outcomes),
        "trained": sum(o.result == "trained" for o in outcomes),
        "failed": sum(o.result == "failed" for o in outcomes),
        "running": running_before + sum(o.result == "running" for o in outcomes),
    }


def final_status(jobs: list[Job], counts: dict[str, int], summary: dict[str, float] | None) -> tuple[str, str | None]:
    """The parent's status and reason: FINISHED only when no job failed and every job has a FINISHED
    run of this code (the summary's ``sweep/jobs_finished``; without a summary, the counts)."""
    if counts["failed"]:
        return "FAILED", None
    finished = summary[contract.METRIC_SWEEP_FINISHED] if summary else len(jobs) - counts["running"]
    if finished >= len(jobs):
        return "FINISHED", None
    elsewhere = f", {counts['running']} of them still RUNNING in other processes" if counts["running"] else ""
    return "FAILED", f"{len(jobs) - int(finished)} of {len(jobs)} jobs have no FINISHED run{elsewhere}"


def outcomes_of(unit: Launch, result: JobReturn) -> list[Outcome]:
    """The outcome of every job of ``unit`` from its launch's ``result``."""
    where = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result.hydra_cfg else None
    if result.status != JobStatus.COMPLETED:
        error = result._return_value
        return [Outcome(job, "failed", f"{type(error).__name__}: {error}", where) for job in unit.jobs]
    value = result.return_value
    if isinstance(value, JobStopped):  # its process was stopped, the sweep was not (e.g. one node's time limit)
        return [Outcome(job, "failed", value.reason, where) for job in unit.jobs]
    members = value.members if isinstance(value, EnsembleReturn) else (value,) * len(unit.jobs)
    outcomes = []
    for job, member in zip(unit.jobs, members):
        if isinstance(member, JobSkipped):
            outcomes.append(Outcome(job, "skipped"))
        elif isinstance(member, RunningElsewhere):
            outcomes.append(Outcome(job, "running", member.reason, where))
        elif isinstance(member, MemberFailed):
            outcomes.append(Outcome(job, "failed", member.reason, where))
        else:
            outcomes.append(Outcome(job, "trained", job_dir=where))
    return outcomes


def init_launcher_workers(launcher) -> None:
    """Make Hydra's joblib launcher start its workers ignoring SIGINT and SIGTERM (a job installs
    its own handler: an idle worker that died of the signal would make loky SIGKILL the others) and
    watching this process, so that they die with it (``stopping.init_worker``)."""
    options = getattr(launcher, "joblib", None)
    if isinstance(options, dict):
        options.setdefault("initializer", stopping.init_worker)


def draw_in_workers(launcher, tracking_uri: str, run_ids: list[str]) -> None:
    """The figures of ``run_ids`` drawn by the joblib launcher's workers, an interleaved share each,
    when it runs several at a time (its loky workers are still up from the jobs, with forgetlab
    imported). Nothing with another launcher, or a single worker; a share that fails is left to the
    caller, which draws what is missing."""
    options = getattr(launcher, "joblib", None)
    parallel = parallel_jobs(launcher)
    if not isinstance(options, dict) or parallel < 2 or len(run_ids) < 2:
        return
    from joblib import Parallel, delayed

    shares = [run_ids[i::parallel] for i in range(min(parallel, len(run_ids)))]
    try:
        Parallel(**options)(delayed(add_figures_of)(tracking_uri, share) for share in shares)
    except Exception as error:  # noqa: BLE001  (the caller draws what is missing)
        print(f"[sweep] the workers could not draw the runs' figures ({type(error).__name__}: {error}); "
              "drawing them here", file=sys.stderr, flush=True)


def parallelism_note(launcher) -> str | None:
    """One line for joblib's ``n_jobs`` < 0 (counted back from the CPU count): how many jobs that is
    here. Accepted, as joblib documents it, but the number depends on the machine."""
    options = getattr(launcher, "joblib", None)
    n_jobs = options.get("n_jobs") if isinstance(options, dict) else None
    if not isinstance(n_jobs, int) or n_jobs >= 0:
        return None
    return (f"[sweep] hydra.launcher.n_jobs={n_jobs}: {parallel_jobs(launcher)} jobs at a time on this machine "
            f"({os.cpu_count()} CPUs; joblib counts negative values back from the CPU count)")


def quiet_launcher_log(launcher) -> None:
    """The launcher's own "#3 : seed=1 ..." line per job would scroll through the progress bar; the
    same list is in the parent's ``sweep_jobs.json`` and every job's ``.hydra/overrides.yaml``."""
    logging.getLogger(type(launcher).__module__.rpartition(".")[0]).setLevel(logging.WARNING)
