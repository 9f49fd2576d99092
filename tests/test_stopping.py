"""Stopping cleanly: SIGTERM (scancel, SLURM time limits, `timeout`) ends runs like Ctrl-C, with the
launchers forgetlab uses, and a joblib worker killed by the OS fails only its job.

The end-to-end tests run experiments/train.py as a subprocess and look at the store afterwards:
nothing may be left RUNNING, a stopped run keeps the metrics it had buffered, and a re-run trains
exactly what is missing (every config ends with exactly one FINISHED run)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from forgetlab import stopping
from tests.conftest import ROOT, run_train

SMALL = ["trainer.epochs_per_task=2", "task_sequence.n_tasks=2", "network.hidden_sizes=[16]", "eval.every_samples=25"]
SEEDS = ["seed=0,1"]


# --- the handler, in this process ----------------------------------------------------------------


@pytest.fixture
def fresh_stop_state():
    stopping.reset()
    saved = {s: signal.getsignal(s) for s in stopping.STOP_SIGNALS}
    yield
    stopping.reset()
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sigterm_in_a_job_raises_stopped_once_with_its_reason(fresh_stop_state):
    with pytest.raises(stopping.Stopped) as stopped:
        with stopping.job():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert isinstance(stopped.value, KeyboardInterrupt)  # so every Ctrl-C path (runs end KILLED) applies
    assert str(stopped.value) == "Terminated by SIGTERM" and stopped.value.exit_code == 143
    # A second signal during the clean-up is ignored: nothing may cut short the marking of the run.
    stopping.handle_stop_signals()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)


def test_a_stop_that_lands_in_a_finalizer_is_delivered_again_without_a_traceback(tmp_path):
    # SQLAlchemy's weakref callbacks run at any time; a SIGTERM handled inside one raised Stopped
    # where Python drops it with "Exception ignored in ... Traceback", and the job went on.
    script = textwrap.dedent("""
        import os, signal, time
        from forgetlab import stopping

        class SignalsInItsFinalizer:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the handler runs here, inside the finalizer
                    pass

        try:
            with stopping.job():
                obj = SignalsInItsFinalizer()
                del obj
                print("after the finalizer", flush=True)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    sum(range(100))
                print("NOT STOPPED", flush=True)
        except stopping.Stopped as stop:
            print("stopped:", stop, flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout.splitlines() == ["after the finalizer", "stopped: Terminated by SIGTERM"], proc
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def test_a_job_that_starts_after_its_sweep_was_stopped_does_nothing(fresh_stop_state, tmp_path):
    stop_file = tmp_path / "forgetlab_stop"
    stop_file.write_text("Terminated by SIGTERM")
    ran = False
    with pytest.raises(stopping.Stopped, match="Terminated by SIGTERM"):
        with stopping.job(stop_file):
            ran = True
    assert not ran


def test_the_sweeper_lets_running_jobs_end_and_raises_after_them(fresh_stop_state, tmp_path):
    """While a launcher runs jobs in other processes the sweeper does not raise at once (joblib
    would SIGKILL the workers mid clean-up): it forwards the signal to its children, announces the
    stop in the stop file, and raises once the launcher returns."""
    stopping.handle_stop_signals()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_file = tmp_path / "forgetlab_stop"
    try:
        with pytest.raises(stopping.Stopped, match="Terminated by SIGTERM"):
            with stopping.jobs_elsewhere(stop_file):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # not interrupted: the "launcher" goes on
                returned_normally = True
        assert returned_normally
        assert child.wait(timeout=10) == -signal.SIGTERM  # the child got the signal forwarded
        assert stop_file.read_text() == "Terminated by SIGTERM"
    finally:
        child.kill()
        child.wait()


def test_a_second_signal_stops_the_sweeper_at_once(fresh_stop_state, tmp_path):
    stopping.handle_stop_signals()
    with pytest.raises(stopping.Stopped):
        with stopping.jobs_elsewhere(tmp_path / "forgetlab_stop"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # interrupted by the second signal
            pytest.fail("the second signal did not raise")


# --- end to end ----------------------------------------------------------------------------------


def store_args(tmp_path) -> list[str]:
    return [f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.experiment=stop",
            f"tracking.artifact_location={tmp_path}/artifacts"]


def runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    found = client.search_runs([client.get_experiment_by_name("stop").experiment_id], max_results=1000)
    parents = [r for r in found if r.data.tags["forgetlab.kind"] == "sweep"]
    jobs = [r for r in found if r.data.tags["forgetlab.kind"] == "train"]
    return client, parents, jobs


def start_sweep(args: list[str], script=ROOT / "experiments" / "train.py") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def signal_when(sweep: subprocess.Popen, job_log: Path, text: str, send, timeout_s: float = 240) -> str:
    """Collect the sweep's console output; call ``send()`` once ``job_log`` (a job's train.log: sweep
    jobs log there, the console has the progress bar) contains ``text``."""
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(sweep.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sweep.poll() is None:
        if job_log.exists() and text in job_log.read_text():
            send()
            break
        time.sleep(0.05)
    reader.join(timeout=180)
    return "".join(chunks)


@pytest.mark.slow
@pytest.mark.parametrize("launcher, target", [("basic", "parent"), ("joblib", "parent"), ("joblib", "group")])
def test_sigterm_stops_a_sweep_with_nothing_left_running_and_a_rerun_completes_it(tmp_path, launcher, target):
    """`kill -TERM <sweep pid>` (`timeout`) signals the sweeper only; scancel and SLURM's time limit
    signal every process of the job (the group)."""
    args = ["-m", *SEEDS, *SMALL, *store_args(tmp_path), f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        args.append("hydra.launcher.n_jobs=2")
    sweep = start_sweep([*args, f"hydra.sweep.dir={tmp_path}/first"])
    try:
        def send():
            if target == "group":
                os.killpg(sweep.pid, signal.SIGTERM)
            else:
                os.kill(sweep.pid, signal.SIGTERM)

        output = signal_when(sweep, tmp_path / "first" / "0" / "train.log", "[backprop·class·s0·split_digits] after", send)
        assert sweep.wait(timeout=120) == 128 + signal.SIGTERM, output[-3000:]
    finally:
        sweep.kill()
        sweep.wait()
    assert "Traceback" not in output, output[-3000:]
    assert "stopped: Terminated by SIGTERM" in output

    client, (parent,), jobs = runs(tmp_path)
    assert parent.info.status == "KILLED" and parent.data.tags["forgetlab.error"] == "Terminated by SIGTERM"
    assert not [j for j in jobs if j.info.status == "RUNNING"]
    (stopped,) = [j for j in jobs if j.data.params["seed"] == "0"]
    # Its job's own handler ends it, or, when its worker went first (seen under load, the machine at
    # load ~5), the parent ends it with "(its sweep ended before the job did)" appended: either way
    # KILLED by the signal, as the ensembles' SIGTERM test accepts.
    assert stopped.info.status == "KILLED" and stopped.data.tags["forgetlab.error"].startswith("Terminated by SIGTERM")
    # The metrics it had buffered were sent: every evaluation point of its first task (1350 samples, every 25).
    steps = [m.step for m in client.get_metric_history(stopped.info.run_id, "acc/task_0")]
    assert steps[:2] == [0, 25] and max(steps) >= 1350

    rerun = run_train(*args, f"hydra.sweep.dir={tmp_path}/second")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _, _, jobs = runs(tmp_path)
    assert Counter(j.data.params["seed"] for j in jobs if j.info.status == "FINISHED") == {"0": 1, "1": 1}
    assert not [j for j in jobs if j.info.status == "RUNNING"]


@pytest.mark.slow
def test_sigterm_ends_a_single_run_killed_with_the_metrics_it_buffered(tmp_path):
    run = start_sweep([*SMALL, "trainer.epochs_per_task=50", *store_args(tmp_path), f"hydra.run.dir={tmp_path}/run"])
    try:
        output = ""
        while "] training " not in output:  # its first line, once the run trains
            char = run.stdout.read(1)
            assert char, output[-3000:]
            output += char
        time.sleep(1)  # its metrics wait in the buffer (sent every 10 s)
        run.send_signal(signal.SIGTERM)
        output += run.communicate(timeout=120)[0]
    finally:
        run.kill()
        run.wait()
    assert run.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "Traceback" not in output and "Stopped: Terminated by SIGTERM" in output
    client, _, (killed,) = runs(tmp_path)
    assert killed.info.status == "KILLED" and killed.data.tags["forgetlab.error"] == "Terminated by SIGTERM"
    steps = [m.step for m in client.get_metric_history(killed.info.run_id, "acc/task_0")]
    assert steps[:2] == [0, 25]


KILLS_ITS_WORKER = """
import os
import signal
import sys

sys.path.insert(0, {experiments!r})
import hydra
import train
from forgetlab import stopping
from forgetlab.tracking.mlflow_run import MlflowRun


def main(cfg):
    # Seed 1 dies like a job killed by the OS (out of memory) after its first evaluation point,
    # every time it runs: its run exists, RUNNING, when the worker goes. (Seeds 0 and 1 share an
    # ensemble: the sweeper runs them again one at a time.)
    on_eval = MlflowRun.on_eval

    def killed_after_first_point(self, trainer, points):
        on_eval(self, trainer, points)
        point = points.get(self.member)
        if point is not None and "·s1·" in self.run_name and point.samples_seen > 0:
            os.kill(os.getpid(), signal.SIGKILL)

    MlflowRun.on_eval = killed_after_first_point
    return train.main.__wrapped__(cfg)


if __name__ == "__main__":
    stopping.handle_stop_signals()
    hydra.main(version_base="1.3", config_path=str(train.ROOT / "conf"), config_name="config")(main)()
"""


@pytest.mark.slow
def test_a_joblib_worker_killed_by_the_os_fails_only_its_job(tmp_path):
    script = tmp_path / "kills_its_worker.py"
    script.write_text(textwrap.dedent(KILLS_ITS_WORKER.format(experiments=str(ROOT / "experiments"))))
    args = ["-m", "seed=0,1,2", *SMALL, "trainer.epochs_per_task=1", *store_args(tmp_path),
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}/sweep"]
    sweep = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    output = sweep.stdout + sweep.stderr
    assert sweep.returncode == 1, output[-3000:]
    assert "a worker process was lost (TerminatedWorkerError" in output
    assert "3 jobs: 0 skipped (same config and code), 2 trained, 1 failed" in sweep.stdout
    assert "[sweep] FAILED seed=1: its worker process was lost (TerminatedWorkerError" in sweep.stderr

    _, (parent,), jobs = runs(tmp_path)
    assert parent.info.status == "FAILED"
    assert not [j for j in jobs if j.info.status == "RUNNING"]
    finished = Counter(j.data.params["seed"] for j in jobs if j.info.status == "FINISHED")
    assert finished == {"0": 1, "2": 1}
    # By name, not by params: loky ends the executor's other worker with the lost one, and a job there
    # killed before its first evaluation point (under load, still starting) has no params yet; it is
    # KILLED too (no run is left RUNNING, above) and trained again (seed 2 finished, above).
    lost = [j for j in jobs if "·s1·" in j.info.run_name]
    assert len(lost) == 2  # its first try in the batch, then alone: lost both times
    for run in lost:
        assert run.info.status == "KILLED"
        assert run.data.tags["forgetlab.error"].startswith("Its worker process was lost (TerminatedWorkerError")
