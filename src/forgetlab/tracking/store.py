"""Opening an MLflow tracking store safely: schema set-up under a file lock, damaged stores detected,
transient errors retried, permanent ones reported in one line.

``open_store(uri)`` is what every entry point calls before any MLflow client touches the store.

*Set-up.* MLflow creates and migrates an sqlite store's schema the first time a client opens it, and
nothing stops two processes from doing so at once: their migrations interleave and leave the file
half-migrated (``table _alembic_tmp_params already exists``, ``duplicate column name``), often so that
it can never be opened again. ``prepare_store`` therefore checks the file first (read-only, no lock)
and, when the schema is missing or not at MLflow's head revision, takes an exclusive ``flock`` on
``<file>.lock`` and re-checks before it lets MLflow create the schema: exactly one process migrates,
the others wait and then find a healthy store. The lock is released when its holder exits, even by
``kill -9``. A new store is a copy of an empty one kept on disk (``store_template``): MLflow's
migrations take ~3 s of CPU and, committing each of ~70 revisions, ~7 s of wall time on a loaded
machine; every test's and every study's new store paid it.

*Damage.* A store whose schema is not what this MLflow expects (leftover ``_alembic_tmp_*`` tables of
an interrupted migration, an older revision, missing tables or columns) is repaired when it holds no
results: it is moved aside to ``<file>.bak-<time>`` and created afresh. One that holds runs is
refused (``StoreError``) with the command that repairs it, ``python -m forgetlab.tracking.store
repair URI``, which keeps a copy first and puts the store back unchanged if the repair fails.

*Errors.* MLflow's SQLAlchemy store waits 20 s on a locked sqlite file (``PRAGMA busy_timeout``), but
a transaction that must upgrade its read lock to a write lock while another process writes gets
"database is locked" at once: sqlite cannot wait there without risking a deadlock. MLflow then
rolls the transaction back and raises with error code TEMPORARILY_UNAVAILABLE, so the call can be
repeated safely. ``RetryingClient`` repeats such calls (and its own creation) with jittered
exponential backoff. Errors that no repetition cures (a read-only or full disk, a file that is not a
database, an unreachable server) are raised at once as ``StoreError``, whose message is one line.
A server found unreachable is not asked again by this process for ``UNREACHABLE_HOLD_S``, unless a
new job's health check finds it answering: each call would wait through MLflow's HTTP retries (~7 s)
to fail the same way, and a job that dies with its server makes several (its metrics, its error tag,
its end, the sweep's summary).
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import logging
import os
import random
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE, ErrorCode
from mlflow.tracking import MlflowClient

ATTEMPTS = 10
FIRST_DELAY_S = 0.05  # doubles each attempt: at most ~50 s spent waiting in all
LOCK_TIMEOUT_S = 600.0  # the longest wait for another process creating or migrating the store
SQLITE_TIMEOUT_S = 20.0  # how long a check waits on a locked file (as long as MLflow's busy_timeout)
TMP_PREFIX = "_alembic_tmp_"  # alembic's copy of a table being altered on sqlite ("batch" mode)
# Tables that an empty store already fills; rows anywhere else are results worth keeping.
SEEDED_TABLES = {"alembic_version", "experiments", "experiment_tags", "workspaces"}
# Bounds on MLflow's own HTTP retries (its defaults: 7 retries, factor 2, 120 s timeout, which made a
# dead server take 16 minutes to give up). Set only when the user has not set them.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
UNREACHABLE_HOLD_S = 60.0  # how long a server that did not answer is taken as down without asking again
HEALTH_ATTEMPTS, HEALTH_TIMEOUT_S = 3, 2.0  # the up-front check that a tracking server answers
# Parts of error messages of failures that no repetition cures: the store is unusable as it is.
PERMANENT = (
    "readonly database", "read-only file system", "database or disk is full", "disk i/o error",
    "file is not a database", "database disk image is malformed", "unable to open database file",
    "out-of-date database schema",
)
UNREACHABLE = (
    "failed to establish a new connection", "connection refused", "max retries exceeded",
    "name or service not known", "read timed out", "connection aborted", "connection reset",
)

TEMPLATE_ENV = "FORGETLAB_STORE_TEMPLATE"

T = TypeVar("T")

# MLflow logs every SQL error of its store with the full traceback (hundreds of lines for one locked or
# read-only file) before raising it; the caller gets the error anyway and retries it or reports it in
# one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
# Likewise urllib3 logs a warning for each of MLflow's HTTP retries to a server that does not answer
# (three per call, on the console of every job of a sweep); the StoreError says "after 3 retries".
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


class StoreError(Exception):
    """A tracking store that cannot be used: the message names it, says why, and what to do."""

    label = "Tracking store error"  # what the entry points print before the message


# uri -> (until when, on time.monotonic(), the server is taken as down; the StoreError it raised)
_unreachable: dict[str, tuple[float, StoreError]] = {}


# --- errors and retries -------------------------------------------------------------------------


def is_transient(error: BaseException) -> bool:
    """A store error that a repeated call can cure: a locked sqlite file or an unavailable store,
    but not a read-only or full disk, which MLflow reports with the same error code."""
    if not isinstance(error, MlflowException):
        return False
    text = str(error).lower()
    if any(marker in text for marker in PERMANENT):
        return False
    return error.error_code == ErrorCode.Name(TEMPORARILY_UNAVAILABLE) or "database is locked" in text


def is_store_failure(error: BaseException) -> bool:
    """An MLflow error that says the store itself is unusable (disk, file, server), not the request."""
    text = str(error).lower()
    return isinstance(error, MlflowException) and any(marker in text for marker in PERMANENT + UNREACHABLE)


def first_line(error: BaseException, limit: int = 400) -> str:
    """The error in one line: the database driver's own message when there is one (SQLAlchemy wraps
    it in the statement and its parameters), the failed request and its cause for a tracking server
    (urllib3 wraps those in its retry history), else the text, shortened to ``limit`` characters."""
    raw = str(error)
    driver = re.search(r"\((\w+\.\w*Error)\) ([^\n\[]+)", raw)
    request = re.search(r"API request to (\S+) failed with exception", raw)
    if driver:
        text = f"{driver.group(2).strip()} ({driver.group(1)})"
    elif request:
        causes = ("connection refused", "read timed out", "name or service not known", "connection reset",
                  "connection aborted")
        cause = next((c for c in causes if c in raw.lower()), "no connection")
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLflow's")
        text = f"no answer to {urlsplit(request.group(1)).path} ({cause}, after {retries} retries)"
    else:
        text = " ".join(raw.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown(uri: str) -> str:
    """``uri`` fit for a message: a password in it replaced by ***."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def first_sentence(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text.split(". ")[0].rstrip(".")


