"""The array namespace the kernels compute with, in the style of the Python array API standard
(``xp = array_namespace(x)``), so that the same code can run on another array library (CuPy) later.

On the CPU the namespace is NumPy's own (NumPy >= 2 implements the standard in its main namespace),
with its reductions ``sum``, ``max``, ``mean`` and ``any`` bound directly to the ufuncs' ``reduce``: the same
arithmetic without ``np.sum``'s Python layer, which costs about a microsecond on every call, and the
per-sample path makes several per update. array_api_compat's wrapper of NumPy would add a Python
call in front of other functions too (``matmul``, ``zeros``). Other arrays get array_api_compat's
namespace for their library.
"""

from __future__ import annotations

import math
import types

import numpy as np
from array_api_compat import array_namespace as _compat_namespace

_add_reduce, _maximum_reduce, _or_reduce = np.add.reduce, np.maximum.reduce, np.logical_or.reduce


def _sum(x, /, *, axis=None, keepdims=False):
    return _add_reduce(x, axis, None, None, keepdims)


def _max(x, /, *, axis=None, keepdims=False):
    return _maximum_reduce(x, axis, None, None, keepdims)


def _any(x, /, *, axis=None, keepdims=False):
    return _or_reduce(x, axis, None, None, keepdims)


def _mean(x, /, *, axis=None, keepdims=False):
    # As np.mean computes a float mean: the sum, then a true division by the count.
    if axis is None:
        count = x.size
    elif type(axis) is int:
        count = x.shape[axis]
    else:
        count = math.prod(x.shape[a] for a in axis)
    return np.true_divide(_add_reduce(x, axis, None, None, keepdims), count)


NUMPY = types.SimpleNamespace(**{name: getattr(np, name) for name in dir(np) if not name.startswith("_")})
NUMPY.sum, NUMPY.max, NUMPY.mean, NUMPY.any = _sum, _max, _mean, _any
NUMPY.__name__ = "numpy"


def array_namespace(x, *others):
    """The namespace of the arrays: ``NUMPY`` for NumPy arrays, array_api_compat's otherwise."""
    if type(x) is np.ndarray and (not others or all(type(a) is np.ndarray for a in others)):
        return NUMPY
    return _compat_namespace(x, *others)


def by_member(values, ndim: int):
    """A per-member vector (S,) shaped (S, 1, ..., 1) with ``ndim`` axes, to scale a stacked array
    of that many axes member by member; a view, so it follows changes to ``values``."""
    xp = array_namespace(values)
    return xp.reshape(values, (values.shape[0], *([1] * (ndim - 1))))


def to_numpy(x) -> np.ndarray:
    """``x`` as a NumPy array on the host (a copy from a device array; NumPy's own is returned as is)."""
    if type(x) is np.ndarray:
        return x
    get = getattr(x, "get", None)  # CuPy's device-to-host copy
    return np.asarray(get() if get is not None else x)
