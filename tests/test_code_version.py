"""The code version is part of a run's identity: a run records which code trained it, and resume
skips only runs of the same config *and* code (docs/tracking.md, "Run identity and resume")."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from forgetlab.tracking.code_version import code_version, package_hash
from forgetlab.tracking.liveness import process_identity
from forgetlab.tracking.resume import resume_decision
from forgetlab.tracking.store import RetryingClient
from tests.conftest import ROOT

uncached_code_version = code_version.__wrapped__  # these tests edit the files between calls


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.email=test@example.com", "-c", "user.name=test"]
    return subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def committed_repo(tmp_path: Path) -> Path:
    """A git repository holding a tiny package ``src/pkg`` and a ``conf/`` directory."""
    repo = tmp_path / "repo"
    (repo / "src" / "pkg").mkdir(parents=True)
    (repo / "conf").mkdir()
    (repo / "src" / "pkg" / "__init__.py").write_text('"""pkg"""\n')
    (repo / "src" / "pkg" / "algorithm.py").write_text("LR = 0.1\n")
    (repo / "conf" / "config.yaml").write_text("seed: 0\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    return repo


# --- the code version ----------------------------------------------------------------------------


def test_the_package_hash_follows_the_source_and_nothing_else(tmp_path):
    copy = tmp_path / "forgetlab"
    shutil.copytree(ROOT / "src" / "forgetlab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    original = package_hash(ROOT / "src" / "forgetlab")
    assert package_hash(copy) == original  # wherever the files are: a node without git gets the same hash
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "stray.py").write_text("x = 1\n")
    (copy / "notes.txt").write_text("not code\n")
    assert package_hash(copy) == original
    with open(copy / "algorithms" / "backprop.py", "a") as f:
        f.write("# an edit\n")
    edited = package_hash(copy)
    assert edited != original and len(edited) == 16
    (copy / "algorithms" / "backprop.py").rename(copy / "algorithms" / "renamed.py")
    assert package_hash(copy) not in (original, edited)  # the path is part of the content


def test_a_git_checkout_records_commit_branch_and_uncommitted_changes(tmp_path):
    repo = committed_repo(tmp_path)
    package, conf = repo / "src" / "pkg", repo / "conf"
    clean = uncached_code_version(conf, package)
    assert clean.commit == git(repo, "rev-parse", "HEAD").strip()
    assert clean.branch == "main" and clean.repo_url is None
    assert clean.diff == "" and clean.diff_hash is None
    assert set(clean.tags()) == {"forgetlab.code_version", "mlflow.source.git.commit", "mlflow.source.git.branch"}

    (package / "algorithm.py").write_text("LR = 0.2\n")
    (conf / "extra.yaml").write_text("new: 1\n")  # untracked files count too
    (repo / "README.md").write_text("outside the package and conf/\n")
    dirty = uncached_code_version(conf, package)
    assert dirty.commit == clean.commit and dirty.code_hash != clean.code_hash
    assert "+LR = 0.2" in dirty.diff and "+new: 1" in dirty.diff and "README" not in dirty.diff
    assert dirty.tags()["forgetlab.code_diff"] == dirty.diff_hash

    git(repo, "remote", "add", "origin", "https://example.com/lab/forgetlab.git")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second")
    committed = uncached_code_version(conf, package)
    assert committed.code_hash == dirty.code_hash  # the same files: the same identity
    assert committed.commit != clean.commit and committed.diff == ""
    assert committed.repo_url == "https://example.com/lab/forgetlab.git"


def test_without_git_only_the_content_hash_is_recorded(tmp_path):
    repo = committed_repo(tmp_path)
    installed = tmp_path / "site-packages" / "pkg"  # an installed copy: no repository around it
    shutil.copytree(repo / "src" / "pkg", installed)
    version = uncached_code_version(None, installed)
    assert version.code_hash == uncached_code_version(repo / "conf", repo / "src" / "pkg").code_hash
    assert version.commit is None and version.diff == ""
    assert set(version.tags()) == {"forgetlab.code_version"}
    # A copy inside a checkout but not tracked by it (a venv's site-packages) gets no git details either.
    (repo / ".gitignore").write_text(".venv/\n")
    shutil.copytree(repo / "src" / "pkg", repo / ".venv" / "pkg")
    assert uncached_code_version(None, repo / ".venv" / "pkg").commit is None


# --- resume by config and code -------------------------------------------------------------------


@pytest.mark.slow
def test_resume_skips_only_runs_of_the_same_code_unless_told_to_ignore_it(sqlite_uri):
    client = MlflowClient(sqlite_uri)
    exp = client.create_experiment("identity")
    live = process_identity()  # this test's process: alive

    def run(config_hash, status, code):
        tags = {"forgetlab.config_hash": config_hash, "forgetlab.kind": "train", "forgetlab.process": live,
                "forgetlab.heartbeat": f"{time.time():.0f}"}
        if code:
            tags["forgetlab.code_version"] = code
        run_id = client.create_run(exp, tags=tags).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    old = run("done", "FINISHED", "aaaa")
    run("legacy", "FINISHED", None)  # recorded before runs carried a code version
    run("busy", "RUNNING", "aaaa")

    def decide(config_hash, code):
        return resume_decision(RetryingClient(sqlite_uri), exp, [config_hash], code_version=code, resume=True,
                               stale_after_s=600, label=config_hash)

    assert decide("done", "aaaa").skip.startswith(f"FINISHED as run {old}")
    retrained = decide("done", "bbbb")
    assert retrained.skip is None
    assert retrained.retrain == f"FINISHED as run {old} with other code (code version aaaa, now bbbb)"
    assert decide("done", None).skip is not None  # tracking.resume_ignores_code=true
    assert decide("legacy", "bbbb").skip is None and "unrecorded" in decide("legacy", "bbbb").retrain
    assert decide("legacy", None).skip is not None
    # A live run of this code is reported, not taken for done; one of other code does not stand for this code.
    busy = decide("busy", "aaaa")
    assert busy.skip is None and "still RUNNING" in busy.running_reason
    assert decide("busy", "bbbb").skip is None and decide("busy", "bbbb").running is None


# --- end to end, in a temporary git checkout of the project ----------------------------------------

TINY = ["trainer.epochs_per_task=1", "task_sequence.n_tasks=2", "network.hidden_sizes=[8]", "eval.every_samples=500"]


def project_checkout(tmp_path: Path) -> Path:
    """The project's code, configs and entry point as a fresh git repository (one commit)."""
    checkout = tmp_path / "checkout"
    for part in ("src/forgetlab", "src/hydra_plugins", "conf", "experiments"):
        shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__"))
    git(checkout, "init", "-q", "-b", "study")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-qm", "the project")
    return checkout


