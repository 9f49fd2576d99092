"""The sweep's console: one line per finished job, under one progress bar over the jobs at a terminal;
where the output is not a terminal (a file, a cluster's log, CI) no bar, and each job's line starts
with the sweep's progress and ETA instead.

Jobs may run in this process (basic launcher), in worker processes (joblib) or on other machines
(submitit), so they report through the sweep directory, which all of them share: each job writes
``<sweep dir>/forgetlab_jobs/<job num>.json`` when it ends (``record_job``), and ``SweepProgress``
polls that directory from a thread. The jobs' own log lines go to their ``train.log``, not to the
console (experiments/train.py), so nothing writes through the bar.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

JOBS_DIR = "forgetlab_jobs"
POLL_SECONDS = 0.5
COMPLETED, FAILED, SKIPPED = "completed", "failed", "skipped"  # SKIPPED: done meanwhile by another sweep
RUNNING_ELSEWHERE = "running elsewhere"  # another live process trains its config: not done, not trained here


def record_job(sweep_dir: str | Path, job_num: int, outcome: dict[str, Any]) -> None:
    """Called by a job when it ends. ``outcome``: ``name``, ``status`` (one of the constants above),
    ``final`` (metrics), ``seconds``, ``error``. Written atomically: the poller never reads half a file."""
    folder = Path(sweep_dir) / JOBS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{job_num}.json.tmp"
    tmp.write_text(json.dumps(outcome))
    os.replace(tmp, folder / f"{job_num}.json")


def job_line(job_num: int, outcome: dict[str, Any]) -> str:
    name, status = outcome.get("name", "?"), outcome.get("status")
    where = f"(job {job_num}, {outcome.get('seconds', 0):.0f} s)"
    if status == FAILED:
        return f"{name} FAILED {where}: {outcome.get('error', '')}"
    if status == SKIPPED:
        return f"{name} skipped {where}: trained elsewhere meanwhile (see its train.log)"
    if status == RUNNING_ELSEWHERE:
        return f"{name} not trained {where}: {outcome.get('error', '')}"
    final = " ".join(f"{k}={v:.4f}" for k, v in outcome.get("final", {}).items())
    return f"{name} {final} {where}"


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``3.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class SweepProgress:
    """``with SweepProgress(sweep_dir, total, skipped, label):`` one line per job as it ends; at a
    terminal under a bar over all jobs of the sweep (skipped ones count as done) with rate and ETA,
    elsewhere each line starting with ``[sweep] done/total (skipped, trained, failed; ETA)``."""

    def __init__(self, sweep_dir: str | Path, total: int, skipped: int, label: str) -> None:
        self.folder = Path(sweep_dir) / JOBS_DIR
        self.total, self.skipped, self.trained, self.failed = total, skipped, 0, 0
        self.skipped_before = skipped
        self.started = time.monotonic()
        self.seen: set[str] = set()
        self.finals: dict[int, dict[str, float]] = {}  # job number -> the final metrics it reported
        # smoothing=0: the rate is the sweep's average, steadier than the last job's when
        # algorithms of very different cost alternate.
        self.bar = tqdm(total=total, initial=skipped, unit="job", desc=label, smoothing=0, dynamic_ncols=True,
                        file=sys.stderr, disable=None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)

    def __enter__(self) -> SweepProgress:
        # A sweep directory used twice must not count the first sweep's jobs.
        if self.folder.exists():
            for old in self.folder.glob("*.json"):
                old.unlink()
        self._show_counts()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()
        self.bar.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception:  # the display must never stop the sweep
                pass

    def poll(self) -> None:
        if not self.folder.exists():
            return
        for path in sorted(self.folder.glob("*.json"), key=lambda p: int(p.stem)):
            if path.name in self.seen:
                continue
            self.seen.add(path.name)
            outcome = json.loads(path.read_text())
            self.failed += outcome.get("status") == FAILED
            self.skipped += outcome.get("status") == SKIPPED
            self.trained += outcome.get("status") == COMPLETED
            if outcome.get("status") == COMPLETED:
                self.finals[int(path.stem)] = outcome.get("final") or {}
            self._show(job_line(int(path.stem), outcome))
            self._show_counts()
            self.bar.update(1)
        self.bar.refresh()

    def _show(self, line: str) -> None:
        if self.bar.disable:  # not a terminal: the progress goes into the line
            print(f"[sweep] {self.counts()}: {line}", flush=True)
        else:
            self.bar.write(line, file=sys.stdout)
            sys.stdout.flush()

    def counts(self) -> str:
        """``12/72 (skipped 3, trained 8, failed 1; ETA 7 min)``: the ETA from this run's pace so far."""
        done = self.skipped + self.trained + self.failed
        ran = done - self.skipped_before
        left = self.total - done
        eta = "" if not ran or not left else f"; ETA {duration((time.monotonic() - self.started) / ran * left)}"
        return (f"{done}/{self.total} (skipped {self.skipped}, trained {self.trained}, failed {self.failed}"
                f"{eta})")

    def settle(self, *, skipped: int, trained: int, failed: int) -> None:
        """End on the sweeper's own counts (its summary line's): a job that lost its worker
        process, or was stopped before it could record, never wrote its file."""
        self.poll()
        self.skipped, self.trained, self.failed = skipped, trained, failed
        self.bar.n = min(self.bar.total, skipped + trained + failed)
        self._show_counts()
        self.bar.refresh()

    def _show_counts(self) -> None:
        self.bar.set_postfix_str(f"skipped {self.skipped}, trained {self.trained}, failed {self.failed}",
                                 refresh=False)
