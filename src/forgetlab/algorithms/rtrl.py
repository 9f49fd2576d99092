"""Exact Real-Time Recurrent Learning (Williams & Zipser 1989).

The recurrent parameters W = [W_hh | W_xh | b_h] (H x K, K = H + I + 1) act on u_t = [h_{t-1}; x_t; 1],
z_t = W u_t. Two equations, one method each:

    sensitivity update (``update_sensitivity``), every step, for P_t[i, j, k] = dh_t,i / dW_jk:
        P_t = D_t (W_hh P_{t-1} + U_t),   D_t = diag f'(z_t),   U_t[i, j, k] = [i = j] u_t,k

    gradient (``error_gradient``), at a loss step t:
        dE_t/dW = sum_i (W_hy^T delta_y_t)_i P_t[i]      (one (H,) @ (H, H K) product)
        dE_t/dW_hy = delta_y_t h_t^T,  dE_t/db_y = delta_y_t

The immediate term U_t is nonzero only on the diagonal i = j, so it is added there (O(H K)) instead
of being built as a Kronecker product; the recurrent term is one (H x H) @ (H x H K) matrix product
(with D_t folded into its H x H factor):
O(H^2 K) = O(H^3) memory and O(H^3 K) = O(H^4) time per step.

Every array carries the member axis S first (``networks.base``); each member's products are the
very BLAS calls a lone network makes.

The contributions are applied online, every ``update_every`` steps (the weights change while the
sequence runs; P is carried on, as in the original algorithm).

``implementation`` (``RTRL.implementation_for``): "forward" is the recursion above; "reverse" computes
the same gradient by reverse accumulation over the sequence's stored history (rtrl_reverse.py), in
O(t H (H + K)) per update instead of O(H^3 K) per step, for sequences that restart from h_0 = 0;
"auto" (the default) takes the one ``form_costs`` estimates faster where its history fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from forgetlab.algorithms.base import AlgorithmConfig
from forgetlab.algorithms.recurrent import (
    RESETS,
    OnlineRecurrentAlgorithm,
    OnlineState,
    StepResult,
    step_loss,
    updates_per_sequence,
)
from forgetlab.algorithms.rtrl_reverse import History, ReverseAccumulation, chain_steps, history_values
from forgetlab.constraints import AT_LEAST_1, Options, constrain, fail
from forgetlab.cost_model import FLOPS_PER_S, DataSize, NetworkCost, Work
from forgetlab.arrays import array_namespace
from forgetlab.networks.functions import activation_derivative
from forgetlab.networks.rnn import RNN

IMPLEMENTATIONS = ("auto", "forward", "reverse")


@dataclass
class RTRLConfig(AlgorithmConfig):
    name: str = "rtrl"
    update_every: int = field(default=1, metadata=constrain(AT_LEAST_1))
    reset: str = field(default="per_sequence", metadata=constrain(Options(*RESETS)))
    # How the gradient is computed (the same numbers to rounding): 'reverse' needs reset=per_sequence
    # (``check``); 'auto' picks the faster (``implementation_for``).
    implementation: str = field(default="auto", metadata=constrain(Options(*IMPLEMENTATIONS)))

    def check(self, run) -> None:
        if self.implementation == "reverse" and self.reset != "per_sequence":
            fail("algorithm.implementation", self.implementation,
                 f"'auto' or 'forward' with algorithm.reset={self.reset!r} (a stream's history grows without end)")


def sensitivity_update(P: np.ndarray, W_hh: np.ndarray, u: np.ndarray, f_prime: np.ndarray, out: np.ndarray) -> np.ndarray:
    """P_new = D (W_hh P + U) = (D W_hh) P + D U into ``out``, for every member: P and out are
    (S, H, H * K), read as (S, H, H, K); W_hh (S, H, H); u (S, 1, K); f_prime (S, 1, H).

    D is folded into the (H x H) factor before the product, so the O(H^4) work is one GEMM per member
    and nothing else passes over the O(H^3) tensor; D U lives on the diagonal i = j only.
    """
    xp = array_namespace(P)
    S, H, K = W_hh.shape[0], W_hh.shape[-1], u.shape[-1]
    d = f_prime.mT  # (S, H, 1): D as a column
    xp.matmul(d * W_hh, P, out=out)
    diagonal = xp.arange(H)
    xp.reshape(out, (S, H, H, K), copy=False)[:, diagonal, diagonal] += d * u
    return out


@dataclass
class Sensitivity(OnlineState):
    h: np.ndarray  # (S, 1, H) current state h_t
    P: np.ndarray  # (S, H, H * K) dh_t/dW for W = [W_hh | W_xh | b_h]
    spare: np.ndarray  # buffer the next P is written into
    u: np.ndarray  # (S, 1, K) buffer for u_t = [h_{t-1}; x_t; 1]


class RTRL(OnlineRecurrentAlgorithm):
    name = "rtrl"
    Config = RTRLConfig
    trains = ("rnn",)
    one_sample_at_a_time = True

    @classmethod
    def label(cls, run) -> str:
        every = run.algorithm.update_every
        return "RTRL" + (f", update every {every}" if every != 1 else "")

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize) -> Work:
        """The form ``implementation_for`` picks: forward holds the sensitivity tensor and the one it is
        written into, reverse the sequence's history; its fitted seconds (or its flops at the guard's rate)."""
        net, alg, T = run.network, run.algorithm, data.steps
        n_loss = T if net.loss_at == "all" else min(int(net.loss_last_steps), T)
        schedule = (int(net.hidden_size), data.n_inputs, T, n_loss, int(alg.update_every))
        forward, reverse = form_costs(*schedule)
        if implementation_for(alg.implementation, alg.reset, *schedule) == "reverse":
            form, held = reverse, "RTRL's history of a sequence (T x (H^2+5H+I+1))"
        else:
            form, held = forward, "RTRL's sensitivity tensors (2 x H x H x (H+I+1))"
        return Work(network.forward_ops, {held: form.values}, max(form.seconds, form.flops / FLOPS_PER_S),
                    updates_per_sample=updates_per_sequence(run, T, alg.update_every))

    network: RNN

    def __init__(self, network: RNN, lr: float | Sequence[float], l2: float | Sequence[float] = 0.0,
                 reset: str = "per_sequence", update_every: int = 1, implementation: str = "auto") -> None:
        super().__init__(network, lr, l2, reset, update_every)
        if implementation not in IMPLEMENTATIONS or (implementation == "reverse" and reset != "per_sequence"):
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, and 'reverse' needs "
                             f"reset='per_sequence'; got {implementation!r} with reset={reset!r}")
        self.implementation = implementation
        self.reverse = ReverseAccumulation(network)
        self._forms: dict[int, str] = {}  # by sequence length

    def implementation_for(self, T: int) -> str:
        """The form that runs a sequence of T steps, "forward" or "reverse" (``implementation_for``)."""
        if T not in self._forms:
            net = self.network
            self._forms[T] = implementation_for(self.implementation, self.reset, net.n_hidden, net.n_inputs, T,
                                                len(net.loss_steps(T)), self.update_every)
        return self._forms[T]

    def initial_state(self, steps: int) -> Sensitivity | History:
        if self.implementation_for(steps) == "reverse":
            return self.reverse.initial_state(steps)
        net, xp = self.network, self.network.xp
        S, H, I = net.n_members, net.n_hidden, net.n_inputs
        K = H + I + 1
        dtype = net.W_hh.dtype
        u = xp.zeros((S, 1, K), dtype=dtype)
        u[..., -1] = 1.0
        return Sensitivity(h=xp.zeros((S, 1, H), dtype=dtype), P=xp.zeros((S, H, H * K), dtype=dtype),
                           spare=xp.empty((S, H, H * K), dtype=dtype), u=u)

    def clear_member(self, state: Sensitivity | History, s: int) -> None:
        if type(state) is History:
            return self.reverse.clear_member(state, s)
        state.h[s] = 0.0
        state.P[s] = 0.0

    def step(self, state: Sensitivity | History, x_t, target, mask, weight) -> StepResult:
        if type(state) is History:
            return self.reverse.step(state, x_t, target, mask, weight)
        self.update_sensitivity(state, x_t)
        if not weight:
            return StepResult()
        loss_t, delta_y = step_loss(self.network, state.h, target, mask, weight)
        return StepResult(loss_t, self.error_gradient(state, delta_y))

    def held_back_gradient(self, state: Sensitivity | History) -> dict[str, np.ndarray] | None:
        """The reverse form's gradient of the errors since the last update point (the forward form
        delivers each error at its step)."""
        return self.reverse.window_gradient(state) if type(state) is History else None

    def update_sensitivity(self, state: Sensitivity, x_t: np.ndarray) -> None:
        """h_t = f(z_t) and P_t = D_t (W_hh P_{t-1} + U_t), from h_{t-1} and P_{t-1}, in place."""
        net = self.network
        H = net.n_hidden
        u_t = state.u
        u_t[..., :H] = state.h
        u_t[..., H:-1] = x_t
        z_t, h_t = net.step(state.h, x_t)
        f_prime = activation_derivative(net.activation, z_t, h_t)
        P_t = sensitivity_update(state.P, net.W_hh, u_t, f_prime, out=state.spare)
        state.spare, state.P, state.h = state.P, P_t, h_t

    def error_gradient(self, state: Sensitivity, delta_y: np.ndarray) -> dict[str, np.ndarray]:
        """dE_t/dW = sum_i (W_hy^T delta_y_t)_i P_t[i] for W = [W_hh | W_xh | b_h], and the readout's
        dE_t/dW_hy = delta_y_t h_t^T, dE_t/db_y = delta_y_t; ``delta_y`` (S, 1, O) = dE_t/dz_y at step t."""
        net, xp = self.network, self.network.xp
        S, H, I = net.n_members, net.n_hidden, net.n_inputs
        dE_dW = xp.reshape(xp.matmul(xp.matmul(delta_y, net.W_hy), state.P), (S, H, H + I + 1))
        return {"W_hh": dE_dW[..., :H], "W_xh": dE_dW[..., H : H + I], "b_h": dE_dW[..., H + I],
                "W_hy": delta_y.mT * state.h, "b_y": delta_y[:, 0]}


# --- which form: the auto rule ----------------------------------------------------------------
# Seconds of what the two forms do differently: one least-squares fit of both forms' learn() over
# H = 4..64, T = 8, 28, 64, the loss at the last or every step, updates every 1 or 4 steps (45 problems;
# the rule picks the form measured faster in 44; in the 45th its pick is 1.05x slower), on the 2-core
# development machine, one BLAS thread, float64 (benchmarks/rtrl.py --fit; docs/performance.md,
# "RTRL: forward and reverse"). They decide which form runs, not what it computes.
FORWARD_SECONDS_PER_STEP = 13e-6  # the sensitivity update's calls, beyond what the reverse step stores
FORWARD_SECONDS_PER_LOSS_STEP = 16e-6  # the error gradient's calls, beyond the reverse form's c_t
FORWARD_FLOPS_PER_S = 3.7e10  # the (H x H) @ (H x H K) products
REVERSE_SECONDS_PER_PASS = 28e-6  # one reverse pass's fixed cost
REVERSE_SECONDS_PER_PRODUCT = 0.09e-6  # one (1 x H) @ (H x H) product's call, beyond its arithmetic
REVERSE_FLOPS_PER_S = 1.3e10  # the reverse pass's small products
REVERSE_MAX_VALUES = 2**27  # a history beyond 1 GiB of float64 per member runs forward, unless forward needs more


@dataclass(frozen=True)
class FormCost:
    values: int  # floats a member holds for its gradient (forward: P and its spare; reverse: the history)
    flops: int  # per sequence and member, in the form's gradient
    seconds: float  # per sequence and member, for what the two forms do differently


def form_costs(H: int, I: int, T: int, n_loss_steps: int, update_every: int) -> tuple[FormCost, FormCost]:
    """(forward, reverse) cost of one sequence of T steps from h_0 = 0 whose last ``n_loss_steps``
    steps carry loss (T of them: every step), with update points every ``update_every`` steps."""
    K = H + I + 1
    forward_flops = T * 2 * H * H * H * K + n_loss_steps * 2 * H * H * K
    products, passes = chain_steps(T, n_loss_steps, update_every)
    reverse_flops = T * H * H + products * 2 * H * H + (products + passes) * 2 * H * K
    forward = FormCost(2 * H * H * K, forward_flops, T * FORWARD_SECONDS_PER_STEP + n_loss_steps
                       * FORWARD_SECONDS_PER_LOSS_STEP + forward_flops / FORWARD_FLOPS_PER_S)
    reverse = FormCost(history_values(H, I, T), reverse_flops, passes * REVERSE_SECONDS_PER_PASS + products
                       * REVERSE_SECONDS_PER_PRODUCT + reverse_flops / REVERSE_FLOPS_PER_S)
    return forward, reverse


def implementation_for(implementation: str, reset: str, H: int, I: int, T: int, n_loss_steps: int,
                       update_every: int) -> str:
    """The form of RTRL that runs a sequence of T steps: ``implementation`` unless it is "auto"; then
    "reverse" where ``form_costs`` estimates it faster and its history fits (within
    ``REVERSE_MAX_VALUES`` or forward's own tensors), "forward" elsewhere and for a stream. A function
    of the sizes and the schedule only, never of the members or the machine: a member of an ensemble
    runs the form its config runs alone, and gets the same numbers."""
    if implementation != "auto":
        return implementation
    if reset != "per_sequence":
        return "forward"
    forward, reverse = form_costs(H, I, T, n_loss_steps, update_every)
    fits = reverse.values <= max(forward.values, REVERSE_MAX_VALUES)
    return "reverse" if fits and reverse.seconds < forward.seconds else "forward"