def with_retries(call: Callable[[], T], uri: str, *, attempts: int = ATTEMPTS,
                 first_delay_s: float = FIRST_DELAY_S) -> T:
    """``call()``, repeated on transient store errors; store failures become ``StoreError``."""
    down = _unreachable.get(uri)
    if down is not None and time.monotonic() < down[0]:
        raise StoreError(f"{down[1]} (Not asked again: it failed to answer within the last {UNREACHABLE_HOLD_S:.0f} s.)")
    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as error:
            if is_transient(error):
                if attempt < attempts - 1:
                    time.sleep(first_delay_s * 2**attempt * (0.5 + random.random()))
                    continue
                raise StoreError(f"The tracking store {shown(uri)} stayed unavailable through {attempts} attempts: "
                                 f"{first_line(error)}") from error
            refused = re.search(r"error code (401|403)\b", str(error))
            if refused:
                raise StoreError(f"The tracking server {shown(uri)} refused the request (HTTP {refused.group(1)}: not "
                                 "logged in, or not allowed). Give a user of its users file in MLFLOW_TRACKING_USERNAME "
                                 "and MLFLOW_TRACKING_PASSWORD (docs/scaling.md, \"Authentication\").") from error
            if is_store_failure(error):
                failure = StoreError(f"The tracking store {shown(uri)} failed: {first_line(error)}. Repeating would not help: "
                                     "check its disk (space, permissions) or server, or point tracking.uri elsewhere.")
                if any(marker in str(error).lower() for marker in UNREACHABLE):
                    _unreachable[uri] = (time.monotonic() + UNREACHABLE_HOLD_S, failure)
                raise failure from error
            raise
    raise AssertionError("unreachable")


