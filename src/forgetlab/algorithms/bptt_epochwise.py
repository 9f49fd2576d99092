"""Epochwise Back-Propagation Through Time (Williams & Zipser): reset the state at the start of an
epoch (one sequence), run forward through it with the weights fixed, one backward pass over the
whole epoch, one weight update.

    delta_y_t = dE_t/dz_y / |S| at the loss steps t in S, 0 elsewhere   (the network's output_delta)
    backward pass and dE/dtheta: algorithms.recurrent.backward_through_time, plus lambda W for each W
"""

from __future__ import annotations

import numpy as np

from forgetlab.algorithms.base import LearningAlgorithm
from forgetlab.algorithms.recurrent import backward_through_time, single_sequence
from forgetlab.networks.rnn import RNN


class BPTTEpochwise(LearningAlgorithm):
    network: RNN

    def gradient(self, x, y, mask):
        net = self.network
        x, target, mask = single_sequence(x, y, mask)
        fwd = net.forward(x[None], mask[None])
        h, z, a = fwd.h[0], fwd.z[0], fwd.a[0]
        steps = net.loss_steps(len(x))
        delta_y = np.zeros_like(a)
        delta_y[steps] = net.output_delta(a[steps], target, mask) / len(steps)
        grads = backward_through_time(net, x, h, z, delta_y)
        for name in net.weight_names:
            grads[name] += self.l2 * net.params[name]
        data_loss = float(np.mean(net.sample_loss(a[steps], target, mask)))
        return data_loss, grads
