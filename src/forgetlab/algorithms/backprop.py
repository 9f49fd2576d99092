"""Back-propagation for the MLP, per sample (batch_size 1) or per mini-batch.

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
    network: MLP

    def gradient(self, x, y, mask):
        net = self.network
        fwd = net.forward(x, mask)
        a_out = fwd.a[-1]
        batch = x.shape[0]
        delta = net.output_delta(a_out, y, mask) / batch
        grads: dict[str, np.ndarray] = {}
        for l in range(len(net.W) - 1, -1, -1):
            dE_dW = delta.T @ fwd.a[l]
            if self.l2:
                dE_dW += self.l2 * net.W[l]
            grads[f"W{l}"] = dE_dW
            grads[f"b{l}"] = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ net.W[l]) * activation_derivative(net.activation, fwd.z[l - 1], fwd.a[l])
        data_loss = float(net.sample_loss(a_out, y, mask).sum()) / batch
        return data_loss, grads