class RetryingClient:
    """``MlflowClient(uri)`` whose creation and method calls are retried on transient store errors."""

    def __init__(self, uri: str, *, attempts: int = ATTEMPTS, first_delay_s: float = FIRST_DELAY_S,
                 client: Any = None) -> None:
        self._uri, self._attempts, self._first_delay_s = uri, attempts, first_delay_s
        self._client = client if client is not None else self._retrying(lambda: MlflowClient(uri))

    def _retrying(self, call: Callable[[], T]) -> T:
        return with_retries(call, self._uri, attempts=self._attempts, first_delay_s=self._first_delay_s)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._retrying(lambda: attr(*args, **kwargs))

        return call


# --- opening ------------------------------------------------------------------------------------


def open_store(uri: str, *, create: bool = True, key: str = "tracking.uri", create_dir: bool = False) -> RetryingClient:
    """A client of the store at ``uri``, after ``prepare_store``. Raises StoreError."""
    prepare_store(uri, create=create, key=key, create_dir=create_dir)
    return RetryingClient(uri)


def prepare_store(uri: str, *, create: bool = True, key: str = "tracking.uri", create_dir: bool = False) -> None:
    """Make the store at ``uri`` ready for MLflow clients, or raise StoreError saying why it is not.

    sqlite: the file is checked and, if needed, created or migrated under the lock (see the module
    doc); ``create=False`` refuses a missing file instead of creating one; a new file's directory must
    exist unless ``create_dir`` (``tracking.create_store_dir``): a typo in the path would otherwise
    start a new, empty store and retrain everything. http(s): the server must
    answer within a few seconds, and MLflow's HTTP retries are bounded. Other schemes: MLflow must
    accept the URI. ``key`` names the setting the URI came from, for the messages."""
    if not uri or not uri.strip():
        raise StoreError(f"The '{key}' parameter must be an MLflow tracking URI such as sqlite:///<path>/mlflow.db "
                         f"or http://<host>:<port>. Got {uri!r} instead.")
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "sqlite":
        prepare_sqlite(uri, create=create, create_dir=create_dir)
    elif scheme in ("http", "https"):
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
        check_server(uri)
    else:
        try:
            MlflowClient(uri)
        except Exception as error:  # MLflow raises several types for a URI it cannot use
            raise StoreError(f"The '{key}' parameter must be a tracking URI MLflow can use, such as "
                             f"sqlite:///<path>/mlflow.db or http://<host>:<port>. Got {shown(uri)!r} instead "
                             f"(MLflow: {first_sentence(error).replace(uri, shown(uri))}).") from error


def check_server(uri: str) -> None:
    """Raise StoreError unless an HTTP server answers at ``uri`` (any HTTP status counts)."""
    url = uri.rstrip("/") + "/health"
    reason = ""
    for attempt in range(HEALTH_ATTEMPTS):
        try:
            with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S):
                answered = True
        except urllib.error.HTTPError:  # it answered (perhaps 401 behind auth): it is alive
            answered = True
        except (urllib.error.URLError, OSError) as error:
            answered, reason = False, str(getattr(error, "reason", error))
        if answered:
            _unreachable.pop(uri, None)  # back after a blip: the calls of a job that checked it are made again
            return
        if attempt < HEALTH_ATTEMPTS - 1:
            time.sleep(0.5 * 2**attempt)
    raise StoreError(f"No MLflow tracking server answers at {shown(uri)} ({reason}; {HEALTH_ATTEMPTS} tries). "
                     "Start it (`make server` for the project's) or point tracking.uri elsewhere.")


# --- sqlite -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqliteFile:
    path: Path
    read_only: bool  # a mode=ro URI: checked, never created, migrated or locked

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")


