"""Averaged Gradient Episodic Memory (Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, "Efficient lifelong
learning with A-GEM"): an update must not increase the loss on the episodic memory to first order.

At every update, with g the gradient about to be applied (flattened over every parameter, member by
member) and g_ref the mean gradient of the data loss over ``sample_size`` samples drawn from the
member's memory (``memory.py``; all of it when it holds fewer) at the current weights:

    g <- g - (g . g_ref / g_ref . g_ref) g_ref    if g . g_ref < 0,   else g unchanged

(the projection of the paper's eq. 11; Avalanche's ``AGEMPlugin`` and van de Ven's ``use_replay=
'inequality'`` do the same). g_ref comes from the network's own backward pass
(``Network.data_gradient``) on the memory batch.

What this means for the online learners: for the RNN, g_ref is full BPTT of whole memory sequences
from h_0 = 0, recomputed at every update. RTRL and BPTT(h; h') update in mid-sequence, each update
carrying the partial gradient of a few steps (carried forward, or truncated to h steps), and each is
projected against that full-sequence memory gradient: A-GEM's constraint, stated with a reference the
learner itself does not compute online (an RTRL learner never runs BPTT otherwise), at the cost of a
BPTT pass over ``sample_size`` sequences per update (T per sequence for RTRL with a loss at every step).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forgetlab.arrays import to_numpy
from forgetlab.constraints import AT_LEAST_1, constrain
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.strategies.base import RECORD, Strategy
from forgetlab.strategies.memory import EpisodicMemory, MemoryConfig, memory_values
from forgetlab.trainer import Trainer, TrainingResult

# Python overhead of one update's draw, projection test and projection (benchmarks/strategies.py, with margin).
SECONDS_PER_UPDATE = 60e-6


@dataclass
class AGEMConfig(MemoryConfig):
    name: str = "agem"
    sample_size: int = field(default=64, metadata=constrain(AT_LEAST_1))  # memory samples per reference gradient


class AGEM(Strategy):
    name = "agem"
    Config = AGEMConfig

    @classmethod
    def label(cls, run) -> str:
        return "A-GEM"

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize, work: Work) -> Work:
        # every update: a forward and backward pass of the memory batch (3 forward passes a sample) and
        # the dot products and projection (~6 passes over the parameters)
        k = run.strategy.sample_size
        per_update = 3 * k * network.forward_ops + 6 * network.params
        held = {**memory_values(run, data), "A-GEM's reference gradient": network.params,
                "A-GEM's memory batch (inputs and states)": 2 * k * data.steps * (data.n_inputs + data.n_outputs)}
        # the memory batch's backward pass is one call of the network, whatever its size
        updates = work.updates_per_sample * (data.n_stages - 1) / data.n_stages  # the memory is empty in the first stage
        return Work(per_update * updates, held, seconds_per_sample=(SECONDS_PER_UPDATE + network.seconds_per_sample) * updates)

    def __init__(self, network, rngs, memory_size: int = 100, selection: str = "class_balanced",
                 sample_size: int = 64) -> None:
        super().__init__(network, rngs)
        self.memory = EpisodicMemory(memory_size, selection, rngs)
        self.sample_size = sample_size
        self.projected = np.zeros(len(rngs), dtype=np.int64)  # updates at which each member's gradient was projected

    def on_batch_end(self, trainer: Trainer, stage: int, samples) -> None:
        self.memory.presented(samples, trainer.stages[stage].n)

    def on_stage_end(self, trainer: Trainer, stage: int) -> None:
        self.memory.add_stage(trainer, stage)

    def adjust(self, grads: dict[str, np.ndarray]) -> None:
        if self.memory.size == 0:
            return
        net, xp, S = self.network, self.network.xp, self.network.n_members
        _, reference = net.data_gradient(*self.memory.sample(self.sample_size))
        dot = xp.zeros(S, dtype=self.network.params[next(iter(grads))].dtype)
        norm2 = xp.zeros_like(dot)
        for n, g in grads.items():
            dot = dot + xp.sum(xp.reshape(g * reference[n], (S, -1)), axis=-1)
            norm2 = norm2 + xp.sum(xp.reshape(reference[n] * reference[n], (S, -1)), axis=-1)
        conflict = dot < 0.0
        if not bool(xp.any(conflict)):
            return
        self.projected += to_numpy(conflict)
        coefficient = xp.where(conflict, dot / xp.where(conflict, norm2, 1.0), 0.0)
        for n, g in grads.items():
            shape = (S, *([1] * (g.ndim - 1)))
            grads[n] = xp.where(xp.reshape(conflict, shape), g - xp.reshape(coefficient, shape) * reference[n], g)

    def on_train_end(self, trainer: Trainer, results: list[TrainingResult]) -> None:
        super().on_train_end(trainer, results)
        for m, result in enumerate(results):
            result.records[RECORD] = {**self.memory.arrays(m), "projected_updates": self.projected[m],
                                      "updates": np.int64(self.algorithm.updates)}
