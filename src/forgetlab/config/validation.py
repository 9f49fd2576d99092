"""Semantic validation of a composed config, and its one conversion into typed objects (``typed``):
unknown keys, each field's declared constraints, the rules each part declares on its own config
(``check``), and the rules between parts that their declarations imply (which networks an algorithm
trains, which input form a network reads, ...). Together with the types of the schema they reject a
bad config before any MLflow run exists.
"""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf._utils import OmegaConfDumper
from omegaconf.errors import InterpolationResolutionError

from forgetlab.algorithms import ALGORITHMS
from forgetlab.arrays import backend_unavailable
from forgetlab.config.help import learner_hint
from forgetlab.constraints import (
    CONSTRAINTS, ConfigError, Constraint, OneOfNames, Options, allowed, did_you_mean, fail,
)
from forgetlab.config.schema import PART_GROUPS, TOP_LEVEL_KEYS, Config, group_keys
from forgetlab.data import TASK_SEQUENCES
from forgetlab.networks import NETWORKS


def require(key: str, value: Any, *constraints: Constraint) -> None:
    """Raise ConfigError unless ``value`` satisfies one of ``constraints``."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if not any(c.is_satisfied_by(value) for c in constraints):
        options = [o for c in constraints for o in _options(c)]
        fail(key, value, allowed(constraints), did_you_mean(value, options))


def _options(constraint: Constraint) -> tuple:
    """The values a constraint lists (for "did you mean"): an ``Options``' or a registry's names."""
    if isinstance(constraint, Options):
        return constraint.options
    if isinstance(constraint, OneOfNames):
        return tuple(constraint.names())
    return ()


# --- unknown keys -------------------------------------------------------------------------------


def unknown_key_error(cfg: DictConfig | None, key: str, given: str) -> ConfigError:
    group, _, _ = key.rpartition(".")
    keys = group_keys(cfg, group) if group else TOP_LEVEL_KEYS - {"hydra"}
    where = f"the keys of '{group}'" if group else "the top-level keys"
    hint = did_you_mean(key, [f"{group}.{k}" if group else k for k in keys])
    return ConfigError(
        f"The '{key}' key is not a forgetlab parameter. Got {given!r} instead.{hint} {where.capitalize()} are: "
        f"{', '.join(sorted(keys))}."
    )


def check_known_keys(cfg: DictConfig) -> None:
    """Keys added with ``+key=value`` pass Hydra's composition; only the schema's keys are forgetlab's."""
    for name in cfg:
        if name not in TOP_LEVEL_KEYS:
            raise unknown_key_error(cfg, str(name), f"{name}={cfg[name]}")
        keys = group_keys(cfg, str(name))
        if keys is not None:
            for key in cfg[name]:
                if key not in keys:
                    raise unknown_key_error(cfg, f"{name}.{key}", f"{name}.{key}={cfg[name][key]}")


# --- one field at a time ------------------------------------------------------------------------


def check_fields(run: Any, prefix: str = "") -> None:
    """Every value of the typed config ``run`` against the constraints declared on its field, group by
    group in schema order; each group by its own dataclass (RNNConfig's fields for network=rnn)."""
    for f in fields(run):
        value = getattr(run, f.name)
        if is_dataclass(value):
            check_fields(value, f"{prefix}{f.name}.")
        elif CONSTRAINTS in f.metadata:
            require(f"{prefix}{f.name}", value, *f.metadata[CONSTRAINTS])


# --- rules that span fields, on the typed config ----------------------------------------------------


def check_parts(run: Config) -> None:
    """Each part's own rules, then the rules between parts that their declarations imply."""
    for part in (run.network, run.algorithm, run.strategy, run.task_sequence):
        part.check(run)
    network, algorithm, sequence = run.network, run.algorithm, run.task_sequence
    learner = ALGORITHMS[algorithm.name]
    if network.name not in learner.trains:
        fail("network.name", network.name, f"one of {learner.trains} with algorithm.name={algorithm.name!r}",
             learner_hint(algorithm.name))
    if learner.one_sample_at_a_time and run.trainer.batch_size != 1:
        fail("trainer.batch_size", run.trainer.batch_size,
             f"1 with algorithm.name={algorithm.name!r} (one sequence at a time)")
    inputs = TASK_SEQUENCES[sequence.name].inputs
    readers = [name for name, cls in NETWORKS.items() if cls.reads in inputs]
    if NETWORKS[network.name].reads not in inputs:
        allowed_networks = repr(readers[0]) if len(readers) == 1 else f"one of {tuple(readers)}"
        fail("network.name", network.name, f"{allowed_networks} with task_sequence.name={sequence.name!r} "
             f"(its samples exist only as {' or '.join(inputs)}s)")
    reads = NETWORKS[network.name].reads
    if sequence.input != reads:
        fail("task_sequence.input", sequence.input, f"{reads!r} with network.name={network.name!r}")