def sqlite_file(uri: str) -> SqliteFile | None:
    """The file behind an sqlite URI (``sqlite:///rel``, ``sqlite:////abs``, ``sqlite:///file:...?uri=true``),
    or None for an in-memory database."""
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    database = url.database or ""
    if database in ("", ":memory:"):
        return None
    read_only = False
    if str(url.query.get("uri", "")).lower() == "true" and database.startswith("file:"):
        parts = urlsplit(database)
        database = parts.path
        read_only = str(url.query.get("mode", "")).lower() == "ro"
        if not database or database == ":memory:" or str(url.query.get("mode", "")).lower() == "memory":
            return None
    return SqliteFile(Path(database).expanduser(), read_only)


@dataclass(frozen=True)
class Schema:
    """What MLflow's code expects of its store: the head revision and the columns of every table."""

    head: str
    columns: dict[str, frozenset[str]]


@functools.lru_cache(maxsize=1)
def expected_schema() -> Schema:
    # MLflow's own ORM metadata and alembic scripts (private modules: mlflow is pinned below 4).
    from mlflow.store.db import utils as db_utils  # noqa: F401  (it defines MLflow's tables in the metadata)
    from mlflow.store.db.base_sql_model import Base

    columns = {name: frozenset(table.columns.keys()) for name, table in Base.metadata.tables.items()}
    return Schema(head_revision(), columns)


def head_revision() -> str:
    """MLflow's head schema revision. Finding it walks MLflow's ~70 migration scripts, executing each
    (~0.2 s of CPU), and MLflow walks them again when its client first opens a store (its
    ``_verify_schema``): its function is memoized in place, so that a process walks them once. The
    answer depends only on the installed MLflow."""
    from mlflow.store.db import utils as db_utils

    if not hasattr(db_utils._get_latest_schema_revision, "cache_info"):
        db_utils._get_latest_schema_revision = functools.lru_cache(maxsize=1)(db_utils._get_latest_schema_revision)
    return db_utils._get_latest_schema_revision()


@functools.lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every schema revision this MLflow knows (a walk of its scripts: asked only of a store that is
    not at the head)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db import utils as db_utils

    script = ScriptDirectory.from_config(db_utils._get_alembic_config(db_url=""))
    return frozenset(rev.revision for rev in script.walk_revisions())


@dataclass(frozen=True)
class StoreState:
    kind: str  # "missing", "empty", "healthy" or "damaged"
    problem: str = ""  # for "damaged": what is wrong, in words
    holds_results: bool = False  # rows anywhere but the tables an empty store fills


def inspect_sqlite(db: SqliteFile) -> StoreState:
    """The state of the file, read without changing it (MLflow does not touch it). Raises StoreError for
    a file that is not an sqlite database or holds another application's tables."""
    path = db.path
    if not path.exists():
        return StoreState("missing")
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not an sqlite file. Point tracking.uri at a file.")
    if path.stat().st_size == 0:
        return StoreState("empty")
    mode = "ro" if db.read_only else "rw"  # rw: rolls back a hot journal left by a killed writer
    try:
        con = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=SQLITE_TIMEOUT_S)
        try:
            return _inspect(con, path)
        finally:
            con.close()
    except sqlite3.DatabaseError as error:
        if "locked" in str(error):
            raise MlflowException(f"database is locked: {error}", error_code=TEMPORARILY_UNAVAILABLE) from error
        raise StoreError(f"{path} cannot be used as an MLflow store: {error}. It may be damaged or another "
                         "kind of file: move it away (MLflow then creates a new store) or point tracking.uri "
                         "elsewhere.") from error


