"""The update-resolution probe: a fixed set of training samples evaluated after every k-th weight
update (``eval.probe_every``), for every learning algorithm, including those that update in
mid-sequence; optionally with the gradient-interference diagnostics (``eval.interference``).
Definitions: docs/metrics.md, "Update resolution"; the stored arrays: docs/tracking.md.

The probe hooks into ``LearningAlgorithm.on_update``, so it sees every update where it is applied.
Each evaluation is one batched forward pass of the P probe samples (``per_sample_losses``); with
interference on, also one batched pass of their per-sample gradients (``per_sample_gradients``).

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
from typing import TYPE_CHECKING

import numpy as np

from forgetlab import metrics
from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.data.tasks import Scenario, TaskSequence
from forgetlab.networks.base import Network
from forgetlab.probe_gradients import flatten, per_sample_gradients, per_sample_losses
from forgetlab.trainer import PresentationLog

if TYPE_CHECKING:
    from forgetlab.trainer import EvalPoint, Probe


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


class UpdateProbe:
    """Records the probe history of one run. The trainer calls ``start`` before training,
    ``learned`` after every batch, ``on_eval`` at its evaluation points (as an observer) and
    ``history`` at the end."""

    def __init__(self, sequence: TaskSequence, scenario: Scenario, probe: Probe, every: int, interference: bool) -> None:
        tasks = sequence.tasks
        self.x = np.stack([tasks[k].x_train[i] for k, i in zip(probe.task, probe.index)])
        self.y, self.mask, _ = scenario.targets(probe.label, probe.task)
        self.probe, self.task, self.index, self.label = probe, probe.task, probe.index, probe.label
        self.task_names = [t.name for t in tasks]
        self.n_train = [t.n_train for t in tasks]
        self.every, self.with_interference = every, interference

    def start(self, network: Network, algorithm: LearningAlgorithm, stage_tasks: list[list[int]]) -> None:
        """Evaluate row 0 and follow ``algorithm``'s updates from now on."""
        self.network, self.algorithm = network, algorithm
        self.stage_task = np.array([s[0] if len(s) == 1 else -1 for s in stage_tasks], dtype=np.int64)
        slots = PresentationLog(self.probe, self.n_train, batch_size=1).slots
        self._slots = [slots(tasks).tolist() for tasks in stage_tasks]  # the probe slot of each stage sample, or -1
        self._presented: list[list[int]] = [[] for _ in self.task]
        self._updates: list[int] = []
        self._loss: list[np.ndarray] = []
        self._correct: list[np.ndarray] = []
        self._stage_end: list[int] = []  # updates at the end of each stage
        # interference: the weights and probe gradients at the last row, and the last step
        self._theta = self._G = self._step = None
        self._steps: dict[str, list] = {k: [] for k in ("norm", "consecutive", "task", "predicted", "measured")}
        self._matrices: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._record()
        algorithm.on_update.append(self._after_update)

    def _after_update(self) -> None:
        if self.algorithm.updates % self.every == 0:
            self._record()

    def _record(self) -> None:
        net = self.network
        loss, correct = per_sample_losses(net, self.x, self.y, self.mask)
        self._updates.append(self.algorithm.updates)
        self._loss.append(loss)
        self._correct.append(correct)
        if not self.with_interference:
            return
        theta = flatten(net.params, net)
        G = per_sample_gradients(net, self.x, self.y, self.mask)
        if self._theta is not None:
            step = theta - self._theta
            s = self._steps
            s["norm"].append(np.linalg.norm(step))
            # Delta theta = -lr g: predicted_loss_change(G, -Delta theta, 1) = <grad l_p, Delta theta>.
            s["predicted"].append(metrics.predicted_loss_change(self._G, -step, 1.0))
            s["measured"].append(loss - self._loss[-2])
            s["consecutive"].append(metrics.cosine(step, self._step) if self._step is not None else np.nan)
            means = metrics.task_mean_gradients(self._G, self.task, len(self.task_names))
            s["task"].append(metrics.cosine(-step, means))
            self._step = step
        self._theta, self._G = theta, G

    def learned(self, stage: int, samples: np.ndarray) -> None:
        """The batch of ``stage``'s training samples at positions ``samples`` was learned: note the
        update that completes its presentation for the probe samples among them."""
        slots = self._slots[stage]
        hits = [p for p in (slots[i] for i in samples.tolist()) if p >= 0]  # per sample: Python is fastest
        if hits:
            completing = self.algorithm.updates + int(self.algorithm.error_pending)
            for p in hits:
                self._presented[p].append(completing)

    def on_eval(self, point: EvalPoint) -> None:
        """At the boundary points (init, end of each stage): the stage's last update, and with
        interference on the task x task interference matrix at the current weights."""
        if not point.boundary:
            return
        if point.stage >= 0:
            self._stage_end.append(point.updates)
        if self.with_interference:
            current = self._G if self._updates[-1] == point.updates else None
            if current is None:
                current = per_sample_gradients(self.network, self.x, self.y, self.mask)
            matrix, pairs = metrics.interference_matrix(current, self.task, len(self.task_names))
            self._matrices.append((point.updates, matrix, pairs))

    def history(self) -> UpdateHistory:
        """What was recorded; the probe stops following the algorithm."""
        self.algorithm.on_update.remove(self._after_update)
        width = max((len(u) for u in self._presented), default=0)
        presented_update = np.full((len(self._presented), width), -1, dtype=np.int64)
        for p, updates in enumerate(self._presented):
            presented_update[p, : len(updates)] = updates
        n_updates = self.algorithm.updates
        update_stage = np.searchsorted(np.array(self._stage_end, dtype=np.int64), np.arange(1, n_updates + 1))
        interference = None
        if self.with_interference:
            s, n_tasks, P = self._steps, len(self.task_names), len(self.task)
            interference = Interference(
                step_norm=np.array(s["norm"], dtype=float),
                consecutive_cosine=np.array(s["consecutive"], dtype=float),
                task_cosine=np.array(s["task"], dtype=float).reshape(-1, n_tasks),
                predicted=np.array(s["predicted"], dtype=float).reshape(-1, P),
                measured=np.array(s["measured"], dtype=float).reshape(-1, P),
                matrix=np.array([m for _, m, _ in self._matrices]).reshape(-1, n_tasks, n_tasks),
                matrix_pairs=np.array([p for _, _, p in self._matrices], dtype=np.int64).reshape(-1, n_tasks, n_tasks),
                matrix_updates=np.array([u for u, _, _ in self._matrices], dtype=np.int64),
            )
        return UpdateHistory(
            every=self.every,
            updates=np.array(self._updates, dtype=np.int64),
            correct=np.array(self._correct, dtype=bool).reshape(-1, len(self.task)),
            loss=np.array(self._loss, dtype=float).reshape(-1, len(self.task)),
            presented_update=presented_update,
            update_stage=update_stage.astype(np.int64),
            stage_task=self.stage_task,
            task=self.task,
            index=self.index,
            label=self.label,
            task_names=self.task_names,
            interference=interference,
        )
