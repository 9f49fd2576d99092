"""Is the process that owns a RUNNING run still alive?

A run records who trains it (tag ``forgetlab.process`` = ``host boot_id pid_namespace pid
start_ticks``) and refreshes ``forgetlab.heartbeat`` (unix seconds) from a background thread.
Another process judges it:

- same machine and pid namespace (equal Linux boot id and ``/proc/self/ns/pid``; containers on one
  host share the boot id but not the namespace): the run is dead exactly when no process with that
  pid and that start time exists. A pid reused by a later process has another start time;
- another machine, or no process tag: the run is dead when its last heartbeat (or its start, if
  it never beat) is older than ``tracking.stale_after_s``. This is the only evidence a cluster
  offers; a node that lost contact with the store for longer than that is treated as dead too,
  so keep ``stale_after_s`` well above the heartbeat interval (a tenth of it).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from mlflow.entities import Run

from forgetlab.contract import TAG_HEARTBEAT, TAG_PROCESS


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks after boot (field 22 of /proc/<pid>/stat); None
    when there is no such process or it has ended (a zombie: killed, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # fields after the command name start at field 3
    return None if fields[0] == "Z" else fields[19]


def process_identity(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()} {_boot_id()} {_pid_namespace()} {pid} {_start_ticks(pid)}"


def is_local(run: Run) -> bool:
    """True when ``run`` was trained by a process of this machine and pid namespace."""
    parts = run.data.tags.get(TAG_PROCESS, "").split()
    here = [_boot_id(), _pid_namespace()]
    return len(parts) == 5 and parts[1:3] == here and "unknown" not in here


def is_stale(run: Run, stale_after_s: float, now: float | None = None) -> bool:
    """True when the RUNNING ``run`` has no live process behind it (see the module docstring)."""
    tags = run.data.tags
    if is_local(run):
        parts = tags[TAG_PROCESS].split()
        pid, started = int(parts[3]), parts[4]
        return _start_ticks(pid) != started
    now = time.time() if now is None else now
    last = float(tags.get(TAG_HEARTBEAT, run.info.start_time / 1000))
    return now - last > stale_after_s


def beat_value() -> str:
    """The heartbeat tag's value now: unix seconds."""
    return f"{time.time():.0f}"


class Heartbeat:
    """Sets the heartbeat tag of ``run_id`` now (unless the run was created with it: ``beat_now``
    false saves a store call) and every ``interval_s`` until ``stop``."""

    def __init__(self, client, run_id: str, interval_s: float, *, beat_now: bool = True) -> None:
        self.client, self.run_id, self.interval_s = client, run_id, interval_s
        self._stop = threading.Event()
        if beat_now:
            self.beat()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{run_id[:8]}", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        self.client.set_tag(self.run_id, TAG_HEARTBEAT, beat_value())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:  # a missed beat only makes the run look older; training goes on
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
