"""Which code trained a run: part of its identity, so that resume never reuses results of other code.

The identity is ``code_hash``, a content hash of the package's Python files (relative path and
bytes of every ``*.py`` under ``src/forgetlab``: ``contract.package_hash``, which ``analysis/``
computes too). It changes with any edit to the package,
committed or not, and with nothing else: a commit that touches only docs, tests or conf/ keeps
it (conf/ reaches a run only through its resolved config, which the config hash already holds).
It needs no git, so a node that runs an installed copy of the package computes the same hash as
the checkout it was installed from.

Where the package is a git checkout, the commit, the branch, the remote and the uncommitted
changes to the package and conf/ (``git diff HEAD`` plus untracked files) are recorded too: they
say where the code came from, the hash says what it was.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from forgetlab import contract
from forgetlab.contract import PACKAGE_DIR, package_hash  # noqa: F401  (the identity: spelled with its tag)

GIT_TIMEOUT_S = 10


@dataclass(frozen=True)
class CodeVersion:
    code_hash: str  # content hash of the package's source: the identity
    commit: str | None = None  # None outside a git checkout
    branch: str | None = None  # None on a detached HEAD
    repo_url: str | None = None  # the remote "origin", when there is one
    diff: str = ""  # uncommitted changes to the package and conf/, as a patch

    @property
    def diff_hash(self) -> str | None:
        return hashlib.sha256(self.diff.encode()).hexdigest()[:16] if self.diff else None

    def tags(self) -> dict[str, str]:
        """The run tags of docs/tracking.md that say which code this is."""
        tags = {contract.TAG_CODE_VERSION: self.code_hash}
        for key, value in ((contract.TAG_GIT_COMMIT, self.commit), (contract.TAG_GIT_BRANCH, self.branch),
                           (contract.TAG_GIT_REPO_URL, self.repo_url), (contract.TAG_CODE_DIFF, self.diff_hash)):
            if value:
                tags[key] = value
        return tags


def _git(cwd: Path, *args: str) -> str | None:
    """stdout of ``git args`` (None when git fails or is missing). ``git diff --no-index`` exits 1
    when the files differ, which is its success here."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    ok = out.returncode == 0 or (args[:2] == ("diff", "--no-index") and out.returncode == 1)
    return out.stdout if ok else None


def _uncommitted(top: Path, paths: list[str]) -> str:
    """``git diff HEAD`` of ``paths`` with the untracked files in them as new files."""
    flags = ("--no-color", "--no-ext-diff", "--binary")
    diff = _git(top, "diff", "HEAD", *flags, "--", *paths) or ""
    untracked = _git(top, "ls-files", "--others", "--exclude-standard", "-z", "--", *paths) or ""
    for name in filter(None, untracked.split("\0")):
        diff += _git(top, "diff", "--no-index", *flags, "--", "/dev/null", name) or ""
    return diff


@functools.lru_cache(maxsize=None)
def code_version(conf_dir: Path | None = None, package_dir: Path = PACKAGE_DIR) -> CodeVersion:
    """The code version of this process's package (computed once: a process runs the code it imported).

    Git details come from the repository that tracks the package's files; a copy installed into
    site-packages (even inside a checkout, e.g. in ``.venv``) gets the content hash alone."""
    code_hash = package_hash(package_dir)
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None or _git(package_dir, "ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return CodeVersion(code_hash)
    top_dir = Path(top.strip())
    commit = (_git(top_dir, "rev-parse", "--verify", "HEAD") or "").strip() or None
    branch = (_git(top_dir, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    repo_url = (_git(top_dir, "remote", "get-url", "origin") or "").strip() or None
    paths = []
    for path in (package_dir, conf_dir):
        try:
            paths.append(path.resolve().relative_to(top_dir.resolve()).as_posix())
        except (AttributeError, ValueError):  # None, or outside the repository
            pass
    diff = _uncommitted(top_dir, paths) if commit else ""
    return CodeVersion(code_hash, commit, branch if branch not in ("", "HEAD") else None, repo_url, diff)
