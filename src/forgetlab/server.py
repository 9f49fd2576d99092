"""A shared MLflow tracking server on PostgreSQL, run by the project itself (no service manager),
and the MLflow UI on the local sqlite store.

    python -m forgetlab.server start [--port 5001] [--state-dir DIR] [--auth [--users FILE]]
    python -m forgetlab.server status
    python -m forgetlab.server stop
    python -m forgetlab.server repair [--uri URI]   # end KILLED the runs left RUNNING by processes now gone
    python -m forgetlab.server ui [--port 5000] [--store sqlite:///PATH]   # `make ui`: in the foreground

``start`` initialises a PostgreSQL cluster from the OS packages in ``<state dir>/postgres`` (first time
only), starts it on 127.0.0.1 at a free port with password authentication, creates the ``mlflow``
database, and starts ``mlflow server`` on it with artifacts proxied to ``<state dir>/artifacts``.
Training then uses ``tracking=server`` (see conf/tracking/server.yaml). Everything binds to
127.0.0.1 unless ``--host`` says otherwise; PostgreSQL always stays on 127.0.0.1 because only the
MLflow server talks to it.

``start --auth`` adds MLflow's basic authentication (``mlflow server --app-name basic-auth``): every
request but ``/health`` needs a user and password. Users are ``name:password`` lines (passwords of
12 characters or more) in a file only its owner may read (mode 0600; ``--users``, default
``<state dir>/auth/users``, created with one user and a random password): the first is the server's
admin, the others are created at start. Every user may read and record runs (MLflow's
``default_permission = EDIT``); deleting needs MANAGE, which the creator of an experiment and the
admin have. Clients give their user in ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``.
The auth database, its config and the Flask secret live in ``<state dir>/auth`` (0700, files 0600).

``ui`` serves the default store (``<project root>/mlflow.db``) with one worker and MLflow's
background job runner off: the runner serves GenAI features forgetlab does not use and costs
extra processes that each import all of MLflow, which is what makes a default ``mlflow ui`` slow to answer.

MLflow 3's UI opens an experiment in its GenAI view unless the page address asks for the training
view (``TRAINING_VIEW_QUERY``; the experiment tag ``mlflow.experimentKind`` alone does not switch
the view in MLflow 3.17): ``ui_url`` gives addresses that open there.

initdb and postgres refuse to run as root, so as root they run as the ``postgres`` system user.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 5001
DB_USER = "forgetlab"
DB_NAME = "mlflow"
STATE_FILE = "server.json"
MIN_PASSWORD = 12  # MLflow's basic auth refuses shorter passwords
UI_PORT = 5000
# What MLflow 3's UI reads (the "Model training" switch) to show runs, metrics and artifacts.
TRAINING_VIEW_QUERY = "workflowType=machine_learning"
# The run table's view for comparing, an experiment tag (forgetlab.contract.COMPARE_VIEW: the same name)
COMPARE_VIEW_QUERY = "viewStateShareKey=forgetlab"


class ServerError(RuntimeError):
    """The server could not be started or reached; the message says why and what to do."""


def default_state_dir() -> Path:
    root = Path(os.environ.get("FORGETLAB_ROOT", "."))
    return (root / ".forgetlab" / "server").resolve()


def default_store() -> str:
    return f"sqlite:///{Path(os.environ.get('FORGETLAB_ROOT', '.')).resolve() / 'mlflow.db'}"


def ui_state_file() -> Path:
    """Where ``serve_ui`` records the port it serves, for the addresses printed after runs."""
    return Path(os.environ.get("FORGETLAB_ROOT", ".")).resolve() / ".forgetlab" / "ui.json"


def ui_port() -> int:
    """The port of the UI on the local store: the one ``make ui`` serves (or last served), else ``UI_PORT``."""
    try:
        return int(json.loads(ui_state_file().read_text())["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return UI_PORT


def ui_url(tracking_uri: str, experiment_id: str | None = None, run_id: str | None = None) -> str:
    """The MLflow UI page of an experiment (or one of its runs) in the training view. A tracking
    server serves its own UI; a local store is shown by ``make ui`` on its port (``ui_port``)."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else f"http://{LOOPBACK}:{ui_port()}"
    # An experiment's run table (``/runs``): the UI reads a shared view's key there, not on the experiment's
    # address it redirects from.
    page = "/#/experiments" + (f"/{experiment_id}/runs" if experiment_id else "") + (f"/{run_id}" if run_id else "")
    query = TRAINING_VIEW_QUERY + (f"&{COMPARE_VIEW_QUERY}" if experiment_id and not run_id else "")
    return f"{base}{page}?{query}"


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def pg_bindir() -> Path:
    """Directory of initdb/pg_ctl: $FORGETLAB_PG_BIN, PATH, or the newest /usr/lib/postgresql/<v>/bin."""
    if os.environ.get("FORGETLAB_PG_BIN"):
        return Path(os.environ["FORGETLAB_PG_BIN"])
    found = shutil.which("pg_ctl")
    if found and Path(found).resolve().parent.joinpath("initdb").exists():
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if versions:
        return versions[-1].parent
    raise ServerError(
        "PostgreSQL is not installed (no pg_ctl on PATH or under /usr/lib/postgresql). "
        "Install the OS package: `make system-deps` (apt-get install postgresql)."
    )


