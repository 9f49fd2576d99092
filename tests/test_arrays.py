"""forgetlab.arrays: the NumPy namespace's fast reductions compute what NumPy's own functions do,
bit for bit (the per-sample path calls them every update; the numbers must not change)."""

import numpy as np
import pytest

from forgetlab.arrays import NUMPY, array_namespace, by_member


@pytest.mark.parametrize("axis", [None, 0, -1, (-2, -1), (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions_equal_numpys_bit_for_bit(axis, keepdims):
    a = np.random.default_rng(0).normal(size=(3, 17, 9)) * 10.0 ** np.arange(9)  # sums where order matters
    for name in ("sum", "max", "mean"):
        ours, numpys = getattr(NUMPY, name)(a, axis=axis, keepdims=keepdims), getattr(np, name)(a, axis=axis,
                                                                                                   keepdims=keepdims)
        assert np.shape(ours) == np.shape(numpys)
        np.testing.assert_array_equal(ours, numpys, err_msg=name)
    np.testing.assert_array_equal(NUMPY.any(a > 1e8, axis=axis, keepdims=keepdims),
                                  np.any(a > 1e8, axis=axis, keepdims=keepdims))


def test_numpy_arrays_get_the_numpy_namespace_and_member_views_follow_their_vector():
    x = np.zeros(3)
    assert array_namespace(x) is NUMPY and array_namespace(x, np.ones(2)) is NUMPY
    assert NUMPY.matmul is np.matmul and NUMPY.tanh is np.tanh
    scale = by_member(x, 3)
    assert scale.shape == (3, 1, 1)
    x[1] = 5.0
    assert scale[1, 0, 0] == 5.0  # a view: stopping a member (lr 0) reaches every parameter's scale
