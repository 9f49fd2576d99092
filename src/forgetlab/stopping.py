"""SIGTERM is handled like Ctrl-C: what ``scancel``, a SLURM time limit, ``timeout`` and ``kill``
send ends the run KILLED with its reason, never leaves it RUNNING.

Three kinds of process see the signal, and each does what lets the others finish cleanly:

- a process training a job (a single run, a job of the basic launcher, a job in a joblib worker):
  ``Stopped`` (a ``KeyboardInterrupt``) is raised in it at once, so the run flushes its metrics
  and ends KILLED with ``forgetlab.error`` = the reason. A later signal is ignored, so the
  clean-up is never cut short;
- the sweeper's process while a launcher runs jobs in other processes: it must not raise, since
  joblib would then SIGKILL its workers in the middle of their clean-up. It writes the stop file
  (jobs that start later see it and create no run), forwards the signal to its child processes
  and lets the launcher return; the sweeper then raises ``Stopped``. A second signal, or
  ``GRACE_S`` seconds without the launcher returning, raises at once;
- an idle joblib worker: ignores the signal (``ignore_stop_signals``, joblib's worker
  initializer). Were it to die, loky would take the pool for broken and SIGKILL the workers
  that are still ending their runs.

A worker process also dies with its sweep (``exit_with_parent``, started by the same initializer):
after ``kill -9`` of the sweeper its workers are re-parented and would train on for as long as
they like (loky's workers ignore SIGTERM and never ask whether their parent lives). A thread polls
the parent pid every ``PARENT_POLL_S``; when it changes, a job in progress gets ``Stopped`` with the
reason (its run ends KILLED saying so) and the process exits once the job has ended (at most
``GRACE_S``), an idle one at once.

A signal that lands while Python runs a finalizer (a ``__del__``, a weakref callback such as
SQLAlchemy's) raises ``Stopped`` there, where Python prints "Exception ignored in" and drops it.
``sys.unraisablehook`` catches that drop, prints nothing and delivers the stop again, so it is
never lost and a stop never shows a traceback.

Child processes are found in /proc (Linux); elsewhere nothing is forwarded.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REASONS = {signal.SIGINT: "Interrupted by Ctrl-C (SIGINT)", signal.SIGTERM: "Terminated by SIGTERM"}
GRACE_S = 30.0  # how long the sweeper lets running jobs end their runs after a stop signal
PARENT_POLL_S = 0.5  # how often a worker process asks whether its sweep's process still lives


class Stopped(KeyboardInterrupt):
    """Raised by a stop signal; ``str()`` is the reason that the run and the sweep record."""

    def __init__(self, reason: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(reason)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for Ctrl-C


class _State:
    stop: Stopped | None = None  # the first stop signal this process received
    raised = False
    in_job = False
    waiting_for: Path | None = None  # the stop file, while the sweeper waits for a launcher
    timer: threading.Timer | None = None


_state = _State()


def _write_stderr(text: str) -> None:
    os.write(2, text.encode())  # print() may be in the middle of a write in the interrupted frame


def _raise_once() -> None:
    if not _state.raised:
        _state.raised = True
        raise _state.stop


def _handle(signum: int, frame) -> None:
    first = _state.stop is None
    if first:
        _state.stop = Stopped(REASONS.get(signum, f"Stopped by signal {signum}"), signum)
    if _state.in_job or _state.waiting_for is None or not first:
        _raise_once()
        return
    try:
        _state.waiting_for.write_text(str(_state.stop))
    except OSError:
        pass
    children = forward_to_children(signum)
    _state.timer = threading.Timer(GRACE_S, os.kill, (os.getpid(), signum))
    _state.timer.daemon = True
    _state.timer.start()
    _write_stderr(f"[sweep] {_state.stop}: letting {children} running job process(es) end their runs KILLED "
                  f"(at most {GRACE_S:.0f} s; send it again to stop at once)\n")


def _redeliver_dropped_stop(unraisable) -> None:
    """``sys.unraisablehook``: a ``Stopped`` raised inside a finalizer was dropped by Python; send
    its signal again (from another thread, as this hook runs inside the finalizer's caller) so that
    the handler raises it where it can propagate."""
    stop = unraisable.exc_value
    if not isinstance(stop, Stopped) or stop is not _state.stop:
        _previous_unraisablehook(unraisable)
        return
    _state.raised = False
    state = _state

    def send_again() -> None:
        if state is _state and not state.raised:  # not raised meanwhile (raise_if_stopped), not reset
            os.kill(os.getpid(), stop.signum)

    threading.Timer(0.01, send_again).start()


_previous_unraisablehook = sys.unraisablehook


def handle_stop_signals() -> None:
    """Route SIGINT and SIGTERM of this process to forgetlab's handler (the main thread only can)."""
    global _previous_unraisablehook
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _handle)
    if sys.unraisablehook is not _redeliver_dropped_stop:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _redeliver_dropped_stop


