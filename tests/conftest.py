from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FORGETLAB_ROOT", str(ROOT))


def pytest_collection_modifyitems(items):
    """The slow end-to-end tests first, each file's in its order, then the rest: with `make test`'s
    one-test-at-a-time scheduling (``--maxschedchunk 1``) the two workers start on the longest
    tests and end together on short ones, instead of one worker finishing a long sweep alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def compose_cfg():
    """Compose the real conf/ tree with overrides, as experiments/train.py would, as the typed config
    (its values not yet checked: ``validate`` checks them)."""
    from forgetlab.config import as_config, compose

    return lambda *overrides: as_config(compose(overrides))


@pytest.fixture
def sqlite_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def run_train(*args: str, env: dict | None = None, timeout: int = 300):
    """experiments/train.py in a subprocess; returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "train.py"), *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=ROOT,
    )


@pytest.fixture(scope="session")
def tracking_server():
    """The `make server` pair (PostgreSQL + mlflow server) on free 127.0.0.1 ports, torn down at the end.

    Its state lives in a fresh directory under the system temp dir (not pytest's tmp_path, whose
    parents the `postgres` user cannot enter when tests run as root)."""
    import shutil
    import tempfile

    from forgetlab.server import ServerError, TrackingServer, pg_bindir

    try:
        pg_bindir()
    except ServerError as error:
        pytest.skip(f"{error}")
    state_dir = Path(tempfile.mkdtemp(prefix="forgetlab-server-"))
    state_dir.chmod(0o755)
    server = TrackingServer(state_dir)
    try:
        server.start(port=0, workers=1)
        yield server
    finally:
        server.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
