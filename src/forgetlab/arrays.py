"""The array namespace the kernels compute with, in the style of the Python array API standard
(``xp = array_namespace(x)``), so that one code path runs on NumPy (the CPU) and on CuPy (a GPU):
``backend_namespace`` gives the namespace a config's ``backend.name`` names.

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
    if isinstance(x, np.ndarray):  # a subclass: its data as a plain array
        return np.asarray(x)
    get = getattr(x, "get", None)  # CuPy's device-to-host copy
    if get is not None:
        return get()
    if hasattr(x, "__dlpack__"):  # any other array on the CPU (array_api_strict in the tests)
        return np.from_dlpack(x)
    return np.asarray(x)


BACKENDS = ("numpy", "cupy")
DTYPES = ("float64", "float32")


def backend_unavailable(name: str) -> str | None:
    """Why the backend ``name`` cannot run here, or None when it can."""
    if name == "numpy":
        return None
    if name == "cupy":
        try:
            import cupy
        except ImportError as error:
            return f"CuPy is not installed ({error}); install the gpu extra: pip install -e '.[gpu]'"
        try:
            if cupy.cuda.runtime.getDeviceCount() < 1:
                return "CuPy finds no CUDA GPU"
        except Exception as error:  # CUDA driver or runtime errors: no usable GPU
            return f"CuPy finds no usable CUDA GPU ({type(error).__name__}: {error})"
        return None
    return f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}"


def backend_namespace(name: str):
    """The array namespace of the backend ``name`` ("numpy" or "cupy"). Raises RuntimeError when it
    cannot run here (``backend_unavailable`` says why)."""
    reason = backend_unavailable(name)
    if reason is not None:
        raise RuntimeError(f"backend {name!r} is unavailable: {reason}")
    if name == "numpy":
        return NUMPY
    import cupy

    return _compat_namespace(cupy.empty(0))


def is_numpy(xp) -> bool:
    """Whether ``xp`` computes on NumPy arrays (on the host)."""
    return xp is NUMPY or getattr(xp, "__name__", "").split(".")[-1] == "numpy"


def dtype_of(xp, dtype):
    """The floating-point type named by ``dtype`` (a NumPy type or its name) in the namespace ``xp``."""
    return getattr(xp, np.dtype(dtype).name)
