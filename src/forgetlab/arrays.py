"""The array namespace the kernels compute with, in the style of the Python array API standard
(``xp = array_namespace(x)``), so that the same code can run on another array library (CuPy) later.

On the CPU the namespace is NumPy itself: NumPy >= 2 implements the standard in its main namespace,
and array_api_compat's wrapper of it puts a Python call in front of some functions (``matmul``,
``zeros``), which the per-sample path pays on every update. Other arrays get array_api_compat's
namespace for their library.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace as _compat_namespace


def array_namespace(*arrays):
    """The namespace of ``arrays``: ``numpy`` for NumPy arrays, array_api_compat's otherwise."""
    if all(type(a) is np.ndarray for a in arrays):  # the fast path: one type check per array
        return np
    return _compat_namespace(*arrays)


def by_member(values, ndim: int):
    """A per-member vector (S,) shaped (S, 1, ..., 1) with ``ndim`` axes, to scale a stacked array
    of that many axes member by member; a view, so it follows changes to ``values``."""
    xp = array_namespace(values)
    return xp.reshape(values, (values.shape[0], *([1] * (ndim - 1))))
