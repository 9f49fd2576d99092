"""What the recurrent learning algorithms share: the error signal at the output of each step, the
backward pass through a stretch of time, and the bookkeeping of an online learner that steps
through sequences and changes the weights in mid-sequence.

Notation (networks/rnn.py): z_t = W_hh h_{t-1} + W_xh x_t + b_h, h_t = f(z_t), y_t = g(W_hy h_t + b_y);
E = 1/|S| sum_{t in S} E_t + (lambda/2) sum ||W||^2 over the loss steps S of a sequence of T steps.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import Any

import numpy as np

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.networks import functions as F
from forgetlab.networks.rnn import RNN

RESETS = ("per_sequence", "never")


def single_sequence(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one sequence of a batch of size 1: (x (T, I), target (O,), mask (O,))."""
    if x.ndim != 3 or x.shape[0] != 1:
        raise ValueError(f"recurrent algorithms learn from one sequence at a time, shape (1, T, I); got {x.shape}")
    return x[0], y[0], mask[0]


def step_loss(net: RNN, h_t: np.ndarray, target: np.ndarray, mask: np.ndarray, weight: float) -> tuple[float, np.ndarray]:
    """(E_t, weight * dE_t/dz_y) at one step whose state is h_t."""
    a = net.readout(h_t, mask)
    return float(F.loss(net.output, net.loss, a, target, mask)), weight * F.output_delta(net.output, net.loss, a, target, mask)


def backward_through_time(
    net: RNN, x: np.ndarray, h: np.ndarray, z: np.ndarray, delta_y: np.ndarray
) -> dict[str, np.ndarray]:
    """Data-term gradient of sum_t (error injected at step t) over a stretch of L steps, by BPTT.

    x (L, I) inputs; h (L + 1, H) states, h[0] entering the stretch and held fixed (nothing flows
    back past it); z (L, H) pre-activations; delta_y (L, O) = dE/dz_y at each step (0 where no loss).

        dE/dh_t   = W_hy^T delta_y_t + W_hh^T dE/dz_{t+1}
        dE/dz_t   = dE/dh_t * f'(z_t)
        dE/dW_hh  = sum_t dE/dz_t h_{t-1}^T,  dE/dW_xh = sum_t dE/dz_t x_t^T,  dE/db_h = sum_t dE/dz_t
        dE/dW_hy  = sum_t delta_y_t h_t^T,    dE/db_y  = sum_t delta_y_t
    """
    L = len(x)
    f_prime = F.activation_derivative(net.activation, z, h[1:])
    injected = delta_y @ net.W_hy  # W_hy^T delta_y_t for every step at once
    delta_z = np.empty_like(z)
    from_future = np.zeros(net.n_hidden, dtype=z.dtype)
    for t in range(L - 1, -1, -1):
        delta_z[t] = (injected[t] + from_future) * f_prime[t]
        from_future = delta_z[t] @ net.W_hh
    return {
        "W_xh": delta_z.T @ x,
        "W_hh": delta_z.T @ h[:-1],
        "b_h": delta_z.sum(axis=0),
        "W_hy": delta_y.T @ h[1:],
        "b_y": delta_y.sum(axis=0),
    }


