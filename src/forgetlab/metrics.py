"""Forgetting metrics as pure functions of arrays.

Task level: ``R`` is the accuracy matrix of shape (T, T): R[i, j] is the test accuracy on task j
after training on tasks 0..i; ``r_init`` (T,) is the accuracy of the untrained network.
Signs: forgetting > 0 means accuracy was lost; BWT < 0 means accuracy was lost.
"""

from __future__ import annotations

import numpy as np


def average_accuracy(R: np.ndarray) -> float:
    """ACC = 1/T sum_j R[T-1, j]   (Lopez-Paz & Ranzato 2017)."""
    return float(np.mean(R[-1]))


def backward_transfer(R: np.ndarray) -> float:
    """BWT = 1/(T-1) sum_{j<T-1} (R[T-1, j] - R[j, j])   (Lopez-Paz & Ranzato 2017). NaN for T = 1."""
    T = R.shape[0]
    if T < 2:
        return float("nan")
    j = np.arange(T - 1)
    return float(np.mean(R[T - 1, j] - R[j, j]))


def forward_transfer(R: np.ndarray, r_init: np.ndarray) -> float:
    """FWT = 1/(T-1) sum_{j>=1} (R[j-1, j] - r_init[j])   (Lopez-Paz & Ranzato 2017). NaN for T = 1."""
    T = R.shape[0]
    if T < 2:
        return float("nan")
    j = np.arange(1, T)
    return float(np.mean(R[j - 1, j] - r_init[j]))


def forgetting_max(R: np.ndarray) -> float:
    """F = 1/(T-1) sum_{j<T-1} (max_{l<T-1} R[l, j] - R[T-1, j])   (Chaudhry et al. 2018, RWalk).

    The maximum runs over every earlier row, including rows before task j was trained. NaN for T = 1.
    """
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean(R[: T - 1, : T - 1].max(axis=0) - R[T - 1, : T - 1]))
