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
"""

from __future__ import annotations

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
from forgetlab.constraints import AT_LEAST_1, Options, constrain
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.arrays import array_namespace
from forgetlab.networks.functions import activation_derivative
from forgetlab.networks.rnn import RNN


@dataclass
class RTRLConfig(AlgorithmConfig):
    name: str = "rtrl"
    update_every: int = field(default=1, metadata=constrain(AT_LEAST_1))
    reset: str = field(default="per_sequence", metadata=constrain(Options(*RESETS)))


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
        # the sensitivity tensor and the one it is written into; one (H x H) @ (H x H K) product and
        # dE/dW a step
        H, T = run.network.hidden_size, data.steps
        K = H + data.n_inputs + 1
        return Work(network.forward_ops + T * (2 * H * H * H * K + 2 * H * H * K),
                    {"RTRL's sensitivity tensors (2 x H x H x (H+I+1))": 2 * H * H * K},
                    updates_per_sample=updates_per_sequence(run, T, run.algorithm.update_every))

    network: RNN

    def initial_state(self) -> Sensitivity:
        net, xp = self.network, self.network.xp
        S, H, I = net.n_members, net.n_hidden, net.n_inputs
        K = H + I + 1
        dtype = net.W_hh.dtype
        u = xp.zeros((S, 1, K), dtype=dtype)
        u[..., -1] = 1.0
        return Sensitivity(h=xp.zeros((S, 1, H), dtype=dtype), P=xp.zeros((S, H, H * K), dtype=dtype),
                           spare=xp.empty((S, H, H * K), dtype=dtype), u=u)

    def clear_member(self, state: Sensitivity, s: int) -> None:
        state.h[s] = 0.0
        state.P[s] = 0.0

    def step(self, state: Sensitivity, x_t, target, mask, weight) -> StepResult:
        self.update_sensitivity(state, x_t)
        if not weight:
            return StepResult()
        loss_t, delta_y = step_loss(self.network, state.h, target, mask, weight)
        return StepResult(loss_t, self.error_gradient(state, delta_y))

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
