"""Does a config still need a run? The resume query of a sweep, asked by the sweeper before it
launches and by each job again when it starts (docs/tracking.md, "Sweeps").

A run's identity is its config hash *and* its code version (``code_version.py``): a FINISHED run
of other code does not make a job skip, unless ``tracking.resume_ignores_code`` (then the caller
passes ``code_version=None``). A RUNNING run whose process is gone (``liveness.is_stale``) is
marked KILLED on the way, whatever its code, so it never blocks its config again. Only a FINISHED
run makes a job done: one RUNNING in a live process is reported as such (``ResumeDecision.running``)
and, when it is an orphan of a dead sweep, waited for while its worker ends it (``wait_for_runs``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from forgetlab import contract, stopping
from forgetlab.tracking.code_version import code_version as current_code_version
from forgetlab.tracking.liveness import is_local, is_stale, process_identity
from forgetlab.tracking.mlflow_run import resume_hashes
from forgetlab.tracking.store import RetryingClient, StoreError, open_store


# How long a sweep waits for the runs of a dead sweep's workers to end: each notices its parent's
# death within stopping.PARENT_POLL_S and ends its run within stopping.GRACE_S.
ORPHAN_WAIT_S = stopping.GRACE_S + 10.0


@dataclass(frozen=True)
class ResumeDecision:
    skip: str | None = None  # why the job needs no new run: a FINISHED run of its config and code
    retrain: str | None = None  # why a config with a FINISHED run trains again: that run is of other code
    running: Run | None = None  # a run of its config and code RUNNING in a live process (no FINISHED one)

    @property
    def running_reason(self) -> str | None:
        if self.running is None:
            return None
        return (f"still RUNNING as run {self.running.info.run_id} "
                f"({self.running.data.tags.get(contract.TAG_PROCESS, '?')})")


def training_runs(client: RetryingClient, experiment_id: str, config_hashes: Sequence[str],
                  clauses: Sequence[str] = (), **search: Any) -> list[Run]:
    """The training runs that carry any of ``config_hashes`` and meet ``clauses``: one search per hash
    (a filter string has no OR), ``search`` passed to each."""
    return [
        run
        for config_hash in config_hashes
        for run in client.search_runs(
            [experiment_id],
            filter_string=" and ".join([contract.tag_equals(contract.TAG_CONFIG_HASH, config_hash),
                                        contract.tag_equals(contract.TAG_KIND, contract.KIND_TRAIN), *clauses]),
            **search,
        )
    ]


def end_killed(client: RetryingClient, run_id: str, reason: str) -> None:
    """End ``run_id`` KILLED, with ``reason`` as its ``forgetlab.error``."""
    client.set_tag(run_id, contract.TAG_ERROR, reason[:5000])
    client.set_terminated(run_id, "KILLED")


def resume_decision(client: RetryingClient, experiment_id: str, config_hashes: Sequence[str], *,
                    code_version: str | None, resume: bool, stale_after_s: float, label: str) -> ResumeDecision:
    """Skip a job whose runs carry one of ``config_hashes`` (runs recorded before a config layout
    change carry an older one) when a run of the same config and code (any code when
    ``code_version`` is None) FINISHED (when resuming); else name the run of the same config and code
    RUNNING alive elsewhere, if any (the job is not done). RUNNING runs without a live process are
    marked KILLED on the way."""
    runs = training_runs(client, experiment_id, config_hashes, max_results=1000)
    skip = other_code = running = None
    for run in runs:
        status, run_id = run.info.status, run.info.run_id
        run_code = run.data.tags.get(contract.TAG_CODE_VERSION)
        same_code = code_version is None or run_code == code_version
        if status == "RUNNING" and is_stale(run, stale_after_s):
            owner = run.data.tags.get(contract.TAG_PROCESS, "unknown process")
            end_killed(client, run_id, f"Stale: the process that ran it ({owner}) is gone.")
            print(f"[sweep] marked run {run_id} KILLED (its process is gone): {label}", flush=True)
        elif status in ("RUNNING", "SCHEDULED") and same_code:
            running = running or run
        elif status == "FINISHED" and resume and skip is None:
            if same_code:
                skip = f"FINISHED as run {run_id} (sweep {run.data.tags.get(contract.TAG_SWEEP_ID, '?')})"
            elif other_code is None:
                other_code = (f"FINISHED as run {run_id} with other code (code version {run_code or 'unrecorded'}, "
                              f"now {code_version})")
    if skip:
        return ResumeDecision(skip)
    return ResumeDecision(None, None if running else other_code, running)


def is_orphan(client: RetryingClient, run: Run) -> bool:
    """Whether the RUNNING ``run`` is trained on this machine for a sweep whose process is gone:
    its worker notices and ends it KILLED within ``ORPHAN_WAIT_S`` (``stopping.exit_with_parent``)."""
    parent_id = run.data.tags.get(contract.TAG_PARENT_RUN_ID)
    if not parent_id or not is_local(run):
        return False
    try:
        parent = client.get_run(parent_id)
    except MlflowException:  # its parent was deleted: nothing says its sweep is gone
        return False
    if contract.TAG_PROCESS not in parent.data.tags:
        return False
    return parent.info.status != "RUNNING" or is_stale(parent, float("inf"))


def wait_for_runs(client: RetryingClient, runs: Sequence[Run], *, timeout_s: float, poll_s: float = 0.5) -> list[Run]:
    """Wait until every one of ``runs`` has ended or lost its process, at most ``timeout_s``; returns
    those still RUNNING in a live process."""
    deadline = time.monotonic() + timeout_s
    waiting = list(runs)
    while True:
        waiting = [run for run in (client.get_run(r.info.run_id) for r in waiting)
                   if run.info.status == "RUNNING" and not is_stale(run, float("inf"))]
        if not waiting or time.monotonic() >= deadline:
            return waiting
        time.sleep(poll_s)


def code_identity(cfg) -> str | None:
    """The code version that resume matches for ``cfg``'s runs: None when it ignores the code."""
    if cfg.tracking.resume_ignores_code:
        return None
    return current_code_version(Path(cfg.paths.root_dir) / "conf").code_hash


