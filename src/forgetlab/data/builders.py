"""Task sequences from any labelled data set with integer classes 0..C-1, given as one split
(x_train, x_test, y_train, y_test): the shapes shared by digits and MNIST-1D.

Inputs are flat vectors here; ``tasks.as_sequences`` reads them as sequences afterwards.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from forgetlab.data.tasks import Task, TaskSequence

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def stratified_split(x: np.ndarray, y: np.ndarray, test_size: float, data_seed: int) -> Split:
    """(x_train, x_test, y_train, y_test), stratified by class and fixed by ``data_seed``. The arrays
    are read-only: loaders cache them across the runs of a process, and tasks take copies."""
    from sklearn.model_selection import train_test_split  # see forgetlab.data: imported where used

    parts = train_test_split(x, y, test_size=test_size, stratify=y, random_state=data_seed)
    for part in parts:
        part.setflags(write=False)
    return tuple(parts)


def split_classes(name: str, data: Split, n_tasks: int, prefix: str) -> TaskSequence:
    """Classes cut into ``n_tasks`` tasks of consecutive classes: {0,1}, {2,3}, ... for 10 classes, 5 tasks."""
    x_tr, x_te, y_tr, y_te = data
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    tasks = []
    for classes in np.array_split(np.arange(n_classes), n_tasks):
        tr, te = np.isin(y_tr, classes), np.isin(y_te, classes)
        tasks.append(Task(f"{prefix}_{''.join(map(str, classes))}", x_tr[tr], y_tr[tr], x_te[te], y_te[te], classes))
    return TaskSequence(name, tasks, n_classes=n_classes)


def transformed(name: str, data: Split, transforms: list[tuple[str, Callable]]) -> TaskSequence:
    """One C-class task per transform of the inputs; task k's labels are C k + class."""
    x_tr, x_te, y_tr, y_te = data
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    tasks = []
    for k, (label, transform) in enumerate(transforms):
        classes = n_classes * k + np.arange(n_classes)
        tasks.append(Task(f"{name}_{label}", transform(x_tr), n_classes * k + y_tr, transform(x_te),
                          n_classes * k + y_te, classes))
    return TaskSequence(name, tasks, n_classes=n_classes * len(transforms))


def permutations(n_inputs: int, n_tasks: int, data_seed: int) -> list[tuple[str, Callable]]:
    """Transforms for permuted tasks: task 0 unpermuted, task k > 0 a fixed random permutation of the inputs."""
    rng = np.random.default_rng(data_seed)
    perms = [np.arange(n_inputs)] + [rng.permutation(n_inputs) for _ in range(n_tasks - 1)]
    return [(str(k), lambda x, p=p: x[:, p]) for k, p in enumerate(perms)]


def stream_blocks(name: str, data: Split, n_tasks: int, data_seed: int, prefix: str = "block") -> TaskSequence:
    """The training samples, all classes, cut into blocks T_0, T_1, ... presented once, one update each;
    block k is tested on its own stratified share of the test set (same distribution as every other block)."""
    x_tr, x_te, y_tr, y_te = data
    rng = np.random.default_rng(data_seed)
    order = rng.permutation(len(y_tr))
    test_parts = _stratified_parts(y_te, n_tasks, rng)
    classes = np.arange(int(max(y_tr.max(), y_te.max())) + 1)
    tasks = [
        Task(f"{prefix}_{k}", x_tr[tr], y_tr[tr], x_te[te], y_te[te], classes)
        for k, (tr, te) in enumerate(zip(np.array_split(order, n_tasks), test_parts))
    ]
    return TaskSequence(name, tasks, n_classes=len(classes), single_pass=True)


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
