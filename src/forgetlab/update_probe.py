"""The update-resolution probe: a fixed set of training samples evaluated after every k-th weight
update (``eval.probe_every``), for every learning algorithm, including those that update in
mid-sequence; optionally with the gradient-interference diagnostics (``eval.interference``).
Definitions: docs/metrics.md, "Update resolution"; the stored arrays: docs/tracking.md.

The probe is a trainer ``Callback``: its ``on_update`` sees every update where it is applied.
Each evaluation is one batched forward pass of the P probe samples (``Network.per_sample_losses``);
with interference on, also one batched pass of their per-sample gradients
(``Network.per_sample_gradients``).

Rows: row r holds the probe after ``updates[r]`` = r k weight updates; row 0 is before training.
A *step* is the weight change between two consecutive rows, Delta theta_r = theta_r - theta_{r-1}:
with k = 1 it is update r itself, Delta theta_r = -lr g_r.

Presented: a probe sample is presented at the update that completes its presentation, the one
that applies the last error of the batch or sequence that held it. For an algorithm that updates
in mid-sequence (RTRL, BPTT(h; h')) that is the last update made within the sequence; in a stream
(``reset=never``) whose last error is still pending when the sequence ends, the next update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgetlab import metrics
from forgetlab.arrays import to_numpy
from forgetlab.data.tasks import Scenario, TaskSequence
from forgetlab.trainer import Callback, EvalPoint, PresentationLog, Probe, Trainer, TrainingResult

# The name under which a member's ``TrainingResult.records`` holds its ``UpdateHistory``.
RECORD = "update_probe"


@dataclass(frozen=True)
class Interference:
    """The gradient-interference diagnostics of the R - 1 steps between rows and at the boundaries.

    g_r = -Delta theta_r / lr is the gradient the algorithm applied (over k updates: their sum)."""

    step_norm: np.ndarray  # (R-1,) ||Delta theta_r||
    consecutive_cosine: np.ndarray  # (R-1,) cos(g_r, g_{r-1}); NaN for r = 1
    task_cosine: np.ndarray  # (R-1, T) cos(g_r, m_t), m_t the mean probe gradient of task t at theta_{r-1}
    predicted: np.ndarray  # (R-1, P) first-order loss change <grad l_p(theta_{r-1}), Delta theta_r>
    measured: np.ndarray  # (R-1, P) l_p(theta_r) - l_p(theta_{r-1})
    matrix: np.ndarray  # (B, T, T) task x task interference matrix at each boundary point
    matrix_pairs: np.ndarray  # (B, T, T) sample pairs behind each entry
    matrix_updates: np.ndarray  # (B,) updates at each boundary point (init, end of every stage)


@dataclass(frozen=True)
class UpdateHistory:
    """The probe evaluated every ``every`` updates: R rows, P probe samples, U updates in all."""

    every: int
    updates: np.ndarray  # (R,) weight updates before each row: 0, k, 2k, ...
    correct: np.ndarray  # (R, P) bool
    loss: np.ndarray  # (R, P) data loss (no L2 term; for the RNN the mean over the loss steps)
    presented_update: np.ndarray  # (P, n) update completing each presentation, -1 padding
    update_stage: np.ndarray  # (U,) training stage of updates 1..U
    stage_task: np.ndarray  # (S,) the task a stage trains, -1 for a stage of several tasks (joint)
    task: np.ndarray  # (P,) task of each probe sample
    index: np.ndarray  # (P,) its index in that task's training set
    label: np.ndarray  # (P,) its global label
    task_names: list[str]
    interference: Interference | None

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields of ``eval/update_probe.npz`` (docs/tracking.md); losses stored as float32."""
        out = {
            "every": np.int64(self.every),
            "updates": self.updates,
            "correct": self.correct,
            "loss": self.loss.astype(np.float32),
            "presented_update": self.presented_update,
            "update_stage": self.update_stage,
            "stage_task": self.stage_task,
            "task": self.task,
            "index": self.index,
            "label": self.label,
            "task_names": np.array(self.task_names, dtype=str),
            "interference": np.bool_(self.interference is not None),
        }
        if self.interference is not None:
            i = self.interference
            out.update(
                step_norm=i.step_norm,
                consecutive_cosine=i.consecutive_cosine,
                task_cosine=i.task_cosine,
                predicted=i.predicted.astype(np.float32),
                measured=i.measured.astype(np.float32),
                interference_matrix=i.matrix,
                interference_pairs=i.matrix_pairs,
                interference_updates=i.matrix_updates,
            )
        return out