def _inspect(con: sqlite3.Connection, path: Path) -> StoreState:
    tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")
    if not tables:
        return StoreState("empty")
    schema = expected_schema()
    leftovers = sorted(t for t in tables if t.startswith(TMP_PREFIX))
    ours = {t.removeprefix(TMP_PREFIX) for t in tables} & (set(schema.columns) | {"alembic_version"})
    if not ours:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(f"{path} holds the tables of another application ({shown}), not an MLflow store. "
                         "Point tracking.uri at another file.")
    holds_results = any(
        con.execute(f'SELECT EXISTS (SELECT 1 FROM "{t}")').fetchone()[0]
        for t in sorted(tables) if t.removeprefix(TMP_PREFIX) not in SEEDED_TABLES
    )
    problems = []
    if leftovers:
        problems.append(f"leftover tables of an interrupted schema migration ({', '.join(leftovers)})")
    versions = [v for (v,) in con.execute("SELECT version_num FROM alembic_version")] if "alembic_version" in tables else []
    if len(versions) != 1:
        problems.append(f"no single schema revision recorded (found {versions or 'none'})")
    elif versions[0] != schema.head and versions[0] not in known_revisions():
        raise StoreError(f"{path} has schema revision {versions[0]}, unknown to this MLflow (written by a newer "
                         "MLflow?). Use the MLflow version that wrote it, or point tracking.uri elsewhere.")
    elif versions[0] != schema.head:
        problems.append(f"schema revision {versions[0]}, not this MLflow's {schema.head}")
    missing = sorted(set(schema.columns) - tables)
    if missing:
        problems.append(f"missing tables ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    for table in sorted(set(schema.columns) & tables):
        present = {row[1] for row in con.execute(f'PRAGMA table_xinfo("{table}")')}
        lacking = sorted(schema.columns[table] - present)
        if lacking:
            problems.append(f"table {table} lacks columns {', '.join(lacking)}")
    if problems:
        return StoreState("damaged", "; ".join(problems), holds_results)
    return StoreState("healthy", holds_results=holds_results)


@contextmanager
def exclusive_lock(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing, never deleted: deleting a lock file
    lets two processes lock two different files). Released on exit, or when the process dies."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise StoreError(f"Cannot create the lock file {path} next to the store: {error.strerror}. "
                         f"The directory {path.parent} must be writable.") from error
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(f"Another process has held {path} for over {timeout_s:.0f} s while setting up "
                                     "the store; if none is running, this is a stale lock of a hung process.")
                time.sleep(0.05 + 0.05 * random.random())
        yield
    finally:
        os.close(fd)  # releases the lock


# The sqlite files this process has prepared: (URI, create) -> (device, inode) of the file then. A
# job prepares its store before it trains, and again for its runs and its resume check: the same
# file is checked once; a file moved, replaced or deleted since is checked again.
_prepared: dict[tuple[str, bool], tuple[int, int]] = {}


def file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def prepare_sqlite(uri: str, *, create: bool = True, create_dir: bool = False) -> None:
    db = sqlite_file(uri)
    if db is None:
        return  # in memory: private to this process, nothing to race on
    identity = file_identity(db.path)
    if identity is not None and _prepared.get((uri, create)) == identity:
        return
    _prepare_sqlite(db, uri, create=create, create_dir=create_dir)
    identity = file_identity(db.path)
    if identity is not None:
        _prepared[(uri, create)] = identity


def _prepare_sqlite(db: SqliteFile, uri: str, *, create: bool, create_dir: bool) -> None:
    if db.read_only:
        state = with_retries(lambda: inspect_sqlite(db), uri)
        if state.kind != "healthy":
            raise StoreError(f"The read-only store {db.path} is {state.kind}{': ' + state.problem if state.problem else ''}.")
        return
    try:
        state = inspect_sqlite(db)  # without the lock: the common case, a healthy store, costs one read
    except (StoreError, MlflowException):
        state = None  # perhaps read in the middle of another process's migration: decided under the lock
    if state is not None and state.kind == "healthy":
        if create and not (os.access(db.path, os.W_OK) and os.access(db.path.parent, os.W_OK)):
            raise StoreError(f"The store {db.path} is read-only (the file or its directory is not writable).")
        return
    if state is not None and state.kind in ("missing", "empty") and not create:
        raise_missing(db, state)
    if not db.path.parent.is_dir() and not create_dir:
        raise StoreError(f"The directory {db.path.parent} of the store {shown(uri)} does not exist (a typo?): a new, "
                         "empty store there would retrain everything. Create the directory, or set "
                         "tracking.create_store_dir=true (store command: --create-dir).")
    try:
        db.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"Cannot create the directory {db.path.parent} for the store {uri}: "
                         f"{error.strerror} ({error.filename}).") from error
    with exclusive_lock(db.lock_path):
        state = with_retries(lambda: inspect_sqlite(db), uri)  # another process may have done it meanwhile
        if state.kind == "healthy":
            return
        if state.kind in ("missing", "empty") and not create:
            raise_missing(db, state)
        if state.kind == "damaged":
            if state.holds_results:
                raise StoreError(
                    f"The store {db.path} is damaged: {state.problem}. It holds runs, so it is left as it is. "
                    f"Repair it with: python -m forgetlab.tracking.store repair {uri} "
                    "(it keeps a copy first and restores the store if the repair fails)."
                )
            backup = move_aside(db.path)
            print(f"forgetlab: the store {db.path} was damaged ({state.problem}) and held no runs: "
                  f"moved it to {backup} and created a new store.", file=sys.stderr, flush=True)
        _create(db, uri)


