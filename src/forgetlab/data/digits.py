"""Task sequences built from scikit-learn's 8x8 digits (shipped with the package: no download).

Pixels are scaled to [0, 1]; each sequence uses one stratified train/test split drawn with
``data_seed``, so every training seed of a study sees the same tasks, permutations and probe.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.ndimage import rotate
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from forgetlab.data.tasks import Task, TaskSequence

SIDE = 8


@functools.lru_cache(maxsize=8)
def load_split(test_size: float, data_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as (x_train, x_test, y_train, y_test), features in [0, 1], stratified by digit.

    Cached: reading and splitting takes ~13 ms, a noticeable share of a short run, and the jobs of a
    sweep in one process all use the same split. The arrays are read-only (tasks take copies)."""
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    parts = train_test_split(x, digits.target, test_size=test_size, stratify=digits.target, random_state=data_seed)
    for part in parts:
        part.setflags(write=False)
    return tuple(parts)


def split_digits(test_size: float = 0.25, data_seed: int = 0, n_tasks: int = 5) -> TaskSequence:
    """Digits split into ``n_tasks`` tasks of consecutive classes: {0,1}, {2,3}, ... for 5 tasks."""
    x_tr, x_te, y_tr, y_te = load_split(test_size, data_seed)
    tasks = []
    for k, classes in enumerate(np.array_split(np.arange(10), n_tasks)):
        tr, te = np.isin(y_tr, classes), np.isin(y_te, classes)
        name = f"digits_{''.join(map(str, classes))}"
        tasks.append(Task(name, x_tr[tr], y_tr[tr], x_te[te], y_te[te], classes))
    return TaskSequence("split_digits", tasks, n_classes=10)


def _transformed_digits(name: str, transforms: list, test_size: float, data_seed: int) -> TaskSequence:
    """One 10-class task per transform of the images; task k's labels are 10 k + digit."""
    x_tr, x_te, y_tr, y_te = load_split(test_size, data_seed)
    tasks = []
    for k, (label, transform) in enumerate(transforms):
        classes = 10 * k + np.arange(10)
        tasks.append(Task(f"{name}_{label}", transform(x_tr), 10 * k + y_tr, transform(x_te), 10 * k + y_te, classes))
    return TaskSequence(name, tasks, n_classes=10 * len(transforms))


def permuted_digits(n_tasks: int = 5, test_size: float = 0.25, data_seed: int = 0) -> TaskSequence:
    """Task 0 is the plain digits; task k > 0 applies a fixed random pixel permutation."""
    rng = np.random.default_rng(data_seed)
    perms = [np.arange(SIDE * SIDE)] + [rng.permutation(SIDE * SIDE) for _ in range(n_tasks - 1)]
    transforms = [(k, lambda x, p=p: x[:, p]) for k, p in enumerate(perms)]
    return _transformed_digits("permuted_digits", transforms, test_size, data_seed)


def rotate_images(x: np.ndarray, angle: float) -> np.ndarray:
    """Rotate flattened 8x8 images counter-clockwise by ``angle`` degrees about their centre (bilinear)."""
    images = x.reshape(-1, SIDE, SIDE)
    rotated = rotate(images, angle, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0)
    return np.clip(rotated, 0.0, 1.0).reshape(len(x), -1)


def rotated_digits(
    n_tasks: int = 5, max_angle: float = 90.0, test_size: float = 0.25, data_seed: int = 0
) -> TaskSequence:
    """Task k rotates every image by k * max_angle / (n_tasks - 1) degrees (task 0 unrotated)."""
    angles = np.linspace(0.0, max_angle, n_tasks) if n_tasks > 1 else np.zeros(1)
    transforms = [(f"{a:g}deg", lambda x, a=a: rotate_images(x, a)) for a in angles]
    return _transformed_digits("rotated_digits", transforms, test_size, data_seed)


def digit_stream(n_tasks: int = 5, test_size: float = 0.25, data_seed: int = 0) -> TaskSequence:
    """The seed's setting: the training samples, all ten classes, cut into blocks T_0, T_1, ...

    Each block is presented once, one update per sample; block k is tested on its own stratified
    share of the test set (same distribution as every other block).
    """
    x_tr, x_te, y_tr, y_te = load_split(test_size, data_seed)
    rng = np.random.default_rng(data_seed)
    order = rng.permutation(len(y_tr))
    test_parts = _stratified_parts(y_te, n_tasks, rng)
    classes = np.arange(10)
    tasks = [
        Task(f"block_{k}", x_tr[tr], y_tr[tr], x_te[te], y_te[te], classes)
        for k, (tr, te) in enumerate(zip(np.array_split(order, n_tasks), test_parts))
    ]
    return TaskSequence("digit_stream", tasks, n_classes=10, single_pass=True)


def _stratified_parts(labels: np.ndarray, n_parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices of ``labels`` dealt into ``n_parts`` parts with (nearly) equal class proportions."""
    parts: list[list[int]] = [[] for _ in range(n_parts)]
    offset = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        for i, idx in enumerate(members):
            parts[(offset + i) % n_parts].append(int(idx))
        offset += len(members)
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]
