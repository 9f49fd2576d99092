"""Experience replay (van de Ven et al. 2022's "ER"; Chaudhry et al. 2019, "On tiny episodic memories
in continual learning"): stored samples of earlier tasks learned again, interleaved with the current
task's stream.

After each batch of the current task the algorithm learns, in batches of the same size, as many
replayed samples as keep their count at ``ratio`` times the current task's samples learned so far in
this task (ratio 1: one replayed sample after each sample of per-sample backprop, one replayed batch
after each batch); each replayed sample is drawn uniformly at random from the member's episodic memory
(``memory.py``), which holds only samples of earlier tasks. A replayed sample goes through the same
``algorithm.learn`` as the stream's: for the RNN learners a whole sequence from h_0 = 0, with the
algorithm's own updates (RTRL and BPTT(h; h') update in mid-sequence as they do on the stream).

Replayed samples are weight updates (``updates``) but not samples seen, not presentations in the
sample probe's or the update probe's bookkeeping and not in ``loss/train``: every strategy is
evaluated at the same points of the same task stream. The memory's contents are recorded
(``contract.ARTIFACT_STRATEGY_MEMORY``), so a replayed probe sample can be told apart.

Interleaving the per-sample stream with replay, rather than mixing both into larger mini-batches as
van de Ven's code does, keeps the algorithm's update what it is (one sample, one sequence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from forgetlab.constraints import POSITIVE, constrain, fail
from forgetlab.cost_model import DataSize, NetworkCost, Work
from forgetlab.strategies.base import RECORD, Strategy
from forgetlab.strategies.memory import EpisodicMemory, MemoryConfig, memory_values
from forgetlab.trainer import Trainer, TrainingResult

# Python and indexing overhead of one replayed batch beyond the algorithm's own update (gathering
# its samples from the memory): measured in benchmarks/strategies.py, with margin.
SECONDS_PER_REPLAY = 10e-6


@dataclass
class ReplayConfig(MemoryConfig):
    name: str = "replay"
    ratio: float = field(default=1.0, metadata=constrain(POSITIVE))  # replayed samples per sample of the stream

    def check(self, run) -> None:
        if getattr(run.algorithm, "reset", None) == "never":
            fail("strategy.name", self.name, "a strategy other than 'replay' with algorithm.reset='never' (a replayed "
                 "sequence is learned from h_0 = 0, which would cut the stream's carried state)")


class Replay(Strategy):
    name = "replay"
    Config = ReplayConfig

    @classmethod
    def label(cls, run) -> str:
        return "replay"

    @classmethod
    def cost(cls, run, network: NetworkCost, data: DataSize, work: Work) -> Work:
        # ratio replayed samples per sample, from the second stage on (the memory is empty before)
        replayed = run.strategy.ratio * (data.n_stages - 1) / data.n_stages
        return Work(replayed * work.ops_per_sample, memory_values(run, data),
                    seconds_per_sample=replayed * (network.seconds_per_sample + work.seconds_per_sample
                                                   + SECONDS_PER_REPLAY / data.batch_size))

    def __init__(self, network, rngs, memory_size: int = 100, selection: str = "class_balanced",
                 ratio: float = 1.0) -> None:
        super().__init__(network, rngs)
        self.memory = EpisodicMemory(memory_size, selection, rngs)
        self.ratio = ratio
        self._seen = self._replayed = 0  # the current stage's samples learned, and replayed samples since

    def on_stage_start(self, trainer: Trainer, stage: int) -> None:
        self._seen = self._replayed = 0

    def on_batch_end(self, trainer: Trainer, stage: int, samples) -> None:
        self._seen += samples.shape[1]
        self.memory.presented(samples, trainer.stages[stage].n)

    def replay(self, trainer: Trainer, stage: int):
        if self.memory.size == 0:
            return
        batch = trainer.batch_size
        # round(): ratio * seen in floating point may land a hair below an integer it equals
        due = math.floor(round(self.ratio * self._seen, 9)) - self._replayed
        for _ in range(due // batch):
            self._replayed += batch
            yield self.memory.draw(batch)

    def on_stage_end(self, trainer: Trainer, stage: int) -> None:
        self.memory.add_stage(trainer, stage)

    def on_train_end(self, trainer: Trainer, results: list[TrainingResult]) -> None:
        super().on_train_end(trainer, results)
        for m, result in enumerate(results):
            result.records[RECORD] = self.memory.arrays(m)
