"""Back-propagation for the MLP, per sample (batch_size 1) or per mini-batch, every member at once.

    delta^(L) = dE/dz^(L)                                   (the network's output_delta)
    delta^(l) = (W^(l+1)^T delta^(l+1)) * f'(z^(l))
    dE/dW^(l) = delta^(l) a^(l-1)^T + lambda W^(l)          (mean over the batch for the first term)
    dE/db^(l) = delta^(l)
"""

from __future__ import annotations

import numpy as np

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.networks.functions import activation_derivative
from forgetlab.networks.mlp import MLP


class Backprop(LearningAlgorithm):
    name = "backprop"
    trains = ("mlp",)

    @classmethod
    def label(cls, run) -> str:
        batch = run.trainer.batch_size
        return "backprop (MLP)" + (f", batch {batch}" if batch != 1 else "")

    network: MLP

    def gradient(self, x, y, mask):
        net, xp = self.network, self.network.xp
        fwd = net.forward(x, mask)
        a_out = fwd.a[-1]
        batch = x.shape[-2]
        delta = net.output_delta(a_out, y, mask) / batch  # (S, B, n_out)
        grads: dict[str, np.ndarray] = {}
        for l in range(len(net.W) - 1, -1, -1):
            # One sample: the outer product, elementwise (a GEMM with an inner dimension of 1 computes
            # the same products, one BLAS call per member with its packing overhead).
            dE_dW = delta.mT * fwd.a[l] if batch == 1 else xp.matmul(delta.mT, fwd.a[l])
            if self.has_l2:
                dE_dW += self.l2_of[f"W{l}"] * net.W[l]
            grads[f"W{l}"] = dE_dW
            grads[f"b{l}"] = xp.sum(delta, axis=-2)
            if l > 0:
                delta = xp.matmul(delta, net.W[l]) * activation_derivative(net.activation, fwd.z[l - 1], fwd.a[l])
        data_loss = xp.sum(net.sample_loss(a_out, y, mask), axis=-1) / batch
        return data_loss, grads
