"""What the recurrent learning algorithms share: the error signal at the output of each step and
the bookkeeping of an online learner that steps through sequences and changes the weights in
mid-sequence. The backward pass through a stretch of time is the network's (``RNN.backward``).

Notation (networks/rnn.py): z_t = W_hh h_{t-1} + W_xh x_t + b_h, h_t = f(z_t), y_t = g(W_hy h_t + b_y);
E = 1/|S| sum_{t in S} E_t + (lambda/2) sum ||W||^2 over the loss steps S of a sequence of T steps.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.arrays import by_member
from forgetlab.networks.rnn import RNN

# The allowed values of ``reset``, checked by the config before an algorithm is built.
RESETS = ("per_sequence", "never")


def single_sequence(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one sequence of a batch of size 1, kept as a batch of one: x (S, 1, T, I) (each member its
    own) or (1, T, I) (the same for every member); target and mask (S, 1, O) or (1, O), whose batch
    axis of 1 broadcasts over the steps of a sequence."""
    if x.ndim not in (3, 4) or x.shape[-3] != 1:
        raise ValueError(f"recurrent algorithms learn from one sequence at a time, shape (S, 1, T, I) or (1, T, I); "
                         f"got {x.shape}")
    return x, y, mask


def step_loss(net: RNN, h_t: np.ndarray, target: np.ndarray, mask: np.ndarray, weight: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """(E_t (S, 1), weight * dE_t/dz_y (S, 1, O)) at one step whose state is h_t (S, 1, H)."""
    a = net.readout(h_t, mask)
    return net.sample_loss(a, target, mask), weight * net.output_delta(a, target, mask)


def updates_per_sequence(run, T: int, every: int) -> int:
    """Weight updates an online learner with update points every ``every`` steps makes per sequence of
    T steps from h_0 = 0, in the config ``run``: one per stretch of ``every`` steps holding a loss step
    (the network's ``loss_at``, ``loss_last_steps``). For the cost guard."""
    net = run.network
    loss_steps = range(T) if net.loss_at == "all" else range(max(0, T - net.loss_last_steps), T)
    return len({t // every for t in loss_steps})


@dataclass(kw_only=True)
class OnlineState:
    """What an online recurrent algorithm carries from step to step (each algorithm adds its own);
    the base class keeps the update schedule in it, so that a stream carries the schedule too."""

    steps_since_update: int = 0


class StepResult(NamedTuple):
    """What one step of an online recurrent algorithm yields (a named tuple: made at every step)."""

    loss: np.ndarray | None = None  # E_t (S, 1) at a loss step, None elsewhere
    gradient: dict[str, np.ndarray] | None = None  # this step's contribution to dE/dtheta, if any


class OnlineRecurrentAlgorithm(LearningAlgorithm):
    """An RNN learner that steps through each sequence and may update the weights in mid-sequence.

    Subclasses define one step (``step``) and, if they hold errors back until an update point (as
    truncated BPTT does with its stretch), the gradient of what they hold (``held_back_gradient``).
    Gradient contributions gather in a pending sum, which also receives the L2 term in shares of
    lambda W / T per step, so that with frozen weights the contributions over a sequence add up to
    its full objective's gradient when nothing is truncated.

    Update points come every ``update_every`` steps (RTRL's ``update_every``, the h' of BPTT(h; h')).
    At an update point the held-back gradient joins the pending sum, which becomes a weight update if
    an error has been injected since the last update.

    ``reset="per_sequence"``: every sequence starts from h_0 = 0 and ends with an update.
    ``reset="never"``: the state (and what the algorithm carries with it) runs on from one sequence
    into the next, as in a stream; update points stay on their own schedule across sequence
    boundaries, and what is pending at the end of a task is delivered then.
    """

    network: RNN

    def __init__(self, network: RNN, lr: float | Sequence[float], l2: float | Sequence[float] = 0.0,
                 reset: str = "per_sequence", update_every: int = 1) -> None:
        super().__init__(network, lr, l2)
        self.reset, self.update_every = reset, update_every
        self.state: OnlineState | None = None  # carried across sequences when reset == "never"
        self._pending: dict[str, np.ndarray] | None = None
        self._pending_error = False

    @abstractmethod
    def initial_state(self, steps: int) -> OnlineState:
        """The algorithm's state at h_0 = 0, for a sequence of ``steps`` steps (the first of a stream)."""

    @abstractmethod
    def step(self, state: OnlineState, x_t: np.ndarray, target: np.ndarray, mask: np.ndarray, weight: float
             ) -> StepResult:
        """Advance ``state`` one step, in place, for every member: x_t (S, 1, I) or (1, I), target and
        mask (S, 1, O) or (1, O). ``weight`` = 1/|S| at a loss step, 0 otherwise."""

    def clear_member(self, state: OnlineState, s: int) -> None:
        """Set what ``state`` carries for member ``s`` to 0 (``stop_member``)."""

    def held_back_gradient(self, state: OnlineState) -> dict[str, np.ndarray] | None:
        """Gradient of the errors injected since the last update point that ``step`` has not delivered
        (truncated BPTT's current stretch); None when nothing is held back, as by default."""
        return None

    # --- the learner's interface ------------------------------------------------------------

    def gradient(self, x, y, mask):
        """Sum of the contributions the algorithm computes over the sequence, the weights held fixed."""
        carried = self.reset == "never" and self.state is not None
        # steps update states in place: a carried state is copied
        state = copy.deepcopy(self.state) if carried else self.initial_state(x.shape[-2])
        total: dict[str, np.ndarray] = {n: self.network.xp.zeros_like(p) for n, p in self.network.params.items()}

        def accumulate(grads):
            for n, g in grads.items():
                total[n] += g

        saved = self._pending, self._pending_error
        self._pending, self._pending_error = None, False
        data_loss = self._run(x, y, mask, state, accumulate)
        self._add(self.held_back_gradient(state))
        if self._pending is not None:
            accumulate(self._pending)
        self._pending, self._pending_error = saved
        return data_loss, total

    def learn(self, x, y, mask):
        carried = self.reset == "never" and self.state is not None
        state = self.state if carried else self.initial_state(x.shape[-2])
        data_loss = self._run(x, y, mask, state, self.apply)
        if self.reset == "per_sequence":
            self._deliver(state)
        else:
            self.state = state
        return data_loss

    def end_task(self) -> None:
        if self.state is not None:
            self._deliver(self.state)

    @property
    def error_pending(self) -> bool:
        return self._pending_error

    def stop_member(self, s: int) -> None:
        super().stop_member(s)
        if self.state is not None:
            self.clear_member(self.state, s)
        for g in (self._pending or {}).values():
            g[s] = 0.0

    # --- bookkeeping ------------------------------------------------------------------------

    def _run(self, x, y, mask, state: OnlineState, update) -> np.ndarray:
        """Step through one sequence from ``state``; ``update(pending)`` at each update point that has
        an error to deliver. Returns the sequence's mean data loss of each member (S,)."""
        net, xp = self.network, self.network.xp
        x, target, mask = single_sequence(x, y, mask)
        T = x.shape[-2]
        steps = net.loss_steps(T)
        weights = [0.0] * T  # Python floats: they scale arrays of any namespace and type without promoting them
        for t in steps.tolist():
            weights[t] = 1.0 / len(steps)
        l2_share = by_member(self.l2 / T, 3) if self.has_l2 else None
        params, weight_names = net.params, net.weight_names
        step, held_back_gradient, add, every = self.step, self.held_back_gradient, self._add, self.update_every
        losses = []
        x_t = xp.permute_dims(x, (x.ndim - 2, *range(x.ndim - 2), x.ndim - 1))  # step-major: a step is one index
        for t in range(T):
            result = step(state, x_t[t], target, mask, weights[t])
            if result.loss is not None:
                losses.append(result.loss)
                self._pending_error = True  # an injected error makes an update due, even if its gradient is exactly 0
            if result.gradient:
                add(result.gradient)
            state.steps_since_update += 1
            update_due = state.steps_since_update == every
            if update_due:
                add(held_back_gradient(state))
            # The L2 share joins after the step's errors: the order of the sums is part of the numbers.
            if l2_share is not None:
                add({n: l2_share * params[n] for n in weight_names})
            if update_due:
                state.steps_since_update = 0
                if self._pending_error:
                    self._update(update)
        # (S, |S|), one row per member, so that each member's mean is a contiguous sum as for a lone network.
        return xp.mean(xp.concat(losses, axis=-1), axis=-1)

    def _deliver(self, state: OnlineState) -> None:
        """End of a sequence or task: deliver what is held back and apply what is pending, if it holds
        an error. Delivering a held-back stretch ends it, so the next starts with the next step."""
        held_back = self.held_back_gradient(state)
        if held_back is not None:
            self._add(held_back)
            state.steps_since_update = 0
        if self._pending_error:
            self._update(self.apply)

    def _update(self, update) -> None:
        """Hand the pending sum to ``update`` and start a new one."""
        update(self._pending if self._pending is not None else {})
        self._pending, self._pending_error = None, False

    def _add(self, grads: dict[str, np.ndarray] | None) -> None:
        """Add ``grads`` to the pending sum. A parameter's first contribution opens its entry; one
        without any has none, which an update reads as 0 (p - lr * 0 = p, bit for bit)."""
        if not grads:
            return
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
        for n, g in grads.items():
            if n in pending:
                pending[n] += g
            else:
                pending[n] = g + 0.0  # as 0 + g, bit for bit (-0.0 becomes 0.0), in one pass instead of two
