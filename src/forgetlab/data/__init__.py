"""Data layer: task sequences (split / permuted / rotated / stream digits, MNIST-1D) and scenarios."""

from forgetlab.data import digits, mnist1d
from forgetlab.data.tasks import INPUTS, SCENARIOS, Scenario, Task, TaskSequence, as_sequences

# name -> (builder, shape of one sample read as a sequence: (steps, features))
TASK_SEQUENCES = {
    "split_digits": (digits.split_digits, digits.SEQUENCE_SHAPE),
    "permuted_digits": (digits.permuted_digits, digits.SEQUENCE_SHAPE),
    "rotated_digits": (digits.rotated_digits, digits.SEQUENCE_SHAPE),
    "digit_stream": (digits.digit_stream, digits.SEQUENCE_SHAPE),
    "split_mnist1d": (mnist1d.split_mnist1d, mnist1d.SEQUENCE_SHAPE),
    "permuted_mnist1d": (mnist1d.permuted_mnist1d, mnist1d.SEQUENCE_SHAPE),
    "mnist1d_stream": (mnist1d.mnist1d_stream, mnist1d.SEQUENCE_SHAPE),
}


def build_task_sequence(cfg) -> TaskSequence:
    """Build the task sequence named by ``cfg.name`` from a task_sequence config; with
    ``cfg.input == "sequence"`` every sample is a sequence (steps, features) instead of a vector."""
    builder, sequence_shape = TASK_SEQUENCES[cfg.name]
    common = dict(test_size=cfg.test_size, data_seed=cfg.data_seed, n_tasks=cfg.n_tasks)
    if cfg.name == "rotated_digits":
        common["max_angle"] = cfg.max_angle
    sequence = builder(**common)
    return as_sequences(sequence, sequence_shape) if cfg.input == "sequence" else sequence


__all__ = ["INPUTS", "SCENARIOS", "Scenario", "Task", "TaskSequence", "TASK_SEQUENCES", "build_task_sequence"]
