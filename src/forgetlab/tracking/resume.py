"""Does a config still need a run? The resume query of a sweep, asked by the sweeper before it
launches and by each job again when it starts (docs/tracking.md, "Sweeps").

A RUNNING run whose process is gone (``liveness.is_stale``) is marked KILLED on the way, so it
never blocks its config again.
"""

from __future__ import annotations

from typing import Sequence

from omegaconf import DictConfig

from forgetlab import contract
from forgetlab.tracking.liveness import is_stale
from forgetlab.tracking.mlflow_run import resume_hashes
from forgetlab.tracking.store import RetryingClient, open_store


def reason_to_skip(client: RetryingClient, experiment_id: str, config_hashes: Sequence[str], *, resume: bool,
                   stale_after_s: float, label: str) -> str | None:
    """Why a job whose runs carry one of ``config_hashes`` needs no new run (a FINISHED run when
    resuming, or a live RUNNING one), or None. RUNNING runs without a live process are marked KILLED
    on the way. Several hashes: runs recorded before a config layout change carry an older one."""
    runs = [
        run
        for config_hash in config_hashes
        for run in client.search_runs(
            [experiment_id],
            filter_string=" and ".join([contract.tag_equals(contract.TAG_CONFIG_HASH, config_hash),
                                        contract.tag_equals(contract.TAG_KIND, contract.KIND_TRAIN)]),
            max_results=1000,
        )
    ]
    reason = None
    for run in runs:
        status, run_id = run.info.status, run.info.run_id
        if status == "RUNNING" and is_stale(run, stale_after_s):
            owner = run.data.tags.get(contract.TAG_PROCESS, "unknown process")
            client.set_tag(run_id, contract.TAG_ERROR, f"Stale: the process that ran it ({owner}) is gone.")
            client.set_terminated(run_id, "KILLED")
            print(f"[sweep] marked run {run_id} KILLED (its process is gone): {label}", flush=True)
        elif status in ("RUNNING", "SCHEDULED"):
            reason = f"still RUNNING as run {run_id} ({run.data.tags.get(contract.TAG_PROCESS, '?')})"
        elif status == "FINISHED" and resume and reason is None:
            reason = f"FINISHED as run {run_id} (sweep {run.data.tags.get(contract.TAG_SWEEP_ID, '?')})"
    return reason


def job_already_done(cfg: DictConfig, label: str) -> str | None:
    """``reason_to_skip`` for one job's config, from inside the job."""
    client = open_store(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        return None
    return reason_to_skip(
        client, experiment.experiment_id, resume_hashes(cfg), resume=cfg.tracking.resume,
        stale_after_s=cfg.tracking.stale_after_s, label=label,
    )
