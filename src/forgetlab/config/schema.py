"""The structured config of a run: the groups that every run has (trainer, eval, tracking, backend,
paths, guard) declared here, each field with its constraints; the groups whose options are parts
(network, algorithm, strategy, task_sequence) take their schemas from the parts' own declarations
(``forgetlab.registry``). All are registered in Hydra's ConfigStore.

The YAML files in ``conf/`` name these schemas in their defaults lists, so a key that is not declared,
or a value of the wrong type, fails at composition time; a value outside its field's constraints fails
in ``validation.validate``, before any MLflow run exists. ``validation.typed`` turns a composed config
into these dataclasses once, at the entry; nothing below it sees a ``DictConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from forgetlab.algorithms import ALGORITHMS, AlgorithmConfig
from forgetlab.arrays import BACKENDS, DTYPES
from forgetlab.constraints import AT_LEAST_0, AT_LEAST_1, POSITIVE, Interval, NonBlank, NonNegativeInt, Options, constrain
from forgetlab.data import EVAL_SPLITS, TASK_SEQUENCES, TaskSequenceConfig
from forgetlab.networks import NETWORKS, NetworkConfig
from forgetlab.config.help import register_help_resolver
from forgetlab.config.selection import register_resolvers
from forgetlab.registry import load_extensions
from forgetlab.strategies import STRATEGIES, StrategyConfig

@dataclass
class TrainerConfig:
    """How the samples of a task are fed to the learning algorithm, whichever it is."""

    epochs_per_task: int = field(default=5, metadata=constrain(AT_LEAST_1))
    batch_size: int = field(default=1, metadata=constrain(AT_LEAST_1))
    shuffle: bool = True


@dataclass
class EvalConfig:
    every_samples: int = field(default=100, metadata=constrain(AT_LEAST_0))
    # Probe samples per task: a non-negative int, or "all".
    probe_per_task: Any = field(default=20, metadata=constrain(NonNegativeInt(), Options("all")))
    # Which held-out set the evaluation scores: "val" for selection sweeps, "test" for studies.
    split: str = field(default="test", metadata=constrain(Options(*EVAL_SPLITS)))
    # The update-resolution probe: evaluate after every probe_every-th weight update (0 = off) the
    # update_probe_per_task samples of every task; with interference, the gradient-interference
    # diagnostics too (a rule of validation.validate: they need the probe).
    probe_every: int = field(default=0, metadata=constrain(AT_LEAST_0))
    update_probe_per_task: Any = field(
        default=20, metadata=constrain(AT_LEAST_1, Options("all"))
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
    stale_after_s: float = field(default=600.0, metadata=constrain(POSITIVE))
    # true: a new sqlite store's missing directory is created; false: it is an error (a typo in the URI).
    create_store_dir: bool = False


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
    # A run estimated to train for longer than this is refused before it starts (hours): raise it to go on.
    max_hours: float = field(default=1.0, metadata=constrain(POSITIVE))


@dataclass
class Config:
    network: NetworkConfig = field(default_factory=NetworkConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task_sequence: TaskSequenceConfig = field(default_factory=TaskSequenceConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    seed: int = field(default=0, metadata=constrain(NonNegativeInt(), member=True))


SCHEMA_NAME = "base"

# Top-level keys of a composed config; ``hydra`` is Hydra's own node.
TOP_LEVEL_KEYS = {f.name for f in fields(Config)} | {"hydra"}


# The groups whose options are parts, each declared with its config (``forgetlab.registry``).
PART_GROUPS = {"network": (NETWORKS, NetworkConfig), "algorithm": (ALGORITHMS, AlgorithmConfig),
               "strategy": (STRATEGIES, StrategyConfig), "task_sequence": (TASK_SEQUENCES, TaskSequenceConfig)}


def schemas() -> dict[str, dict[str, type]]:
    """Group -> {schema name -> dataclass}: "base" for the group as a whole, and for a group of parts
    one per part (the YAML of ``algorithm=rtrl`` extends ``- /schema/algorithm/rtrl@_here_``)."""
    out: dict[str, dict[str, type]] = {}
    for f in fields(Config):
        if not is_dataclass(f.default_factory):
            continue
        out[f.name] = {SCHEMA_NAME: f.default_factory}
        if f.name in PART_GROUPS:
            registry, _ = PART_GROUPS[f.name]
            out[f.name].update({name: part.Config for name, part in registry.items()})
    return out


# The project's conf/ tree (src/forgetlab/config/ -> the project root).
CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


_STORED: set[tuple] = set()  # what register_configs stored in this process's ConfigStore


def stored_key(conf_dir: str | Path = CONF_DIR) -> tuple:
    """What ``register_configs`` stores depends on: the conf/ tree and the parts registered (by name
    and config class)."""
    return (str(Path(conf_dir).resolve()),
            tuple((group, tuple((name, id(part.Config)) for name, part in registry.items()))
                  for group, (registry, _) in PART_GROUPS.items()))


def register_configs(conf_dir: str | Path = CONF_DIR) -> None:
    """Schemas live in the ``schema/`` group so that ``--help`` lists only real options of each group;
    a group's YAML extends its schema with ``- /schema/<group>/<name>@_here_`` in its defaults. A part
    with no YAML of its own in ``conf_dir/<group>/`` (an extension's) gets its config's defaults as its
    option. Imports the extensions first (``registry.load_extensions``); also registers the resolver
    ``forgetlab.selected`` (``selection.py``) that study presets read chosen values with."""
    load_extensions()
    register_resolvers()
    register_help_resolver(Path(conf_dir), lambda group: PART_GROUPS[group][0].names() if group in PART_GROUPS else [])
    # Storing the schemas converts every dataclass into an OmegaConf node (~50 ms); a process composes
    # many times (a job three, a test run hundreds), so it stores them again only when what it would
    # store differs: another conf/ tree, or a part registered (or replaced) since.
    key = stored_key(conf_dir)
    if key in _STORED:
        return
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, named in schemas().items():
        for name, node in named.items():
            cs.store(group=f"schema/{group}", name=name, node=node)
    for group, (registry, _) in PART_GROUPS.items():
        for name, part in registry.items():
            if not (Path(conf_dir) / group / f"{name}.yaml").exists():
                cs.store(group=group, name=name, node=part.Config(name=name))
    _STORED.add(key)


def schema_of(node: Any, declared: type | None) -> type | None:
    """The dataclass a composed group node was built from (e.g. RNNConfig for network=rnn), else ``declared``."""
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    return schema if schema is not None and is_dataclass(schema) else declared


def group_keys(cfg: DictConfig | None, group: str) -> set[str] | None:
    """The keys a group may hold: the fields of the schema its YAML extends (e.g. MLPConfig for
    network=mlp); without a composed config, those of any of the group's schemas. None for a plain
    top-level value."""
    known = schemas()
    if group not in known:
        return None
    node = cfg.get(group) if cfg is not None else None
    schema = schema_of(node, None)
    if schema is not None:
        return {f.name for f in fields(schema)}
    return {f.name for schema in known[group].values() for f in fields(schema)}


def declared_type(key: str) -> str | None:
    """The declared type of a dotted key, as written in its dataclass (e.g. 'float', 'list[int]')."""
    group, _, name = key.rpartition(".")
    candidates = schemas().get(group, {}).values() if group else [Config]
    for schema in candidates:
        for f in fields(schema):
            if f.name == name and not is_dataclass(f.default_factory):
                return str(f.type)
    return None
