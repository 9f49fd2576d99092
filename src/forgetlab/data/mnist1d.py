"""MNIST-1D (Greydanus 2020): 10 classes of 1-D signals of 40 samples, made offline by the ``mnist1d``
package's generator (no download). Read as sequences, a signal is 40 steps of 1 feature.

The generator's seed is ``data_seed`` and its train share 1 - ``test_size``; data_seed=42 with
test_size=0.2 (the config's defaults) is the canonical data set of 4000 + 1000 signals.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from forgetlab.data import builders
from forgetlab.data.declaration import task_sequence
from forgetlab.data.tasks import TaskSequence

LENGTH = 40
SEQUENCE_SHAPE = (LENGTH, 1)


@lru_cache(maxsize=4)
def _generate(test_size: float, data_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed, args.train_split = data_seed, 1.0 - test_size
    data = make_dataset(args)
    return (data["x"].astype(np.float64), data["x_test"].astype(np.float64),
            data["y"].astype(np.int64), data["y_test"].astype(np.int64))


def load_split(test_size: float = 0.2, data_seed: int = 42) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train (N, 40), x_test, y_train, y_test); generated once per process and setting (~0.7 s)."""
    return tuple(a.copy() for a in _generate(test_size, data_seed))


@task_sequence("split_mnist1d", sequence_shape=SEQUENCE_SHAPE, max_tasks=10)
def split_mnist1d(test_size: float = 0.2, data_seed: int = 42, n_tasks: int = 5) -> TaskSequence:
    """Five two-class tasks {0,1}, {2,3}, ... (for n_tasks=5)."""
    return builders.split_classes("split_mnist1d", load_split(test_size, data_seed), n_tasks, prefix="mnist1d")


@task_sequence("permuted_mnist1d", sequence_shape=SEQUENCE_SHAPE)
def permuted_mnist1d(n_tasks: int = 5, test_size: float = 0.2, data_seed: int = 42) -> TaskSequence:
    """Task 0 plain; task k > 0 a fixed random permutation of the 40 positions."""
    transforms = builders.permutations(LENGTH, n_tasks, data_seed)
    return builders.transformed("permuted_mnist1d", load_split(test_size, data_seed), transforms)


@task_sequence("mnist1d_stream", sequence_shape=SEQUENCE_SHAPE)
def mnist1d_stream(n_tasks: int = 5, test_size: float = 0.2, data_seed: int = 42) -> TaskSequence:
    """The training signals, all ten classes, in blocks presented once."""
    return builders.stream_blocks("mnist1d_stream", load_split(test_size, data_seed), n_tasks, data_seed)
