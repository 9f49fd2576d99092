"""README.md is true line by line: every command in its code blocks is checked here, as far as a test
can without training a study. Commands that answer at once (``--help``, ``--cfg job``, ``--info``, the
gradient audit, the examples of refused configs with their printed message) run for real; the training
commands compose and validate their config exactly as experiments/train.py does before it trains; the
other scripts must accept every option the README gives them; every ``make`` target exists; the Python
example calls only what ``forgetlab.api`` has. A command added to the README without a check here fails
``test_every_readme_command_is_checked``."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
# Lines of code blocks that are no commands to check: the shell's own, and a GPU machine's.
NOT_COMMANDS = {". .venv/bin/activate"}
# Refused on a machine without a GPU, as the README says next to it ("Without a GPU, backend=cupy is
# refused before any run, with the reason"); tests/test_backend.py checks both sides.
NEEDS_A_GPU = "backend=cupy"


def code_blocks(language: str) -> list[str]:
    return [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", README, re.S) if lang == language]


def commands() -> list[str]:
    """Every command of the README's bash blocks, its trailing comment removed."""
    found = []
    for block in code_blocks("bash"):
        for line in block.splitlines():
            line = re.split(r"\s{2,}#", line)[0].strip()
            if line and line not in NOT_COMMANDS:
                found.append(line)
    return found


def kind(command: str) -> str:
    words = shlex.split(command)
    if words[0] == "make":
        return "make"
    if words[:2] == ["python", "experiments/train.py"]:
        immediate = {"--help", "--cfg", "--info", "-sc"} & set(words)
        return "train-now" if immediate else "train-config"
    if words[:2] == ["python", "-m"] and words[2] == "forgetlab.gradcheck":
        return "gradcheck"
    if words[0] == "python" and words[1].startswith("analysis/"):
        return "script-options"
    raise AssertionError(f"README command without a check in tests/test_readme.py: {command}")


def test_every_readme_command_is_checked():
    kinds = {command: kind(command) for command in commands()}
    assert len(kinds) > 30
    assert set(kinds.values()) == {"make", "train-now", "train-config", "gradcheck", "script-options"}


def test_every_make_target_in_the_readme_exists():
    targets = {shlex.split(c)[1] for c in commands() if kind(c) == "make"}
    targets |= set(re.findall(r"`make (\w[\w-]*)", README))
    listed = subprocess.run(["make", "help"], capture_output=True, text=True, cwd=ROOT).stdout
    assert targets and {t for t in targets if f"make {t} " not in listed} == set()


@pytest.mark.parametrize("command", [c for c in commands() if kind(c) == "train-config"])
def test_every_training_command_of_the_readme_composes_and_validates(command):
    from forgetlab.config import ConfigError, check_command_line

    args = shlex.split(command)[2:]
    multirun = "-m" in args
    overrides = [a for a in args if a != "-m"]
    try:
        check_command_line(str(ROOT / "conf"), "config", overrides, multirun)
    except ConfigError as error:
        assert NEEDS_A_GPU in command and "backend.name" in str(error), (command, str(error))


def run(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in commands() if kind(c) in ("train-now", "gradcheck")]
                         + ['python experiments/train.py -sc install=bash'])
def test_every_immediate_command_of_the_readme_runs(command, tmp_path):
    args = [a.replace("/tmp/mlp.npz", str(tmp_path / "mlp.npz")) for a in shlex.split(command)[1:]]
    proc = run(args)
    assert proc.returncode == 0, (command, proc.stderr[-2000:])
    if "--cfg" in args:
        assert "algorithm:\n  name: rtrl" in proc.stdout and "network:\n  name: rnn" in proc.stdout
    if "--info" in args:
        assert "Defaults List" in proc.stdout
    if "-sc" in args:
        assert "complete" in proc.stdout  # the bash completion function that `eval` installs
        assert 'eval "$(python experiments/train.py -sc install=bash)"' in README  # the command checked here


@pytest.mark.slow
def test_every_refused_config_in_the_readme_prints_what_it_shows():
    (block,) = [b for b in code_blocks("") if b.startswith("$ python experiments/train.py")]
    lines = block.strip().splitlines()
    for command, shown in zip(lines[::2], lines[1::2]):
        proc = run(shlex.split(command.removeprefix("$ "))[1:])
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == shown, (command, proc.stderr)


def script_commands() -> dict[str, list[str]]:
    """The README's analysis commands by script: one ``--help`` process per script, not per command."""
    by_script: dict[str, list[str]] = {}
    for command in (c for c in commands() if kind(c) == "script-options"):
        by_script.setdefault(shlex.split(command)[1], []).append(command)
    return by_script


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(script_commands()))
def test_every_analysis_command_of_the_readme_uses_options_its_script_has(script):
    proc = run([script, "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for command in script_commands()[script]:
        for option in (w.split("=")[0] for w in shlex.split(command)[2:] if w.startswith("--")):
            assert option in proc.stdout, (command, option)


def test_the_python_example_calls_only_what_the_api_has():
    from forgetlab import api

    (example,) = code_blocks("python")
    called = {node.attr for node in ast.walk(ast.parse(example))
              if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "api"}
    assert called and {name for name in called if not callable(getattr(api, name, None))} == set()
