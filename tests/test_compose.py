"""``compose`` outside a Hydra application, and what it keeps between compositions in one process: the
merged defaults of each choice of config groups (a config is the same as Hydra's, composed again when
a file of conf/ changed), the schemas stored in Hydra's ConfigStore (stored again when a part is
registered), and the primary config's default choices that the help template lists (read again when
conf/config.yaml changes)."""

from __future__ import annotations

import os
import shutil

import pytest
from hydra.errors import HydraException
from omegaconf import OmegaConf

from forgetlab.config import compose
from forgetlab.config.compose import CONF_DIR, _compose_with_hydra
from forgetlab.config.help import options
from forgetlab.config.schema import PART_GROUPS
from tests.conftest import ROOT


def test_a_part_registered_after_a_composition_is_an_option_of_the_next(monkeypatch):
    registry, _ = PART_GROUPS["strategy"]
    _, part = next(iter(registry.items()))
    compose(["seed=1"])  # the schemas are stored now
    with pytest.raises(HydraException, match="late_option"):
        compose(["strategy=late_option"])

    monkeypatch.setitem(registry._parts, "late_option", part)  # as an extension imported later declares it
    assert compose(["strategy=late_option"]).strategy.name == "late_option"


def test_the_help_lists_the_default_of_the_primary_config_as_it_is_now(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    primary = conf / "config.yaml"
    assert "mlp*" in options("network", conf) and "rnn*" not in options("network", conf)

    text = primary.read_text()
    assert "- network: mlp\n" in text
    primary.write_text(text.replace("- network: mlp\n", "- network: rnn\n"))
    stat = primary.stat()
    os.utime(primary, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # the same second as before
    assert "rnn*" in options("network", conf) and "mlp*" not in options("network", conf)


# Values over the defaults and over a group's choice, a value before its group's choice, a value over an
# interpolation, added and deleted keys, a preset that sets values of its own, a study learner.
JOBS = [
    [],
    ["seed=3"],
    ["seed=3", "algorithm.lr=0.5"],
    ["learner=rnn_rtrl", "seed=1"],
    ["algorithm.h=4", "learner=rnn_bptt_truncated", "network.hidden_size=8"],
    ["learner=rnn_bptt_truncated", "algorithm.h=2", "network.hidden_size=8", "seed=2"],
    ["+tracking.note=x", "seed=1"],
    ["~guard", "seed=1"],
    ["experiment=quickstart", "trainer.epochs_per_task=2"],
    ["experiment=credit_assignment_pilot", "learner=credit_assignment/bptt_14_1_every_step", "seed=4"],
    ["task_sequence=permuted_digits", "task_sequence.n_tasks=3", "eval.every_samples=50"],
    ["task_sequence=permuted_digits", "task_sequence.n_tasks=2", "seed=7"],
]


def as_container(cfg):
    return OmegaConf.to_container(cfg, resolve=False)


@pytest.fixture(scope="module")
def hydras():
    """Each job as Hydra composes it afresh."""
    return {tuple(o): as_container(_compose_with_hydra(list(o), CONF_DIR, "config", False, False)) for o in JOBS}


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_a_composition_equals_hydras_whichever_came_before_it(hydras, order):
    jobs = JOBS if order == "forward" else JOBS[::-1]
    for _ in range(2):  # the second time every one from its template
        for overrides in jobs:
            assert as_container(compose(overrides)) == hydras[tuple(overrides)], overrides


def test_a_returned_config_is_the_callers_to_change():
    first = compose(["seed=1"])
    first.trainer.epochs_per_task = 99
    assert compose(["seed=2"]).trainer.epochs_per_task != 99


def test_a_value_for_a_key_no_config_has_fails_as_in_hydra():
    with pytest.raises(Exception) as hydra_error:
        _compose_with_hydra(["seed=1", "trainer.no_such_key=1"], CONF_DIR, "config", False, False)
    compose(["seed=1"])
    with pytest.raises(type(hydra_error.value)) as mine:
        compose(["seed=1", "trainer.no_such_key=1"])
    assert str(mine.value) == str(hydra_error.value)


def test_a_file_of_the_tree_changed_since_is_read_again(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    before = compose(["seed=1"], config_dir=conf).trainer.epochs_per_task
    trainer = conf / "trainer" / "default.yaml"
    text = trainer.read_text()
    trainer.write_text(text.replace(f"epochs_per_task: {before}", f"epochs_per_task: {before + 5}"))
    stat = trainer.stat()
    os.utime(trainer, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert compose(["seed=2"], config_dir=conf).trainer.epochs_per_task == before + 5