# --- processes --------------------------------------------------------------------------------


def _as_db_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ServerError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3… of /proc/<pid>/stat (state, ppid, …), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks after boot): with the pid, it names one process, even after
    the pid is reused by another one (e.g. after a reboot)."""
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def _alive(pid: int | None, started: str | None = None) -> bool:
    """True while ``pid`` runs (and, given ``started``, is still that process); an exited process
    nobody reaped yet (a zombie) counts as gone."""
    if not pid:
        return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return False
    return started is None or fields[19] == started


def stop_process_group(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid`` (the server and its workers), SIGKILL if it lingers."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child: reap it
                return
        except ChildProcessError:  # not our child (started by another `start`)
            if not _alive(pid):
                return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no log at {path})"


def wait_healthy(url: str, pid: int, log: Path, timeout: float = 120.0) -> None:
    """Poll ``<url>/health`` until it answers 200; fail early with the log if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                raise ServerError(f"mlflow server exited during start-up. Last lines of {log}:\n{_tail(log)}")
        except ChildProcessError:
            pass
        time.sleep(0.5)
    raise ServerError(f"mlflow server did not answer {url}/health within {timeout:.0f} s. Last lines of {log}:\n{_tail(log)}")


def start_mlflow(
    backend_store_uri: str,
    artifacts_dir: Path,
    log: Path,
    *,
    host: str = LOOPBACK,
    port: int,
    workers: int = 2,
    allowed_hosts: str | None = None,
    timeout: float = 120.0,
    auth: BasicAuth | None = None,
) -> int:
    """Start ``mlflow server`` in its own process group, wait until it is healthy; return its pid.

    The backend URI (it may hold a password) goes through the environment, not the command line.
    Artifacts are proxied: clients upload over HTTP, so jobs on other nodes need no shared disk for them.
    """
    cmd, env = mlflow_server_command(backend_store_uri, artifacts_dir, host=host, port=port, workers=workers,
                                     allowed_hosts=allowed_hosts, auth=auth)
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_healthy(f"http://{_connect_host(host)}:{port}", proc.pid, log, timeout)
        if auth is not None:
            auth.create_users(f"http://{_connect_host(host)}:{port}")
    except BaseException:
        stop_process_group(proc.pid)
        raise
    return proc.pid


