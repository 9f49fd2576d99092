"""Memory and time a training run needs, estimated from its config before anything big is built.

``check_cost(cfg)`` runs before any MLflow run is created (single runs, and every job of a sweep
before the first starts): a run that cannot fit in the memory available now is refused with a
ConfigError naming the network size; one estimated to take longer than ``guard.max_hours`` gets a
warning and goes on. ``estimate`` is a pure function of the config and the data's sizes.

What is counted (float64, 8 bytes a value), for P parameters, H hidden units, I inputs per step,
O outputs, T steps per sequence (1 for vectors), N_eval test + probe samples:

- every algorithm: the weights, their gradient and a pending/temporary copy (3 P); the evaluation
  batch's forward pass (MLP: N_eval x every layer's width, twice; RNN: N_eval x (T + 1) x H, twice);
  the data set, about three times (tasks, stages, the per-epoch shuffled copy);
- RTRL, in the form ``algorithms.rtrl.implementation_for`` picks for the config (``form_costs``):
  forward, the sensitivity dh/dW for W = [W_hh | W_xh | b_h], an H x H x (H + I + 1) tensor, and a
  second one the next step is written into: O(H^3) memory and O(H^4) operations per step
  (one (H x H) @ (H x H (H + I + 1)) product); reverse, the history of a sequence, T (H^2 + 5 H + I + 1)
  values, and O(t H (H + I)) operations per update, t the steps back to the sequence's start;
- per training sample: backprop ~3 forward passes; epochwise BPTT ~3 forward passes over T steps;
  truncated BPTT(h; h') one forward pass plus a backward pass through h steps every h' steps.

Time = operations / ``FLOPS_PER_S`` + a fixed cost per update and per time step (Python and NumPy
call overhead, which dominates small networks), plus the evaluations. The constants were measured
on the 2-vCPU development machine with the trainer's single BLAS thread: 10-15 GFLOP/s for RTRL's
product at H = 32-256 (RTRL at H = 256 took 0.76 s a step; estimated 0.89 s), ~26 us per backprop
update of the default MLP (docs/performance.md). Expect the estimate within a factor of ~3.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from forgetlab.algorithms.rtrl import form_costs, implementation_for
from forgetlab.config import ConfigError
from forgetlab.data import Scenario, build_task_sequence

BYTES_PER_VALUE = 8  # float64 throughout
FLOPS_PER_S = 1e10  # one BLAS thread
SECONDS_PER_UPDATE = 60e-6
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


@dataclass(frozen=True)
class Cost:
    memory_bytes: float
    seconds: float
    largest_term: str  # what needs the most memory, in words


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
    ts = OmegaConf.create(json.loads(task_sequence_json))
    sequence = build_task_sequence(ts)
    return SequenceSize(sequence.input_shape, tuple(t.n_train for t in sequence.tasks),
                        tuple(len(t.held_out(split)[1]) for t in sequence.tasks), Scenario(ts.scenario, sequence).n_outputs,
                        sequence.single_pass)


def data_size(cfg: DictConfig) -> DataSize:
    """Sizes of ``cfg``'s task sequence, epochs and evaluation schedule."""
    ts = cfg.task_sequence
    seq = sequence_size(json.dumps(OmegaConf.to_container(ts, resolve=True), sort_keys=True), cfg.eval.split)
    steps, n_inputs = (seq.shape[0], seq.shape[1]) if len(seq.shape) == 2 else (1, seq.shape[0])
    epochs = 1 if seq.single_pass else cfg.trainer.epochs_per_task
    n_train, n_held_out = sum(seq.n_train), sum(seq.n_held_out)
    per_task = cfg.eval.probe_per_task
    n_probe = sum(n if per_task == "all" else min(int(per_task), n) for n in seq.n_train)
    stages = 1 if ts.joint else len(seq.n_train)
    every = cfg.eval.every_samples
    train_samples = n_train * epochs
    return DataSize(
        n_inputs=n_inputs, steps=steps, n_outputs=seq.n_outputs, train_samples=train_samples,
        eval_samples=n_held_out + n_probe, eval_points=1 + stages + (train_samples // every if every else 0),
        data_values=(n_train + n_held_out) * steps * n_inputs,
    )


def estimate(cfg: DictConfig, data: DataSize) -> Cost:
    """Peak memory (bytes) and training time (seconds) of ``cfg`` on data of size ``data``."""
    net, alg = cfg.network, cfg.algorithm
    I, T, O, N = data.n_inputs, data.steps, data.n_outputs, data.eval_samples
    terms: dict[str, float] = {}  # values held at once, by what holds them
    if net.name == "rnn":
        H = int(net.hidden_size)
        params = H * I + H * H + H + O * H + O
        forward_ops = 2 * T * (H * (H + I) + O * H)  # one sequence (outputs at every step: an upper bound)
        terms["the evaluation's forward pass"] = N * (T + 1) * H * 2 + N * T * O
        step_ops = 2 * H * (H + I)
        overhead = T * SECONDS_PER_STEP
        if alg.name == "rtrl":
            n_loss = T if net.loss_at == "all" else min(int(net.get("loss_last_steps", 1)), T)
            schedule = (H, I, T, n_loss, int(alg.update_every))
            forward, reverse = form_costs(*schedule)
            if implementation_for(alg.implementation, alg.reset, *schedule) == "reverse":
                cost, terms["RTRL's history of a sequence (T x (H^2+5H+I+1))"] = reverse, reverse.values
            else:
                cost, terms["RTRL's sensitivity tensors (2 x H x H x (H+I+1))"] = forward, forward.values
            train_ops = forward_ops
            # the form's fitted seconds (measured with everything in cache) or its flops at the guard's rate
            overhead += max(cost.seconds, cost.flops / FLOPS_PER_S)
        elif alg.name == "bptt_truncated":
            h, h_prime = int(alg.h), int(alg.h_prime)
            train_ops = forward_ops + math.ceil(T / h_prime) * min(h, T) * 2 * step_ops
            terms["the BPTT history"] = 4 * h * H
        else:  # epochwise BPTT: the whole sequence forward, then back
            train_ops = 3 * forward_ops
            terms["the BPTT history"] = 4 * T * H
    else:
        sizes = [I * T, *(int(s) for s in net.hidden_sizes), O]
        weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        params = weights + sum(sizes[1:])
        forward_ops = 2 * weights
        terms["the evaluation's forward pass"] = 2 * N * sum(sizes[1:])
        terms["the batch's forward pass"] = 4 * int(cfg.trainer.batch_size) * sum(sizes[1:])
        train_ops = 3 * forward_ops
        overhead = SECONDS_PER_UPDATE / int(cfg.trainer.batch_size)
    terms["the weights, their gradient and a copy"] = 3 * params
    terms["the data set"] = 3 * data.data_values
    seconds = data.train_samples * (train_ops / FLOPS_PER_S + overhead)
    seconds += data.eval_points * N * forward_ops / FLOPS_PER_S
    largest = max(terms, key=terms.get)
    return Cost(BYTES_PER_VALUE * sum(terms.values()), seconds, largest)


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


def size_key(cfg: DictConfig) -> str:
    return "network.hidden_size" if cfg.network.name == "rnn" else "network.hidden_sizes"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    return f"{s / 3600:.3g} h" if s >= 3600 else f"{s / 60:.3g} min" if s >= 60 else f"{s:.2g} s"


def check_cost(cfg: DictConfig, *, available: int | None = None, label: str = "", members: int = 1) -> Cost:
    """Refuse (ConfigError) a run whose estimated memory exceeds what is available now; warn on
    stderr when its estimated time exceeds ``guard.max_hours``. ``available`` defaults to
    ``available_memory()``; ``label`` names the run in the warning; ``members``: the config trains as
    one of that many members of an ensemble, which hold their arrays side by side."""
    one = estimate(cfg, data_size(cfg))
    cost = Cost(memory_bytes=one.memory_bytes * members, seconds=one.seconds, largest_term=one.largest_term)
    available = available_memory() if available is None else available
    if available is not None and cost.memory_bytes > available:
        key = size_key(cfg)
        value = cfg.network.hidden_size if key == "network.hidden_size" else list(cfg.network.hidden_sizes)
        raise ConfigError(
            f"The '{key}' parameter must give a network that fits in memory: with algorithm.name="
            f"{cfg.algorithm.name!r}{f' and {members} members' if members > 1 else ''} it needs about "
            f"{human_bytes(cost.memory_bytes)} (mostly {cost.largest_term}), "
            f"more than the {human_bytes(available)} available. Got {value!r} instead."
        )
    if cost.seconds > cfg.guard.max_hours * 3600:
        print(f"Warning: {label + ': ' if label else ''}this run is estimated to train for about "
              f"{human_seconds(cost.seconds)} ({size_key(cfg)}={cfg.network.get(size_key(cfg).split('.')[1])}, "
              f"algorithm.name={cfg.algorithm.name!r}), longer than guard.max_hours={cfg.guard.max_hours:g}. "
              "It goes on; raise guard.max_hours to silence this.", file=sys.stderr, flush=True)
    return cost
