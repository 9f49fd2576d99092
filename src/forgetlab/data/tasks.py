"""Tasks, task sequences and scenarios: the data layer's vocabulary.

Labels are *global* class ids: the digit for split digits, ``task * 10 + digit`` for permuted and
rotated digits (each task is a new 10-class problem). A scenario turns a global label and the task
it belongs to into a target vector and an output mask:

- ``class``:  one head over every global class; all units active.
- ``task``:   the same head, but only the current task's classes take part in loss and prediction.
- ``domain``: the output is the position of the label within its task's classes (as many units
  as the largest task has classes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

SCENARIOS = ("class", "task", "domain")


@dataclass(frozen=True)
class Task:
    """One task: inputs are (N, n_in) vectors or (N, T, n_in) sequences; labels are global class ids."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray

    @property
    def n_train(self) -> int:
        return len(self.y_train)


@dataclass(frozen=True)
class TaskSequence:
    """Tasks in training order.

    ``single_pass``: every training sample is presented exactly once (a stream), whatever the
    algorithm's epochs.
    """

    name: str
    tasks: list[Task]
    n_classes: int
    single_pass: bool = False

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.tasks[0].x_train.shape[1:]


class Scenario:
    """Targets and output masks for one scenario over one task sequence."""

    def __init__(self, name: str, sequence: TaskSequence) -> None:
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; allowed: {SCENARIOS}")
        self.name = name
        self.task_classes = [np.asarray(t.classes) for t in sequence.tasks]
        if name == "domain":
            self.n_outputs = max(len(c) for c in self.task_classes)
        else:
            self.n_outputs = sequence.n_classes

    def unit(self, labels: np.ndarray, task: int) -> np.ndarray:
        """Index of the output unit that should win for each label of ``task``."""
        if self.name == "domain":
            return np.searchsorted(self.task_classes[task], labels)
        return np.asarray(labels)

    def mask(self, task: int) -> np.ndarray:
        m = np.zeros(self.n_outputs)
        if self.name == "task":
            m[self.task_classes[task]] = 1.0
        elif self.name == "domain":
            m[: len(self.task_classes[task])] = 1.0
        else:
            m[:] = 1.0
        return m

    def targets(self, labels: np.ndarray, tasks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(one-hot targets (N, O), masks (N, O), winning unit (N,)) for labels drawn from ``tasks``."""
        labels, tasks = np.asarray(labels), np.asarray(tasks)
        units = np.empty(len(labels), dtype=np.int64)
        masks = np.empty((len(labels), self.n_outputs))
        for t in np.unique(tasks):
            rows = tasks == t
            units[rows] = self.unit(labels[rows], int(t))
            masks[rows] = self.mask(int(t))
        onehot = np.zeros((len(labels), self.n_outputs))
        onehot[np.arange(len(labels)), units] = 1.0
        return onehot, masks, units


INPUTS = ("vector", "sequence")


def as_sequences(sequence: TaskSequence, shape: tuple[int, int]) -> TaskSequence:
    """The same tasks with every input vector read as a sequence of ``shape`` = (steps, features)."""

    def reshape(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), *shape)

    tasks = [replace(t, x_train=reshape(t.x_train), x_test=reshape(t.x_test)) for t in sequence.tasks]
    return replace(sequence, tasks=tasks)
