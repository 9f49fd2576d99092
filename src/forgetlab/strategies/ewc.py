"""Elastic Weight Consolidation (Kirkpatrick et al. 2017) and online EWC (Schwarz et al. 2018):
after each task k, its diagonal Fisher information F_k at the weights theta*_k the task ended with;
while later tasks train, the quadratic penalty

    separate (Kirkpatrick):  (lambda/2) sum_{k done} sum_i F_k,i (theta_i - theta*_k,i)^2
    online (Schwarz):        (lambda/2) sum_i F~_i (theta_i - theta*_last,i)^2,   F~ <- gamma F~ + F_k

whose gradient lambda sum_k F_k (theta - theta*_k) (resp. lambda F~ (theta - theta*_last)) joins every
update (``penalty.py``), with lambda = ``strategy.strength`` (one per member in an ensemble).

The Fisher is the *empirical* one, over the task's training samples p = 1..N:

    F_k,i = (1/N) sum_p (dE_p/dtheta_i)^2

with E_p the network's own loss of sample p at its true target and output mask (task-IL: the
task's units only), computed with the network's one backward pass per sample
(``Network.data_gradient(per_sample=True)``). E_p is the negative log-likelihood of the output model:
squared error for Gaussian outputs (up to a constant), cross-entropy for the softmax; the Fisher of
that model at the observed labels. For the RNN a sample is a sequence and its gradient full BPTT
from h_0 = 0, whichever algorithm learns (an RTRL or BPTT(h; h') learner's Fisher is that of the
sequence loss, not of its own truncated or online estimate). Avalanche's ``EWCPlugin`` uses the
empirical Fisher too; van de Ven et al. (2022) take the expectation over the model's predicted labels
(their default ``fisher_labels='all'``), and van de Ven's ICLR 2025 blog post ("On the computation of
the Fisher Information in continual learning") compares the two. Their online penalty multiplies F~
by gamma once more; with gamma = 1 (their default) the forms agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forgetlab.constraints import Interval, Options, constrain, fail
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.strategies.penalty import STRENGTH, PenaltyConfig, QuadraticPenalty
from forgetlab.trainer import Trainer

MODES = ("separate", "online")
# Values of the per-sample gradients held at once while the Fisher is summed (per member): the samples
# of a chunk. A fixed count of samples, so that an ensemble sums each member's Fisher in the same order
# as the member alone.
FISHER_CHUNK_VALUES = 2**20
# Python overhead of one update's penalty, beyond its arithmetic (benchmarks/strategies.py, with margin).
SECONDS_PER_UPDATE = 5e-6


@dataclass
class EWCConfig(PenaltyConfig):
    name: str = "ewc"
    strength: float = field(default=100.0, metadata=STRENGTH)  # lambda
    mode: str = field(default="separate", metadata=constrain(Options(*MODES)))
    gamma: float = field(default=1.0, metadata=constrain(Interval(0, 1, closed="both")))  # online: F~'s decay

    def check(self, run) -> None:
        if self.mode == "separate" and self.gamma != 1.0:
            fail("strategy.gamma", self.gamma, "1.0 with strategy.mode='separate' (gamma decays online EWC's Fisher)")


class EWC(QuadraticPenalty):
    name = "ewc"
    Config = EWCConfig

    @classmethod
    def label(cls, run) -> str:
        return "online EWC" if run.strategy.mode == "online" else "EWC"

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize, work: Work) -> Work:
        # the penalty's gradient (4 passes over the parameters) every update; every sample's gradient
        # once per task (3 forward passes), spread over the epochs
        chunk = max(1, FISHER_CHUNK_VALUES // network.params)
        return Work(4 * network.params * work.updates_per_sample + 3 * network.forward_ops / data.epochs,
                    {"EWC's Fisher and anchors (3 x params)": 3 * network.params,
                     "EWC's per-sample gradients": chunk * network.params},
                    seconds_per_sample=SECONDS_PER_UPDATE * work.updates_per_sample)

    def __init__(self, network, rngs, strength=100.0, mode: str = "separate", gamma: float = 1.0) -> None:
        super().__init__(network, rngs, strength)
        self.mode, self.gamma = mode, gamma

    def on_stage_end(self, trainer: Trainer, stage: int) -> None:
        if self.active:
            data = trainer.stages[stage]
            self.consolidate(self.fisher(data.x, data.y, data.mask))

    def consolidate(self, fisher: dict) -> None:
        """A task ended with the current weights theta* and Fisher ``fisher`` (by parameter name,
        (S, *shape)): its penalty joins (separate) or replaces the decayed one (online)."""
        params, xp = self.network.params, self.network.xp
        if self.w is None:
            self.w, self.w_anchor, self.w_anchor2 = ({n: xp.zeros_like(p) for n, p in params.items()} for _ in range(3))
        for n, theta in params.items():
            half_fisher = 0.5 * fisher[n]  # (lambda/2) F = strength * w
            if self.mode == "separate":
                self.w[n] += half_fisher
                self.w_anchor[n] += half_fisher * theta
                self.w_anchor2[n] += half_fisher * theta * theta
            else:
                self.w[n] = self.gamma * self.w[n] + half_fisher
                self.w_anchor[n] = self.w[n] * theta
                self.w_anchor2[n] = self.w_anchor[n] * theta

    def fisher(self, x, y, mask) -> dict:
        """F_i = (1/N) sum_p (dE_p/dtheta_i)^2 over the N samples x (N, ...) with targets y and masks
        ``mask`` (N, O) at the current weights, by parameter name (S, *shape): each member at its own."""
        net, xp, N = self.network, self.network.xp, x.shape[0]
        total = {n: xp.zeros_like(p) for n, p in net.params.items()}
        chunk = max(1, FISHER_CHUNK_VALUES // net.parameter_count)
        for start in range(0, N, chunk):
            rows = slice(start, min(start + chunk, N))
            _, per_sample = net.data_gradient(x[rows], y[rows], mask[rows], per_sample=True)
            for n, g in per_sample.items():
                total[n] += xp.sum(g * g, axis=1)
        return {n: f / N for n, f in total.items()}