def ignore_stop_signals() -> None:
    """For idle job processes: only a job acts on a stop signal."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def init_worker() -> None:
    """The joblib workers' initializer: idle, ignore stop signals; die with the sweep's process."""
    ignore_stop_signals()
    exit_with_parent()


_watched_parent: list[int] = []  # the parent pid this process watches (exit_with_parent), once started


def exit_with_parent(poll_s: float = PARENT_POLL_S) -> bool:
    """Start (once per process) the thread that ends this process when its parent process dies
    (see the module doc); False when there is no parent to watch (already re-parented)."""
    parent = os.getppid()
    if _watched_parent or parent <= 1:
        return bool(_watched_parent)
    _watched_parent.append(parent)
    threading.Thread(target=_watch_parent, args=(parent, poll_s), name="parent-watch", daemon=True).start()
    return True


def _watch_parent(parent: int, poll_s: float) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    reason = f"Its sweep's process (pid {parent}) died; the job stopped with it"
    if _state.in_job:
        if _state.stop is None:
            _state.stop = Stopped(reason, signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the job's handler raises the stop in the main thread
        deadline = time.monotonic() + GRACE_S
        while _state.in_job and time.monotonic() < deadline:
            time.sleep(0.05)
    os._exit(128 + signal.SIGTERM)


def stop_requested(stop_file: Path | None = None) -> Stopped | None:
    """The stop this process received, or the one its sweep announced in ``stop_file``."""
    if _state.stop is None and stop_file is not None and stop_file.exists():
        try:
            reason = stop_file.read_text().strip()
        except OSError:
            reason = ""
        return Stopped(reason or REASONS[signal.SIGTERM])
    return _state.stop


def raise_if_stopped(stop_file: Path | None = None) -> None:
    """Raise the stop this process received or its sweep announced (``stop_requested``), if any;
    later signals are then ignored, so the clean-up that follows runs to its end."""
    stop = stop_requested(stop_file)
    if stop is not None:
        _state.raised = True
        raise stop


@contextmanager
def job(stop_file: Path | None = None) -> Iterator[None]:
    """The extent of one job in this process: a stop signal raises ``Stopped`` in it at once.
    A job that starts after its sweep was stopped raises ``Stopped`` before it does anything."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    handle_stop_signals()
    _state.in_job = True
    try:
        raise_if_stopped(stop_file)
        yield
    finally:
        _state.in_job = False
        if threading.current_thread() is threading.main_thread():
            for signum, handler in previous.items():
                signal.signal(signum, handler)


@contextmanager
def jobs_elsewhere(stop_file: Path) -> Iterator[None]:
    """The sweeper's wait for a launcher whose jobs may run in other processes (see the module doc).
    Raises ``Stopped`` at the end when a stop signal came meanwhile."""
    stop_file.unlink(missing_ok=True)
    _state.waiting_for = stop_file
    try:
        yield
    finally:
        _state.waiting_for = None
        if _state.timer is not None:
            _state.timer.cancel()
            _state.timer = None
    raise_if_stopped()


def forward_to_children(signum: int) -> int:
    """Send ``signum`` to this process's child processes that do not ignore it; how many there were."""
    me, sent = os.getpid(), 0
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return 0
    for entry in entries:
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if int(ppid) != me or state == "Z":
                continue
            status = Path(f"/proc/{entry}/status").read_text()
            ignored = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
            if ignored >> (signum - 1) & 1:
                continue  # loky's resource tracker, or an idle worker: it would not act on it anyway
            os.kill(int(entry), signum)
            sent += 1
        except (OSError, ValueError, StopIteration):
            continue  # the process ended meanwhile
    return sent


def reset() -> None:
    """Forget a received stop (tests run several stops in one process)."""
    global _state
    if _state.timer is not None:
        _state.timer.cancel()
    _state = _State()

