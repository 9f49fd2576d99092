"""Truncated Back-Propagation Through Time, BPTT(h; h') (Williams & Peng 1990).

Every h' steps, the errors injected during those last h' steps are back-propagated through the
last h >= h' steps (the state entering that stretch is held fixed) and the weights are updated.
BPTT(h; 1) is classic truncated BPTT; with h >= T and h' = T on a sequence it is epochwise BPTT.

With ``reset="per_sequence"`` each sequence starts from h_0 = 0 and its last, possibly shorter,
stretch is delivered at its end. With ``reset="never"`` the state and the history of the last h
steps run on across sequence boundaries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from forgetlab.algorithms.recurrent import (
    OnlineRecurrentAlgorithm,
    backward_through_time,
    single_sequence,
    step_loss,
)
from forgetlab.networks import functions as F
from forgetlab.networks.rnn import RNN


@dataclass
class History:
    """The last (at most h) steps: h_prev[0] is the state entering the oldest of them."""

    h_now: np.ndarray  # the current state h_t
    x: deque = field(default_factory=deque)
    h_prev: deque = field(default_factory=deque)
    z: deque = field(default_factory=deque)
    h: deque = field(default_factory=deque)
    delta_y: deque = field(default_factory=deque)
    since_update: int = 0  # steps whose errors have not been back-propagated yet


class BPTTTruncated(OnlineRecurrentAlgorithm):
    network: RNN

    def __init__(self, network: RNN, lr: float, l2: float = 0.0, h: int = 8, h_prime: int = 1,
                 reset: str = "per_sequence") -> None:
        if not 1 <= h_prime <= h:
            raise ValueError(f"BPTT(h; h') needs 1 <= h' <= h; got h={h}, h'={h_prime}")
        super().__init__(network, lr, l2, reset)
        self.h, self.h_prime = h, h_prime

    def initial_state(self) -> History:
        return History(h_now=np.zeros(self.network.n_hidden))

    def step(self, state: History, x_t, target, mask, weight):
        net = self.network
        z_t, h_t = net.step(state.h_now, x_t)
        loss_t = None
        delta_y = np.zeros(net.n_outputs)
        if weight:
            loss_t, delta_y = step_loss(net, h_t, target, mask, weight)
        for buffer, value in zip((state.x, state.h_prev, state.z, state.h, state.delta_y),
                                 (x_t, state.h_now, z_t, h_t, delta_y)):
            buffer.append(value)
            if len(buffer) > self.h:
                buffer.popleft()
        state.h_now = h_t
        state.since_update += 1
        if state.since_update < self.h_prime:
            return state, loss_t, None, False
        return state, loss_t, self._backward(state), True

    def drain(self, state: History):
        return state, (self._backward(state) if state.since_update else None)

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
        net = self.network
        x_seq, target, mask_seq = single_sequence(x, y, mask)
        T = len(x_seq)
        entering = net.forward(x, mask).h[0].copy()  # h[t] enters step t; frozen here
        in_loss = np.zeros(T, dtype=bool)
        in_loss[net.loss_steps(T)] = True
        plan = self.stretches(T)

        def objective() -> float:
            total = 0.0
            for first, inject, end in plan:
                fwd = net.forward(x_seq[None, first:end], mask_seq[None], h0=entering[first][None])
                steps = [t - first for t in range(inject, end) if in_loss[t]]
                if steps:
                    total += float(np.sum(F.loss(net.output, net.loss, fwd.a[0, steps], target, mask_seq)))
            return total / in_loss.sum() + self.l2_term()

        return objective

    def _backward(self, state: History) -> dict[str, np.ndarray]:
        """Errors of the last ``since_update`` steps, back through the last h steps."""
        delta_y = np.array(state.delta_y)
        delta_y[: len(delta_y) - state.since_update] = 0.0
        state.since_update = 0
        if not delta_y.any():
            return {}
        h = np.concatenate([state.h_prev[0][None], np.array(state.h)])
        return backward_through_time(self.network, np.array(state.x), h, np.array(state.z), delta_y)
