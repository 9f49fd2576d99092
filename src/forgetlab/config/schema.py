"""Structured configs: the keys of every group, their types and their per-field constraints, registered
in Hydra's ConfigStore.

The YAML files in ``conf/`` name these schemas in their defaults lists, so a key that is not declared
here, or a value of the wrong type, fails at composition time; a value outside its field's
constraints fails in ``validation.validate``, before any MLflow run exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from forgetlab.arrays import BACKENDS, DTYPES
from forgetlab.algorithms import ALGORITHMS
from forgetlab.algorithms.recurrent import RESETS
from forgetlab.algorithms.rtrl import IMPLEMENTATIONS
from forgetlab.config.constraints import Interval, ListOf, NonBlank, NonNegativeInt, Options, constrain
from forgetlab.data import EVAL_SPLITS, INPUTS, SCENARIOS, TASK_SEQUENCES
from forgetlab.networks import NETWORKS
from forgetlab.networks.functions import LOSSES, OUTPUTS
from forgetlab.networks.rnn import LOSS_AT

# Constraints of several fields. A subclass that changes a field's default must repeat its metadata:
# a dataclass field is replaced whole.
POSITIVE = constrain(Interval(0, None, closed="neither"))
AT_LEAST_0 = constrain(Interval(0, None, closed="left"))
AT_LEAST_1 = constrain(Interval(1, None, closed="left"))
NETWORK_NAME = constrain(Options(*sorted(NETWORKS)))
ALGORITHM_NAME = constrain(Options(*sorted(ALGORITHMS)))
RESET = constrain(Options(*RESETS))


@dataclass
class NetworkConfig:
    """What every network has; each network's schema below adds its own keys."""

    name: str = field(default="mlp", metadata=NETWORK_NAME)
    # The allowed activations depend on the network: a rule of validation.validate.
    activation: str = "sigmoid"
    output: str = field(default="sigmoid", metadata=constrain(Options(*OUTPUTS)))
    loss: str = field(default="mse", metadata=constrain(Options(*LOSSES)))
    init_scale: float = field(default=1.0, metadata=POSITIVE)
    # SD of Gaussian noise added to every parameter after initialisation, from a stream of its own
    # (the noise floor of a study: the same run with a rounding-level change).
    init_perturbation: float = field(default=0.0, metadata=AT_LEAST_0)


@dataclass
class MLPConfig(NetworkConfig):
    hidden_sizes: list[int] = field(
        default_factory=lambda: [64],
        metadata=constrain(ListOf(Interval(1, None, closed="left"), description="a list of positive ints")),
    )


@dataclass
class RNNConfig(NetworkConfig):
    name: str = field(default="rnn", metadata=NETWORK_NAME)
    activation: str = "tanh"
    hidden_size: int = field(default=32, metadata=AT_LEAST_1)
    loss_at: str = field(default="last", metadata=constrain(Options(*LOSS_AT)))
    loss_last_steps: int = field(default=1, metadata=AT_LEAST_1)  # with loss_at=last: how many final steps


@dataclass
class AlgorithmConfig:
    """What every learning algorithm has; algorithms with keys of their own extend it below."""

    name: str = field(default="backprop", metadata=ALGORITHM_NAME)
    lr: float = field(default=0.5, metadata=POSITIVE)
    l2: float = field(default=0.0, metadata=AT_LEAST_0)
    # The selection sweep whose validation runs chose ``lr`` ("": set by hand), so a run names its source.
    lr_selected_by: str = ""


@dataclass
class BPTTTruncatedConfig(AlgorithmConfig):
    name: str = field(default="bptt_truncated", metadata=ALGORITHM_NAME)
    h: int = field(default=8, metadata=AT_LEAST_1)
    # 1 <= h' <= h: a rule of validation.validate.
    h_prime: int = 1
    reset: str = field(default="per_sequence", metadata=RESET)


@dataclass
class RTRLConfig(AlgorithmConfig):
    name: str = field(default="rtrl", metadata=ALGORITHM_NAME)
    update_every: int = field(default=1, metadata=AT_LEAST_1)
    reset: str = field(default="per_sequence", metadata=RESET)
    # How the gradient is computed (the same numbers to rounding): 'reverse' needs reset=per_sequence,
    # a rule of validation.validate; 'auto' picks the faster (algorithms/rtrl.py, implementation_for).
    implementation: str = field(default="auto", metadata=constrain(Options(*IMPLEMENTATIONS)))


@dataclass
class TrainerConfig:
    """How the samples of a task are fed to the learning algorithm, whichever it is."""

    epochs_per_task: int = field(default=5, metadata=AT_LEAST_1)
    batch_size: int = field(default=1, metadata=AT_LEAST_1)
    shuffle: bool = True


@dataclass
class TaskSequenceConfig:
    name: str = field(default="split_digits", metadata=constrain(Options(*sorted(TASK_SEQUENCES))))
    scenario: str = field(default="class", metadata=constrain(Options(*SCENARIOS)))
    n_tasks: int = field(default=5, metadata=AT_LEAST_1)
    joint: bool = False
    input: str = field(default="vector", metadata=constrain(Options(*INPUTS)))
    test_size: float = field(default=0.25, metadata=constrain(Interval(0, 1, closed="neither")))
    data_seed: int = field(default=0, metadata=AT_LEAST_0)
    max_angle: float = field(default=90.0, metadata=constrain(Interval(-360, 360, closed="both")))
    # Fraction of each task's training data held out for validation (learning-rate selection).
    val_size: float = field(default=0.0, metadata=constrain(Interval(0, 1, closed="left")))
    # At most this many training samples per task, a stratified subsample drawn with data_seed before
    # the validation split (0: all of them).
    max_train_per_task: int = field(default=0, metadata=AT_LEAST_0)


