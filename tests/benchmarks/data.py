"""Benchmark data and the two references every timing is divided by: scikit-learn and the matvec floor."""

from __future__ import annotations

import functools

import numpy as np
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler

# The anchor problem, then a wider one where Newton's D x D Hessian starts to count.
SOLVER_SHAPES = [(200_000, 50), (50_000, 200)]


@functools.cache
def problem(n_samples: int, n_features: int, dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """Standardised make_classification data, half the features informative, fixed seed."""
    X, y = make_classification(
        n_samples=n_samples, n_features=n_features, n_informative=n_features // 2, random_state=0
    )
    X = np.ascontiguousarray(StandardScaler().fit_transform(X), dtype=dtype)
    return X, y.astype(dtype)


def objective(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float, C: float = 1.0) -> float:
    """scikit-learn's L2 objective, mean log-loss + ||w||^2 / (2 C n), computed plainly in float64."""
    X64 = X.astype(np.float64, copy=False)
    z = X64 @ coef.astype(np.float64) + float(intercept)
    sign = 2 * y.astype(np.float64) - 1
    return float(np.logaddexp(0, -sign * z).mean() + 0.5 * float(coef @ coef) / (C * X.shape[0]))


def matvec_floor(X: np.ndarray, w: np.ndarray, r: np.ndarray) -> None:
    """The least one full-batch gradient costs: one ``X @ w`` and one ``X.T @ r``."""
    X @ w
    X.T @ r
