"""Run a learning algorithm through a task sequence and evaluate on a schedule.

Time is counted in ``samples_seen`` (training samples consumed: vectors for the MLP, sequences for
the RNN) and ``updates`` (weight changes, which differ between algorithms for the same samples).

Evaluation points: before training (``init``, for forward transfer), after each training stage
(a task, or the one joint stage), and every ``every_samples`` samples in between. At each point
one batched forward pass scores the test set of every task and the sample probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.data.tasks import Scenario, TaskSequence
from forgetlab.divergence import TrainingDiverged, WeightCheck
from forgetlab.networks import functions as F


@dataclass(frozen=True)
class EvalPoint:
    samples_seen: int
    updates: int
    stage: int  # training stage in progress (-1 before training)
    boundary: bool  # the point right after the last sample of ``stage`` (or the init point)
    accuracy: np.ndarray  # (n_tasks,) test accuracy per task, in [0, 1]
    loss: np.ndarray  # (n_tasks,) mean test loss per task
    probe_correct: np.ndarray  # (n_probe,) bool
    probe_loss: np.ndarray  # (n_probe,)
    train_loss: float  # mean training loss since the previous point (nan at init)
    tasks_trained: int  # tasks whose training has begun (the current stage's included)


@dataclass(frozen=True)
class Probe:
    """A fixed set of training samples whose correctness is tracked at every evaluation point."""

    task: np.ndarray  # (P,) task of each probe sample
    index: np.ndarray  # (P,) index into that task's training set
    label: np.ndarray  # (P,) global label


@dataclass
class TrainingResult:
    task_names: list[str]
    points: list[EvalPoint]
    probe: Probe
    presented_at: np.ndarray  # (P, max presentations) samples_seen right after each presentation, -1 = none
    stage_names: list[str] = field(default_factory=list)

    @property
    def accuracy_matrix(self) -> np.ndarray:
        """R with row 0 = before training and row i + 1 = after training stage i; column j = task j."""
        return np.stack([p.accuracy for p in self.points if p.boundary])


class Observer(Protocol):
    def on_eval(self, point: EvalPoint) -> None: ...


@dataclass(frozen=True)
class Stage:
    name: str
    x: np.ndarray
    y: np.ndarray  # one-hot targets
    mask: np.ndarray
    tasks: list[int]  # tasks whose training data the stage holds


def choose_probe(sequence: TaskSequence, per_task: int | str, data_seed: int) -> Probe:
    """``per_task`` training samples of each task (or all of them), drawn with the data seed so
    every training seed of a study tracks the same samples."""
    rng = np.random.default_rng([data_seed, 1])
    task, index = [], []
    for k, t in enumerate(sequence.tasks):
        n = t.n_train if per_task == "all" else min(int(per_task), t.n_train)
        chosen = np.sort(rng.choice(t.n_train, size=n, replace=False))
        task.append(np.full(n, k)), index.append(chosen)
    task_arr, index_arr = np.concatenate(task).astype(np.int64), np.concatenate(index).astype(np.int64)
    label = np.array([sequence.tasks[k].y_train[i] for k, i in zip(task_arr, index_arr)], dtype=np.int64)
    return Probe(task=task_arr, index=index_arr, label=label)


class Trainer:
    def __init__(
        self,
        network,
        algorithm: LearningAlgorithm,
        sequence: TaskSequence,
        scenario: Scenario,
        *,
        epochs_per_task: int,
        batch_size: int = 1,
        shuffle: bool = True,
        joint: bool = False,
        every_samples: int = 0,
        probe: Probe,
        rng: np.random.Generator,
        observers: list[Observer] = (),
    ) -> None:
        self.network, self.algorithm, self.sequence, self.scenario = network, algorithm, sequence, scenario
        self.epochs = 1 if sequence.single_pass else epochs_per_task
        self.batch_size, self.shuffle, self.every = batch_size, shuffle, every_samples
        self.probe, self.rng, self.observers = probe, rng, list(observers)
        self.stages = self._stages(joint)
        self._eval = self._evaluation_batch()
        self.weight_check = WeightCheck(network.params, [s.name for s in self.stages])

    # --- set-up -----------------------------------------------------------------------------

    def _stages(self, joint: bool) -> list[Stage]:
        tasks = self.sequence.tasks
        groups = [list(range(len(tasks)))] if joint else [[k] for k in range(len(tasks))]
        stages = []
        for group in groups:
            x = np.concatenate([tasks[k].x_train for k in group])
            labels = np.concatenate([tasks[k].y_train for k in group])
            owner = np.concatenate([np.full(tasks[k].n_train, k) for k in group])
            y, mask, _ = self.scenario.targets(labels, owner)
            name = "joint" if joint else tasks[group[0]].name
            stages.append(Stage(name, x, y, mask, group))
        return stages

    def _evaluation_batch(self):
        """Test sets of all tasks followed by the probe samples, as one batch."""
        tasks = self.sequence.tasks
        x_probe = [tasks[k].x_train[i] for k, i in zip(self.probe.task, self.probe.index)]
        x = np.concatenate([t.x_test for t in tasks] + ([np.stack(x_probe)] if x_probe else []))
        labels = np.concatenate([t.y_test for t in tasks] + [self.probe.label])
        owner = np.concatenate([np.full(len(t.y_test), k) for k, t in enumerate(tasks)] + [self.probe.task])
        y, mask, unit = self.scenario.targets(labels, owner)
        n_test = sum(len(t.y_test) for t in tasks)
        counts = np.bincount(owner[:n_test], minlength=len(tasks))
        return x, y, mask, unit, owner[:n_test], n_test, counts

    # --- running ----------------------------------------------------------------------------

    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(accuracy per task, loss per task, probe correct, probe loss) with the current weights."""
        x, y, mask, unit, owner, n_test, counts = self._eval
        a = self.network.predict(x, mask)
        correct = F.masked_argmax(a, mask) == unit
        loss = F.loss(self.network.output, self.network.loss, a, y, mask)
        n_tasks = len(counts)
        acc = np.bincount(owner, weights=correct[:n_test], minlength=n_tasks) / counts
        task_loss = np.bincount(owner, weights=loss[:n_test], minlength=n_tasks) / counts
        return acc, task_loss, correct[n_test:], loss[n_test:]

    # One BLAS thread: the updates multiply vectors by small matrices, where threads only add
    # synchronisation, and on a busy machine spinning BLAS threads slow the batched evaluations
    # down many times (docs/performance.md). Sweeps get their parallelism from parallel jobs.
    @threadpool_limits.wrap(limits=1, user_api="blas")
    def run(self) -> TrainingResult:
        n_probe = len(self.probe.task)
        presented: list[list[int]] = [[] for _ in range(n_probe)]
        points: list[EvalPoint] = []
        samples_seen, loss_sum, loss_count, tasks_trained = 0, 0.0, 0, 0

        def record(stage: int, boundary: bool) -> None:
            nonlocal loss_sum, loss_count
            acc, task_loss, probe_correct, probe_loss = self.evaluate()
            train_loss = loss_sum / loss_count if loss_count else float("nan")
            point = EvalPoint(
                samples_seen, self.algorithm.updates, stage, boundary, acc, task_loss,
                probe_correct, probe_loss, train_loss, tasks_trained,
            )
            self.weight_check(point)
            points.append(point)
            loss_sum, loss_count = 0.0, 0
            for observer in self.observers:
                observer.on_eval(point)

        record(stage=-1, boundary=True)
        next_eval = self.every if self.every else None
        for s, stage in enumerate(self.stages):
            slot = self._probe_slots(stage)
            n = len(stage.x)
            stage_end = samples_seen + n * self.epochs  # a scheduled point there is the boundary point
            self.algorithm.start_task()
            tasks_trained += len(stage.tasks)  # the stage's tasks count as seen from its first sample
            for _ in range(self.epochs):
                order = self.rng.permutation(n) if self.shuffle else np.arange(n)
                # One gather per epoch, so that each update takes views (slices), not copies.
                x, y, mask = stage.x[order], stage.y[order], stage.mask[order]
                self._record_presentations(presented, slot[order], samples_seen)
                for start in range(0, n, self.batch_size):
                    stop = min(start + self.batch_size, n)
                    loss = self.algorithm.learn(x[start:stop], y[start:stop], mask[start:stop])
                    if not math.isfinite(loss):
                        raise TrainingDiverged(
                            f"Training diverged at update {self.algorithm.updates} "
                            f"({samples_seen + stop - start} samples seen, stage {stage.name!r}): the training "
                            f"loss is {loss}. Lower algorithm.lr or network.init_scale."
                        )
                    loss_sum += loss * (stop - start)
                    loss_count += stop - start
                    samples_seen += stop - start
                    if next_eval is not None and next_eval <= samples_seen < stage_end:
                        record(stage=s, boundary=False)
                        next_eval = (samples_seen // self.every + 1) * self.every
            self.algorithm.end_task()
            record(stage=s, boundary=True)
            if next_eval is not None:
                next_eval = (samples_seen // self.every + 1) * self.every

        width = max((len(p) for p in presented), default=0)
        presented_at = np.full((n_probe, width), -1, dtype=np.int64)
        for p, times in enumerate(presented):
            presented_at[p, : len(times)] = times
        return TrainingResult(
            task_names=[t.name for t in self.sequence.tasks],
            points=points,
            probe=self.probe,
            presented_at=presented_at,
            stage_names=[s.name for s in self.stages],
        )

    def _record_presentations(self, presented: list[list[int]], slots: np.ndarray, samples_seen: int) -> None:
        """Append to ``presented`` when each probe sample of the coming epoch will have been presented:
        ``samples_seen`` right after the batch that holds it. ``slots``: probe slot by position in the
        epoch's order (-1 = not a probe sample)."""
        (positions,) = np.nonzero(slots >= 0)
        batch_ends = np.minimum((positions // self.batch_size + 1) * self.batch_size, len(slots))
        for p, seen in zip(slots[positions], samples_seen + batch_ends):
            presented[p].append(int(seen))

    def _probe_slots(self, stage: Stage) -> np.ndarray:
        """For each training sample of ``stage``, the probe slot it fills, or -1."""
        offsets = np.cumsum([0] + [self.sequence.tasks[k].n_train for k in stage.tasks])
        slot = np.full(offsets[-1], -1, dtype=np.int64)
        for pos, k in enumerate(stage.tasks):
            (members,) = np.nonzero(self.probe.task == k)
            slot[offsets[pos] + self.probe.index[members]] = members
        return slot
