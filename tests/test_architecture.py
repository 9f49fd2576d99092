"""The layering is checked, not hoped for: import-linter's contracts (pyproject.toml) over the real tree."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), str(config), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_every_import_contract_is_kept():
    result = lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    """The contracts name modules that exist: a network importing the trainer is reported."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")
    assert "forgetlab.trainer" in layers["layers"] and "forgetlab.networks" in layers["layers"]
    # Same contracts, over a copy of the package with one upward import added.
    import shutil

    shutil.copytree(ROOT / "src" / "forgetlab", tmp_path / "forgetlab")
    shutil.copytree(ROOT / "analysis", tmp_path / "analysis")
    shutil.copytree(ROOT / "src" / "hydra_plugins", tmp_path / "hydra_plugins")
    with open(tmp_path / "forgetlab" / "networks" / "base.py", "a") as f:
        f.write("\nimport forgetlab.trainer  # noqa\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    result = subprocess.run([str(LINT_IMPORTS), "pyproject.toml", "--no-cache"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "forgetlab.networks.base -> forgetlab.trainer" in result.stdout


def broken_by(tmp_path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports over a copy of the tree with ``line`` appended to ``module`` (a path under the copy)."""
    import shutil

    shutil.copytree(ROOT / "src" / "forgetlab", tmp_path / "forgetlab")
    shutil.copytree(ROOT / "analysis", tmp_path / "analysis")
    shutil.copytree(ROOT / "src" / "hydra_plugins", tmp_path / "hydra_plugins")
    with open(tmp_path / module, "a") as f:
        f.write(f"\n{line}  # noqa\n")
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    return subprocess.run([str(LINT_IMPORTS), "pyproject.toml", "--no-cache"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_analysis_may_open_a_store_but_not_record_runs(tmp_path):
    """analysis imports the store opener (report.py does); any other tracking module is forbidden."""
    result = broken_by(tmp_path, "analysis/report.py", "import forgetlab.tracking.mlflow_run")
    assert result.returncode != 0
    assert "analysis.report -> forgetlab.tracking.mlflow_run" in result.stdout
    assert "4 kept, 1 broken" in result.stdout  # the analysis contract; the chain above names it


def test_the_store_opener_imports_nothing_of_forgetlab(tmp_path):
    """What analysis may import must not pull the rest of forgetlab in behind it."""
    result = broken_by(tmp_path, "forgetlab/tracking/store.py", "import forgetlab.tracking.liveness")
    assert result.returncode != 0
    assert "forgetlab.tracking.store -> forgetlab.tracking.liveness" in result.stdout
    # Broken twice: the opener's own contract, and analysis's through the opener.
    assert "3 kept, 2 broken" in result.stdout
