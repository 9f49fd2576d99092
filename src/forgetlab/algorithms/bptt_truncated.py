"""Truncated Back-Propagation Through Time, BPTT(h; h') (Williams & Peng 1990).

Every h' steps (the update points of ``OnlineRecurrentAlgorithm``), the errors injected during those
last h' steps are back-propagated through the last h >= h' steps (the state entering that stretch is
held fixed) and the weights are updated. BPTT(h; 1) is classic truncated BPTT; with h >= T and h' = T
on a sequence it is epochwise BPTT.

    delta_y_t = dE_t/dz_y / |S| at the loss steps t in S among the last h' steps, 0 elsewhere
    backward pass over the last h steps: the RNN's (networks/rnn.py), from the state entering them

With ``reset="per_sequence"`` each sequence starts from h_0 = 0 and its last, possibly shorter,
stretch is delivered at its end. With ``reset="never"`` the state and the history of the last h
steps run on across sequence boundaries.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from forgetlab.algorithms.recurrent import (
    OnlineRecurrentAlgorithm,
    OnlineState,
    StepResult,
    single_sequence,
    step_loss,
    updates_per_sequence,
)
from forgetlab.algorithms.base import AlgorithmConfig
from forgetlab.algorithms.recurrent import RESETS
from forgetlab.constraints import AT_LEAST_1, Options, constrain, fail
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.networks.rnn import RNN


@dataclass
class BPTTTruncatedConfig(AlgorithmConfig):
    name: str = "bptt_truncated"
    h: int = field(default=8, metadata=constrain(AT_LEAST_1))
    h_prime: int = 1  # 1 <= h' <= h: ``check``
    reset: str = field(default="per_sequence", metadata=constrain(Options(*RESETS)))

    def check(self, run) -> None:
        if not 1 <= self.h_prime <= self.h:
            fail("algorithm.h_prime", self.h_prime, f"an int in the range [1, algorithm.h={self.h}] (BPTT(h; h') needs h' <= h)")


@dataclass
class History(OnlineState):
    """The last (at most h) steps t: x_t, z_t, delta_y_t, and the states h_t with the one entering
    the oldest of them (hs[0]), so hs[-1] is the current state. Each entry is the step of every
    member, with a batch axis of one: (S, 1, .)."""

    xs: deque
    hs: deque
    zs: deque
    delta_ys: deque


class BPTTTruncated(OnlineRecurrentAlgorithm):
    name = "bptt_truncated"
    Config = BPTTTruncatedConfig
    trains = ("rnn",)
    one_sample_at_a_time = True

    @classmethod
    def label(cls, run) -> str:
        alg = run.algorithm
        return f"BPTT({alg.h}; {alg.h_prime})" + (" stream" if alg.reset == "never" else "")

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize) -> Work:
        # one forward pass, and a backward pass through h steps every h' steps
        alg, H, T = run.algorithm, run.network.hidden_size, data.steps
        step_ops = 2 * H * (H + data.n_inputs)
        backward_ops = math.ceil(T / alg.h_prime) * min(alg.h, T) * 2 * step_ops
        return Work(network.forward_ops + backward_ops, {"the BPTT history": 4 * alg.h * H},
                    updates_per_sample=updates_per_sequence(run, T, alg.h_prime))

    network: RNN

    def __init__(self, network: RNN, lr: float | Sequence[float], l2: float | Sequence[float] = 0.0, h: int = 8,
                 h_prime: int = 1, reset: str = "per_sequence") -> None:
        super().__init__(network, lr, l2, reset, update_every=h_prime)
        self.h = h  # truncation depth: steps back-propagated through

    @property
    def h_prime(self) -> int:
        """Steps between updates: the update period of the base class."""
        return self.update_every

    def initial_state(self) -> History:
        net = self.network
        h_0 = net.xp.zeros((net.n_members, 1, net.n_hidden), dtype=net.W_hh.dtype)
        return History(xs=deque(maxlen=self.h), hs=deque([h_0], maxlen=self.h + 1), zs=deque(maxlen=self.h),
                       delta_ys=deque(maxlen=self.h))

    def clear_member(self, state: History, s: int) -> None:
        for held in (state.hs, state.zs, state.delta_ys):  # the arrays computed here (xs are the inputs)
            for array in held:
                array[s] = 0.0

    def step(self, state: History, x_t, target, mask, weight) -> StepResult:
        net = self.network
        z_t, h_t = net.step(state.hs[-1], x_t)
        if weight:
            loss_t, delta_y = step_loss(net, h_t, target, mask, weight)
        else:
            loss_t, delta_y = None, net.xp.zeros((net.n_members, 1, net.n_outputs), dtype=net.W_hh.dtype)
        state.xs.append(x_t)
        state.hs.append(h_t)
        state.zs.append(z_t)
        state.delta_ys.append(delta_y)
        return StepResult(loss=loss_t)  # the gradient waits for the update point

    def held_back_gradient(self, state: History) -> dict[str, np.ndarray] | None:
        """Errors of the steps since the last update point, back through the last h steps."""
        if not state.steps_since_update:
            return None
        xp = self.network.xp
        # The steps side by side, (S, 1, L, .): each member's stretch laid out as a lone network's.
        delta_y = xp.concat(list(state.delta_ys), axis=-2)[..., None, :, :]
        delta_y[..., : delta_y.shape[-2] - state.steps_since_update, :] = 0.0  # delivered at an earlier update point
        if not xp.any(delta_y != 0.0):
            return {}
        x, h, z = (xp.concat(list(steps), axis=-2)[..., None, :, :] for steps in (state.xs, state.hs, state.zs))
        return self.network.backward(x, h, z, delta_y)

    def stretches(self, T: int) -> list[tuple[int, int, int]]:
        """(first step back-propagated through, first step whose error is injected, end) of each update
        over a sequence of T steps started from h_0 = 0 (``reset="per_sequence"``)."""
        ends = list(range(self.h_prime, T + 1, self.h_prime))
        if not ends or ends[-1] != T:
            ends.append(T)
        starts = [0, *ends[:-1]]
        return [(max(0, end - self.h), start, end) for start, end in zip(starts, ends)]

    def frozen_objective(self, x, y, mask):
        """sum over updates of the loss injected in its stretch, each run from the state entering the
        stretch held at its value at the current weights (+ the L2 term): ``gradient`` is its exact
        gradient. Without truncation (h >= T) it is the objective itself."""
        if self.reset == "never" and self.state is not None:
            raise NotImplementedError("the truncated objective is defined for a sequence started from h_0 = 0")
        net, xp = self.network, self.network.xp
        x_seq, target, mask_seq = single_sequence(x, y, mask)
        T = x_seq.shape[-2]
        entering = xp.asarray(net.forward(x, mask).h[:, 0], copy=True)  # (S, T + 1, H); h[t] enters step t; frozen here
        in_loss = np.zeros(T, dtype=bool)
        in_loss[net.loss_steps(T)] = True
        plan = self.stretches(T)

        def objective() -> np.ndarray:
            total = xp.zeros(net.n_members, dtype=net.W_hh.dtype)
            for first, inject, end in plan:
                fwd = net.forward(x_seq[..., first:end, :], mask_seq, h0=entering[:, None, first])
                steps = [t - first for t in range(inject, end) if in_loss[t]]
                if steps:
                    a = xp.take(fwd.a[:, 0], xp.asarray(steps), axis=-2)
                    total = total + xp.sum(net.sample_loss(a, target, mask_seq), axis=-1)
            return total / in_loss.sum() + self.l2_term()

        return objective
