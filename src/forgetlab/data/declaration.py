"""How a task sequence is declared: its builder function, decorated once where it is defined,

    @task_sequence("split_digits", sequence_shape=SEQUENCE_SHAPE, max_tasks=10)
    def split_digits(test_size, data_seed, n_tasks): ...

registers it under its name (``task_sequence=split_digits``) with its config (``TaskSequenceConfig``
or a subclass next to the builder, whose own fields are passed to the builder), the forms its samples
can take, and the largest number of tasks it has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable

from forgetlab.constraints import AT_LEAST_0, AT_LEAST_1, Interval, OneOfNames, Options, constrain, fail
from forgetlab.data.tasks import EVAL_SPLITS, INPUTS, SCENARIOS, TaskSequence
from forgetlab.registry import Registry

TASK_SEQUENCES: Registry[TaskSequenceSpec] = Registry("task_sequence")


@dataclass
class TaskSequenceConfig:
    """What every task sequence's config has; one with keys of its own extends it next to its builder."""

    name: str = field(default="split_digits", metadata=constrain(OneOfNames(TASK_SEQUENCES.names)))
    scenario: str = field(default="class", metadata=constrain(Options(*SCENARIOS)))
    n_tasks: int = field(default=5, metadata=constrain(AT_LEAST_1))
    joint: bool = False
    input: str = field(default="vector", metadata=constrain(Options(*INPUTS)))
    test_size: float = field(default=0.25, metadata=constrain(Interval(0, 1, closed="neither")))
    data_seed: int = field(default=0, metadata=constrain(AT_LEAST_0))
    max_angle: float = field(default=90.0, metadata=constrain(Interval(-360, 360, closed="both")))
    # Fraction of each task's training data held out for validation (learning-rate selection).
    val_size: float = field(default=0.0, metadata=constrain(Interval(0, 1, closed="left")))
    # At most this many training samples per task, a stratified subsample drawn with data_seed before
    # the validation split (0: all of them).
    max_train_per_task: int = field(default=0, metadata=constrain(AT_LEAST_0))

    def check(self, run) -> None:
        """Raise ConfigError for a rule that spans this config's fields (or ``run``'s other groups)."""
        spec = TASK_SEQUENCES[self.name]
        if spec.max_tasks is not None and self.n_tasks > spec.max_tasks:
            fail("task_sequence.n_tasks", self.n_tasks, f"an int in [1, {spec.max_tasks}] for {self.name}")
        if self.input not in spec.inputs:
            fail("task_sequence.input", self.input,
                 "one of " + ", ".join(repr(i) for i in spec.inputs) + f" with task_sequence.name={self.name!r}")


BASE_KEYS = frozenset(f.name for f in fields(TaskSequenceConfig))


@dataclass(frozen=True)
class TaskSequenceSpec:
    """How to build one named task sequence from its config.

    ``sequence_shape``: one input vector read as a sequence (steps, features), for
    ``task_sequence.input=sequence``; None for a sequence built as sequences only (it has no vector form).
    ``keys``: the config keys passed to ``build`` besides n_tasks, test_size and data_seed."""

    name: str
    build: Callable[..., TaskSequence]
    sequence_shape: tuple[int, int] | None
    Config: type[TaskSequenceConfig] = TaskSequenceConfig
    keys: tuple[str, ...] = ()
    max_tasks: int | None = None

    @property
    def inputs(self) -> tuple[str, ...]:
        """The values ``task_sequence.input`` may take."""
        return INPUTS if self.sequence_shape is not None else ("sequence",)

    def own_values(self, cfg: TaskSequenceConfig) -> dict[str, Any]:
        return {key: getattr(cfg, key) for key in self.keys}


def task_sequence(name: str, *, sequence_shape: tuple[int, int] | None, Config: type[TaskSequenceConfig] = TaskSequenceConfig,
                  keys: tuple[str, ...] | None = None, max_tasks: int | None = None):
    """Register the decorated builder as the task sequence ``name``; ``keys`` default to the fields
    ``Config`` adds to ``TaskSequenceConfig``."""

    def register(build: Callable[..., TaskSequence]) -> Callable[..., TaskSequence]:
        own = keys if keys is not None else tuple(f.name for f in fields(Config) if f.name not in BASE_KEYS)
        TASK_SEQUENCES.add(name, TaskSequenceSpec(name, build, sequence_shape, Config, own, max_tasks))
        return build

    return register


__all__ = ["EVAL_SPLITS", "TASK_SEQUENCES", "TaskSequenceConfig", "TaskSequenceSpec", "task_sequence"]
