"""The disk a run writes to: checked before it trains, written all or nothing when it ends.

Before a run trains (``check_directory``, ``check_artifact_location``): its run directory
(``hydra.run.dir`` or ``hydra.sweep.dir``) and the local directory its artifacts go to (its
experiment's artifact location) must take a new file and hold the run's estimated artifacts
(``cost.Cost.artifact_bytes``). A read-only or full disk then stops the run in one line, exit code
2, before anything is trained or recorded; before, it trained the whole run and then failed
writing, leaving a truncated figure behind. Artifacts that go to a tracking server or a cloud store
are that store's to check.

When it ends (``log_artifacts``): where the artifact location is a local directory, the run's files
are copied into a hidden staging directory beside its artifacts and then moved into place by
renames, which cannot fail for want of space: a write that fails (a disk that filled meanwhile)
leaves nothing of it behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from forgetlab.tracking.store import RetryingClient, StoreError

STAGING_PREFIX = ".incoming-"


class StorageError(StoreError):
    """A directory a run writes to cannot take what it will write; the message is one line."""

    label = "Storage error"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_directory(path: Path, what: str, needed_bytes: float = 0) -> None:
    """Raise StorageError unless ``path`` (or, while it does not exist, the directory it would be
    created in) takes a new file and has ``needed_bytes`` free. ``what`` names the setting, e.g.
    "run directory (hydra.run.dir)". Leaves nothing behind."""
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise StorageError(f"The {what} {path} cannot be created: {existing} is a file, not a directory.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".forgetlab-probe-"):
            pass
    except OSError as error:
        where = "" if existing == path else f" (in {existing}, where it would be created)"
        raise StorageError(f"The {what} {path} is not writable{where}: {error.strerror}. "
                           "Point it at a writable directory.") from error
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise StorageError(f"The {what} {path} has {human_bytes(free)} free, less than the {human_bytes(needed_bytes)} "
                           "its run's artifacts are estimated to need. Free some space or point it elsewhere.")


def local_directory(location: str | None) -> Path | None:
    """The local directory an artifact location or URI names (a path or ``file://``), else None."""
    if not location:
        return None
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(location) if parts.scheme == "" else None


def artifact_root(client: RetryingClient, uri: str, experiment: str, artifact_location: str | None) -> Path | None:
    """The local directory the runs of ``experiment`` write their artifacts under: its own artifact
    location when it exists, else the one it will be created with (MLflow's ``./mlruns`` for a local
    store without one). None when they go to a server or a cloud store."""
    existing = client.get_experiment_by_name(experiment)
    location = existing.artifact_location if existing is not None else artifact_location
    if location is None and urlsplit(uri).scheme == "sqlite":
        return Path.cwd() / "mlruns"
    return local_directory(location)


def check_artifact_location(uri: str, experiment: str, artifact_location: str | None, needed_bytes: float) -> None:
    """``check_directory`` on the artifact root of ``experiment`` in the store at ``uri`` (prepared)."""
    root = artifact_root(RetryingClient(uri), uri, experiment, artifact_location)
    if root is not None:
        check_directory(root, "artifact location (tracking.artifact_location, or the experiment's)", needed_bytes)


def log_artifacts(client: RetryingClient, run_id: str, artifact_uri: str, local_dir: Path) -> None:
    """The files under ``local_dir`` as artifacts of ``run_id`` whose artifacts live at
    ``artifact_uri``: all or nothing when that is a local directory (module doc), else
    ``client.log_artifacts``. Raises StorageError when they cannot be written."""
    root = local_directory(artifact_uri)
    if root is None:
        client.log_artifacts(run_id, str(local_dir))
        return
    staging = root.parent / f"{STAGING_PREFIX}{root.name}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(local_dir, staging)
        root.mkdir(parents=True, exist_ok=True)
        _move_into(staging, root)
    except OSError as error:
        raise StorageError(f"Could not write the artifacts of run {run_id} to {root}: "
                           f"{error.strerror or error}. Nothing of them was left there.") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(source: Path, target: Path) -> None:
    """Move every entry of the directory ``source`` into the directory ``target`` by renames, merging
    into the directories that exist there already (e.g. ``code/``)."""
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and destination.is_dir():
            _move_into(entry, destination)
        else:
            os.replace(entry, destination)
