"""Data layer: task sequences (split / permuted / rotated / stream digits, MNIST-1D, MNIST, delayed
recall) and scenarios. Each task sequence is declared where its builder is defined
(``declaration.task_sequence``) and registered under its name in ``TASK_SEQUENCES``.

The libraries that load and split data (scikit-learn, SciPy, mlxtend, mnist1d) are imported in the
functions that use them: they take ~1.6 s to import, which every command that only composes or
checks a config (a sweep's launching process, a refused command, ``--help``) would pay.
"""

from __future__ import annotations

from forgetlab.data import cache
from forgetlab.data.declaration import TASK_SEQUENCES, TaskSequenceConfig, TaskSequenceSpec, task_sequence
from forgetlab.data.tasks import (
    EVAL_SPLITS,
    INPUTS,
    SCENARIOS,
    Scenario,
    Task,
    TaskSequence,
    as_sequences,
    subsampled,
    with_validation,
)
from forgetlab.registry import import_submodules

import_submodules(__name__, __path__)  # a task sequence in a new file of this package registers itself


def build_task_sequence(cfg: TaskSequenceConfig) -> TaskSequence:
    """Build the task sequence named by ``cfg.name`` from a task_sequence config; with
    ``cfg.input == "sequence"`` every sample is a sequence (steps, features) instead of a vector.
    ``cfg.max_train_per_task > 0`` keeps at most that many training samples per task; then, with
    ``cfg.val_size > 0``, each task holds out that share of its training data as its validation set.
    forgetlab's own task sequences are read from the data cache when an earlier process built them
    (``forgetlab.data.cache``)."""
    spec = TASK_SEQUENCES[cfg.name]
    if cfg.input not in spec.inputs:
        raise ValueError(f"task sequence {cfg.name!r} reads as {spec.inputs}; got input={cfg.input!r}")
    if not cache.is_cacheable(spec.build):
        return _build(spec, cfg)
    settings = {key: getattr(cfg, key) for key in BUILD_KEYS} | {"own": spec.own_values(cfg)}
    return cache.cached(cfg.name, settings, lambda: _build(spec, cfg))


# What a build reads of a task_sequence config (its scenario and joint are read by the trainer).
BUILD_KEYS = ("name", "test_size", "data_seed", "n_tasks", "max_train_per_task", "val_size", "input")


def _build(spec: TaskSequenceSpec, cfg: TaskSequenceConfig) -> TaskSequence:
    sequence = spec.build(test_size=cfg.test_size, data_seed=cfg.data_seed, n_tasks=cfg.n_tasks, **spec.own_values(cfg))
    sequence = subsampled(sequence, cfg.max_train_per_task, cfg.data_seed)
    sequence = with_validation(sequence, cfg.val_size, cfg.data_seed)
    if cfg.input == "sequence" and spec.sequence_shape is not None:
        sequence = as_sequences(sequence, spec.sequence_shape)
    return sequence


__all__ = ["EVAL_SPLITS", "INPUTS", "SCENARIOS", "Scenario", "Task", "TaskSequence", "TaskSequenceConfig",
           "TaskSequenceSpec", "TASK_SEQUENCES", "build_task_sequence", "task_sequence"]