class UpdateProbe(Callback):
    """Records the probe history of every member of one trainer's network, and leaves member m's in
    its result's ``records[RECORD]``. The losses and predictions of every member come from one
    batched forward pass; the interference diagnostics are computed member by member."""

    def __init__(self, sequence: TaskSequence, scenario: Scenario, probe: Probe, every: int, interference: bool) -> None:
        tasks = sequence.tasks
        self.x = np.stack([tasks[k].x_train[i] for k, i in zip(probe.task, probe.index)])
        self.y, self.mask, _ = scenario.targets(probe.label, probe.task)
        self.probe, self.task, self.index, self.label = probe, probe.task, probe.index, probe.label
        self.task_names = [t.name for t in tasks]
        self.n_train = [t.n_train for t in tasks]
        self.every, self.with_interference = every, interference

    def on_train_start(self, trainer: Trainer) -> None:
        """Evaluate row 0."""
        network, stage_tasks = trainer.network, [stage.tasks for stage in trainer.stages]
        self.network, self.algorithm = network, trainer.algorithm
        S = network.n_members
        xp = network.xp
        self._x, self._y, self._mask = (xp.asarray(a) for a in (self.x, self.y, self.mask))
        self.stage_task = np.array([s[0] if len(s) == 1 else -1 for s in stage_tasks], dtype=np.int64)
        slots = PresentationLog(self.probe, self.n_train, batch_size=1).slots
        self._slots = [slots(tasks).tolist() for tasks in stage_tasks]  # the probe slot of each stage sample, or -1
        self._presented: list[list[list[int]]] = [[[] for _ in self.task] for _ in range(S)]
        self._updates: list[int] = []
        self._loss: list[np.ndarray] = []  # (S, P) per row
        self._correct: list[np.ndarray] = []
        self._stage_end: list[int] = []  # updates at the end of each stage
        # interference, per member: the weights and probe gradients at the last row, and the last step
        self._theta = self._G = None
        self._step: list[np.ndarray | None] = [None] * S
        self._steps: list[dict[str, list]] = [
            {k: [] for k in ("norm", "consecutive", "task", "predicted", "measured")} for _ in range(S)]
        self._matrices: list[list[tuple[int, np.ndarray, np.ndarray]]] = [[] for _ in range(S)]
        self._record()

    def on_update(self, trainer: Trainer) -> None:
        if self.algorithm.updates % self.every == 0:
            self._record()

    def _gradients(self) -> np.ndarray:
        return to_numpy(self.network.per_sample_gradients(self._x, self._y, self._mask))  # (S, P, n)

    def _record(self) -> None:
        net = self.network
        loss, correct = (to_numpy(a) for a in net.per_sample_losses(self._x, self._y, self._mask))
        self._updates.append(self.algorithm.updates)
        self._loss.append(loss)
        self._correct.append(correct)
        if not self.with_interference:
            return
        theta = to_numpy(net.flatten(net.params))
        G = self._gradients()
        if self._theta is not None:
            n_tasks = len(self.task_names)
            for m, s in enumerate(self._steps):
                step = theta[m] - self._theta[m]
                s["norm"].append(np.linalg.norm(step))
                # Delta theta = -lr g: predicted_loss_change(G, -Delta theta, 1) = <grad l_p, Delta theta>.
                s["predicted"].append(metrics.predicted_loss_change(self._G[m], -step, 1.0))
                s["measured"].append(loss[m] - self._loss[-2][m])
                # This step and the one before it: c_0 = NaN when there is none.
                steps = step[None] if self._step[m] is None else np.stack([self._step[m], step])
                s["consecutive"].append(metrics.consecutive_update_cosines(steps)[-1])
                task_means = metrics.task_mean_gradients(self._G[m], self.task, n_tasks)
                s["task"].append(metrics.cosine_to_tasks(-step[None], task_means[None])[0])
                self._step[m] = step
        self._theta, self._G = theta, G

    def on_batch_end(self, trainer: Trainer, stage: int, samples: np.ndarray) -> None:
        """Each member's batch of ``stage``'s training samples at positions ``samples`` (S, b) was
        learned: note the update that completes its presentation for the probe samples among them."""
        slots = self._slots[stage]
        completing = None
        for m, positions in enumerate(samples.tolist()):
            hits = [p for p in (slots[i] for i in positions) if p >= 0]  # per sample: Python is fastest
            if hits:
                if completing is None:  # the members share the update schedule
                    completing = self.algorithm.updates + int(self.algorithm.error_pending)
                for p in hits:
                    self._presented[m][p].append(completing)

    def on_eval(self, trainer: Trainer, points: dict[int, EvalPoint]) -> None:
        """At the boundary points (init, end of each stage): the stage's last update, and with
        interference on the task x task interference matrix at the current weights (the points of
        every member share the schedule)."""
        point = next(iter(points.values()))
        if not point.boundary:
            return
        if point.stage >= 0:
            self._stage_end.append(point.updates)
        if self.with_interference:
            current = self._G if self._updates[-1] == point.updates else self._gradients()
            for m, matrices in enumerate(self._matrices):
                matrix, pairs = metrics.interference_matrix(current[m], self.task, len(self.task_names))
                matrices.append((point.updates, matrix, pairs))

    def on_train_end(self, trainer: Trainer, results: list[TrainingResult]) -> None:
        for m, result in enumerate(results):
            result.records[RECORD] = self.history(m)

    def history(self, member: int = 0) -> UpdateHistory:
        """What was recorded for ``member``."""
        presented = self._presented[member]
        width = max((len(u) for u in presented), default=0)
        presented_update = np.full((len(presented), width), -1, dtype=np.int64)
        for p, updates in enumerate(presented):
            presented_update[p, : len(updates)] = updates
        n_updates = self.algorithm.updates
        update_stage = np.searchsorted(np.array(self._stage_end, dtype=np.int64), np.arange(1, n_updates + 1))
        interference = None
        P = len(self.task)
        if self.with_interference:
            s, n_tasks, matrices = self._steps[member], len(self.task_names), self._matrices[member]
            interference = Interference(
                step_norm=np.array(s["norm"], dtype=float),
                consecutive_cosine=np.array(s["consecutive"], dtype=float),
                task_cosine=np.array(s["task"], dtype=float).reshape(-1, n_tasks),
                predicted=np.array(s["predicted"], dtype=float).reshape(-1, P),
                measured=np.array(s["measured"], dtype=float).reshape(-1, P),
                matrix=np.array([m for _, m, _ in matrices]).reshape(-1, n_tasks, n_tasks),
                matrix_pairs=np.array([p for _, _, p in matrices], dtype=np.int64).reshape(-1, n_tasks, n_tasks),
                matrix_updates=np.array([u for u, _, _ in matrices], dtype=np.int64),
            )
        return UpdateHistory(
            every=self.every,
            updates=np.array(self._updates, dtype=np.int64),
            correct=np.array([c[member] for c in self._correct], dtype=bool).reshape(-1, P),
            loss=np.array([l[member] for l in self._loss], dtype=float).reshape(-1, P),
            presented_update=presented_update,
            update_stage=update_stage.astype(np.int64),
            stage_task=self.stage_task,
            task=self.task,
            index=self.index,
            label=self.label,
            task_names=self.task_names,
            interference=interference,
        )
