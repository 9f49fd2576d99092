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

# The held-out sets an evaluation can score: the test sets, or validation sets held out of training.
EVAL_SPLITS = ("test", "val")


@dataclass(frozen=True)
class Task:
    """One task: inputs are (N, n_in) vectors or (N, T, n_in) sequences; labels are global class ids.

    ``x_val, y_val``: held out of the task's training data (``with_validation``); empty by default."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.x_val is None:
            object.__setattr__(self, "x_val", np.empty((0, *self.x_train.shape[1:]), dtype=self.x_train.dtype))
        if self.y_val is None:
            object.__setattr__(self, "y_val", np.empty(0, dtype=self.y_train.dtype))

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def held_out(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels) of the test set (``split="test"``) or the validation set (``"val"``)."""
        if split not in EVAL_SPLITS:
            raise ValueError(f"unknown held-out split {split!r}; allowed: {EVAL_SPLITS}")
        return (self.x_test, self.y_test) if split == "test" else (self.x_val, self.y_val)


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

    def chance(self) -> np.ndarray:
        """(T,) the accuracy of guessing on each task: 1 / the number of output units active for it
        (task-IL and domain-IL: its classes; class-IL: every class seen in the sequence)."""
        return np.array([1.0 / self.mask(t).sum() for t in range(len(self.task_classes))])

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

    tasks = [replace(t, x_train=reshape(t.x_train), x_test=reshape(t.x_test), x_val=reshape(t.x_val))
             for t in sequence.tasks]
    return replace(sequence, tasks=tasks)


def subsampled(sequence: TaskSequence, max_per_task: int, data_seed: int) -> TaskSequence:
    """The same tasks with at most ``max_per_task`` training samples each: a subsample stratified by
    label, drawn with ``data_seed`` (the same for every training seed), in the original order.
    ``max_per_task=0`` (or one at least as large as every task) returns ``sequence`` itself."""
    if max_per_task == 0 or all(t.n_train <= max_per_task for t in sequence.tasks):
        return sequence
    tasks = []
    for t in sequence.tasks:
        if t.n_train <= max_per_task:
            tasks.append(t)
            continue
        from sklearn.model_selection import train_test_split  # see forgetlab.data: imported where used

        kept, _ = train_test_split(np.arange(t.n_train), train_size=max_per_task, stratify=t.y_train,
                                   random_state=data_seed)
        kept = np.sort(kept)
        tasks.append(replace(t, x_train=t.x_train[kept], y_train=t.y_train[kept]))
    return replace(sequence, tasks=tasks)


def with_validation(sequence: TaskSequence, val_size: float, data_seed: int) -> TaskSequence:
    """The same tasks with a share ``val_size`` of each task's training data held out as its validation
    set, stratified by label and drawn with ``data_seed`` (so every training seed holds out the same
    samples). ``val_size=0`` returns ``sequence`` itself: the training data stay exactly as they were."""
    if val_size == 0:
        return sequence
    from sklearn.model_selection import train_test_split  # see forgetlab.data: imported where used

    tasks = []
    for t in sequence.tasks:
        try:
            kept, held = train_test_split(
                np.arange(t.n_train), test_size=val_size, stratify=t.y_train, random_state=data_seed
            )
        except ValueError as error:  # too few samples for a stratified split at this share
            raise ValueError(
                f"task_sequence.val_size={val_size} cannot hold out a stratified validation set of task "
                f"{t.name!r} ({t.n_train} training samples, {len(np.unique(t.y_train))} classes): {error}"
            ) from error
        # Sorted: the training samples that remain keep their order (it matters with shuffle=false).
        kept, held = np.sort(kept), np.sort(held)
        tasks.append(replace(t, x_train=t.x_train[kept], y_train=t.y_train[kept],
                             x_val=t.x_train[held], y_val=t.y_train[held]))
    return replace(sequence, tasks=tasks)
