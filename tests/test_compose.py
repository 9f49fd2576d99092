"""``compose`` outside a Hydra application, and what it keeps between compositions in one process: the
schemas stored in Hydra's ConfigStore (stored again when a part is registered), and the primary
config's default choices that the help template lists (read again when conf/config.yaml changes)."""

from __future__ import annotations

import os
import shutil

import pytest
from hydra.errors import HydraException

from forgetlab.config import compose
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
