"""The command line before Hydra sees it: composition errors (unknown key or group option, wrong type,
malformed override) translated into forgetlab's ConfigError, and the ``_target_`` policy."""

from __future__ import annotations

import copy
from typing import Any, Callable

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from forgetlab.config.compose import compose
from forgetlab.config.schema import declared_type, group_keys
from forgetlab.config.validation import unknown_key_error, validate
from forgetlab.constraints import ConfigError, did_you_mean, fail


def explain_composition_error(
    error: BaseException, overrides: list[str], recompose: Callable[[list[str]], DictConfig] | None = None
) -> ConfigError | None:
    """The ConfigError for a Hydra/OmegaConf composition failure caused by the command line (an
    unknown key or group option, a wrong type, a malformed override), or None for anything else.

    ``recompose(overrides)``, when given, lets an unknown-key message list the keys of the schema the
    chosen group option really has (composed without the offending override)."""
    if isinstance(error, OverrideParseException):
        return ConfigError(f"Could not parse an override. {error}")
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return ConfigError(
            f"The '{group}' config group must be one of {', '.join(repr(o) for o in error.options)}. "
            f"Got {option!r} instead.{did_you_mean(option, error.options)}"
        )
    cause = error.__cause__ if error.__cause__ is not None else error
    full_key = getattr(cause, "full_key", None)
    if not full_key:
        return None
    key = full_key.split("[")[0]
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        group = key.rpartition(".")[0]
        if group and group_keys(None, group) is None:
            return None
        offending = [o for o in overrides if o.lstrip("+~").split("=")[0] == key]
        given = offending[0].lstrip("+~") if offending else key
        cfg = None
        if recompose is not None:
            try:
                cfg = recompose([o for o in overrides if o not in offending])
            except Exception:  # another bad override: fall back to every schema of the group
                cfg = None
        return unknown_key_error(cfg, key, given)
    if isinstance(cause, ValidationError):
        expected = declared_type(key)
        if expected is None:
            return None
        return ConfigError(f"The '{key}' parameter must be of type {expected}. Got {cause.value!r} instead.")
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
                    fail(key, v, "absent: forgetlab creates objects only from its registries "
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
        fail("hydra.launcher.n_jobs", n_jobs,
             "a non-zero int: the number of parallel jobs, or -1 for one per CPU (-2 for all but one, ...)")


def check_command_line(config_dir: str, config_name: str, overrides: list[str], multirun: bool) -> DictConfig:
    """Compose the primary config from the command line as Hydra is about to, and raise ConfigError
    for an unknown key, unknown group option, wrong type or malformed override. Hydra itself would
    report these with exit code 1 and its own wording; the sweeper checks each job of a multirun.
    Returns the composed config with its ``hydra`` node (its run and sweep directories)."""

    def compose_with(kept: list[str]) -> DictConfig:
        return compose(kept, return_hydra_config=True, multirun=multirun, config_dir=config_dir,
                       config_name=config_name)

    try:
        cfg = compose_with(overrides)
    except Exception as error:
        explained = explain_composition_error(error, overrides, compose_with)
        if explained is None:
            raise
        raise explained from error
    check_targets(cfg)
    check_launcher(cfg)
    if not multirun:
        run = copy.deepcopy(cfg)
        with open_dict(run):
            del run["hydra"]
        validate(run)
    return cfg