def raise_missing(db: SqliteFile, state: StoreState) -> None:
    what = "does not exist" if state.kind == "missing" else "is empty"
    raise StoreError(f"There is no MLflow store at {db.path}: the file {what}. Check the URI, or train first.")


def _create(db: SqliteFile, uri: str) -> None:
    """Let MLflow create (or migrate) the schema, a missing file from the template; the caller holds the lock."""
    if not os.access(db.path.parent, os.W_OK):
        raise StoreError(f"Cannot create the store {db.path}: the directory {db.path.parent} is not writable.")
    if not db.path.exists():  # not an empty file, which another process may have open
        copy_template(db)
    # MLflow finds the schema at its head (or creates it) and adds its default experiment, whose
    # artifact location depends on where and how the store is opened: never part of the template.
    with_retries(lambda: MlflowClient(uri), uri)
    state = inspect_sqlite(db)
    if state.kind != "healthy":
        raise StoreError(f"MLflow left the new store {db.path} {state.kind}: {state.problem}")


def template_dir() -> Path | None:
    """Where the empty store is kept (``$FORGETLAB_STORE_TEMPLATE``, default
    ``$XDG_CACHE_HOME/forgetlab/stores``, else ``~/.cache/forgetlab/stores``); None when the
    variable is ``off`` or there is no home directory."""
    value = os.environ.get(TEMPLATE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path("~").expanduser() / ".cache")
    return base / "forgetlab" / "stores" if base.is_absolute() else None


def store_template() -> Path | None:
    """An empty sqlite store at this MLflow's head revision, without experiments, made by MLflow once
    per MLflow version and kept in ``template_dir()``; None where it cannot be kept (the store is
    then made by MLflow itself: the template never fails a run)."""
    import mlflow

    directory = template_dir()
    if directory is None:
        return None
    path = directory / f"mlflow-{mlflow.__version__}.db"
    if path.is_file():
        return path
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".new-", suffix=".db")
        os.close(fd)
        os.unlink(name)  # MLflow creates its store in a missing file
        try:
            client = MlflowClient(f"sqlite:///{name}")
            client._tracking_client.store.engine.dispose()
            with closing(sqlite3.connect(name)) as con, con:
                con.execute("DELETE FROM experiment_tags")
                con.execute("DELETE FROM experiments")  # the default one: MLflow adds it to each copy
            if inspect_sqlite(SqliteFile(Path(name), read_only=False)).kind != "healthy":
                return None
            os.replace(name, path)  # whole or not at all; two processes making it at once both succeed
        finally:
            with suppress(OSError):
                os.unlink(name)
    except (OSError, sqlite3.Error, MlflowException, StoreError):
        return None
    return path


def copy_template(db: SqliteFile) -> None:
    """The missing file ``db`` as a copy of ``store_template()``, written under another name and
    renamed into place; nothing when there is no template or the copy is not an empty healthy store."""
    template = store_template()
    if template is None:
        return
    fd, name = tempfile.mkstemp(dir=db.path.parent, prefix=f".{db.path.name}.new-")
    try:
        with os.fdopen(fd, "wb") as out, template.open("rb") as source:
            shutil.copyfileobj(source, out)
            out.flush()
            os.fsync(out.fileno())
        with closing(sqlite3.connect(f"file:{name}?mode=ro", uri=True)) as con:
            experiments = con.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
        state = inspect_sqlite(SqliteFile(Path(name), read_only=True))
        if state.kind == "healthy" and not state.holds_results and experiments == 0:
            os.replace(name, db.path)
            return
    except (OSError, sqlite3.Error, StoreError):
        pass
    finally:
        with suppress(OSError):
            os.unlink(name)
    with suppress(OSError):  # MLflow makes this store; the next one gets a template made anew
        template.unlink()


