import numpy as np
import pytest

from forgetlab.data import Scenario, digits


def test_split_digits_has_five_two_class_tasks_in_unit_range():
    seq = digits.split_digits()
    assert [list(t.classes) for t in seq.tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    for t in seq.tasks:
        assert set(np.unique(t.y_train)) == set(t.classes) == set(np.unique(t.y_test))
        assert t.x_train.min() >= 0.0 and t.x_train.max() <= 1.0
    n = sum(t.n_train + len(t.y_test) for t in seq.tasks)
    assert n == 1797


def test_split_is_stratified_and_fixed_by_data_seed():
    a = digits.load_split(0.25, 0)
    digits.load_split.cache_clear()  # the same split again from the file, not from the cache
    b, c = digits.load_split(0.25, 0), digits.load_split(0.25, 1)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    train_share = np.bincount(a[2]) / len(a[2])
    test_share = np.bincount(a[3]) / len(a[3])
    np.testing.assert_allclose(train_share, test_share, atol=0.01)


def test_cached_split_is_read_only_and_tasks_own_their_arrays():
    x_train = digits.load_split(0.25, 0)[0]
    assert not x_train.flags.writeable
    for build in (digits.split_digits, digits.permuted_digits, digits.rotated_digits, digits.digit_stream):
        for task in build().tasks:
            assert task.x_train.flags.writeable and not np.shares_memory(task.x_train, x_train)


def test_permuted_digits_task0_plain_and_others_permute_the_same_pixels():
    seq = digits.permuted_digits(n_tasks=3)
    plain = digits.load_split(0.25, 0)
    np.testing.assert_array_equal(seq.tasks[0].x_train, plain[0])
    t1 = seq.tasks[1]
    # a permutation of the pixels: same multiset of values per image, different order
    np.testing.assert_allclose(np.sort(t1.x_train, axis=1), np.sort(plain[0], axis=1))
    assert not np.array_equal(t1.x_train, plain[0])
    assert list(t1.classes) == list(range(10, 20)) and seq.n_classes == 30


def test_rotated_digits_rotates_by_the_configured_angles():
    seq = digits.rotated_digits(n_tasks=3, max_angle=90.0)
    assert [t.name for t in seq.tasks] == ["rotated_digits_0deg", "rotated_digits_45deg", "rotated_digits_90deg"]
    plain = digits.load_split(0.25, 0)[0].reshape(-1, 8, 8)
    rotated = seq.tasks[2].x_train.reshape(-1, 8, 8)
    # 90 degrees is exact on the pixel grid: a quarter turn counter-clockwise
    np.testing.assert_allclose(rotated, np.rot90(plain, k=1, axes=(1, 2)), atol=1e-12)


def test_digit_stream_blocks_partition_the_training_set_and_are_single_pass():
    seq = digits.digit_stream(n_tasks=4)
    assert seq.single_pass
    total = sum(t.n_train for t in seq.tasks)
    assert total == len(digits.load_split(0.25, 0)[2])
    for t in seq.tasks:
        assert len(np.unique(t.y_test)) == 10


@pytest.mark.parametrize("name,n_out", [("class", 10), ("task", 10), ("domain", 2)])
def test_scenarios_targets_and_masks(name, n_out):
    seq = digits.split_digits()
    sc = Scenario(name, seq)
    y, mask, unit = sc.targets(np.array([2, 3, 9]), np.array([1, 1, 4]))
    assert sc.n_outputs == n_out and y.shape == (3, n_out)
    if name == "domain":
        assert list(unit) == [0, 1, 1]
        assert mask.sum() == 6
    else:
        assert list(unit) == [2, 3, 9]
    if name == "task":
        assert list(np.flatnonzero(mask[0])) == [2, 3] and list(np.flatnonzero(mask[2])) == [8, 9]
    np.testing.assert_array_equal(y.argmax(axis=1), unit)
