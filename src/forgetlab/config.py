"""Structured configs (types, registered in Hydra's ConfigStore) and semantic validation (ranges,
choices, combinations). Together they reject a bad config before any MLflow run exists.

The YAML files in ``conf/`` name these schemas in their defaults lists, so a key that is not
declared here, or a value of the wrong type, fails at composition time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from forgetlab.algorithms import ALGORITHMS
from forgetlab.data import SCENARIOS, TASK_SEQUENCES
from forgetlab.networks import NETWORKS
from forgetlab.networks.functions import HIDDEN_ACTIVATIONS, LOSSES, OUTPUTS


class ConfigError(ValueError):
    """A config value is out of its allowed range or set; the message names key, value and what is allowed."""


@dataclass
class NetworkConfig:
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [64])
    activation: str = "sigmoid"
    output: str = "sigmoid"
    loss: str = "mse"
    init_scale: float = 1.0


@dataclass
class AlgorithmConfig:
    name: str = "backprop"
    lr: float = 0.5
    l2: float = 0.0
    epochs_per_task: int = 5
    batch_size: int = 1
    shuffle: bool = True


@dataclass
class TaskSequenceConfig:
    name: str = "split_digits"
    scenario: str = "class"
    n_tasks: int = 5
    joint: bool = False
    test_size: float = 0.25
    data_seed: int = 0
    max_angle: float = 90.0


@dataclass
class EvalConfig:
    every_samples: int = 100
    # Probe samples per task: a positive int, or "all".
    probe_per_task: Any = 20


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = MISSING
    experiment: str = "forgetlab"
    artifact_location: Optional[str] = None


@dataclass
class PathsConfig:
    root_dir: str = MISSING


@dataclass
class Config:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    task_sequence: TaskSequenceConfig = field(default_factory=TaskSequenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 0


SCHEMA_NAME = "base"


def register_configs() -> None:
    """Schemas live in the ``schema/`` group so that ``--help`` lists only real options of each group;
    a group's YAML extends its schema with ``- /schema/<group>/base@_here_`` in its defaults."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="schema/network", name=SCHEMA_NAME, node=NetworkConfig)
    cs.store(group="schema/algorithm", name=SCHEMA_NAME, node=AlgorithmConfig)
    cs.store(group="schema/task_sequence", name=SCHEMA_NAME, node=TaskSequenceConfig)
    cs.store(group="schema/eval", name=SCHEMA_NAME, node=EvalConfig)
    cs.store(group="schema/tracking", name=SCHEMA_NAME, node=TrackingConfig)
    cs.store(group="schema/paths", name=SCHEMA_NAME, node=PathsConfig)


# --- semantic validation ------------------------------------------------------------------------


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"The '{key}' parameter must be {allowed}. Got {value!r} instead.")


def _choice(cfg: DictConfig, key: str, allowed) -> None:
    value = cfg[key.split(".")[0]][key.split(".")[1]]
    if value not in allowed:
        _fail(key, value, "one of " + ", ".join(repr(a) for a in allowed))


def _number(cfg: DictConfig, key: str, low: float, high: float = math.inf, low_open=False, high_open=False) -> None:
    group, name = key.split(".")
    value = cfg[group][name]
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        lo = "(" if low_open else "["
        hi = ")" if high_open or high == math.inf else "]"
        _fail(key, value, f"a number in the range {lo}{low}, {high}{hi}")


def validate(cfg: DictConfig) -> None:
    """Check ranges, choices and combinations that types cannot express. Raises ConfigError."""
    _choice(cfg, "network.name", sorted(NETWORKS))
    _choice(cfg, "network.activation", HIDDEN_ACTIVATIONS)
    _choice(cfg, "network.output", OUTPUTS)
    _choice(cfg, "network.loss", LOSSES)
    _number(cfg, "network.init_scale", 0, low_open=True)
    for size in cfg.network.hidden_sizes:
        if size < 1:
            _fail("network.hidden_sizes", list(cfg.network.hidden_sizes), "a list of positive ints")

    _choice(cfg, "algorithm.name", sorted(ALGORITHMS))
    _number(cfg, "algorithm.lr", 0, low_open=True)
    _number(cfg, "algorithm.l2", 0)
    _number(cfg, "algorithm.epochs_per_task", 1)
    _number(cfg, "algorithm.batch_size", 1)
    trainable = ALGORITHMS[cfg.algorithm.name][1]
    if cfg.network.name not in trainable:
        _fail("network.name", cfg.network.name, f"one of {trainable} with algorithm.name={cfg.algorithm.name!r}")

    _choice(cfg, "task_sequence.name", sorted(TASK_SEQUENCES))
    _choice(cfg, "task_sequence.scenario", SCENARIOS)
    _number(cfg, "task_sequence.n_tasks", 1)
    _number(cfg, "task_sequence.test_size", 0, 1, low_open=True, high_open=True)
    if cfg.task_sequence.name == "split_digits" and cfg.task_sequence.n_tasks > 10:
        _fail("task_sequence.n_tasks", cfg.task_sequence.n_tasks, "an int in [1, 10] for split_digits")

    _number(cfg, "eval.every_samples", 0)
    probe = cfg.eval.probe_per_task
    if probe != "all" and not (isinstance(probe, int) and not isinstance(probe, bool) and probe >= 0):
        _fail("eval.probe_per_task", probe, "a non-negative int or 'all'")
