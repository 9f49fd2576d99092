"""Run a learning algorithm through a task sequence and evaluate on a schedule.

Time is counted in ``samples_seen`` (training samples consumed: vectors for the MLP, sequences for
the RNN) and ``updates`` (weight changes, which differ between algorithms for the same samples).

Evaluation points: before training (``init``, for forward transfer), after each training stage
(a task, or the one joint stage), and every ``every_samples`` samples in between. At each point
one batched forward pass scores the test set of every task and the sample probe.

The network may be an ensemble of S members (``networks.base``): they train side by side on the same
task sequence and schedule, each with its own sample order (its own generator), and each gets its
own evaluation points and result. A member whose training diverges stops there (its result carries
the error) while the others go on; a lone network is the ensemble of one.

Whoever follows training (tracking, progress lines, the update-resolution probe, a continual-learning
strategy) is a ``Callback``: one protocol, called by the trainer, which never imports its callbacks.
A callback may also hand the trainer batches to learn between the stage's own (``Callback.replay``:
a strategy's replayed samples); those are weight updates, but neither samples seen nor presentations
of the stage's samples, so that every strategy is evaluated at the same points of the task stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from threadpoolctl import threadpool_limits

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.arrays import array_namespace, is_numpy, to_numpy
from forgetlab.data.tasks import Scenario, TaskSequence
from forgetlab.divergence import TrainingDiverged, WeightCheck
from forgetlab.networks.base import Network


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
    """One member's training: its evaluation points and, if its training diverged, the error (its
    points end before it)."""

    task_names: list[str]
    points: list[EvalPoint]
    probe: Probe
    presented_at: np.ndarray  # (P, max presentations) samples_seen right after each presentation, -1 = none
    chance: np.ndarray | None = None  # (T,) each task's accuracy by guessing (``Scenario.chance``)
    error: TrainingDiverged | None = None
    # What callbacks recorded for this member, by name (e.g. the update-resolution probe's history),
    # added in their ``on_train_end``: tracking stores what it knows.
    records: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy_matrix(self) -> np.ndarray:
        """R with row 0 = before training and row i + 1 = after training stage i; column j = task j."""
        return np.stack([p.accuracy for p in self.points if p.boundary])


class Callback:
    """What the trainer tells whoever follows it. Every method is optional (these do nothing); the
    trainer calls ``on_update``, ``on_batch_end`` and ``replay`` only on callbacks that define them,
    since they come with every update. ``points`` hold the evaluation point of each member still training."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first evaluation point."""

    def on_stage_start(self, trainer: Trainer, stage: int) -> None:
        """Before the first sample of training stage ``stage``."""

    def on_update(self, trainer: Trainer) -> None:
        """After every weight update, wherever the algorithm makes it (mid-sequence included)."""

    def on_batch_end(self, trainer: Trainer, stage: int, samples: np.ndarray) -> None:
        """Each member learned its batch of ``stage``'s training samples at positions ``samples`` (S, b)."""

    def replay(self, trainer: Trainer, stage: int) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Batches (x, y, mask), each member its own (S, b, ...), for the algorithm to learn right
        after each batch of ``stage`` (after every ``on_batch_end``), as it learns the stage's own; they
        are not samples seen, not presentations and not in the training loss. None by default."""
        return ()

    def on_stage_end(self, trainer: Trainer, stage: int) -> None:
        """After the last sample of ``stage`` (and the algorithm's ``end_task``), before its boundary point."""

    def on_eval(self, trainer: Trainer, points: dict[int, EvalPoint]) -> None:
        """An evaluation point of every member still training, by member."""

    def on_train_end(self, trainer: Trainer, results: list[TrainingResult]) -> None:
        """After training, with each member's result (a callback may add to its ``records``)."""


def defines(callback: Callback, method: str) -> bool:
    """Whether ``callback``'s class overrides ``Callback.<method>``."""
    return getattr(type(callback), method) is not getattr(Callback, method)


@dataclass(frozen=True)
class Stage:
    """A stage's training samples, as arrays of the network's namespace (on its device)."""

    name: str
    x: np.ndarray
    y: np.ndarray  # one-hot targets
    mask: np.ndarray
    tasks: list[int]  # tasks whose training data the stage holds

    @property
    def n(self) -> int:
        return self.x.shape[0]


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
    """The scores of one evaluation with the current weights, one row per member."""

    accuracy: np.ndarray  # (S, n_tasks) test accuracy per task, in [0, 1]
    loss: np.ndarray  # (S, n_tasks) mean test loss per task
    probe_correct: np.ndarray  # (S, n_probe) bool
    probe_loss: np.ndarray  # (S, n_probe)


class Evaluator:
    """Scores a network on the held-out set of every task (``split``: "test", or "val" so that a
    selection sweep never sees test data) and on the probe samples: the samples, targets and masks are
    gathered once, into one batch, so that each evaluation is one forward pass."""

    def __init__(self, sequence: TaskSequence, scenario: Scenario, probe: Probe, split: str = "test",
                 xp=None, dtype=np.float64) -> None:
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
        if xp is not None and not is_numpy(xp):  # to the device once; the scores come back once per point
            self.x, self.y, self.mask = (xp.asarray(a, dtype=dtype) for a in (self.x, self.y, self.mask))
            self.unit = xp.asarray(self.unit)
            self.members_per_pass = self.DEVICE_MEMBERS_PER_PASS
        else:
            self.members_per_pass = self.MEMBERS_PER_PASS

    # Members scored per forward pass: the activations of a few members over every sample stay in
    # the cache; all 8 members of the default config at once took 1.5x as long as 4 at a time.
    MEMBERS_PER_PASS = 4
    # On a GPU, as many as keep the activations of a pass within about a gigabyte at the default sizes.
    DEVICE_MEMBERS_PER_PASS = 1024

    def evaluate(self, network: Network) -> Evaluation:
        """Every member, a few at a time: one forward pass of the shared samples through their stacked weights."""
        correct, loss = [], []
        for start in range(0, network.n_members, self.members_per_pass):
            part = network.members(slice(start, min(start + self.members_per_pass, network.n_members)))
            a = part.predict(self.x, self.mask)
            correct.append(to_numpy(part.predicted_unit(a, self.mask) == self.unit))
            loss.append(to_numpy(part.sample_loss(a, self.y, self.mask)))
        correct, loss = np.concatenate(correct), np.concatenate(loss)  # (S, n_samples)
        n_test, n_tasks = self.n_test, len(self.test_counts)

        def per_task(values: np.ndarray) -> np.ndarray:
            # bincount sums each task's samples in order, member by member, as for a lone network.
            return np.stack([np.bincount(self.test_task, weights=v[:n_test], minlength=n_tasks) for v in values])

        return Evaluation(
            accuracy=per_task(correct) / self.test_counts,
            loss=per_task(loss) / self.test_counts,
            probe_correct=correct[:, n_test:],
            probe_loss=loss[:, n_test:],
        )


class PresentationLog:
    """When each probe sample was presented during training, for every member: ``samples_seen``
    right after each batch that held it. One row per epoch and member, filled for the whole ensemble
    at once (an ensemble of thousands would spend longer in a loop over members than in training)."""

    def __init__(self, probe: Probe, n_train: list[int], batch_size: int) -> None:
        self.probe, self.n_train, self.batch_size = probe, n_train, batch_size
        self.epochs: list[np.ndarray] = []  # (S, P) per epoch: samples_seen after the batch, -1 = not presented

    def slots(self, tasks: list[int]) -> np.ndarray:
        """For each training sample of a stage that holds ``tasks``' training sets (concatenated in
        that order), the probe slot it fills, or -1."""
        offsets = np.cumsum([0] + [self.n_train[k] for k in tasks])
        slot = np.full(offsets[-1], -1, dtype=np.int64)
        for pos, k in enumerate(tasks):
            (members,) = np.nonzero(self.probe.task == k)
            slot[offsets[pos] + self.probe.index[members]] = members
        return slot

    def record_epoch(self, slots: np.ndarray, orders: np.ndarray, samples_seen: int) -> None:
        """Record the coming epoch: ``slots`` gives the probe slot of each sample of the stage,
        ``orders`` (S, n) each member's order of the stage's samples, ``samples_seen`` the count
        before its first batch."""
        S, n = orders.shape
        (samples,) = np.nonzero(slots >= 0)
        position = np.empty_like(orders)  # position[m, i]: where sample i comes in member m's epoch
        position[np.arange(S)[:, None], orders] = np.arange(n)
        batch_end = np.minimum((position[:, samples] // self.batch_size + 1) * self.batch_size, n)
        row = np.full((S, len(self.probe.task)), -1, dtype=np.int64)
        row[:, slots[samples]] = samples_seen + batch_end
        self.epochs.append(row)

    def presented_at(self, member: int = 0) -> np.ndarray:
        """(P, max presentations) samples_seen right after each presentation of member ``member``, -1 = none."""
        if not self.epochs:
            return np.full((len(self.probe.task), 0), -1, dtype=np.int64)
        times = np.stack([row[member] for row in self.epochs], axis=1)  # (P, epochs), increasing where >= 0
        missing = np.iinfo(np.int64).max
        table = np.sort(np.where(times >= 0, times, missing), axis=1)  # each sample's presentations first
        width = int((times >= 0).sum(axis=1).max(initial=0))
        table = table[:, :width]
        return np.where(table == missing, -1, table)


def scheduled_point_due(every: int, samples_seen: int, last_point: int, stage_end: int) -> bool:
    """Whether an evaluation point is due after a batch that ends at ``samples_seen``: a multiple of
    ``every`` (0 = no scheduled points) lies in (last_point, samples_seen], and the batch is not the
    stage's last (the stage's boundary point follows that one)."""
    return every > 0 and samples_seen // every > last_point // every and samples_seen < stage_end


def diverged(what: str, updates: int, samples_seen: int, stage: str, at_update: bool = True) -> TrainingDiverged:
    """The error of a training that diverged at update ``updates`` (or, found at an evaluation point,
    by then: ``at_update`` false): ``what`` is no longer finite or has exploded."""
    return TrainingDiverged(
        f"Training diverged {'at' if at_update else 'by'} update {updates} ({samples_seen} samples seen, "
        f"stage {stage!r}): {what}. Lower algorithm.lr or network.init_scale."
    )


@dataclass
class _Progress:
    """Where a run stands, and each member's training losses since its last evaluation point."""

    n_members: int
    samples_seen: int = 0
    tasks_trained: int = 0  # tasks whose training has begun
    last_point: int = 0  # samples_seen at the last evaluation point
    losses: list = field(default_factory=list)  # each update's mean loss per member (S,)
    counts: list[int] = field(default_factory=list)  # and the samples it was the mean of

    def trained_on(self, n: int, mean_loss: np.ndarray) -> None:
        # Kept, not summed: one list append instead of arithmetic on small arrays every update.
        self.losses.append(mean_loss)
        self.counts.append(n)
        self.samples_seen += n

    def end_interval(self) -> np.ndarray:
        """End the interval between evaluation points here: each member's mean training loss (nan if
        it had no training), and the next interval starts."""
        if not self.counts:
            mean = np.full(self.n_members, np.nan)
        else:
            # 0 + l_1 n_1 + l_2 n_2 + ..., added in order (cumsum never reorders), then / sum n.
            losses = to_numpy(array_namespace(self.losses[0]).stack(self.losses))  # one copy from a device
            weighted = losses.astype(np.float64) * np.asarray(self.counts, dtype=np.float64)[:, None]
            total = np.cumsum(np.concatenate([np.zeros((1, self.n_members)), weighted]), axis=0)[-1]
            mean = total / sum(self.counts)
        self.losses, self.counts, self.last_point = [], [], self.samples_seen
        return mean


class _AllDiverged(Exception):
    """Every member's training diverged: nothing is left to train."""


class Trainer:
    """Trains the S members of ``network`` (S >= 1) with ``algorithm`` through the task sequence:
    member s draws its sample order from ``rngs[s]``; ``callbacks`` follow every member."""

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
        rngs: list[np.random.Generator],
        callbacks: list[Callback] = (),
    ) -> None:
        self.network, self.algorithm, self.sequence, self.scenario = network, algorithm, sequence, scenario
        self.n_members = network.n_members
        if len(rngs) != self.n_members:
            raise ValueError(f"one sample-order generator per member: got {len(rngs)} for {self.n_members} members")
        self.epochs = 1 if sequence.single_pass else epochs_per_task
        self.batch_size, self.shuffle, self.every = batch_size, shuffle, every_samples
        self.probe, self.rngs = probe, list(rngs)
        self.callbacks: list[Callback] = list(callbacks)
        self.dtype = next(iter(network.params.values())).dtype
        self.stages = self._stages(joint)
        self.evaluator = Evaluator(sequence, scenario, probe, split=eval_split, xp=network.xp, dtype=self.dtype)
        self.weight_check = WeightCheck(network.params)
        self._on_host = is_numpy(network.xp)

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
            # On the network's device once, in its floating-point type (float64 data is unchanged on NumPy).
            x, y, mask = (self.network.xp.asarray(a, dtype=self.dtype) for a in (x, y, mask))
            stages.append(Stage(name, x, y, mask, group))
        return stages

    # One BLAS thread: the updates multiply vectors by small matrices, where threads only add
    # synchronisation, and on a busy machine spinning BLAS threads slow the batched evaluations
    # down many times (docs/performance.md). Sweeps get their parallelism from parallel jobs.
    @threadpool_limits.wrap(limits=1, user_api="blas")
    def run(self) -> list[TrainingResult]:
        """Train every member; one result per member, in member order. A member whose training
        diverged has its ``TrainingDiverged`` in ``error`` (the caller decides what that means)."""
        S = self.n_members
        progress = _Progress(n_members=S)
        log = PresentationLog(self.probe, [t.n_train for t in self.sequence.tasks], self.batch_size)
        self._points: list[list[EvalPoint]] = [[] for _ in range(S)]
        self._errors: list[TrainingDiverged | None] = [None] * S
        self._per_update = [c for c in self.callbacks if defines(c, "on_update")]
        self._per_batch = [c for c in self.callbacks if defines(c, "on_batch_end")]
        self._replaying = [c for c in self.callbacks if defines(c, "replay")]
        if self._per_update:
            self.algorithm.on_update.append(self._updated)
        try:
            for callback in self.callbacks:
                callback.on_train_start(self)
            self._point(progress, stage=-1, boundary=True)
            for s, stage in enumerate(self.stages):
                self._train_stage(s, stage, progress, log)
        except _AllDiverged:
            pass
        finally:
            if self._updated in self.algorithm.on_update:
                self.algorithm.on_update.remove(self._updated)
        results = [
            TrainingResult(task_names=[t.name for t in self.sequence.tasks], points=self._points[m], probe=self.probe,
                           presented_at=log.presented_at(m), chance=self.scenario.chance(), error=self._errors[m])
            for m in range(S)
        ]
        for callback in self.callbacks:
            callback.on_train_end(self, results)
        return results

    def _updated(self) -> None:
        for callback in self._per_update:
            callback.on_update(self)

    def _train_stage(self, s: int, stage: Stage, progress: _Progress, log: PresentationLog) -> None:
        """Train on ``stage`` for the configured epochs; its scheduled points and its boundary point."""
        xp = self.network.xp
        n = stage.n
        stage_end = progress.samples_seen + n * self.epochs
        slots = log.slots(stage.tasks)
        for callback in self.callbacks:
            callback.on_stage_start(self, s)
        self.algorithm.start_task()
        progress.tasks_trained += len(stage.tasks)  # the stage's tasks count as seen from its first sample
        for _ in range(self.epochs):
            orders = np.stack([rng.permutation(n) if self.shuffle else np.arange(n) for rng in self.rngs])
            # One gather per epoch, (S, n, ...), so that each update takes views (slices), not copies.
            flat = xp.asarray(orders.reshape(-1))
            x, y, mask = (xp.reshape(xp.take(a, flat, axis=0), (*orders.shape, *a.shape[1:]))
                          for a in (stage.x, stage.y, stage.mask))
            log.record_epoch(slots, orders, progress.samples_seen)
            for start in range(0, n, self.batch_size):
                stop = min(start + self.batch_size, n)
                loss = self._learn(x[:, start:stop], y[:, start:stop], mask[:, start:stop],
                                   progress.samples_seen + stop - start, stage.name)
                progress.trained_on(stop - start, loss)
                for callback in self._per_batch:
                    callback.on_batch_end(self, s, orders[:, start:stop])
                for callback in self._replaying:
                    for batch in callback.replay(self, s):
                        self._learn(*batch, progress.samples_seen, stage.name)
                if scheduled_point_due(self.every, progress.samples_seen, progress.last_point, stage_end):
                    self._point(progress, stage=s, boundary=False)
        self.algorithm.end_task()
        for callback in self.callbacks:
            callback.on_stage_end(self, s)
        self._point(progress, stage=s, boundary=True)

    def _learn(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, samples_seen: int, stage: str) -> np.ndarray:
        """The algorithm learns one batch per member; the members whose loss is not finite stop."""
        loss = self.algorithm.learn(x, y, mask)
        # One sum tells whether any member's loss is inf or nan (losses are bounded otherwise): over
        # Python floats on the host, a fifth of a NumPy reduction of a few values; on a device, one
        # reduction there and a single number back.
        if not math.isfinite(sum(loss.tolist()) if self._on_host else float(self.network.xp.sum(loss))):
            self._stop_diverged(to_numpy(loss), samples_seen, stage)
        return loss

    def _stop_diverged(self, loss: np.ndarray, samples_seen: int, stage: str) -> None:
        """Stop the members whose loss is no longer finite; raise ``_AllDiverged`` when none is left."""
        for m in np.flatnonzero(~np.isfinite(loss)):
            self._stop(int(m), f"the training loss is {loss[m]}", samples_seen, stage)

    def _stop(self, m: int, what: str, samples_seen: int, stage: str, at_update: bool = True) -> None:
        if self._errors[m] is None:
            self._errors[m] = diverged(what, self.algorithm.updates, samples_seen, stage, at_update)
            self.algorithm.stop_member(m)
        if all(error is not None for error in self._errors):
            raise _AllDiverged

    def _stop_exploded_weights(self, samples_seen: int, stage: str) -> None:
        """Stop the members whose weights are no longer finite or have exploded although their loss
        is finite (saturated units; a bias at inf): checked at each evaluation point, not every update."""
        for m, what in self.weight_check.exceeded():
            self._stop(m, what, samples_seen, stage, at_update=False)

    def _point(self, progress: _Progress, stage: int, boundary: bool) -> None:
        """Evaluate every member with its current weights, and tell the callbacks each running member's point."""
        self._stop_exploded_weights(progress.samples_seen, self.stages[stage].name if stage >= 0 else "init")
        scores = self.evaluator.evaluate(self.network)
        train_loss = progress.end_interval()
        points = {}
        for m in range(self.n_members):
            if self._errors[m] is not None:
                continue
            points[m] = point = EvalPoint(
                samples_seen=progress.samples_seen,
                updates=self.algorithm.updates,
                stage=stage,
                boundary=boundary,
                accuracy=scores.accuracy[m],
                loss=scores.loss[m],
                probe_correct=scores.probe_correct[m],
                probe_loss=scores.probe_loss[m],
                train_loss=float(train_loss[m]),
                tasks_trained=progress.tasks_trained,
            )
            self._points[m].append(point)
        for callback in self.callbacks:
            callback.on_eval(self, points)
