"""Delayed recall: a synthetic sequence task that can only be solved by memory through time.

Each sample is a sequence of T = delay + 2 steps of ``2 n_symbols + 1`` features:

- step 0, the cue: a one-hot symbol s in 0..n_symbols-1 on the first n_symbols channels;
- steps 1..delay, the delay: Gaussian noise (SD ``noise``) on n_symbols distractor channels of
  their own, the cue channels silent;
- step delay + 1, the recall: a flag on the last channel; the target is s (the label).

Only step 0 says which symbol it was, and the loss is at the recall step (``network.loss_at=last``),
delay + 1 steps later, or at the last k steps (``network.loss_last_steps=k``, k <= delay + 1: the
credit-assignment study uses 2, so that RTRL updates twice per sequence and epochwise BPTT once).
Never put the loss at every step (``loss_at=all``): the target is then present from the cue on, and
each step's loss teaches the state to hold the cue for one more step, which needs no credit through
time (in the study's first design BPTT(1; 1) learned the task that way).

Split into tasks as split digits are: with 10 symbols and 5 tasks, task k recalls symbol 2k or
2k + 1, so the class / task / domain scenarios mean what they mean there (domain: which of its
task's two symbols was shown).

Why truncation must matter: BPTT(h; h') back-propagates the recall step's error through the last h
steps only, holding the state that enters them fixed. With h <= delay + 1 the cue step lies outside
every back-propagated stretch: no gradient path leads from the recall error back to the cue, so the
cue's input weights are never trained and nothing is learnt about carrying the cue through the
delay steps before the stretch. What such a learner can use is the trace of the cue that the
untrained dynamics carry through those delay + 1 - h steps, while the distractor noise, driven into
the state through untrained input weights, washes it out. With h = 1 the trace has crossed all
``delay`` noisy steps. Epochwise BPTT (and RTRL) differentiate through the whole sequence and learn
to hold the cue and to ignore the distractors. tests/test_delayed_recall.py checks the contrast:
epochwise BPTT learns the task, BPTT(1; 1) stays at chance.

Measured (joint training, 5 epochs, 32 tanh units, defaults otherwise, task scenario, seeds 0 and 1,
mean test accuracy over the 5 tasks; chance 0.5): epochwise BPTT 1.00 and 1.00; BPTT(h; 1) with h = 1:
0.49, 0.48; h = 5: 0.51, 0.52; h = 10: 0.67, 0.57; h = 11 = delay + 1 (the stretch starts right
after the cue, whose random code it learns to hold): 1.00, 0.81. The truncation effect is graded
near h = delay, so a study should compare h well below the delay with epochwise BPTT. The class
scenario (one of 10 symbols) is not learnt at delay 10 within 5 epochs even jointly by epochwise BPTT
(delay 5 is: 0.9 and 1.0 for seeds 0 and 1).

The samples are drawn with ``data_seed`` (its own stream) and split train/test stratified by symbol
with ``data_seed``, as the other sequences are. The task exists only as sequences
(``task_sequence.input=sequence``): read flat, an MLP would see the cue directly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from forgetlab.constraints import AT_LEAST_0, Interval, Options, constrain, fail
from forgetlab.data import builders
from forgetlab.data.declaration import TaskSequenceConfig, task_sequence
from forgetlab.data.tasks import INPUTS, TaskSequence


@dataclass
class DelayedRecallConfig(TaskSequenceConfig):
    name: str = "delayed_recall"
    input: str = field(default="sequence", metadata=constrain(Options(*INPUTS)))
    delay: int = field(default=10, metadata=constrain(AT_LEAST_0))
    n_symbols: int = field(default=10, metadata=constrain(Interval(2, None, closed="left")))
    noise: float = field(default=1.0, metadata=constrain(AT_LEAST_0))
    samples_per_symbol: int = field(default=200, metadata=constrain(Interval(2, None, closed="left")))

    def check(self, run) -> None:
        super().check(run)
        if self.n_tasks > self.n_symbols:
            fail("task_sequence.n_tasks", self.n_tasks, f"an int in [1, task_sequence.n_symbols={self.n_symbols}]")


def sequence_shape(delay: int, n_symbols: int) -> tuple[int, int]:
    """(steps, features) of one sample."""
    return delay + 2, 2 * n_symbols + 1


@functools.lru_cache(maxsize=8)
def load_split(
    delay: int, n_symbols: int, noise: float, samples_per_symbol: int, test_size: float, data_seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (N, T, F), x_test, y_train, y_test) with T, F = sequence_shape(delay, n_symbols); read-only."""
    rng = np.random.default_rng([data_seed, 2])  # a stream of its own, apart from the split's
    y = np.repeat(np.arange(n_symbols, dtype=np.int64), samples_per_symbol)
    steps, features = sequence_shape(delay, n_symbols)
    x = np.zeros((len(y), steps, features))
    x[np.arange(len(y)), 0, y] = 1.0
    x[:, 1:-1, n_symbols : 2 * n_symbols] = noise * rng.standard_normal((len(y), delay, n_symbols))
    x[:, -1, -1] = 1.0
    return builders.stratified_split(x, y, test_size, data_seed)


@task_sequence("delayed_recall", sequence_shape=None, Config=DelayedRecallConfig)
def delayed_recall(
    n_tasks: int = 5,
    delay: int = 10,
    n_symbols: int = 10,
    noise: float = 1.0,
    samples_per_symbol: int = 200,
    test_size: float = 0.25,
    data_seed: int = 0,
) -> TaskSequence:
    """The symbols cut into ``n_tasks`` tasks of consecutive symbols: {0,1}, {2,3}, ... for 10 symbols, 5 tasks."""
    if not 1 <= n_tasks <= n_symbols:
        raise ValueError(f"delayed_recall needs 1 <= n_tasks <= n_symbols; got n_tasks={n_tasks}, "
                         f"n_symbols={n_symbols}")
    data = load_split(delay, n_symbols, noise, samples_per_symbol, test_size, data_seed)
    return builders.split_classes("delayed_recall", data, n_tasks, prefix="recall")
