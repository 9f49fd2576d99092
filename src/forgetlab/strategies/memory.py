"""The episodic memory of replay and A-GEM: at the end of each training stage (a task), ``memory_size``
of its training samples join the memory of every member, chosen by the member's own random stream:

- ``class_balanced``: as equal a share of them per class of the stage as its samples allow (the first
  ``memory_size mod classes`` classes one more), uniformly at random within each class;
- ``reservoir``: reservoir sampling (Vitter's Algorithm R) over the stage's samples in the order the
  member was first presented them: a uniform random subset of the task's stream, as a learner that
  can keep only ``memory_size`` samples while the task streams by would hold at its end.

The memory grows by ``memory_size`` samples per task (A-GEM's ``patterns_per_experience``, Chaudhry et
al. 2019, as Avalanche's ``AGEMPlugin`` keeps it); it only ever holds samples of earlier tasks while
a task trains. Its samples keep their own targets and output masks (in task-IL the mask of their task).
Every member's memory has the same size (the stage's class counts are the members'), so the memories
are one array (S, M, ...) per field, on the network's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgetlab.arrays import array_namespace
from forgetlab.constraints import NonNegativeInt, Options, constrain
from forgetlab.strategies.base import StrategyConfig
from forgetlab.trainer import Trainer

SELECTIONS = ("class_balanced", "reservoir")
DRAW_BLOCK = 4096  # indices drawn per member at a time: one generator call, not one per replayed sample


@dataclass
class MemoryConfig(StrategyConfig):
    """The keys of a strategy with an episodic memory."""

    memory_size: int = field(default=100, metadata=constrain(NonNegativeInt()))  # samples added per task
    selection: str = field(default="class_balanced", metadata=constrain(Options(*SELECTIONS)))


@dataclass(frozen=True)
class StageSamples:
    """A training stage's samples: ``x``, ``y``, ``mask`` as the trainer holds them (on the network's
    device), and on the host each one's global ``label``, its task (``owner``) and its index in that
    task's training set (``task_index``), in the stage's order (its tasks' training sets concatenated)."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    owner: np.ndarray
    task_index: np.ndarray

    @property
    def n(self) -> int:
        return len(self.label)


def stage_samples(trainer: Trainer, s: int) -> StageSamples:
    """The samples of the trainer's stage ``s``."""
    stage, tasks = trainer.stages[s], trainer.sequence.tasks
    return StageSamples(
        stage.x, stage.y, stage.mask,
        label=np.concatenate([tasks[k].y_train for k in stage.tasks]),
        owner=np.concatenate([np.full(tasks[k].n_train, k, dtype=np.int64) for k in stage.tasks]),
        task_index=np.concatenate([np.arange(tasks[k].n_train, dtype=np.int64) for k in stage.tasks]),
    )


class EpisodicMemory:
    """The memories of S members: ``x`` (S, M, ...), ``y`` and ``mask`` (S, M, O) of the network's
    namespace; ``task`` and ``index`` (S, M) on the host: each sample's task and its index in that
    task's training set; ``stage`` (M,) the stage after which it joined."""

    def __init__(self, memory_size: int, selection: str, rngs: list[np.random.Generator]) -> None:
        self.memory_size, self.selection, self.rngs = memory_size, selection, rngs
        S = len(rngs)
        self.x = self.y = self.mask = None
        self.task = np.zeros((S, 0), dtype=np.int64)
        self.index = np.zeros((S, 0), dtype=np.int64)
        self.stage = np.zeros(0, dtype=np.int64)
        self._first_epoch: list[np.ndarray] = []  # positions each member was presented, (S, b) per batch
        self._recorded = 0  # positions in _first_epoch
        self._blocks: np.ndarray | None = None  # (S, DRAW_BLOCK) indices drawn ahead, for ``draw``
        self._used = 0

    @property
    def size(self) -> int:
        return self.task.shape[1]

    def presented(self, samples: np.ndarray, n: int) -> None:
        """Members were presented the stage's samples at positions ``samples`` (S, b); the stage has n."""
        if self.selection == "reservoir" and self._recorded < n:
            self._first_epoch.append(samples)
            self._recorded += samples.shape[1]

    def add_stage(self, trainer: Trainer, s: int) -> None:
        """The end of stage ``s``: its chosen samples join every member's memory."""
        stage = stage_samples(trainer, s)
        order = np.concatenate(self._first_epoch, axis=1)[:, : stage.n] if self._first_epoch else None
        self._first_epoch, self._recorded = [], 0
        if self.memory_size == 0:
            return
        if self.selection == "class_balanced":
            chosen = np.stack([class_balanced(stage.label, stage.owner, self.memory_size, rng) for rng in self.rngs])
        else:
            chosen = np.stack([reservoir(o, self.memory_size, rng) for o, rng in zip(order, self.rngs)])
        xp, S, k = trainer.network.xp, chosen.shape[0], chosen.shape[1]
        flat = xp.asarray(chosen.reshape(-1))
        new = [xp.reshape(xp.take(a, flat, axis=0), (S, k, *a.shape[1:])) for a in (stage.x, stage.y, stage.mask)]
        if self.x is None:
            self.x, self.y, self.mask = new
        else:
            self.x, self.y, self.mask = (xp.concat([old, a], axis=1) for old, a in zip((self.x, self.y, self.mask), new))
        self.task = np.concatenate([self.task, stage.owner[chosen]], axis=1)
        self.index = np.concatenate([self.index, stage.task_index[chosen]], axis=1)
        self.stage = np.concatenate([self.stage, np.full(k, s, dtype=np.int64)])
        self._blocks = None  # drawn for the old size

    def draw(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k memory samples per member, each uniformly at random (with replacement), from blocks of
        indices drawn ahead: (x (S, k, ...), y, mask)."""
        if self._blocks is None or self._used + k > DRAW_BLOCK:
            self._blocks = np.stack([rng.integers(0, self.size, size=DRAW_BLOCK) for rng in self.rngs])
            self._used = 0
        chosen = self._blocks[:, self._used : self._used + k]
        self._used += k
        return self.gather(chosen)

    def sample(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """k distinct memory samples per member (the whole memory when it holds at most k), as A-GEM
        draws its reference batch: (x (S, k, ...), y, mask)."""
        if self.size <= k:
            return self.x, self.y, self.mask
        return self.gather(np.stack([np.sort(rng.choice(self.size, size=k, replace=False)) for rng in self.rngs]))

    def gather(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The memory samples at ``chosen`` (S, k), each member its own."""
        xp = array_namespace(self.x)
        rows = xp.asarray(np.arange(chosen.shape[0])[:, None])
        at = xp.asarray(chosen)
        return self.x[rows, at], self.y[rows, at], self.mask[rows, at]

    def stop_member(self, s: int) -> None:
        """Nothing to clear: the memory holds training samples, finite whatever the member did."""

    def arrays(self, member: int) -> dict[str, np.ndarray]:
        """What ``contract.ARTIFACT_STRATEGY_MEMORY`` holds for ``member``: its memory's samples as
        ``task``, ``index`` (into that task's training set) and ``stage`` (after which it joined)."""
        return {"task": self.task[member], "index": self.index[member], "stage": self.stage,
                "memory_size": np.int64(self.memory_size), "selection": np.array(self.selection)}


def class_balanced(labels: np.ndarray, owners: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``size`` samples spread evenly over the classes (task, label) of a stage whose
    samples have ``labels`` and ``owners`` (their tasks), uniformly at random within each class; the
    first ``size mod classes`` classes get one more, a class with fewer samples gives all it has."""
    classes = sorted(set(zip(owners.tolist(), labels.tolist())))
    base, extra = divmod(size, len(classes))
    chosen = []
    for i, (task, label) in enumerate(classes):
        (members,) = np.nonzero((owners == task) & (labels == label))
        quota = min(base + (i < extra), len(members))
        chosen.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(chosen))


def reservoir(order: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Algorithm R (Vitter 1985) over the stream ``order``: keep its first ``size`` items; item i >= size
    replaces a uniformly chosen kept one with probability size / (i + 1). Positions, sorted."""
    kept = list(order[:size])
    if len(order) > size:
        slots = rng.integers(0, np.arange(size + 1, len(order) + 1))  # j_i uniform in [0, i], i = size ...
        for item, j in zip(order[size:].tolist(), slots.tolist()):
            if j < size:
                kept[j] = item
    return np.sort(np.asarray(kept, dtype=np.int64))


def memory_values(run, data) -> dict[str, float]:
    """The values a member's memory holds at most (for the cost guard): ``memory_size`` samples per
    stage, each its input, target and mask."""
    samples = run.strategy.memory_size * data.n_stages
    return {"the episodic memory": samples * (data.steps * data.n_inputs + 2 * data.n_outputs)}