def job_decision(cfg, label: str) -> ResumeDecision:
    """``resume_decision`` for one job's config, from inside the job."""
    client = open_store(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return ResumeDecision()
    return resume_decision(
        client, experiment.experiment_id, resume_hashes(cfg), code_version=code_identity(cfg),
        resume=cfg.tracking.resume, stale_after_s=cfg.tracking.stale_after_s, label=label,
    )


# --- a sweep's runs after its launcher stopped or lost a worker -----------------------------------


def nested_runs(client: RetryingClient, experiment_id: str, parent_run_id: str, *, config_hash: str | None = None,
                status: str | None = None, since_ms: int = 0) -> list[Run]:
    """The training runs nested under ``parent_run_id`` (newest first), optionally of one config,
    in one status, started at or after ``since_ms``."""
    clauses = [contract.tag_equals(contract.TAG_PARENT_RUN_ID, parent_run_id),
               contract.tag_equals(contract.TAG_KIND, contract.KIND_TRAIN)]
    if config_hash is not None:
        clauses.append(contract.tag_equals(contract.TAG_CONFIG_HASH, config_hash))
    if status is not None:
        clauses.append(f"attributes.status = '{status}'")
    if since_ms:
        clauses.append(f"attributes.start_time >= {since_ms}")
    return client.search_runs([experiment_id], filter_string=" and ".join(clauses), max_results=1000,
                              order_by=["attributes.start_time DESC"])


def end_orphaned_runs(client: RetryingClient, experiment_id: str, parent_run_id: str, *, reason: str,
                      stale_after_s: float, wait_s: float = 5.0) -> list[str]:
    """End KILLED, with ``reason``, the RUNNING runs under ``parent_run_id`` whose process is gone
    or is this one (its job is over); returns their ids. A process of this machine that was just
    killed may take a moment to go: such runs are waited for up to ``wait_s``. Runs of other
    machines are judged by their heartbeat, so a live job on a cluster node is left alone."""
    me = process_identity()
    deadline = time.monotonic() + wait_s
    while True:
        running = nested_runs(client, experiment_id, parent_run_id, status="RUNNING")
        orphans = [r for r in running if r.data.tags.get(contract.TAG_PROCESS) == me or is_stale(r, stale_after_s)]
        ended = {r.info.run_id for r in orphans}
        dying = [r for r in running if r.info.run_id not in ended and is_local(r)]
        if not dying or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for run in orphans:
        end_killed(client, run.info.run_id, reason)
    return [run.info.run_id for run in orphans]


def end_stale_sweeps(client: RetryingClient, experiment_id: str, *, stale_after_s: float) -> list[str]:
    """End KILLED the RUNNING sweep parents of the experiment whose sweeper process is gone (killed
    with ``kill -9``, or its machine lost), and their training runs left RUNNING with it; returns the
    parents' ids. A sweep is judged only when its parent records its process: a parent written
    before sweeps did (no ``forgetlab.process`` tag) may belong to a sweep that still runs."""
    running = client.search_runs(
        [experiment_id], max_results=1000,
        filter_string=" and ".join([contract.tag_equals(contract.TAG_KIND, contract.KIND_SWEEP),
                                    "attributes.status = 'RUNNING'"]),
    )
    ended = []
    for parent in running:
        if contract.TAG_PROCESS not in parent.data.tags or not is_stale(parent, stale_after_s):
            continue
        run_id = parent.info.run_id
        reason = f"Stale: the sweep process that ran it ({parent.data.tags[contract.TAG_PROCESS]}) is gone."
        end_orphaned_runs(client, experiment_id, run_id, reason=f"{reason} (its job ended with it)",
                          stale_after_s=stale_after_s, wait_s=0.0)
        end_killed(client, run_id, reason)
        print(f"[sweep] marked sweep {parent.data.tags.get(contract.TAG_SWEEP_ID, run_id)} KILLED "
              "(its process is gone)", flush=True)
        ended.append(run_id)
    return ended


def newest_finished_run(client: RetryingClient, experiment_id: str, config_hashes: Sequence[str], *,
                        code_version: str | None) -> Run | None:
    """The newest FINISHED training run of the config (any of ``config_hashes``, as in
    ``resume_decision``) and code (any code when ``code_version`` is None), or None: the run that
    stands for the config, as in ``analysis/`` (older ones are superseded)."""
    clauses = ["attributes.status = 'FINISHED'"]
    if code_version is not None:
        clauses.append(contract.tag_equals(contract.TAG_CODE_VERSION, code_version))
    runs = training_runs(client, experiment_id, config_hashes, clauses, order_by=["attributes.start_time DESC"],
                         max_results=1)
    return max(runs, key=lambda run: run.info.start_time, default=None)


# --- runs a lost server, kill -9 or a lost node left RUNNING ---------------------------------------


def end_dead_runs(client: RetryingClient, *, stale_after_s: float) -> list[Run]:
    """End KILLED, in every experiment of the store, the RUNNING forgetlab runs (training runs and
    sweep parents that record their process) whose process is gone (``liveness.is_stale``): what a
    lost tracking server, ``kill -9`` or a lost node left RUNNING. Called at the next contact (a
    sweep, a single run) and by ``python -m forgetlab.server repair``; returns the runs it ended."""
    experiment_ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    if not experiment_ids:
        return []
    running = client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'", max_results=5000)
    dead = [run for run in running if contract.TAG_KIND in run.data.tags and contract.TAG_PROCESS in run.data.tags
            and is_stale(run, stale_after_s)]
    for run in dead:
        end_killed(client, run.info.run_id,
                   f"Stale: the process that ran it ({run.data.tags[contract.TAG_PROCESS]}) is gone.")
    return dead


def main(argv: list[str] | None = None) -> int:
    """``python -m forgetlab.tracking.resume end-dead-runs URI``: ``end_dead_runs`` from the shell."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m forgetlab.tracking.resume",
                                     description="End KILLED the runs a store holds RUNNING whose process is gone.")
    parser.add_argument("action", choices=["end-dead-runs"])
    parser.add_argument("uri", help="the tracking URI")
    parser.add_argument("--stale-after-s", type=float, default=600.0,
                        help="a run of another machine is dead when its heartbeat is older than this (default 600)")
    args = parser.parse_args(argv)
    try:
        dead = end_dead_runs(open_store(args.uri, create=False, key="URI"), stale_after_s=args.stale_after_s)
    except StoreError as error:
        print(f"{error.label}: {error}", file=sys.stderr)
        return 2
    for run in dead:
        print(f"ended KILLED: run {run.info.run_id} ({run.info.run_name}, experiment {run.info.experiment_id}): "
              f"its process ({run.data.tags[contract.TAG_PROCESS]}) is gone")
    print(f"{len(dead)} run(s) left RUNNING by a process that is gone ended KILLED at {args.uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
