"""Epochwise Back-Propagation Through Time (Williams & Zipser): reset the state at the start of an
epoch (one sequence), run forward through it with the weights fixed, one backward pass over the
whole epoch, one weight update.

    delta_y_t = dE_t/dz_y / |S| at the loss steps t in S, 0 elsewhere   (the network's output_delta)
    backward pass and dE/dtheta: algorithms.recurrent.backward_through_time, plus lambda W for each W
"""

from __future__ import annotations

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.algorithms.recurrent import backward_through_time, single_sequence
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
        net, xp = self.network, self.network.xp
        x, target, mask = single_sequence(x, y, mask)
        fwd = net.forward(x, mask)
        h, z, a = fwd.h[:, 0], fwd.z[:, 0], fwd.a[:, 0]  # the one sequence of each member: (S, T, .)
        steps = net.loss_step_index(x.shape[-2])
        # take, not a[:, steps]: indexing lays the steps out first in memory, and the mean over them
        # would then add them in another order than a lone network does.
        a_steps = xp.take(a, steps, axis=-2)  # (S, |S|, O)
        delta_y = xp.zeros_like(a)
        delta_y[:, steps] = net.output_delta(a_steps, target, mask) / steps.shape[0]
        grads = backward_through_time(net, x[..., 0, :, :], h, z, delta_y)
        for name in net.weight_names:
            grads[name] += self.l2_of[name] * net.params[name]
        data_loss = xp.mean(net.sample_loss(a_steps, target, mask), axis=-1)
        return data_loss, grads
