"""Epochwise Back-Propagation Through Time (Williams & Zipser): reset the state at the start of an
epoch (one sequence), run forward through it with the weights fixed, one backward pass over the
whole epoch, one weight update.

    delta_y_t = dE_t/dz_y / |S| at the loss steps t in S, 0 elsewhere   (the network's output_delta)
    dE/dtheta = the RNN's backward pass from h_0 = 0 over the sequence (networks/rnn.py), + lambda W for each W
"""

from __future__ import annotations

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.algorithms.recurrent import single_sequence
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.networks.rnn import RNN


class BPTTEpochwise(LearningAlgorithm):
    name = "bptt_epochwise"
    trains = ("rnn",)
    one_sample_at_a_time = True

    @classmethod
    def label(cls, run) -> str:
        return "epochwise BPTT"

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize) -> Work:
        # the whole sequence forward, then back; the history of every step is held
        return Work(3 * network.forward_ops, {"the BPTT history": 4 * data.steps * run.network.hidden_size})

    network: RNN

    def gradient(self, x, y, mask):
        net = self.network
        data_loss, grads = net.data_gradient(*single_sequence(x, y, mask))
        for name in net.weight_names:
            grads[name] += self.l2_of[name] * net.params[name]
        return data_loss, grads
