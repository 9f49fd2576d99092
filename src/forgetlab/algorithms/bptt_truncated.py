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

from forgetlab.algorithms.recurrent import OnlineRecurrentAlgorithm, backward_through_time, step_loss
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

    def _backward(self, state: History) -> dict[str, np.ndarray]:
        """Errors of the last ``since_update`` steps, back through the last h steps."""
        delta_y = np.array(state.delta_y)
        delta_y[: len(delta_y) - state.since_update] = 0.0
        state.since_update = 0
        if not delta_y.any():
            return {}
        h = np.concatenate([state.h_prev[0][None], np.array(state.h)])
        return backward_through_time(self.network, np.array(state.x), h, np.array(state.z), delta_y)
