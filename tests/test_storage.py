"""The disk a run writes to is checked before it trains and written all or nothing (issue 20):
``src/forgetlab/tracking/storage.py``."""

from __future__ import annotations

import errno
import shutil
import subprocess
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from forgetlab.tracking import storage
from forgetlab.tracking.storage import StorageError, check_directory, log_artifacts
from tests.conftest import run_train

SMALL = ["trainer.epochs_per_task=1", "task_sequence.n_tasks=2", "network.hidden_sizes=[16]"]


def test_a_directory_that_cannot_take_a_runs_artifacts_is_refused_in_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(StorageError, match=r"cannot be created: .*a_file is a file, not a directory"):
        check_directory(tmp_path / "a_file" / "art", "artifact location")
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(StorageError, match=r"free, less than the .* its run's artifacts are estimated to need"):
        check_directory(tmp_path / "new" / "art", "artifact location", needed_bytes=free * 2)
    check_directory(tmp_path / "new" / "art", "artifact location", needed_bytes=1024)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # the check creates nothing


class Client:
    """The part of a client ``log_artifacts`` falls back to for a store that is not a local directory."""

    def __init__(self):
        self.logged = []

    def log_artifacts(self, run_id, local_dir):
        self.logged.append((run_id, local_dir))


def artifacts(tmp_path: Path) -> Path:
    local = tmp_path / "local"
    (local / "eval").mkdir(parents=True)
    (local / "eval" / "curve.parquet").write_bytes(b"x" * 1000)
    (local / "config.yaml").write_text("seed: 0\n")
    return local


def test_artifacts_land_whole_beside_those_logged_before(tmp_path):
    root = tmp_path / "exp" / "run1" / "artifacts"
    (root / "code").mkdir(parents=True)
    (root / "code" / "uncommitted.diff").write_text("diff")  # logged when the run began
    log_artifacts(Client(), "run1", f"file://{root}", artifacts(tmp_path))
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == ["code/uncommitted.diff", "config.yaml", "eval/curve.parquet"]
    assert sorted(p.name for p in root.parent.iterdir()) == ["artifacts"]  # no staging directory left
    client = Client()
    log_artifacts(client, "run2", "mlflow-artifacts:/1/run2/artifacts", tmp_path / "local")  # a server's: MLflow's own upload
    assert client.logged == [("run2", str(tmp_path / "local"))]


def test_a_write_that_fails_half_way_leaves_nothing_of_the_artifacts(tmp_path, monkeypatch):
    """Before, a full disk left a truncated figure in the run's artifacts."""
    copy = shutil.copytree

    def fills_the_disk(source, target, **kwargs):
        Path(target).mkdir(parents=True)
        (Path(target) / "config.yaml").write_text("seed: 0")  # one file made it, the next did not
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.shutil, "copytree", fills_the_disk)
    root = tmp_path / "exp" / "run1" / "artifacts"
    with pytest.raises(StorageError, match="No space left on device. Nothing of them was left there"):
        log_artifacts(Client(), "run1", str(root), artifacts(tmp_path))
    assert not root.exists() and not list((tmp_path / "exp" / "run1").iterdir())
    monkeypatch.setattr(storage.shutil, "copytree", copy)


@contextmanager
def mounted(path: Path, options: str):
    """A small tmpfs at ``path`` (root only: skipped elsewhere), unmounted at the end."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["artifacts under a file", "run dir under a file", "read-only artifact disk",
                                  "full artifact disk", "read-only sweep dir"])
def test_an_unwritable_or_full_disk_stops_the_run_before_it_trains_in_one_line(tmp_path, case):
    """Before: a read-only or full artifact location trained the whole run, then ended FAILED with a
    44-line traceback and a truncated PNG; a read-only run directory gave a Hydra traceback, exit 1."""
    (tmp_path / "a_file").write_text("")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [*SMALL, f"tracking.uri={uri}", f"tracking.artifact_location={tmp_path}/art",
            f"hydra.run.dir={tmp_path}/run"]
    mount = "disk" in case or "sweep" in case
    with mounted(tmp_path / "mnt", "size=256k" + (",ro" if "read-only" in case else "")) if mount else nullcontext():
        where = {"artifacts under a file": [f"tracking.artifact_location={tmp_path}/a_file/art"],
                 "run dir under a file": [f"hydra.run.dir={tmp_path}/a_file/run"],
                 "read-only artifact disk": [f"tracking.artifact_location={tmp_path}/mnt/art"],
                 "full artifact disk": [f"tracking.artifact_location={tmp_path}/mnt/art"],
                 "read-only sweep dir": ["-m", "seed=0,1", f"hydra.sweep.dir={tmp_path}/mnt/sweep"]}[case]
        started = time.monotonic()
        # -m first; the case's overrides after the defaults above, which they replace (the last value wins)
        proc = run_train(*[a for a in where if a == "-m"], *args, *[a for a in where if a != "-m"])
        seconds = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("Storage error: "), proc.stderr
    assert ("not writable" in proc.stderr or "is a file" in proc.stderr or "free, less than" in proc.stderr)
    assert "after digits" not in proc.stdout + proc.stderr and seconds < 60  # nothing trained
    if Path(f"{tmp_path}/mlflow.db").exists():
        client = MlflowClient(uri)
        assert not [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.mark.slow
def test_a_sweep_whose_artifact_location_is_unwritable_stops_before_its_first_job(tmp_path):
    (tmp_path / "a_file").write_text("")
    proc = run_train("-m", "seed=0,1", *SMALL, f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                     f"tracking.artifact_location={tmp_path}/a_file/art", f"hydra.sweep.dir={tmp_path}/sweep")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("Storage error: The artifact location"), proc.stderr
    assert "Traceback" not in proc.stderr and not list((tmp_path / "sweep").glob("*/train.log"))