def backup_path(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = path.with_name(f"{path.name}.bak-{stamp}"), 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.name}.bak-{stamp}-{n}"), n + 1
    return candidate


def move_aside(path: Path) -> Path:
    """Rename the file (and a hot journal beside it) to ``<name>.bak-<time>``; returns the new path."""
    backup = backup_path(path)
    os.replace(path, backup)
    journal = path.with_name(path.name + "-journal")
    if journal.exists():
        os.replace(journal, backup.with_name(backup.name + "-journal"))
    return backup


def copy_of(path: Path) -> Path:
    """A consistent copy of the database (sqlite's backup API) as ``<name>.bak-<time>``."""
    backup = backup_path(path)
    source, target = sqlite3.connect(path), sqlite3.connect(backup)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return backup


def repair_store(uri: str) -> Path | None:
    """Repair a damaged sqlite store in place, keeping a copy; returns the copy's path (None when the
    store was healthy). Leftover ``_alembic_tmp_X`` tables are dropped when ``X`` exists (the
    interrupted copy; ``X`` holds the data) and renamed to ``X`` when it does not (the migration
    stopped after dropping ``X``); then MLflow's migrations run to the head revision. If the store is
    still not healthy, the copy is put back and StoreError raised."""
    from sqlalchemy import create_engine

    from mlflow.store.db import utils as db_utils

    db = sqlite_file(uri)
    if db is None or db.read_only:
        raise StoreError(f"{uri} is not an sqlite file that can be repaired.")
    with exclusive_lock(db.lock_path):
        state = inspect_sqlite(db)
        if state.kind == "healthy":
            return None
        if state.kind != "damaged":
            raise StoreError(f"There is no MLflow store at {db.path} to repair (the file is {state.kind}).")
        backup = copy_of(db.path)
        try:
            con = sqlite3.connect(db.path, timeout=SQLITE_TIMEOUT_S)
            try:
                tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                for tmp in sorted(t for t in tables if t.startswith(TMP_PREFIX)):
                    original = tmp.removeprefix(TMP_PREFIX)
                    if original in tables:
                        con.execute(f'DROP TABLE "{tmp}"')
                    else:
                        con.execute(f'ALTER TABLE "{tmp}" RENAME TO "{original}"')
                con.commit()
            finally:
                con.close()
            engine = create_engine(uri)
            try:
                db_utils._upgrade_db(engine)
            finally:
                engine.dispose()
            state = inspect_sqlite(db)
            if state.kind != "healthy":
                raise StoreError(f"still damaged after the repair: {state.problem}")
        except Exception as error:
            shutil.copyfile(backup, db.path)
            raise StoreError(f"Could not repair {db.path} ({first_line(error, 300)}); it is back as it was, and "
                             f"a copy is at {backup}. Export its runs with MLflow into a new store.") from error
    return backup


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forgetlab.tracking.store",
        description="Prepare (create or check) or repair an MLflow tracking store. Exit code 2: unusable store.",
    )
    parser.add_argument("action", choices=["prepare", "repair"],
                        help="prepare: create the store or check it, as every forgetlab entry point does; "
                             "repair: repair a damaged sqlite store, keeping a copy")
    parser.add_argument("uri", help="tracking URI, e.g. sqlite:////abs/path/mlflow.db")
    parser.add_argument("--create-dir", action="store_true", help="prepare: create a new sqlite file's missing directory")
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            prepare_store(args.uri, create_dir=args.create_dir)
            print(f"Store ready: {args.uri}")
        else:
            backup = repair_store(args.uri)
            print(f"Repaired {args.uri}; the damaged version is kept at {backup}." if backup
                  else f"{args.uri} is healthy: nothing to repair.")
    except StoreError as error:
        print(f"Tracking store error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
