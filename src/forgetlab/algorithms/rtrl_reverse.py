"""Exact RTRL's gradient by reverse accumulation over the sequence's stored history: the same online
gradient as the forward sensitivity recursion (rtrl.py), in O(t H (H + K)) per update instead of
O(H^3 K) per step.

Derivation. Forward RTRL carries P_t = dh_t/dW for W = [W_hh | W_xh | b_h] (H x K, K = H + I + 1),

    P_t = D_t (W_t P_{t-1} + U_t) = B_t P_{t-1} + D_t U_t,   B_t = D_t W_t,   P_0 = 0,

where W_t is the W_hh in force at step t (online updates change it in mid-sequence), D_t = diag f'(z_t)
and U_t[i, j, k] = [i = j] u_t,k with u_t = [h_{t-1}; x_t; 1]. Unrolled, P_t = sum_{s<=t} B_t ...
B_{s+1} D_s U_s. An update delivers sum_t c_t^T P_t over the loss steps t since the last update point,
c_t = W_hy^T delta_y_t with the W_hy of step t; within that window the weights are fixed. Collecting the
factors from the left,

    sum_t c_t^T P_t = sum_s delta_s u_s^T,   delta_s = v_s * f'(z_s),   v_s = c_s + v_{s+1} B_{s+1},

with c_s = 0 where no error is injected (at every step before the window) and v = 0 after the window's
last loss step. That is back-propagation through every step since the sequence began, each step with
the B_s = D_s W_s of its own weights, stored when the step ran; the readout's dE_t/dW_hy = delta_y_t
h_t^T and dE_t/db_y = delta_y_t are delivered at their step, as forward RTRL delivers them.

Cost per update: one (1 x H) @ (H x H) product per step back to the sequence's start, and one
(H x t) @ (t x K) product for the sum over s; the history holds B, u, f', c, v and delta of every step
(T (H^2 + K + 4 H) values per member), so it serves sequences that restart from h_0 = 0
(``reset="per_sequence"``); a stream (``reset="never"``) would grow it without bound and keeps the
forward form. ``backward_through_time`` (recurrent.py) cannot serve here: it runs the whole stretch
with the weights of the moment, while these steps ran with the weights in force at each of them.

Arrays are step-major, (T, S, 1, .): a step is one integer index, and each member's (1, H) row is
multiplied by its own B_s, the BLAS calls a lone network makes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forgetlab.algorithms.recurrent import OnlineState, StepResult, step_loss
from forgetlab.arrays import is_numpy
from forgetlab.networks.functions import activation_derivative
from forgetlab.networks.rnn import RNN


@dataclass
class History(OnlineState):
    """What the steps of one sequence leave for the reverse pass: buffers of T steps, step-major
    (T, S, 1, .), in ``buffers``; the loops index lists of their steps' views."""

    h: np.ndarray  # (S, 1, H) current state h_t
    u: list  # u_s = [h_{s-1}; x_s; 1], (S, 1, K) each
    f_prime: list  # f'(z_s), (S, 1, H) each
    B: list  # B_s = D_s W_s with the W_hh in force at step s, (S, H, H) each
    c: list  # c_s = W_hy^T delta_y_s at the loss steps, 0 elsewhere, (S, 1, H) each
    v: list  # the reverse pass's v_s, (S, 1, H) each
    by_member: list | None  # on NumPy, each member's (v_s rows (H,), B_s (H, H)) for its own products
    buffers: dict[str, np.ndarray]
    t: int = 0  # steps taken
    last_injected: int = -1  # the last loss step so far


def history_values(H: int, I: int, T: int) -> int:
    """Values a member's history holds for a sequence of T steps (B, u, f', c, v and delta)."""
    return T * (H * H + (H + I + 1) + 4 * H)


def chain_steps(T: int, n_loss_steps: int, update_every: int) -> tuple[int, int]:
    """(the (1 x H) @ (H x H) products, the reverse passes) over a sequence of T steps whose last
    ``n_loss_steps`` carry loss, with update points every ``update_every`` steps and at its end: each
    update with an error runs back from its window's last loss step to the first step."""
    in_loss = set(range(max(T - n_loss_steps, 0), T))
    products = passes = 0
    for start in range(0, T, update_every):
        last = max((t for t in range(start, min(start + update_every, T)) if t in in_loss), default=None)
        if last is not None:
            products, passes = products + last, passes + 1
    return products, passes


