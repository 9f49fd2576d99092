"""Structured configs (types, registered in Hydra's ConfigStore) and semantic validation (ranges,
choices, combinations). Together they reject a bad config before any MLflow run exists.

The YAML files in ``conf/`` name these schemas in their defaults lists, so a key that is not
declared here, or a value of the wrong type, fails at composition time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable, Optional

from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from forgetlab.algorithms import ALGORITHMS, RECURRENT
from forgetlab.algorithms.recurrent import RESETS
from forgetlab.data import INPUTS, SCENARIOS, TASK_SEQUENCES
from forgetlab.networks import NETWORKS
from forgetlab.networks.functions import HIDDEN_ACTIVATIONS, LOSSES, OUTPUTS
from forgetlab.networks.rnn import LOSS_AT, RNN_ACTIVATIONS


class ConfigError(ValueError):
    """A config value is out of its allowed range or set; the message names key, value and what is allowed."""


@dataclass
class NetworkConfig:
    """What every network has; each network's schema below adds its own keys."""

    name: str = "mlp"
    activation: str = "sigmoid"
    output: str = "sigmoid"
    loss: str = "mse"
    init_scale: float = 1.0


@dataclass
class MLPConfig(NetworkConfig):
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [64])


@dataclass
class RNNConfig(NetworkConfig):
    name: str = "rnn"
    activation: str = "tanh"
    output: str = "sigmoid"
    loss: str = "mse"
    hidden_size: int = 32
    loss_at: str = "last"


@dataclass
class AlgorithmConfig:
    """What every learning algorithm has; algorithms with keys of their own extend it below."""

    name: str = "backprop"
    lr: float = 0.5
    l2: float = 0.0
    epochs_per_task: int = 5
    batch_size: int = 1
    shuffle: bool = True


@dataclass
class BPTTTruncatedConfig(AlgorithmConfig):
    name: str = "bptt_truncated"
    h: int = 8
    h_prime: int = 1
    reset: str = "per_sequence"


@dataclass
class RTRLConfig(AlgorithmConfig):
    name: str = "rtrl"
    update_every: int = 1
    reset: str = "per_sequence"


@dataclass
class TaskSequenceConfig:
    name: str = "split_digits"
    scenario: str = "class"
    n_tasks: int = 5
    joint: bool = False
    input: str = "vector"
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
    # A multirun skips jobs whose config hash already has a FINISHED run (false: train them again).
    resume: bool = True
    # A RUNNING run of another machine counts as dead when its heartbeat is older than this.
    stale_after_s: float = 600.0


@dataclass
class PathsConfig:
    root_dir: str = MISSING


@dataclass
class GuardConfig:
    # A run estimated to train for longer than this gets a warning before it starts (hours).
    max_hours: float = 1.0