class OnlineRecurrentAlgorithm(LearningAlgorithm):
    """An RNN learner that steps through each sequence and may update the weights in mid-sequence.

    Subclasses define one step (``step``) and what is left to deliver at the end of a stretch
    (``drain``). Gradient contributions gather in a pending sum, which also receives the L2 term in
    shares of lambda W / T per step, so that with frozen weights the contributions over a sequence
    add up to its full objective's gradient when nothing is truncated. The pending sum becomes a
    weight update when a step says an update is due and an error has been injected since the last one.

    ``reset="per_sequence"``: every sequence starts from h_0 = 0 and ends with an update.
    ``reset="never"``: the state (and what the algorithm carries with it) runs on from one sequence
    into the next, as in a stream; updates stay on their own schedule across sequence boundaries, and
    what is pending at the end of a task is delivered then.
    """

    network: RNN

    def __init__(self, network: RNN, lr: float, l2: float = 0.0, reset: str = "per_sequence") -> None:
        super().__init__(network, lr, l2)
        if reset not in RESETS:
            raise ValueError(f"unknown reset {reset!r}; allowed: {RESETS}")
        self.reset = reset
        self.state: Any = None  # carried across sequences when reset == "never"
        self._pending: dict[str, np.ndarray] | None = None
        self._pending_error = False

    @abstractmethod
    def initial_state(self) -> Any:
        """The algorithm's state at h_0 = 0."""

    @abstractmethod
    def step(self, state: Any, x_t: np.ndarray, target: np.ndarray, mask: np.ndarray, weight: float
             ) -> tuple[Any, float | None, dict[str, np.ndarray] | None, bool]:
        """Advance one step. ``weight`` = 1/|S| at a loss step, 0 otherwise.
        Returns (state, E_t or None, gradient contribution or None, whether an update is due)."""

    def drain(self, state: Any) -> tuple[Any, dict[str, np.ndarray] | None]:
        """Deliver whatever error is still held back (TBPTT's last partial stretch); nothing by default."""
        return state, None

    # --- the learner's interface ------------------------------------------------------------

    def gradient(self, x, y, mask):
        """Sum of the contributions the algorithm computes over the sequence, the weights held fixed."""
        carried = self.reset == "never" and self.state is not None
        state = copy.deepcopy(self.state) if carried else self.initial_state()  # steps update states in place
        total: dict[str, np.ndarray] = {n: np.zeros_like(p) for n, p in self.network.params.items()}

        def accumulate(grads):
            for n, g in grads.items():
                total[n] += g

        saved = self._pending, self._pending_error
        self._pending, self._pending_error = None, False
        data_loss, state = self._run(x, y, mask, state, accumulate)
        state, grads = self.drain(state)
        self._add(grads)
        if self._pending is not None:
            accumulate(self._pending)
        self._pending, self._pending_error = saved
        return data_loss, total

    def learn(self, x, y, mask):
        start = self.state if self.reset == "never" and self.state is not None else self.initial_state()
        data_loss, state = self._run(x, y, mask, start, self.apply)
        if self.reset == "per_sequence":
            self._deliver(state)
        else:
            self.state = state
        return data_loss

    def end_task(self) -> None:
        if self.state is not None:
            self.state = self._deliver(self.state)

    # --- bookkeeping ------------------------------------------------------------------------

    def _run(self, x, y, mask, state, update) -> tuple[float, Any]:
        x, target, mask = single_sequence(x, y, mask)
        T = len(x)
        steps = self.network.loss_steps(T)
        weights = np.zeros(T)
        weights[steps] = 1.0 / len(steps)
        l2_share = self.l2 / T
        losses = []
        for t in range(T):
            state, loss_t, grads, due = self.step(state, x[t], target, mask, weights[t])
            if loss_t is not None:
                losses.append(loss_t)
                self._pending_error = True
            self._add(grads)
            if l2_share:
                self._add({n: l2_share * self.network.params[n] for n in self.network.weight_names})
            if due and self._pending_error:
                if self._pending is not None:  # None: every error of the stretch was exactly 0 (saturated units)
                    update(self._pending)
                self._pending, self._pending_error = None, False
        return float(np.mean(losses)), state

    def _deliver(self, state):
        """Drain and apply what is pending, if it holds an error."""
        state, grads = self.drain(state)
        self._add(grads)
        if self._pending is not None and self._pending_error:
            self.apply(self._pending)
            self._pending, self._pending_error = None, False
        return state

    def _add(self, grads: dict[str, np.ndarray] | None) -> None:
        if not grads:
            return
        if self._pending is None:
            self._pending = {n: np.zeros_like(p) for n, p in self.network.params.items()}
        for n, g in grads.items():
            self._pending[n] += g