class ReverseAccumulation:
    """The reverse form of RTRL over ``network``: a state per sequence (``initial_state``), one call
    per step (``step``) and the gradient of the errors injected since the last update point
    (``window_gradient``), with the interface of an online recurrent algorithm's steps."""

    def __init__(self, network: RNN) -> None:
        self.network = network

    def initial_state(self, T: int) -> History:
        net, xp = self.network, self.network.xp
        S, H, I = net.n_members, net.n_hidden, net.n_inputs
        K, dtype = H + I + 1, net.W_hh.dtype
        u, f_prime = xp.empty((T, S, 1, K), dtype=dtype), xp.empty((T, S, 1, H), dtype=dtype)
        B, c = xp.empty((T, S, H, H), dtype=dtype), xp.zeros((T, S, 1, H), dtype=dtype)
        v, delta = xp.empty((T, S, 1, H), dtype=dtype), xp.empty((T, S, 1, H), dtype=dtype)
        u[..., -1] = 1.0
        buffers = {"u": u, "f_prime": f_prime, "B": B, "c": c, "v": v, "delta": delta,
                   # the sum over steps as one (S, H, n) @ (S, n, K) product
                   "delta_T": xp.permute_dims(xp.reshape(delta, (T, S, H)), (1, 2, 0)),
                   "u_steps": xp.permute_dims(xp.reshape(u, (T, S, K)), (1, 0, 2))}
        by_member = [(list(v[:, m, 0]), list(B[:, m])) for m in range(S)] if is_numpy(xp) else None
        return History(h=xp.zeros((S, 1, H), dtype=dtype), u=list(u), f_prime=list(f_prime), B=list(B), c=list(c),
                       v=list(v), by_member=by_member, buffers=buffers)

    def clear_member(self, state: History, s: int) -> None:
        state.h[s] = 0.0
        for name in ("u", "f_prime", "B", "c"):
            state.buffers[name][:, s] = 0.0
        state.buffers["u"][:, s, :, -1] = 1.0

    def step(self, state: History, x_t, target, mask, weight) -> StepResult:
        """h_t = f(z_t); store u_t, f'(z_t), B_t = D_t W_hh and, at a loss step, c_t = W_hy^T delta_y_t."""
        net, xp = self.network, self.network.xp
        H, t = state.h.shape[-1], state.t
        u_t, f_prime = state.u[t], state.f_prime[t]
        u_t[..., :H] = state.h
        u_t[..., H:-1] = x_t
        z_t, h_t = net.step(state.h, x_t)
        f_prime[...] = activation_derivative(net.activation, z_t, h_t)
        xp.multiply(f_prime.mT, net.W_hh, out=state.B[t])
        state.h, state.t = h_t, t + 1
        if not weight:
            return StepResult()
        loss_t, delta_y = step_loss(net, h_t, target, mask, weight)
        xp.matmul(delta_y, net.W_hy, out=state.c[t])
        state.last_injected = t
        return StepResult(loss_t, {"W_hy": delta_y.mT * h_t, "b_y": delta_y[:, 0]})

    def window_gradient(self, state: History) -> dict[str, np.ndarray] | None:
        """sum_s delta_s u_s^T for the errors injected in the last ``state.steps_since_update`` steps,
        as dE/dW_hh, dE/dW_xh, dE/db_h; None when none was injected there."""
        first = state.t - state.steps_since_update  # the window's first step
        n = state.last_injected + 1
        if n <= first:
            return None
        xp = self.network.xp
        v, B, c = state.v, state.B, state.c
        v[n - 1][...] = c[n - 1]
        for s in range(n - 2, first - 1, -1):  # v_s = c_s + v_{s+1} B_{s+1} in the window
            xp.add(c[s], xp.matmul(v[s + 1], B[s + 1]), out=v[s])
        self.back_to_the_start(state, first)
        held = state.buffers
        xp.multiply(held["v"][:n], held["f_prime"][:n], out=held["delta"][:n])  # delta_s = v_s * f'(z_s)
        dE_dW = xp.matmul(held["delta_T"][..., :n], held["u_steps"][:, :n])  # sum_s delta_s u_s^T
        H = state.h.shape[-1]
        return {"W_hh": dE_dW[..., :H], "W_xh": dE_dW[..., H:-1], "b_h": dE_dW[..., -1]}

    def back_to_the_start(self, state: History, first: int) -> None:
        """v_s = v_{s+1} B_{s+1} for s = first - 1, ..., 0, the form's main cost: one (1 x H) @ (H x H)
        product a step. On NumPy each member's is a gemv of its own (``np.dot``: ~1 us less a call than a
        batched ``matmul`` at H = 32, and the same call whether the member trains alone or not);
        elsewhere (a GPU) one batched product a step."""
        if first == 0:
            return
        steps = slice(first, 0, -1)  # s + 1 = first, ..., 1, and v_s for s = first - 1, ..., 0 below
        if state.by_member is not None:
            dot = np.dot
            for v, B in state.by_member:
                for v_next, B_next, v_s in zip(v[steps], B[steps], v[first - 1 :: -1]):
                    dot(v_next, B_next, out=v_s)
            return
        matmul, v, B = self.network.xp.matmul, state.v, state.B
        for v_next, B_next, v_s in zip(v[steps], B[steps], v[first - 1 :: -1]):
            matmul(v_next, B_next, out=v_s)
