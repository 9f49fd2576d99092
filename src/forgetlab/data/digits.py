"""Task sequences built from scikit-learn's 8x8 digits (shipped with the package: no download).

Pixels are scaled to [0, 1]; each sequence uses one stratified train/test split drawn with
``data_seed``, so every training seed of a study sees the same tasks, permutations and probe.
Read as sequences (``task_sequence.input=sequence``), an image is its 8 rows: 8 steps of 8 features.
"""

from __future__ import annotations

import functools

import numpy as np

from forgetlab.data import builders
from forgetlab.data.declaration import task_sequence
from forgetlab.data.tasks import TaskSequence

SIDE = 8
SEQUENCE_SHAPE = (SIDE, SIDE)  # rows as steps, pixels of a row as features


@functools.lru_cache(maxsize=8)
def load_split(test_size: float, data_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (x_train, x_test, y_train, y_test), features in [0, 1], stratified by digit.

    Cached: reading and splitting takes ~13 ms, a noticeable share of a short run, and the jobs of a
    sweep in one process all use the same split. The arrays are read-only (tasks take copies)."""
    from sklearn.datasets import load_digits  # see forgetlab.data: imported where used

    digits = load_digits()
    return builders.stratified_split(digits.data.astype(np.float64) / 16.0, digits.target, test_size, data_seed)


@task_sequence("split_digits", sequence_shape=SEQUENCE_SHAPE, max_tasks=10)
def split_digits(test_size: float = 0.25, data_seed: int = 0, n_tasks: int = 5) -> TaskSequence:
    """Digits split into ``n_tasks`` tasks of consecutive classes: {0,1}, {2,3}, ... for 5 tasks."""
    return builders.split_classes("split_digits", load_split(test_size, data_seed), n_tasks, prefix="digits")


@task_sequence("permuted_digits", sequence_shape=SEQUENCE_SHAPE)
def permuted_digits(n_tasks: int = 5, test_size: float = 0.25, data_seed: int = 0) -> TaskSequence:
    """Task 0 is the plain digits; task k > 0 applies a fixed random pixel permutation."""
    transforms = builders.permutations(SIDE * SIDE, n_tasks, data_seed)
    return builders.transformed("permuted_digits", load_split(test_size, data_seed), transforms)


def rotate_images(x: np.ndarray, angle: float) -> np.ndarray:
    """Rotate flattened 8x8 images counter-clockwise by ``angle`` degrees about their centre (bilinear)."""
    from scipy.ndimage import rotate  # see forgetlab.data: imported where used

    images = x.reshape(-1, SIDE, SIDE)
    rotated = rotate(images, angle, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0)
    return np.clip(rotated, 0.0, 1.0).reshape(len(x), -1)


@task_sequence("rotated_digits", sequence_shape=SEQUENCE_SHAPE, keys=("max_angle",))
def rotated_digits(
    n_tasks: int = 5, max_angle: float = 90.0, test_size: float = 0.25, data_seed: int = 0
) -> TaskSequence:
    """Task k rotates every image by k * max_angle / (n_tasks - 1) degrees (task 0 unrotated)."""
    angles = np.linspace(0.0, max_angle, n_tasks) if n_tasks > 1 else np.zeros(1)
    transforms = [(f"{a:g}deg", lambda x, a=a: rotate_images(x, a)) for a in angles]
    return builders.transformed("rotated_digits", load_split(test_size, data_seed), transforms)


@task_sequence("digit_stream", sequence_shape=SEQUENCE_SHAPE)
def digit_stream(n_tasks: int = 5, test_size: float = 0.25, data_seed: int = 0) -> TaskSequence:
    """The seed's setting: the training samples, all ten classes, cut into blocks T_0, T_1, ...
    each presented once, one update per sample."""
    return builders.stream_blocks("digit_stream", load_split(test_size, data_seed), n_tasks, data_seed)
