"""Semantic validation of a composed config: unknown keys, each field's declared constraints
(``schema.py``), and the rules that span several fields. Together with the types of the schema they
reject a bad config before any MLflow run exists.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from forgetlab.algorithms import ALGORITHMS, RECURRENT
from forgetlab.arrays import backend_unavailable
from forgetlab.data import TASK_SEQUENCES
from forgetlab.config.constraints import CONSTRAINTS, Constraint, Options, allowed
from forgetlab.config.schema import TOP_LEVEL_KEYS, Config, group_keys, schema_of
from forgetlab.networks.functions import HIDDEN_ACTIVATIONS
from forgetlab.networks.rnn import RNN_ACTIVATIONS

# Sequences split by label, one task per pair of classes: at most 10 tasks.
SPLIT_SEQUENCES = ("split_digits", "split_mnist1d", "split_mnist")


class ConfigError(ValueError):
    """A config value is out of its allowed range or set; the message names key, value and what is allowed."""


def fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"The '{key}' parameter must be {allowed}. Got {value!r} instead.")


def require(key: str, value: Any, *constraints: Constraint) -> None:
    """Raise ConfigError unless ``value`` satisfies one of ``constraints``."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if not any(c.is_satisfied_by(value) for c in constraints):
        fail(key, value, allowed(constraints))


# --- unknown keys -------------------------------------------------------------------------------


def unknown_key_error(cfg: DictConfig | None, key: str, given: str) -> ConfigError:
    group, _, _ = key.rpartition(".")
    keys = group_keys(cfg, group) if group else TOP_LEVEL_KEYS - {"hydra"}
    where = f"the keys of '{group}'" if group else "the top-level keys"
    return ConfigError(
        f"The '{key}' key is not a forgetlab parameter. Got {given!r} instead; {where} are: {', '.join(sorted(keys))}."
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


def check_fields(cfg: DictConfig) -> None:
    """Every value against the constraints declared on its field, group by group in schema order;
    each group by the schema its YAML extends (RNNConfig's fields for network=rnn)."""
    _check_node(cfg, Config, "")


def _check_node(node: DictConfig, declared: type, prefix: str) -> None:
    for f in fields(schema_of(node, declared)):
        if f.name not in node:
            continue
        if is_dataclass(f.default_factory):  # a group: its own schema
            _check_node(node[f.name], f.default_factory, f"{prefix}{f.name}.")
        elif CONSTRAINTS in f.metadata:
            require(f"{prefix}{f.name}", node[f.name], *f.metadata[CONSTRAINTS])


# --- rules that span fields ---------------------------------------------------------------------


def validate(cfg: DictConfig) -> None:
    """Check keys, each field's constraints, and the combinations of fields that no single field
    can express. Raises ConfigError."""
    check_known_keys(cfg)
    try:
        check_fields(cfg)
    except InterpolationResolutionError as error:  # e.g. a value a selection table does not hold
        # OmegaConf's message: "<Error> raised while resolving interpolation: <reason>\n    full_key: ..."
        reason = str(error).split("\n")[0].split(" raised while resolving interpolation: ")[-1]
        raise ConfigError(f"The '{error.full_key}' parameter could not be resolved: {reason}") from None

    network, algorithm, task_sequence = cfg.network, cfg.algorithm, cfg.task_sequence
    recurrent_net = network.name == "rnn"
    require("network.activation", network.activation,
            Options(*(RNN_ACTIVATIONS if recurrent_net else HIDDEN_ACTIVATIONS)))

    trainable = ALGORITHMS[algorithm.name][1]
    if network.name not in trainable:
        fail("network.name", network.name, f"one of {trainable} with algorithm.name={algorithm.name!r}")
    if algorithm.name in RECURRENT and cfg.trainer.batch_size != 1:
        fail("trainer.batch_size", cfg.trainer.batch_size,
             f"1 with algorithm.name={algorithm.name!r} (one sequence at a time)")
    if recurrent_net and network.loss_at != "last" and network.loss_last_steps != 1:
        fail("network.loss_last_steps", network.loss_last_steps,
             f"1 with network.loss_at={network.loss_at!r} (it counts the final steps that carry loss with loss_at='last')")
    if algorithm.name == "bptt_truncated":
        h, h_prime = algorithm.h, algorithm.h_prime
        if not 1 <= h_prime <= h:
            fail("algorithm.h_prime", h_prime, f"an int in the range [1, algorithm.h={h}] (BPTT(h; h') needs h' <= h)")
    if algorithm.name == "rtrl" and algorithm.implementation == "reverse" and algorithm.reset != "per_sequence":
        fail("algorithm.implementation", algorithm.implementation,
             "'auto' or 'forward' with algorithm.reset='never' (the reverse form's history would grow without bound)")

    inputs = TASK_SEQUENCES[task_sequence.name].inputs  # delayed_recall exists only as sequences
    if task_sequence.input not in inputs:
        fail("task_sequence.input", task_sequence.input,
             "one of " + ", ".join(repr(i) for i in inputs) + f" with task_sequence.name={task_sequence.name!r}")
    if "vector" not in inputs and not recurrent_net:
        fail("network.name", network.name,
             f"'rnn' with task_sequence.name={task_sequence.name!r} (its samples exist only as sequences)")
    reads = "sequence" if recurrent_net else "vector"
    if task_sequence.input != reads:
        fail("task_sequence.input", task_sequence.input, f"{reads!r} with network.name={network.name!r}")
    if task_sequence.name in SPLIT_SEQUENCES and task_sequence.n_tasks > 10:
        fail("task_sequence.n_tasks", task_sequence.n_tasks, f"an int in [1, 10] for {task_sequence.name}")
    if task_sequence.name == "delayed_recall" and task_sequence.n_tasks > task_sequence.n_symbols:
        fail("task_sequence.n_tasks", task_sequence.n_tasks,
             f"an int in [1, task_sequence.n_symbols={task_sequence.n_symbols}]")
    if cfg.eval.interference and not cfg.eval.probe_every:
        fail("eval.interference", cfg.eval.interference, "false with eval.probe_every=0 (the diagnostics need the probe)")
    if cfg.eval.split == "val" and task_sequence.val_size == 0:
        fail("eval.split", cfg.eval.split, "'test' with task_sequence.val_size=0 (no validation set is held out)")
    unavailable = backend_unavailable(cfg.backend.name)
    if unavailable is not None:
        fail("backend.name", cfg.backend.name, f"'numpy' on this machine ({unavailable})")
