"""Memory and time a training run needs, estimated from its config before anything big is built.

``check_cost(cfg)`` runs before any MLflow run is created (single runs, and every job of a sweep
before the first starts): a run that cannot fit in the memory available now is refused with a
ConfigError naming the network size; so is one estimated to take longer than ``guard.max_hours``
(raise it to go on: a run far over the limit is nearly always a mistyped size, and a refusal costs
a re-typed command where a started run costs hours), and one whose ``trainer.batch_size`` exceeds
a training stage's samples. ``estimate`` is a pure function of the config and the data's sizes.

The network, the algorithm and the continual-learning strategy declare their own costs
(``Network.cost``, ``LearningAlgorithm.cost``, ``Strategy.cost``, in the vocabulary of
``forgetlab.cost_model``: a strategy's per-update work times the algorithm's updates per sample, a
replayed sample's work, a memory); this module adds what every run holds:

- the weights, their gradient and a pending/temporary copy (3 P values for P parameters);
- the data set, about three times (tasks, stages, the per-epoch shuffled copy);
- the evaluations: one forward pass of the evaluation batch (held-out + probe samples) per point.

RTRL declares the form ``algorithms.rtrl.implementation_for`` picks for the config: forward holds the
sensitivity dh/dW, an H x H x (H + I + 1) tensor, and a second one the next step is written into
(O(H^3) memory, O(H^4) operations per step); reverse holds the history of a sequence,
T (H^2 + 5 H + I + 1) values, and does O(t H (H + I)) operations per update.

Time = operations / ``FLOPS_PER_S`` + the network's call overhead per sample, plus the evaluations.
RTRL at H = 256 took 0.76 s a step; estimated 0.89 s (docs/performance.md). Expect the estimate within
a factor of ~3.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from forgetlab.algorithms import ALGORITHMS
from forgetlab.config import Config
from forgetlab.constraints import ConfigError, fail
from forgetlab.cost_model import BYTES_PER_VALUE, FLOPS_PER_S, DataSize
from forgetlab.data import TASK_SEQUENCES, Scenario, build_task_sequence
from forgetlab.networks import NETWORKS
from forgetlab.strategies import STRATEGIES


@dataclass(frozen=True)
class Cost:
    memory_bytes: float
    seconds: float
    largest_term: str  # what needs the most memory, in words
    artifact_bytes: float = 0.0  # an upper bound on the run's artifacts on disk (``artifact_bytes``)


# The run's figures, tables, config and code diff: ~80 KiB for the default run; a generous bound.
FILES_BYTES = 1 << 20


@dataclass(frozen=True)
class SequenceSize:
    shape: tuple[int, ...]  # of one sample
    n_train: tuple[int, ...]  # per task
    n_held_out: tuple[int, ...]  # per task, of the split the evaluations score (eval.split)
    n_outputs: int
    single_pass: bool


@functools.lru_cache(maxsize=64)
def sequence_size(task_sequence_json: str, split: str) -> SequenceSize:
    """Sizes of the task sequence with these ``task_sequence`` settings (as JSON), its evaluations
    scoring the held-out ``split``, built once per process: the jobs of a sweep mostly share one, and
    rotating the digits takes ~0.3 s."""
    values = json.loads(task_sequence_json)
    ts = TASK_SEQUENCES[values["name"]].Config(**values)
    sequence = build_task_sequence(ts)
    return SequenceSize(sequence.input_shape, tuple(t.n_train for t in sequence.tasks),
                        tuple(len(t.held_out(split)[1]) for t in sequence.tasks), Scenario(ts.scenario, sequence).n_outputs,
                        sequence.single_pass)


def data_size(cfg: Config) -> DataSize:
    """Sizes of ``cfg``'s task sequence, epochs and evaluation schedule."""
    ts = cfg.task_sequence
    seq = sequence_size(json.dumps(asdict(ts), sort_keys=True), cfg.eval.split)
    steps, n_inputs = (seq.shape[0], seq.shape[1]) if len(seq.shape) == 2 else (1, seq.shape[0])
    epochs = 1 if seq.single_pass else cfg.trainer.epochs_per_task
    n_train, n_held_out = sum(seq.n_train), sum(seq.n_held_out)
    n_probe = probe_size(seq.n_train, cfg.eval.probe_per_task)
    stages = 1 if ts.joint else len(seq.n_train)
    every = cfg.eval.every_samples
    train_samples = n_train * epochs
    return DataSize(
        n_inputs=n_inputs, steps=steps, n_outputs=seq.n_outputs, train_samples=train_samples,
        eval_samples=n_held_out + n_probe, eval_points=1 + stages + (train_samples // every if every else 0),
        data_values=(n_train + n_held_out) * steps * n_inputs, batch_size=int(cfg.trainer.batch_size),
        n_stages=stages, epochs=epochs,
    )


def estimate(cfg: Config, data: DataSize) -> Cost:
    """Peak memory (bytes) and training time (seconds) of ``cfg`` on data of size ``data``."""
    network = NETWORKS[cfg.network.name].cost(cfg.network, data)
    work = ALGORITHMS[cfg.algorithm.name].cost(cfg, network, data)
    strategy = STRATEGIES[cfg.strategy.name].cost(cfg, network, data, work)
    terms = {**network.memory, **work.memory, **strategy.memory,  # values held at once, by what holds them
             "the weights, their gradient and a copy": 3 * network.params, "the data set": 3 * data.data_values}
    ops = work.ops_per_sample + strategy.ops_per_sample
    overhead = network.seconds_per_sample + work.seconds_per_sample + strategy.seconds_per_sample
    seconds = data.train_samples * (ops / FLOPS_PER_S + overhead)
    seconds += data.eval_points * data.eval_samples * network.forward_ops / FLOPS_PER_S
    largest = max(terms, key=terms.get)
    return Cost(BYTES_PER_VALUE * sum(terms.values()), seconds, largest, artifact_bytes(cfg, data))


def probe_size(n_train: tuple[int, ...], per_task) -> int:
    """Samples a probe of ``per_task`` samples of every task holds (``"all"``: every sample)."""
    return sum(n if per_task == "all" else min(int(per_task), n) for n in n_train)


def artifact_bytes(cfg: Config, data: DataSize) -> float:
    """An upper bound on the bytes of the run's artifacts (docs/tracking.md, "Artifacts"): their
    arrays uncompressed (the sample probe's booleans and float64 losses at every evaluation point,
    the task curve, and with ``eval.probe_every`` the update probe's rows at the most updates the
    run can make), plus ``FILES_BYTES``."""
    seq = sequence_size(json.dumps(asdict(cfg.task_sequence), sort_keys=True), cfg.eval.split)
    tasks, points = len(seq.n_train), data.eval_points
    total = points * probe_size(seq.n_train, cfg.eval.probe_per_task) * (1 + 8) + points * tasks * 7 * 8
    if cfg.eval.probe_every:
        rows = data.train_samples * data.steps / max(1, data.batch_size) / cfg.eval.probe_every + 1
        probed = probe_size(seq.n_train, cfg.eval.update_probe_per_task)
        total += rows * probed * (1 + 4)  # correct (bool), loss (float32)
        if cfg.eval.interference:  # predicted and measured (float32), step norms, cosines to every task
            total += rows * (probed * 8 + (tasks + 2) * 8)
    return total + FILES_BYTES


def available_memory() -> int | None:
    """Bytes this process can still allocate: the system's MemAvailable, lowered by a cgroup limit
    (a container or a SLURM job); None when neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def size_key(cfg: Config) -> str:
    """The config key that sets the network's size, as its class declares it."""
    return f"network.{NETWORKS[cfg.network.name].size_key}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    return f"{s / 3600:.3g} h" if s >= 3600 else f"{s / 60:.3g} min" if s >= 60 else f"{s:.2g} s"


def check_cost(cfg: Config, *, available: int | None = None, members: int = 1) -> Cost:
    """Refuse (ConfigError) a run whose estimated memory exceeds what is available now, whose estimated
    time exceeds ``guard.max_hours``, or whose batch exceeds a training stage (``check_batch_size``).
    ``available`` defaults to ``available_memory()``; ``members``: the config trains as one of that
    many members of an ensemble, which hold their arrays side by side. Returns the estimate."""
    check_batch_size(cfg)
    one = estimate(cfg, data_size(cfg))
    cost = Cost(memory_bytes=one.memory_bytes * members, seconds=one.seconds, largest_term=one.largest_term,
                artifact_bytes=one.artifact_bytes * members)
    available = available_memory() if available is None else available
    if available is not None and cost.memory_bytes > available:
        key = size_key(cfg)
        value = getattr(cfg.network, key.split(".", 1)[1])
        raise ConfigError(
            f"The '{key}' parameter must give a network that fits in memory: with algorithm.name="
            f"{cfg.algorithm.name!r}{f' and {members} members' if members > 1 else ''} it needs about "
            f"{human_bytes(cost.memory_bytes)} (mostly {cost.largest_term}), "
            f"more than the {human_bytes(available)} available. Got {value!r} instead."
        )
    if cost.seconds > cfg.guard.max_hours * 3600:
        hours = cost.seconds / 3600
        raise ConfigError(
            f"This run is estimated to train for about {human_seconds(cost.seconds)} ({size_key(cfg)}="
            f"{getattr(cfg.network, size_key(cfg).split('.', 1)[1])}, algorithm.name={cfg.algorithm.name!r}), longer "
            f"than guard.max_hours={cfg.guard.max_hours:g}. To run it anyway, raise the limit (e.g. "
            f"guard.max_hours={math.ceil(hours * 3):g}: the estimate may be off by a factor of 3)."
        )
    return cost


def check_batch_size(cfg: Config) -> None:
    """Refuse (ConfigError) a ``trainer.batch_size`` larger than the training samples of a stage (a
    task, or the joint stage): every batch would be the whole stage, one update per epoch, while the
    run records the batch size it was given."""
    seq = sequence_size(json.dumps(asdict(cfg.task_sequence), sort_keys=True), cfg.eval.split)
    stages = (sum(seq.n_train),) if cfg.task_sequence.joint else seq.n_train
    if cfg.trainer.batch_size > min(stages):
        fail("trainer.batch_size", cfg.trainer.batch_size,
             f"at most {min(stages)}, the training samples of the smallest training stage of "
             f"{cfg.task_sequence.name!r} (a larger batch would be the whole stage)")