@dataclass
class Config:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    task_sequence: TaskSequenceConfig = field(default_factory=TaskSequenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    seed: int = 0


SCHEMA_NAME = "base"

# Top-level keys of a composed config; ``hydra`` is Hydra's own node.
TOP_LEVEL_KEYS = {f.name for f in fields(Config)} | {"hydra"}


# Group -> {schema name -> dataclass}: "base" for the group as a whole, and one per option whose
# YAML extends a schema of its own (``- /schema/network/rnn@_here_`` in conf/network/rnn.yaml).
SCHEMAS: dict[str, dict[str, type]] = {
    "network": {SCHEMA_NAME: NetworkConfig, "mlp": MLPConfig, "rnn": RNNConfig},
    "algorithm": {SCHEMA_NAME: AlgorithmConfig, "bptt_truncated": BPTTTruncatedConfig, "rtrl": RTRLConfig},
    "task_sequence": {SCHEMA_NAME: TaskSequenceConfig},
    "eval": {SCHEMA_NAME: EvalConfig},
    "tracking": {SCHEMA_NAME: TrackingConfig},
    "paths": {SCHEMA_NAME: PathsConfig},
    "guard": {SCHEMA_NAME: GuardConfig},
}


def register_configs() -> None:
    """Schemas live in the ``schema/`` group so that ``--help`` lists only real options of each group;
    a group's YAML extends its schema with ``- /schema/<group>/<name>@_here_`` in its defaults."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


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


def _group_keys(cfg: DictConfig | None, group: str) -> set[str] | None:
    """The keys a group may hold: the fields of the schema its YAML extends (e.g. MLPConfig for
    network=mlp); without a composed config, those of any of the group's schemas. None for a plain
    top-level value."""
    if group not in SCHEMAS:
        return None
    node = cfg.get(group) if cfg is not None else None
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    if schema is not None and is_dataclass(schema):
        return {f.name for f in fields(schema)}
    return {f.name for schema in SCHEMAS[group].values() for f in fields(schema)}


def _known_keys(cfg: DictConfig) -> None:
    """Keys added with ``+key=value`` pass Hydra's composition; only the schema's keys are forgetlab's."""
    for name in cfg:
        if name not in TOP_LEVEL_KEYS:
            raise _unknown_key(cfg, str(name), f"{name}={cfg[name]}")
        schema = _group_keys(cfg, str(name))
        if schema is not None:
            for key in cfg[name]:
                if key not in schema:
                    raise _unknown_key(cfg, f"{name}.{key}", f"{name}.{key}={cfg[name][key]}")


def _unknown_key(cfg: DictConfig | None, key: str, given: str) -> ConfigError:
    group, _, _ = key.rpartition(".")
    allowed = _group_keys(cfg, group) if group else TOP_LEVEL_KEYS - {"hydra"}
    where = f"the keys of '{group}'" if group else "the top-level keys"
    return ConfigError(
        f"The '{key}' key is not a forgetlab parameter. Got {given!r} instead; {where} are: {', '.join(sorted(allowed))}."
    )


def validate(cfg: DictConfig) -> None:
    """Check keys, ranges, choices and combinations that types cannot express. Raises ConfigError."""
    _known_keys(cfg)
    _choice(cfg, "network.name", sorted(NETWORKS))
    recurrent_net = cfg.network.name == "rnn"
    _choice(cfg, "network.activation", RNN_ACTIVATIONS if recurrent_net else HIDDEN_ACTIVATIONS)
    _choice(cfg, "network.output", OUTPUTS)
    _choice(cfg, "network.loss", LOSSES)
    _number(cfg, "network.init_scale", 0, low_open=True)
    if recurrent_net:
        _number(cfg, "network.hidden_size", 1)
        _choice(cfg, "network.loss_at", LOSS_AT)
    else:
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
    if cfg.algorithm.name in RECURRENT and cfg.algorithm.batch_size != 1:
        _fail("algorithm.batch_size", cfg.algorithm.batch_size,
              f"1 with algorithm.name={cfg.algorithm.name!r} (one sequence at a time)")
    if cfg.algorithm.name == "bptt_truncated":
        _number(cfg, "algorithm.h", 1)
        h, h_prime = cfg.algorithm.h, cfg.algorithm.h_prime
        if not 1 <= h_prime <= h:
            _fail("algorithm.h_prime", h_prime, f"an int in the range [1, algorithm.h={h}] (BPTT(h; h') needs h' <= h)")
    if cfg.algorithm.name == "rtrl":
        _number(cfg, "algorithm.update_every", 1)
    if "reset" in cfg.algorithm:
        _choice(cfg, "algorithm.reset", RESETS)

    _choice(cfg, "task_sequence.name", sorted(TASK_SEQUENCES))
    _choice(cfg, "task_sequence.scenario", SCENARIOS)
    _choice(cfg, "task_sequence.input", INPUTS)
    reads = "sequence" if recurrent_net else "vector"
    if cfg.task_sequence.input != reads:
        _fail("task_sequence.input", cfg.task_sequence.input, f"{reads!r} with network.name={cfg.network.name!r}")
    _number(cfg, "task_sequence.n_tasks", 1)
    _number(cfg, "task_sequence.test_size", 0, 1, low_open=True, high_open=True)
    if cfg.task_sequence.name in ("split_digits", "split_mnist1d") and cfg.task_sequence.n_tasks > 10:
        _fail("task_sequence.n_tasks", cfg.task_sequence.n_tasks, f"an int in [1, 10] for {cfg.task_sequence.name}")

    _number(cfg, "task_sequence.data_seed", 0)
    _number(cfg, "task_sequence.max_angle", -360, 360)
    if cfg.seed < 0:
        _fail("seed", cfg.seed, "a non-negative int")

    _number(cfg, "eval.every_samples", 0)
    probe = cfg.eval.probe_per_task
    if probe != "all" and not (isinstance(probe, int) and not isinstance(probe, bool) and probe >= 0):
        _fail("eval.probe_per_task", probe, "a non-negative int or 'all'")

    if not cfg.tracking.experiment.strip():
        _fail("tracking.experiment", cfg.tracking.experiment, "a non-empty experiment name")
    _number(cfg, "tracking.stale_after_s", 0, low_open=True)
    _number(cfg, "guard.max_hours", 0, low_open=True)


# --- composition errors -------------------------------------------------------------------------


def explain_composition_error(
    error: BaseException, overrides: list[str], compose: Callable[[list[str]], DictConfig] | None = None
) -> ConfigError | None:
    """The ConfigError for a Hydra/OmegaConf composition failure caused by the command line (an
    unknown key or group option, a wrong type, a malformed override), or None for anything else.

    ``compose(overrides)``, when given, lets an unknown-key message list the keys of the schema the
    chosen group option really has (composed without the offending override)."""
    if isinstance(error, OverrideParseException):
        return ConfigError(f"Could not parse an override. {error}")
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return ConfigError(
            f"The '{group}' config group must be one of {', '.join(repr(o) for o in error.options)}. "
            f"Got {option!r} instead."
        )
    cause = error.__cause__ if error.__cause__ is not None else error
    full_key = getattr(cause, "full_key", None)
    if not full_key:
        return None
    key = full_key.split("[")[0]
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        group = key.rpartition(".")[0]
        if group and _group_keys(None, group) is None:
            return None
        offending = [o for o in overrides if o.lstrip("+~").split("=")[0] == key]
        given = offending[0].lstrip("+~") if offending else key
        cfg = None
        if compose is not None:
            try:
                cfg = compose([o for o in overrides if o not in offending])
            except Exception:  # another bad override: fall back to every schema of the group
                cfg = None
        return _unknown_key(cfg, key, given)
    if isinstance(cause, ValidationError):
        expected = _schema_type(key)
        if expected is None:
            return None
        return ConfigError(f"The '{key}' parameter must be of type {expected}. Got {cause.value!r} instead.")
    return None


def _schema_type(key: str) -> str | None:
    """The declared type of a dotted key, as written in its dataclass (e.g. 'float', 'list[int]')."""
    group, _, name = key.rpartition(".")
    candidates = SCHEMAS.get(group, {}).values() if group else [Config]
    for schema in candidates:
        for f in fields(schema):
            if f.name == name and not is_dataclass(f.default_factory):
                return str(f.type)
    return None


# Where a ``_target_`` may appear: Hydra instantiates these only from its registered plugin classes.
# forgetlab itself creates objects from its registries (network.name, algorithm.name, ...), never
# from a ``_target_``, so a config read back from a run cannot make it import arbitrary code.
PLUGIN_TARGETS = ("hydra.launcher._target_", "hydra.sweeper._target_")


def check_targets(cfg: DictConfig) -> None:
    """Raise ConfigError for a ``_target_`` anywhere in ``cfg`` except Hydra's launcher and sweeper."""

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                key = f"{prefix}.{k}" if prefix else str(k)
                if k == "_target_" and key not in PLUGIN_TARGETS:
                    _fail(key, v, "absent: forgetlab creates objects only from its registries "
                          "(network.name, algorithm.name, task_sequence.name) and Hydra only its plugins")
                walk(v, key)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{prefix}[{i}]")

    walk(OmegaConf.to_container(cfg, resolve=False), "")


def check_launcher(cfg: DictConfig) -> None:
    """Raise ConfigError for a launcher setting that would fail only after the sweep has begun
    (joblib's ``n_jobs=0`` raises inside the launcher, with the parent run already open)."""
    n_jobs = OmegaConf.select(cfg, "hydra.launcher.n_jobs", default=None)
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0):
        _fail("hydra.launcher.n_jobs", n_jobs,
              "a non-zero int: the number of parallel jobs, or -1 for one per CPU (-2 for all but one, ...)")


def check_command_line(config_dir: str, config_name: str, overrides: list[str], multirun: bool) -> None:
    """Compose the primary config from the command line as Hydra is about to, and raise ConfigError
    for an unknown key, unknown group option, wrong type or malformed override. Hydra itself would
    report these with exit code 1 and its own wording; the sweeper checks each job of a multirun."""
    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            try:
                cfg = GlobalHydra.instance().hydra.compose_config(config_name, overrides, run_mode=mode)
            except Exception as error:
                compose = lambda kept: GlobalHydra.instance().hydra.compose_config(config_name, kept, run_mode=mode)
                explained = explain_composition_error(error, overrides, compose)
                if explained is None:
                    raise
                raise explained from error
            check_targets(cfg)
            check_launcher(cfg)
            if not multirun:
                with open_dict(cfg):
                    del cfg["hydra"]
                validate(cfg)
    finally:
        GlobalHydra.instance().clear()
