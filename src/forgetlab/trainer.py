"""Run a learning algorithm through a task sequence and evaluate on a schedule.

Time is counted in ``samples_seen`` (training samples consumed: vectors for the MLP, sequences for
the RNN) and ``updates`` (weight changes, which differ between algorithms for the same samples).

Evaluation points: before training (``init``, for forward transfer), after each training stage
(a task, or the one joint stage), and every ``every_samples`` samples in between. At each point
one batched forward pass scores the test set of every task and the sample probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.data.tasks import Scenario, TaskSequence
from forgetlab.divergence import TrainingDiverged, WeightCheck
from forgetlab.networks.base import Network

if TYPE_CHECKING:
    from forgetlab.update_probe import UpdateHistory, UpdateProbe


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
    update_history: UpdateHistory | None = None  # the update-resolution probe, when there is one

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


@dataclass(frozen=True)
class Evaluation:
    """The scores of one evaluation with the current weights."""

    accuracy: np.ndarray  # (n_tasks,) test accuracy per task, in [0, 1]
    loss: np.ndarray  # (n_tasks,) mean test loss per task
    probe_correct: np.ndarray  # (n_probe,) bool
    probe_loss: np.ndarray  # (n_probe,)


class Evaluator:
    """Scores a network on the held-out set of every task (``split``: "test", or "val" so that a
    selection sweep never sees test data) and on the probe samples: the samples, targets and masks are
    gathered once, into one batch, so that each evaluation is one forward pass."""

    def __init__(self, sequence: TaskSequence, scenario: Scenario, probe: Probe, split: str = "test") -> None:
        tasks = sequence.tasks
        x_held, y_held = zip(*(t.held_out(split) for t in tasks))
        x_probe = [tasks[k].x_train[i] for k, i in zip(probe.task, probe.index)]
        self.x = np.concatenate(list(x_held) + ([np.stack(x_probe)] if x_probe else []))
        labels = np.concatenate(list(y_held) + [probe.label])
        owner = np.concatenate([np.full(len(y), k) for k, y in enumerate(y_held)] + [probe.task])
        self.y, self.mask, self.unit = scenario.targets(labels, owner)
        self.n_test = sum(len(y) for y in y_held)  # the held-out samples come first, then the probe
        self.test_task = owner[: self.n_test]
        self.test_counts = np.bincount(self.test_task, minlength=len(tasks))

    def evaluate(self, network: Network) -> Evaluation:
        a = network.predict(self.x, self.mask)
        correct = network.predicted_unit(a, self.mask) == self.unit
        loss = network.sample_loss(a, self.y, self.mask)
        n_test, n_tasks = self.n_test, len(self.test_counts)
        return Evaluation(
            accuracy=np.bincount(self.test_task, weights=correct[:n_test], minlength=n_tasks) / self.test_counts,
            loss=np.bincount(self.test_task, weights=loss[:n_test], minlength=n_tasks) / self.test_counts,
            probe_correct=correct[n_test:],
            probe_loss=loss[n_test:],
        )


class PresentationLog:
    """When each probe sample was presented during training: ``samples_seen`` right after each batch
    that held it."""

    def __init__(self, probe: Probe, n_train: list[int], batch_size: int) -> None:
        self.probe, self.n_train, self.batch_size = probe, n_train, batch_size
        self.times: list[list[int]] = [[] for _ in probe.task]

    def slots(self, tasks: list[int]) -> np.ndarray:
        """For each training sample of a stage that holds ``tasks``' training sets (concatenated in
        that order), the probe slot it fills, or -1."""
        offsets = np.cumsum([0] + [self.n_train[k] for k in tasks])
        slot = np.full(offsets[-1], -1, dtype=np.int64)
        for pos, k in enumerate(tasks):
            (members,) = np.nonzero(self.probe.task == k)
            slot[offsets[pos] + self.probe.index[members]] = members
        return slot

    def record_epoch(self, slots: np.ndarray, samples_seen: int) -> None:
        """Record the coming epoch: ``slots`` gives the probe slot of each sample in the epoch's order,
        ``samples_seen`` the count before its first batch."""
        (positions,) = np.nonzero(slots >= 0)
        batch_ends = np.minimum((positions // self.batch_size + 1) * self.batch_size, len(slots))
        for p, seen in zip(slots[positions], samples_seen + batch_ends):
            self.times[p].append(int(seen))

    def presented_at(self) -> np.ndarray:
        """(P, max presentations) samples_seen right after each presentation, -1 = none."""
        width = max((len(t) for t in self.times), default=0)
        table = np.full((len(self.times), width), -1, dtype=np.int64)
        for p, times in enumerate(self.times):
            table[p, : len(times)] = times
        return table


def scheduled_point_due(every: int, samples_seen: int, last_point: int, stage_end: int) -> bool:
    """Whether an evaluation point is due after a batch that ends at ``samples_seen``: a multiple of
    ``every`` (0 = no scheduled points) lies in (last_point, samples_seen], and the batch is not the
    stage's last (the stage's boundary point follows that one)."""
    return every > 0 and samples_seen // every > last_point // every and samples_seen < stage_end


def check_finite(loss: float, updates: int, samples_seen: int, stage: str) -> None:
    """Raise ``TrainingDiverged`` if the training loss of the latest update is inf or nan."""
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"Training diverged at update {updates} ({samples_seen} samples seen, stage {stage!r}): "
            f"the training loss is {loss}. Lower algorithm.lr or network.init_scale."
        )


@dataclass
class _Progress:
    """Where a run stands, and the training loss gathered since its last evaluation point."""

    samples_seen: int = 0
    tasks_trained: int = 0  # tasks whose training has begun
    last_point: int = 0  # samples_seen at the last evaluation point
    loss_sum: float = 0.0
    loss_count: int = 0

    def trained_on(self, n: int, mean_loss: float) -> None:
        self.loss_sum += mean_loss * n
        self.loss_count += n
        self.samples_seen += n

    def end_interval(self) -> float:
        """End the interval between evaluation points here: its mean training loss (nan if it had no
        training), and the next interval starts."""
        mean = self.loss_sum / self.loss_count if self.loss_count else float("nan")
        self.loss_sum, self.loss_count, self.last_point = 0.0, 0, self.samples_seen
        return mean


class Trainer:
    def __init__(
        self,
        network: Network,
        algorithm: LearningAlgorithm,
        sequence: TaskSequence,
        scenario: Scenario,
        *,
        epochs_per_task: int,
        batch_size: int = 1,
        shuffle: bool = True,
        joint: bool = False,
        every_samples: int = 0,
        eval_split: str = "test",
        probe: Probe,
        rng: np.random.Generator,
        observers: list[Observer] = (),
        update_probe: UpdateProbe | None = None,
    ) -> None:
        self.network, self.algorithm, self.sequence, self.scenario = network, algorithm, sequence, scenario
        self.epochs = 1 if sequence.single_pass else epochs_per_task
        self.batch_size, self.shuffle, self.every = batch_size, shuffle, every_samples
        self.probe, self.rng, self.observers = probe, rng, list(observers)
        self.update_probe = update_probe
        if update_probe is not None:
            self.observers.append(update_probe)
        self.stages = self._stages(joint)
        self.evaluator = Evaluator(sequence, scenario, probe, split=eval_split)
        self.weight_check = WeightCheck(network.params, [s.name for s in self.stages])

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

    # One BLAS thread: the updates multiply vectors by small matrices, where threads only add
    # synchronisation, and on a busy machine spinning BLAS threads slow the batched evaluations
    # down many times (docs/performance.md). Sweeps get their parallelism from parallel jobs.
    @threadpool_limits.wrap(limits=1, user_api="blas")
    def run(self) -> TrainingResult:
        progress = _Progress()
        log = PresentationLog(self.probe, [t.n_train for t in self.sequence.tasks], self.batch_size)
        if self.update_probe is not None:
            self.update_probe.start(self.network, self.algorithm, [stage.tasks for stage in self.stages])
        points = [self._point(progress, stage=-1, boundary=True)]
        for s, stage in enumerate(self.stages):
            points += self._train_stage(s, stage, progress, log)
        return TrainingResult(
            task_names=[t.name for t in self.sequence.tasks],
            points=points,
            probe=self.probe,
            presented_at=log.presented_at(),
            update_history=self.update_probe.history() if self.update_probe is not None else None,
        )

    def _train_stage(self, s: int, stage: Stage, progress: _Progress, log: PresentationLog) -> list[EvalPoint]:
        """Train on ``stage`` for the configured epochs; its scheduled points and its boundary point."""
        points = []
        n = len(stage.x)
        stage_end = progress.samples_seen + n * self.epochs
        slots = log.slots(stage.tasks)
        self.algorithm.start_task()
        progress.tasks_trained += len(stage.tasks)  # the stage's tasks count as seen from its first sample
        for _ in range(self.epochs):
            order = self.rng.permutation(n) if self.shuffle else np.arange(n)
            # One gather per epoch, so that each update takes views (slices), not copies.
            x, y, mask = stage.x[order], stage.y[order], stage.mask[order]
            log.record_epoch(slots[order], progress.samples_seen)
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                loss = self.algorithm.learn(x[start:stop], y[start:stop], mask[start:stop])
                check_finite(loss, self.algorithm.updates, progress.samples_seen + stop - start, stage.name)
                progress.trained_on(stop - start, loss)
                if self.update_probe is not None:
                    self.update_probe.learned(s, order[start:stop])
                if scheduled_point_due(self.every, progress.samples_seen, progress.last_point, stage_end):
                    points.append(self._point(progress, stage=s, boundary=False))
        self.algorithm.end_task()
        points.append(self._point(progress, stage=s, boundary=True))
        return points

    def _point(self, progress: _Progress, stage: int, boundary: bool) -> EvalPoint:
        """Evaluate with the current weights, and tell the observers."""
        scores = self.evaluator.evaluate(self.network)
        point = EvalPoint(
            samples_seen=progress.samples_seen,
            updates=self.algorithm.updates,
            stage=stage,
            boundary=boundary,
            accuracy=scores.accuracy,
            loss=scores.loss,
            probe_correct=scores.probe_correct,
            probe_loss=scores.probe_loss,
            train_loss=progress.end_interval(),
            tasks_trained=progress.tasks_trained,
        )
        self.weight_check(point)  # before any observer records the point of a diverged run
        for observer in self.observers:
            observer.on_eval(point)
        return point
