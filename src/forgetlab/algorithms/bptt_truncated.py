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

The history lives in buffers allocated once per state, member-major (S, C, .), so that a stretch is a
view laid out as a lone network's, handed to the backward pass without a copy; when they are full,
the last h - 1 steps move to their front.
"""

from __future__ import annotations

import math
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
    """The last (at most h) steps: x_t, z_t and delta_y_t of the n steps held in buffers of capacity C,
    (S, C, .), and in hs (S, C + 1, H) their states with the one entering the oldest of them
    (hs[:, 0]); hs[:, n] is the current state."""

    h: np.ndarray  # (S, 1, H) the current state h_t, as the step computed it
    xs: np.ndarray
    hs: np.ndarray
    zs: np.ndarray
    delta_ys: np.ndarray
    n: int = 0  # steps held
    t: int = 0  # steps taken
    last_injected: int = -1  # the last step that carried loss


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

    def initial_state(self, steps: int) -> History:
        net, xp = self.network, self.network.xp
        S, H, C, dtype = net.n_members, net.n_hidden, max(steps, 2 * self.h), net.W_hh.dtype
        hs = xp.empty((S, C + 1, H), dtype=dtype)
        hs[:, 0] = 0.0
        return History(h=xp.zeros((S, 1, H), dtype=dtype), xs=xp.empty((S, C, net.n_inputs), dtype=dtype), hs=hs,
                       zs=xp.empty((S, C, H), dtype=dtype), delta_ys=xp.empty((S, C, net.n_outputs), dtype=dtype))

    def clear_member(self, state: History, s: int) -> None:
        for held in (state.h, state.hs, state.zs, state.delta_ys):  # the arrays computed here (xs are the inputs)
            held[s] = 0.0

    def step(self, state: History, x_t, target, mask, weight) -> StepResult:
        net = self.network
        if state.n == state.zs.shape[1]:
            self._keep_last_steps(state)
        n = state.n
        z_t, h_t = net.step(state.h, x_t)
        state.xs[:, n : n + 1] = x_t
        state.zs[:, n : n + 1] = z_t
        state.hs[:, n + 1 : n + 2] = h_t
        state.h, state.n, state.t = h_t, n + 1, state.t + 1
        if not weight:
            state.delta_ys[:, n : n + 1] = 0.0
            return StepResult()
        loss_t, delta_y = step_loss(net, h_t, target, mask, weight)
        state.delta_ys[:, n : n + 1] = delta_y
        state.last_injected = state.t - 1
        return StepResult(loss=loss_t)  # the gradient waits for the update point

    def _keep_last_steps(self, state: History) -> None:
        """Move the last h - 1 steps (all a stretch can need besides the next step) to the buffers' front."""
        n, keep = state.n, self.h - 1
        for held in (state.xs, state.zs, state.delta_ys):
            held[:, :keep] = held[:, n - keep : n]
        state.hs[:, : keep + 1] = state.hs[:, n - keep : n + 1]
        state.n = keep

    def held_back_gradient(self, state: History) -> dict[str, np.ndarray] | None:
        """Errors of the steps since the last update point, back through the last h steps."""
        since = state.steps_since_update
        if not since:
            return None
        if state.last_injected < state.t - since:  # no error since the last update point
            return {}
        # The stretch side by side, (S, 1, L, .): views of the buffers, each member's laid out as a lone network's.
        n = state.n
        first = n - min(self.h, n)
        delta_y = state.delta_ys[:, first:n]
        delta_y[:, : n - first - since] = 0.0  # delivered at an earlier update point
        x, h, z = state.xs[:, first:n], state.hs[:, first : n + 1], state.zs[:, first:n]
        return self.network.backward(x[:, None], h[:, None], z[:, None], delta_y[:, None])

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