def mlflow_server_command(
    backend_store_uri: str, artifacts_dir: Path, *, host: str, port: int, workers: int, allowed_hosts: str | None = None,
    auth: BasicAuth | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment. The backend URI (it may hold a password)
    goes through the environment, not the command line; so do the basic-auth settings (``auth``)."""
    if port_in_use(host, port):
        raise ServerError(f"Port {port} on {host} is already in use; choose another one with --port.")
    cmd = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--artifacts-destination", str(artifacts_dir),
        "--host", host, "--port", str(port), "--workers", str(workers),
    ]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if auth is not None:
        cmd += ["--app-name", "basic-auth"]
    # No server-side job runner: it serves MLflow's GenAI features (scorers, trace roll-ups), which
    # forgetlab does not use, and would cost more processes importing all of MLflow.
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": backend_store_uri, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # The model registry on the same store, said explicitly (else MLflow says "Registry store URI not
    # provided" at every start), and no library's deprecation warning (Starlette's, which MLflow imports) in
    # the server's output: they are for MLflow's developers.
    env["MLFLOW_REGISTRY_STORE_URI"] = backend_store_uri
    quiet = ["ignore::DeprecationWarning", "ignore:starlette.middleware.wsgi is deprecated"]
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), *quiet]))
    env.pop("MLFLOW_TRACKING_URI", None)
    if auth is not None:
        env.update(auth.environment())
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    return cmd, env


def serve_ui(store: str, *, host: str = LOOPBACK, port: int = UI_PORT) -> None:
    """Replace this process by ``mlflow server`` on ``store`` with one worker (Ctrl-C stops it)."""
    artifacts = Path(os.environ.get("FORGETLAB_ROOT", ".")).resolve() / "mlartifacts"
    port = port or free_port(host)
    cmd, env = mlflow_server_command(store, artifacts, host=host, port=port, workers=1)
    ui_state_file().parent.mkdir(parents=True, exist_ok=True)
    ui_state_file().write_text(json.dumps({"port": port, "store": store}))
    print(f"MLflow UI on {store}, once it answers:  {ui_url(f'http://{_connect_host(host)}:{port}')}", flush=True)
    os.execve(cmd[0], cmd, env)


def _connect_host(host: str) -> str:
    return LOOPBACK if host in ("0.0.0.0", "") else host


# --- PostgreSQL -------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (created so, never briefly world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    path.chmod(0o600)


@dataclass
class BasicAuth:
    """MLflow's basic authentication for a server whose state is in ``directory`` (module doc)."""

    directory: Path
    users_file: Path

    @property
    def config_file(self) -> Path:
        return self.directory / "basic_auth.ini"

    def users(self) -> list[tuple[str, str]]:
        """``(name, password)`` of every user in the users file, the admin first. Raises ServerError
        for a file others may read, or a malformed or short entry."""
        mode = self.users_file.stat().st_mode & 0o777
        if mode & 0o077:
            raise ServerError(f"{self.users_file} holds passwords but others may read it (mode {mode:o}): "
                              f"chmod 600 {self.users_file}")
        users = []
        for number, line in enumerate(self.users_file.read_text().splitlines(), 1):
            if line.strip() and not line.lstrip().startswith("#"):
                name, sep, password = line.strip().partition(":")
                if not sep or not name or len(password) < MIN_PASSWORD:
                    raise ServerError(f"{self.users_file}, line {number}: expected name:password with a password of "
                                      f"at least {MIN_PASSWORD} characters.")
                users.append((name, password))
        if not users:
            raise ServerError(f"{self.users_file} names no user (lines name:password).")
        return users

    def prepare(self) -> None:
        """The auth directory (0700): a users file if there is none (one user, a random password),
        the auth config naming the admin, and the Flask secret key, each readable by the owner only."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
        if not self.users_file.exists():
            _write_private(self.users_file, f"forgetlab:{secrets.token_urlsafe(18)}\n")
        admin, password = self.users()[0]
        _write_private(self.config_file, "\n".join([
            "[mlflow]", "default_permission = EDIT", f"database_uri = sqlite:///{self.directory / 'basic_auth.db'}",
            f"admin_username = {admin}", f"admin_password = {password}",
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth", "",
        ]))
        secret = self.directory / "flask_secret"
        if not secret.exists():
            _write_private(secret, secrets.token_urlsafe(32))

    def environment(self) -> dict[str, str]:
        return {"MLFLOW_AUTH_CONFIG_PATH": str(self.config_file),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": (self.directory / "flask_secret").read_text().strip()}

    def create_users(self, url: str) -> None:
        """Create, as the admin, every other user of the users file the server does not know yet."""
        (admin, admin_password), *others = self.users()
        token = base64.b64encode(f"{admin}:{admin_password}".encode()).decode()
        for name, password in others:
            request = urllib.request.Request(
                f"{url}/api/2.0/mlflow/users/create", method="POST",
                data=json.dumps({"username": name, "password": password}).encode(),
                headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
            )
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except urllib.error.HTTPError as error:
                if "RESOURCE_ALREADY_EXISTS" not in error.read().decode(errors="replace"):
                    raise ServerError(f"Could not create the user {name!r} on {url}: HTTP {error.code}.") from error

    def client_hint(self) -> str:
        admin = self.users()[0][0]
        return (f"export MLFLOW_TRACKING_USERNAME={admin} "
                f"MLFLOW_TRACKING_PASSWORD=\"$(sed -n 's/^{admin}://p' {self.users_file})\"")


@dataclass
class Postgres:
    """A PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1 only, password authentication."""

    data_dir: Path
    password_file: Path

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        bindir = pg_bindir()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # initdb reads the password from a file the cluster owner can read; it is removed right after.
        pwfile = self.data_dir.with_name("initdb.pw")
        try:
            if os.geteuid() == 0:
                shutil.chown(self.data_dir, "postgres", "postgres")
                if subprocess.run(_as_db_owner(["test", "-w", str(self.data_dir)])).returncode != 0:
                    raise ServerError(
                        f"PostgreSQL runs as the 'postgres' user, which cannot reach {self.data_dir}. "
                        "Choose a --state-dir whose parent directories it can traverse."
                    )
            _write_private(self.password_file, secrets.token_urlsafe(24))
            _write_private(pwfile, self.password)
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            _run(
                _as_db_owner([
                    str(bindir / "initdb"), "-D", str(self.data_dir), "-U", DB_USER, "--pwfile", str(pwfile),
                    "--auth", "scram-sha-256", "--encoding", "UTF8", "--no-locale",
                ]),
                "initdb",
            )
        except BaseException:
            shutil.rmtree(self.data_dir, ignore_errors=True)  # never initialised: nothing of value in it
            raise
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, port: int) -> None:
        # No unix socket (-k ''): TCP on 127.0.0.1 only, so nothing depends on /var/run/postgresql.
        _run(
            _as_db_owner([
                str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"),
                "-w", "-t", "60", "-o", f"-h {LOOPBACK} -p {port} -k ''", "start",
            ]),
            "pg_ctl start",
        )

    def running(self) -> bool:
        cmd = _as_db_owner([str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "status"])
        return subprocess.run(cmd, capture_output=True).returncode == 0

    def stop(self) -> None:
        if self.initialised() and self.running():
            _run(
                _as_db_owner([str(pg_bindir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"]),
                "pg_ctl stop",
            )

    def uri(self, port: int, database: str = DB_NAME) -> str:
        return f"postgresql+psycopg2://{DB_USER}:{self.password}@{LOOPBACK}:{port}/{database}"

    def create_database(self, port: int, name: str = DB_NAME) -> None:
        import psycopg2

        conn = psycopg2.connect(host=LOOPBACK, port=port, user=DB_USER, password=self.password, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()


# --- the pair ---------------------------------------------------------------------------------


@dataclass
class ServerState:
    uri: str
    host: str
    port: int
    pg_port: int
    mlflow_pid: int
    mlflow_started: str | None = None  # process_start(mlflow_pid): a reused pid is not our server
    auth: bool = False  # MLflow's basic authentication on (``start --auth``)


class TrackingServer:
    """PostgreSQL + mlflow server whose state (data, artifacts, logs, pids) lives in ``state_dir``."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        self.state_dir = Path(state_dir).resolve() if state_dir else default_state_dir()
        self.postgres = Postgres(self.state_dir / "postgres", self.state_dir / "postgres.password")
        self.artifacts_dir = self.state_dir / "artifacts"
        self.log = self.state_dir / "mlflow.log"
        self.state_path = self.state_dir / STATE_FILE

    def state(self) -> ServerState | None:
        if not self.state_path.exists():
            return None
        return ServerState(**json.loads(self.state_path.read_text()))

    def healthy(self) -> bool:
        state = self.state()
        if state is None or not _alive(state.mlflow_pid, state.mlflow_started):
            return False
        try:
            with urllib.request.urlopen(f"{state.uri}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def basic_auth(self, users_file: Path | None = None) -> BasicAuth:
        return BasicAuth(self.state_dir / "auth", Path(users_file).resolve() if users_file else self.state_dir / "auth" / "users")

    def start(
        self, port: int = DEFAULT_PORT, host: str = LOOPBACK, workers: int = 2, allowed_hosts: str | None = None,
        auth: BasicAuth | None = None,
    ) -> ServerState:
        """Start both (idempotent: a healthy server is left as it is). ``port=0`` picks a free port;
        ``auth``: with MLflow's basic authentication (``basic_auth``, module doc)."""
        if self.healthy():
            return self.state()
        self.stop()  # a stale half (e.g. after a crash) is cleared before starting afresh
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.postgres.initialised():
            self.postgres.init()
        if auth is not None:
            auth.prepare()
        pg_port = free_port()
        self.postgres.start(pg_port)
        try:
            self.postgres.create_database(pg_port)
            port = port or free_port(host)
            pid = start_mlflow(
                self.postgres.uri(pg_port), self.artifacts_dir, self.log,
                host=host, port=port, workers=workers, allowed_hosts=allowed_hosts, auth=auth,
            )
        except BaseException:
            self.postgres.stop()
            raise
        state = ServerState(f"http://{_connect_host(host)}:{port}", host, port, pg_port, pid, process_start(pid),
                            auth is not None)
        self.state_path.write_text(json.dumps(asdict(state)))
        return state

    def stop(self) -> None:
        state = self.state()
        if state is not None and _alive(state.mlflow_pid, state.mlflow_started):
            stop_process_group(state.mlflow_pid)
        self.postgres.stop()
        self.state_path.unlink(missing_ok=True)


def start_hints(state: ServerState, server: TrackingServer, auth: BasicAuth | None) -> list[str]:
    """What ``start`` prints: where the server is and how to train against it, at the port it has."""
    uri = "" if state.uri == f"http://{LOOPBACK}:{DEFAULT_PORT}" else f" tracking.uri={state.uri}"
    lines = [f"MLflow tracking server on PostgreSQL: {state.uri}  (state in {server.state_dir})"
             + ("; basic authentication on" if auth else ""),
             f"Train against it:  python experiments/train.py tracking=server{uri}   "
             f"(or export MLFLOW_TRACKING_URI={state.uri})"]
    if auth is not None:
        lines.append(f"Log in as a user of {auth.users_file}:  {auth.client_hint()}")
    return lines + ["Stop it:           make server-stop"]


def repair(uri: str, stale_after_s: float) -> int:
    """End KILLED the runs ``uri`` holds RUNNING whose process is gone (``forgetlab.tracking.resume``,
    in a process of its own: this tool imports nothing of forgetlab, so that ``ui`` starts fast)."""
    command = [sys.executable, "-m", "forgetlab.tracking.resume", "end-dead-runs", uri, "--stale-after-s", str(stale_after_s)]
    return subprocess.run(command).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forgetlab.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "repair", "ui"],
                        help="start|stop|status the PostgreSQL-backed server, repair: end KILLED the runs it holds "
                             "RUNNING whose process is gone, or ui: the MLflow UI on a local store")
    parser.add_argument("--state-dir", default=None, help="data, artifacts and logs (default: <project>/.forgetlab/server)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"MLflow port (default {DEFAULT_PORT}, for ui {UI_PORT}; 0 = any free port)")
    parser.add_argument("--store", default=None, help="ui only: the backend store (default sqlite:///<project root>/mlflow.db)")
    parser.add_argument("--host", default=LOOPBACK, help="interface the MLflow server binds to (default 127.0.0.1)")
    parser.add_argument("--allowed-hosts", default=None, help="Host headers MLflow accepts when --host is not 127.0.0.1")
    parser.add_argument("--workers", type=int, default=2, help="start only: MLflow server worker processes (default 2; ui uses 1)")
    parser.add_argument("--auth", action="store_true", help="start only: MLflow's basic authentication (module doc)")
    parser.add_argument("--users", type=Path, default=None,
                        help="start --auth: the users file, name:password lines, mode 0600 (default <state dir>/auth/users)")
    parser.add_argument("--uri", default=None, help="repair only: the tracking URI (default: the started server's)")
    parser.add_argument("--stale-after-s", type=float, default=600.0,
                        help="repair only: a run of another machine is dead when its heartbeat is older (default 600)")
    args = parser.parse_args(argv)

    server = TrackingServer(args.state_dir)
    try:
        if args.command == "ui":
            serve_ui(args.store or default_store(), host=args.host, port=UI_PORT if args.port is None else args.port)
        elif args.command == "start":
            port = DEFAULT_PORT if args.port is None else args.port
            auth = server.basic_auth(args.users) if args.auth else None
            state = server.start(port, args.host, args.workers, args.allowed_hosts, auth=auth)
            print("\n".join(start_hints(state, server, auth)))
        elif args.command == "repair":
            uri = args.uri or (server.state().uri if server.state() else None)
            if uri is None:
                raise ServerError(f"No server state in {server.state_dir}: name the store with --uri.")
            return repair(uri, args.stale_after_s)
        elif args.command == "stop":
            server.stop()
            print("stopped")
        else:
            state = server.state()
            if server.healthy():
                print(f"running: {state.uri} (mlflow pid {state.mlflow_pid}, postgres on {LOOPBACK}:{state.pg_port}"
                      f"{', basic authentication' if state.auth else ''})")
            else:
                print("not running")
                return 1
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