def train_in(checkout: Path, store: Path, *args: str) -> subprocess.CompletedProcess:
    """experiments/train.py of ``checkout``, importing forgetlab from it (not from this worktree)."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "FORGETLAB_ROOT": str(checkout)}
    env.pop("MLFLOW_TRACKING_URI", None)
    store_args = [f"tracking.uri=sqlite:///{store}/mlflow.db", "tracking.experiment=code",
                  f"tracking.artifact_location={store}/artifacts"]
    return subprocess.run([sys.executable, str(checkout / "experiments" / "train.py"), *args, *TINY, *store_args],
                          cwd=checkout, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_committed_change_to_an_algorithm_retrains_the_sweep(tmp_path):
    checkout = project_checkout(tmp_path)
    store = tmp_path / "store"
    sweep = ["-m", "seed=0,1"]

    first = train_in(checkout, store, *sweep, f"hydra.sweep.dir={tmp_path}/first")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 jobs: 0 skipped (same config and code), 2 trained, 0 failed" in first.stdout
    again = train_in(checkout, store, *sweep, f"hydra.sweep.dir={tmp_path}/again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 jobs: 2 skipped (same config and code), 0 trained, 0 failed" in again.stdout

    with open(checkout / "src" / "forgetlab" / "algorithms" / "backprop.py", "a") as f:
        f.write("# a change to the algorithm\n")
    git(checkout, "commit", "-qam", "change backprop")
    changed = train_in(checkout, store, *sweep, f"hydra.sweep.dir={tmp_path}/changed")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "[sweep] retrain 2 of 2 jobs: their runs FINISHED with other code (e.g. seed=0: FINISHED as run" in changed.stdout
    assert changed.stdout.count("[sweep] retrain") == 1  # one line for them all
    assert "2 jobs: 0 skipped (same config and code), 2 trained, 0 failed" in changed.stdout

    ignoring = train_in(checkout, store, *sweep, "tracking.resume_ignores_code=true", f"hydra.sweep.dir={tmp_path}/ig")
    assert ignoring.returncode == 0, ignoring.stderr[-3000:]
    assert "2 jobs: 2 skipped (same config), 0 trained, 0 failed" in ignoring.stdout

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("code").experiment_id], max_results=100)
    jobs = [r for r in runs if r.data.tags["forgetlab.kind"] == "train"]
    assert all(j.info.status == "FINISHED" for j in jobs) and len(jobs) == 4
    head = git(checkout, "rev-parse", "HEAD").strip()
    new_code = package_hash(checkout / "src" / "forgetlab")
    by_commit = {}
    for job in jobs:
        tags = job.data.tags
        by_commit.setdefault(tags["mlflow.source.git.commit"], []).append(tags["forgetlab.code_version"])
        assert tags["mlflow.source.git.branch"] == "study"
        assert tags["mlflow.source.name"] == "experiments/train.py"
        assert "forgetlab.code_diff" not in tags  # committed: nothing uncommitted to record
    assert by_commit[head] == [new_code, new_code] and len(by_commit) == 2
    # One parent per code version (the plain re-run reused the first), and one for the sweep that ignored the code.
    assert len({r.data.tags["forgetlab.sweep_id"] for r in runs if r.data.tags["forgetlab.kind"] == "sweep"}) == 3

    # Uncommitted changes are part of the code version too, and recorded as a patch.
    with open(checkout / "conf" / "eval" / "default.yaml", "a") as f:
        f.write("# tried something\n")
    with open(checkout / "src" / "forgetlab" / "algorithms" / "backprop.py", "a") as f:
        f.write("# not committed yet\n")
    single = train_in(checkout, store, "seed=0", f"hydra.run.dir={tmp_path}/single")
    assert single.returncode == 0, single.stderr[-3000:]
    (dirty,) = client.search_runs([client.get_experiment_by_name("code").experiment_id],
                                  filter_string="tags.`forgetlab.code_diff` != ''")
    assert dirty.data.tags["forgetlab.code_version"] not in (new_code,)
    patch = Path(client.download_artifacts(dirty.info.run_id, "code/uncommitted.diff", str(tmp_path))).read_text()
    assert "+# not committed yet" in patch and "+# tried something" in patch
