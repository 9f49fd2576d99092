"""Data layer: task sequences (split / permuted / rotated / stream digits) and scenarios."""

from forgetlab.data import digits
from forgetlab.data.tasks import SCENARIOS, Scenario, Task, TaskSequence

# name -> (builder, config keys it takes besides the shared ones)
TASK_SEQUENCES = {
    "split_digits": digits.split_digits,
    "permuted_digits": digits.permuted_digits,
    "rotated_digits": digits.rotated_digits,
    "digit_stream": digits.digit_stream,
}


def build_task_sequence(cfg) -> TaskSequence:
    """Build the task sequence named by ``cfg.name`` from a task_sequence config."""
    common = dict(test_size=cfg.test_size, data_seed=cfg.data_seed, n_tasks=cfg.n_tasks)
    if cfg.name == "rotated_digits":
        common["max_angle"] = cfg.max_angle
    return TASK_SEQUENCES[cfg.name](**common)


__all__ = ["SCENARIOS", "Scenario", "Task", "TaskSequence", "TASK_SEQUENCES", "build_task_sequence"]