@dataclass
class DelayedRecallConfig(TaskSequenceConfig):
    name: str = field(default="delayed_recall", metadata=constrain(Options(*sorted(TASK_SEQUENCES))))
    input: str = field(default="sequence", metadata=constrain(Options(*INPUTS)))
    delay: int = field(default=10, metadata=AT_LEAST_0)
    n_symbols: int = field(default=10, metadata=constrain(Interval(2, None, closed="left")))
    noise: float = field(default=1.0, metadata=AT_LEAST_0)
    samples_per_symbol: int = field(default=200, metadata=constrain(Interval(2, None, closed="left")))


@dataclass
class EvalConfig:
    every_samples: int = field(default=100, metadata=AT_LEAST_0)
    # Probe samples per task: a non-negative int, or "all".
    probe_per_task: Any = field(default=20, metadata=constrain(NonNegativeInt(), Options("all")))
    # Which held-out set the evaluation scores: "val" for selection sweeps, "test" for studies.
    split: str = field(default="test", metadata=constrain(Options(*EVAL_SPLITS)))
    # The update-resolution probe: evaluate after every probe_every-th weight update (0 = off) the
    # update_probe_per_task samples of every task; with interference, the gradient-interference
    # diagnostics too (a rule of validation.validate: they need the probe).
    probe_every: int = field(default=0, metadata=AT_LEAST_0)
    update_probe_per_task: Any = field(
        default=20, metadata=constrain(Interval(1, None, closed="left"), Options("all"))
    )
    interference: bool = False


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = MISSING
    experiment: str = field(default="forgetlab", metadata=constrain(NonBlank("experiment name")))
    artifact_location: Optional[str] = None
    # A multirun skips jobs whose config and code already have a FINISHED run (false: train them again).
    resume: bool = True
    # true: skip jobs whose config has a FINISHED run of any code (the code version is not compared).
    resume_ignores_code: bool = False
    # A RUNNING run of another machine counts as dead when its heartbeat is older than this.
    stale_after_s: float = field(default=600.0, metadata=POSITIVE)


@dataclass
class BackendConfig:
    """The array library that trains, evaluates and probes (one code path: ``forgetlab.arrays``)."""

    name: str = field(default="numpy", metadata=constrain(Options(*BACKENDS)))
    dtype: str = field(default="float64", metadata=constrain(Options(*DTYPES)))


@dataclass
class PathsConfig:
    root_dir: str = MISSING


@dataclass
class GuardConfig:
    # A run estimated to train for longer than this gets a warning before it starts (hours).
    max_hours: float = field(default=1.0, metadata=POSITIVE)


@dataclass
class Config:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task_sequence: TaskSequenceConfig = field(default_factory=TaskSequenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    seed: int = field(default=0, metadata=constrain(NonNegativeInt()))


SCHEMA_NAME = "base"

# Top-level keys of a composed config; ``hydra`` is Hydra's own node.
TOP_LEVEL_KEYS = {f.name for f in fields(Config)} | {"hydra"}


# Group -> {schema name -> dataclass}: "base" for the group as a whole, and one per option whose
# YAML extends a schema of its own (``- /schema/network/rnn@_here_`` in conf/network/rnn.yaml).
SCHEMAS: dict[str, dict[str, type]] = {
    "network": {SCHEMA_NAME: NetworkConfig, "mlp": MLPConfig, "rnn": RNNConfig},
    "algorithm": {SCHEMA_NAME: AlgorithmConfig, "bptt_truncated": BPTTTruncatedConfig, "rtrl": RTRLConfig},
    "trainer": {SCHEMA_NAME: TrainerConfig},
    "task_sequence": {SCHEMA_NAME: TaskSequenceConfig, "delayed_recall": DelayedRecallConfig},
    "eval": {SCHEMA_NAME: EvalConfig},
    "tracking": {SCHEMA_NAME: TrackingConfig},
    "backend": {SCHEMA_NAME: BackendConfig},
    "paths": {SCHEMA_NAME: PathsConfig},
    "guard": {SCHEMA_NAME: GuardConfig},
}


def register_configs() -> None:
    """Schemas live in the ``schema/`` group so that ``--help`` lists only real options of each group;
    a group's YAML extends its schema with ``- /schema/<group>/<name>@_here_`` in its defaults. Also
    registers the resolver ``forgetlab.selected`` (``selection.py``) that study presets read chosen values with."""
    from forgetlab.config.selection import register_resolvers  # it raises validation's ConfigError

    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=f"schema/{group}", name=name, node=node)


def schema_of(node: Any, declared: type | None) -> type | None:
    """The dataclass a composed group node was built from (e.g. RNNConfig for network=rnn), else ``declared``."""
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    return schema if schema is not None and is_dataclass(schema) else declared


def group_keys(cfg: DictConfig | None, group: str) -> set[str] | None:
    """The keys a group may hold: the fields of the schema its YAML extends (e.g. MLPConfig for
    network=mlp); without a composed config, those of any of the group's schemas. None for a plain
    top-level value."""
    if group not in SCHEMAS:
        return None
    node = cfg.get(group) if cfg is not None else None
    schema = schema_of(node, None)
    if schema is not None:
        return {f.name for f in fields(schema)}
    return {f.name for schema in SCHEMAS[group].values() for f in fields(schema)}


def declared_type(key: str) -> str | None:
    """The declared type of a dotted key, as written in its dataclass (e.g. 'float', 'list[int]')."""
    group, _, name = key.rpartition(".")
    candidates = SCHEMAS.get(group, {}).values() if group else [Config]
    for schema in candidates:
        for f in fields(schema):
            if f.name == name and not is_dataclass(f.default_factory):
                return str(f.type)
    return None
