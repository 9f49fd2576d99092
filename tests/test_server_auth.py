"""MLflow's basic authentication as an option of ``forgetlab.server`` (issue 20): users in a 0600 file,
every request but /health refused without one, a client without credentials told so in one line."""

from __future__ import annotations

import stat

import pytest

from forgetlab.server import BasicAuth, ServerError, free_port, mlflow_server_command, start_mlflow, stop_process_group
from forgetlab.tracking.store import RetryingClient, StoreError


def private(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_start_auth_writes_its_settings_for_the_owner_only_and_runs_mlflows_basic_auth_app(tmp_path):
    auth = BasicAuth(tmp_path / "auth", tmp_path / "auth" / "users")
    auth.prepare()
    (admin, password), = auth.users()  # a users file made for it: one user with a random password
    assert admin == "forgetlab" and len(password) >= 12
    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) == 0o700
    for name in ("users", "basic_auth.ini", "flask_secret"):
        assert stat.S_IMODE((tmp_path / "auth" / name).stat().st_mode) == 0o600
    ini = (tmp_path / "auth" / "basic_auth.ini").read_text()
    assert f"admin_username = {admin}" in ini and "default_permission = EDIT" in ini
    cmd, env = mlflow_server_command("sqlite:///x.db", tmp_path / "art", host="127.0.0.1", port=free_port(), workers=1,
                                     auth=auth)
    assert cmd[cmd.index("--app-name") + 1] == "basic-auth"
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "auth" / "basic_auth.ini")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] and password not in " ".join(cmd)  # secrets stay off the command line
    plain, _ = mlflow_server_command("sqlite:///x.db", tmp_path / "art", host="127.0.0.1", port=free_port(), workers=1)
    assert "--app-name" not in plain  # the default: no authentication, loopback only
    assert auth.client_hint() == (f"export MLFLOW_TRACKING_USERNAME=forgetlab MLFLOW_TRACKING_PASSWORD="
                                  f"\"$(sed -n 's/^forgetlab://p' {tmp_path / 'auth' / 'users'})\"")


def test_a_users_file_others_may_read_or_with_a_short_password_is_refused(tmp_path):
    users = tmp_path / "users"
    users.write_text("boss:" + "b" * 16 + "\n")
    users.chmod(0o644)
    with pytest.raises(ServerError, match=r"others may read it \(mode 644\): chmod 600"):
        BasicAuth(tmp_path / "auth", users).users()
    private(users, "boss:short\n")
    with pytest.raises(ServerError, match=r"line 1: expected name:password with a password of at least 12"):
        BasicAuth(tmp_path / "auth", users).users()


@pytest.mark.slow
def test_a_server_with_basic_auth_answers_its_users_only(tmp_path, monkeypatch):
    pytest.importorskip("flask_wtf", reason="MLflow's basic auth needs Flask-WTF (the dev extra installs it)")
    users = private(tmp_path / "users", "boss:" + "b" * 16 + "\nalice:" + "a" * 14 + "\n")
    auth = BasicAuth(tmp_path / "auth", users)
    auth.prepare()
    port = free_port()
    pid = start_mlflow(f"sqlite:///{tmp_path}/server.db", tmp_path / "art", tmp_path / "mlflow.log", port=port,
                       workers=1, auth=auth)
    uri = f"http://127.0.0.1:{port}"
    try:
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(StoreError, match=r"refused the request \(HTTP 401: not logged in, or not allowed\)") as refused:
            RetryingClient(uri).search_experiments()
        assert "\n" not in str(refused.value)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")  # created at start, as the admin
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "a" * 14)
        experiment = RetryingClient(uri).create_experiment("alices")
        assert RetryingClient(uri).get_experiment(experiment).name == "alices"
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-alices-password")
        with pytest.raises(StoreError, match="HTTP 401"):
            RetryingClient(uri).search_experiments()
        auth.create_users(uri)  # again at the next start: users it knows are left as they are
    finally:
        stop_process_group(pid)
