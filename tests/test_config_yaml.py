"""A run's resolved-config artifact (``config_yaml``) is the text ``OmegaConf.to_yaml`` gives, and
reads back as the same typed config."""

import dataclasses
import math
from dataclasses import asdict

import pytest
import yaml
from omegaconf import OmegaConf

from forgetlab.config import compose, config_from_container, config_yaml, register_configs, typed
from tests.conftest import ROOT

register_configs()

LEARNERS = sorted(p.relative_to(ROOT / "conf" / "learner").with_suffix("").as_posix()
                  for p in (ROOT / "conf" / "learner").rglob("*.yaml"))
FAST = {"strategies/ewc"}  # each composition of another structure ~1-2 s: the rest in `make test`
OVERRIDES = [[], pytest.param(["trainer.shuffle=false", "network.hidden_sizes=[7,3]"], marks=pytest.mark.slow)] + [
    pytest.param((["experiment=strategies"] if name.startswith("strategies/") else []) + [f"learner={name}"],
                 marks=() if name in FAST else pytest.mark.slow)
    for name in LEARNERS]


@pytest.fixture(scope="module")
def default_run():
    return typed(compose([]))


@pytest.mark.parametrize("overrides", OVERRIDES, ids=lambda o: " ".join(o) or "defaults")
def test_config_yaml_is_omegaconf_text_and_reads_back(overrides):
    run = typed(compose(overrides))
    text = config_yaml(run)
    assert text == OmegaConf.to_yaml(asdict(run))
    assert config_from_container(yaml.safe_load(text)) == run


ODD_STRINGS = ["1e-3", "true", "False", "null", "~", "", " lead", "a: b", "#x", "x # y", "1_000", "0x1F", "ünïcödé ∂",
               "a\nb", "tab\there", "'q'", '"dq"', "-", "[1]", "{a: 1}", "yes", "on", "2026-12-08",
               "word " * 30, "nan", ".inf"]
ODD_FLOATS = [1e-300, 0.1 + 0.2, 1e16, 123456789.123456789, -0.0, float("inf"), -float("inf"), 5e-324, 1.0]


@pytest.mark.parametrize("value", ODD_STRINGS)
def test_strings_quoted_and_wrapped_as_omegaconf_does(value, default_run):
    run = dataclasses.replace(default_run, tracking=dataclasses.replace(default_run.tracking, experiment=value))
    text = config_yaml(run)
    assert text == OmegaConf.to_yaml(asdict(run))
    assert yaml.safe_load(text)["tracking"]["experiment"] == value


@pytest.mark.parametrize("value", ODD_FLOATS + [float("nan")])
def test_floats_as_omegaconf_writes_them(value, default_run):
    run = dataclasses.replace(default_run, algorithm=dataclasses.replace(default_run.algorithm, lr=value))
    text = config_yaml(run)
    assert text == OmegaConf.to_yaml(asdict(run))
    back = yaml.safe_load(text)["algorithm"]["lr"]
    assert (math.isnan(back) if math.isnan(value) else back == value)
