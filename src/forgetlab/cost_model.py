"""The vocabulary in which a network and a learning algorithm declare what a run of them costs: the
sizes of the data (``DataSize``), a network's size (``NetworkCost``) and the work of training on
one sample (``Work``), of an algorithm and of a continual-learning strategy. ``forgetlab.cost`` adds them up and guards a run with the total.

Counts are in values held at once (8 bytes each in float64) and floating-point operations. The time
constants were measured on the 2-vCPU development machine with the trainer's single BLAS thread
(docs/performance.md); expect an estimate within a factor of ~3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BYTES_PER_VALUE = 8  # float64 throughout
FLOPS_PER_S = 1e10  # one BLAS thread: 10-15 GFLOP/s for RTRL's product at H = 32-256
SECONDS_PER_UPDATE = 60e-6  # Python and NumPy call overhead of one MLP update (~26 us measured, with margin)
SECONDS_PER_STEP = 40e-6  # one time step of a recurrent algorithm, beyond its arithmetic


@dataclass(frozen=True)
class DataSize:
    """The sizes of a task sequence that the cost depends on."""

    n_inputs: int  # features of a sample (vectors) or of one step (sequences)
    steps: int  # steps per sequence; 1 for vectors
    n_outputs: int
    train_samples: int  # training samples presented in the whole run (every stage and epoch)
    eval_samples: int  # held-out samples of every task (eval.split) + probe samples: one evaluation's batch
    eval_points: int
    data_values: int  # floats of the data set (inputs of every train and test sample)
    batch_size: int = 1  # training samples per update
    n_stages: int = 1  # training stages: the tasks, or the one joint stage
    epochs: int = 1  # passes over each stage's training samples


@dataclass(frozen=True)
class NetworkCost:
    """What a network of a config costs whatever learns it."""

    params: int  # parameters of one member
    forward_ops: float  # one training sample's forward pass
    memory: dict[str, float] = field(default_factory=dict)  # values held at once, by what holds them
    seconds_per_sample: float = 0.0  # call overhead per training sample, beyond the arithmetic


@dataclass(frozen=True)
class Work:
    """What a learning algorithm (or a continual-learning strategy on top of it) adds: operations per
    training sample, values it holds at once, weight updates per training sample (what a strategy's
    work per update is multiplied by) and call overhead per training sample beyond the network's."""

    ops_per_sample: float
    memory: dict[str, float] = field(default_factory=dict)
    seconds_per_sample: float = 0.0  # time it measured for itself, beyond ops_per_sample at FLOPS_PER_S
    updates_per_sample: float = 1.0
