"""Central finite differences in float64, shared by every gradient test."""

from __future__ import annotations

import numpy as np


def finite_difference(objective, params: dict[str, np.ndarray], eps: float = 1e-6) -> dict[str, np.ndarray]:
    """dE/dtheta by central differences; ``objective()`` reads the live ``params`` arrays."""
    grads = {}
    for name, p in params.items():
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            plus = objective()
            p[i] = old - eps
            minus = objective()
            p[i] = old
            g[i] = (plus - minus) / (2 * eps)
        grads[name] = g
    return grads


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)) + np.max(np.abs(b)), 1e-12))
