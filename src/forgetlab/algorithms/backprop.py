"""Back-propagation for the MLP, per sample (batch_size 1) or per mini-batch, every member at once.

    dE/dtheta = the MLP's backward pass of the mean data loss over the batch (networks/mlp.py)
    dE/dW^(l) += lambda W^(l)
"""

from __future__ import annotations

from forgetlab.algorithms.base import LearningAlgorithm
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
        net = self.network
        data_loss, grads = net.data_gradient(x, y, mask)
        if self.has_l2:
            for name in net.weight_names:
                grads[name] += self.l2_of[name] * net.params[name]
        return data_loss, grads