def check_run(run: Config) -> None:
    """The rules of the groups that are not parts."""
    if run.eval.interference and not run.eval.probe_every:
        fail("eval.interference", run.eval.interference, "false with eval.probe_every=0 (the diagnostics need the probe)")
    if run.eval.split == "val" and run.task_sequence.val_size == 0:
        fail("eval.split", run.eval.split, "'test' with task_sequence.val_size=0 (no validation set is held out)")
    unavailable = backend_unavailable(run.backend.name)
    if unavailable is not None:
        fail("backend.name", run.backend.name, f"'numpy' on this machine ({unavailable})")


def config_from_container(container: dict[str, Any]) -> Config:
    """The typed config of a resolved config's plain values (a composed config's, or one read back
    from a file): each group as its schema, a part's group as the config its part declares."""
    values = {}
    for f in fields(Config):
        if f.name not in container:
            continue
        value = container[f.name]
        if is_dataclass(f.default_factory):
            schema = f.default_factory
            if f.name in PART_GROUPS:
                registry = PART_GROUPS[f.name][0]
                if value.get("name") not in registry:
                    require(f"{f.name}.name", value.get("name"), *fields_by_name(schema)["name"].metadata[CONSTRAINTS])
                schema = registry[value["name"]].Config
            value = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), value))
        values[f.name] = value
    return Config(**values)


class _ConfigDumper(getattr(yaml, "CDumper", yaml.Dumper)):  # type: ignore[misc]
    """OmegaConf's YAML dumper (its quoting of strings that would read back as another type) on
    libyaml's emitter where PyYAML has it."""


_ConfigDumper.add_representer(str, OmegaConfDumper.str_representer)


def config_yaml(run: Config) -> str:
    """``run`` as YAML, the text ``OmegaConf.to_yaml`` gives for it (a run's resolved-config artifact,
    which ``config_from_container`` reads back), ~9x faster: OmegaConf would first build a node per
    value and walk them back (~10 ms of every tracked run's CPU). A config holds only dicts, lists,
    strings, numbers, bools and None (tests/test_config_yaml.py checks every preset)."""
    return yaml.dump(asdict(run), Dumper=_ConfigDumper, default_flow_style=False, allow_unicode=True,
                     sort_keys=False)


def fields_by_name(schema: type) -> dict[str, Any]:
    return {f.name: f for f in fields(schema)}


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as error:  # e.g. a value a selection table does not hold
        # OmegaConf's message: "<Error> raised while resolving interpolation: <reason>\n    full_key: ..."
        reason = str(error).split("\n")[0].split(" raised while resolving interpolation: ")[-1]
        raise ConfigError(f"The '{error.full_key}' parameter could not be resolved: {reason}") from None


def as_config(cfg: DictConfig) -> Config:
    """The typed config of a composed config, its keys checked but not its values (``validate``
    checks them): for code that builds a config to change it before it is checked. Raises ConfigError."""
    check_known_keys(cfg)
    return config_from_container({k: v for k, v in _resolved(cfg).items() if k != "hydra"})


def typed(cfg: DictConfig) -> Config:
    """Check ``cfg`` (keys, each field's constraints, the rules across fields) and return it as typed
    objects: the one place a ``DictConfig`` becomes the ``Config`` that everything below reads. Raises
    ConfigError."""
    run = as_config(cfg)
    check_fields(run)
    check_parts(run)
    check_run(run)
    return run


def validate(cfg: DictConfig | Config) -> Config:
    """``typed`` for a composed config; the rules across fields again for a typed one. Raises ConfigError."""
    if isinstance(cfg, Config):
        check_fields(cfg)
        check_parts(cfg)
        check_run(cfg)
        return cfg
    return typed(cfg)
