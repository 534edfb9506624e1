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


@functools.cache
def multinomial_problem(n_samples: int, n_features: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised make_classification data with `n_classes` classes, half the features informative."""
    X, y = make_classification(
        n_samples=n_samples,
        n_features=n_features,
        n_informative=n_features // 2,
        n_classes=n_classes,
        n_clusters_per_class=1,
        random_state=0,
    )
    return np.ascontiguousarray(StandardScaler().fit_transform(X)), y


def multinomial_objective(X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> float:
    """scikit-learn's multinomial L2 objective (C=1), mean cross-entropy + ||W||_F^2 / (2 n), plainly in float64."""
    scores = X @ coef.T.astype(np.float64) + intercept.astype(np.float64)
    cross_entropy = np.logaddexp.reduce(scores, axis=1) - scores[np.arange(y.size), y.astype(np.intp)]
    return float(cross_entropy.mean() + 0.5 * float(np.sum(coef.astype(np.float64) ** 2)) / X.shape[0])


def matvec_floor(X: np.ndarray, w: np.ndarray, r: np.ndarray) -> None:
    """The least one full-batch gradient costs: one ``X @ w`` and one ``X.T @ r``."""
    X @ w
    X.T @ r


# The shape of a typical census-like CSV after preprocess: six standardised numeric columns (two heavy-tailed)
# and eight text columns one-hot encoded into 100 0/1 columns with Zipf-like category frequencies.
CATEGORIES = (9, 16, 7, 15, 6, 5, 2, 40)


def one_hot_like(
    n_samples: int, categories: tuple[int, ...] = CATEGORIES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Data shaped like a processed real tabular set: what a default fit meets first, and where a fixed step
    of plain gradient descent crawls (rare categories give tiny curvature directions)."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n_samples, 6))
    numeric[:, :2] = np.expm1(np.abs(numeric[:, :2]) * 1.5)
    columns = [(numeric - numeric.mean(axis=0)) / numeric.std(axis=0)]
    score = columns[0] @ rng.normal(0.0, 0.8, 6) - 2.0
    for n_categories in categories:
        frequency = 1.0 / np.arange(1, n_categories + 1) ** 1.3
        codes = rng.choice(n_categories, size=n_samples, p=frequency / frequency.sum())
        columns.append(np.eye(n_categories)[codes])
        score += rng.normal(0.0, 1.0, n_categories)[codes]
    y = (rng.random(n_samples) < 1.0 / (1.0 + np.exp(-score))).astype(np.float64)
    return np.ascontiguousarray(np.hstack(columns)), y
