"""The binary logistic loss, its gradient and its Hessian, shared by every solver.

Modelled on scikit-learn's `LinearModelLoss`: the parameters are one flat vector
``coef = [w_1, ..., w_p, b]`` (the intercept ``b`` only when ``fit_intercept``), and the objective is

    sum_i weights_i * log(1 + exp(-s_i * z_i)) + l2_strength / 2 * ||w||^2,   z = X @ w + b,  s_i = 2 y_i - 1

where ``weights`` already include the ``1 / sum(sample_weight)`` normalisation, so that the objective
equals scikit-learn's ``LogisticRegression`` objective one to one. The intercept is never penalised.

Everything is computed from one pass over ``z``: the per-sample loss ``softplus(-s * z)`` by
``np.logaddexp`` (exact for any ``|z|``, no clipping), and the residual ``p - y`` as
``s * expm1(-loss)``, which is exact even when ``p`` is within an ulp of 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FloatArray = np.ndarray


def expit(z: FloatArray) -> FloatArray:
    """Logistic sigmoid ``1 / (1 + exp(-z))`` without overflow or warnings for any finite ``z``."""
    with np.errstate(under="ignore", over="ignore"):
        return np.exp(-np.logaddexp(0, -z))


class BinaryLogisticLoss:
    """Sample-weighted mean log-loss plus an L2 term on the weights (not on the intercept)."""

    def __init__(self, fit_intercept: bool, l2_strength: float = 0.0) -> None:
        self.fit_intercept = fit_intercept
        self.l2_strength = l2_strength

    def n_params(self, n_features: int) -> int:
        return n_features + int(self.fit_intercept)

    def split(self, coef: FloatArray) -> tuple[FloatArray, float]:
        """Return the weights and the intercept (0 without one) held in ``coef``."""
        if self.fit_intercept:
            return coef[:-1], coef[-1]
        return coef, 0.0

    def raw_prediction(self, coef: FloatArray, X: FloatArray) -> FloatArray:
        weights, intercept = self.split(coef)
        return X @ weights + intercept

    def _pointwise(self, coef: FloatArray, X: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per-sample loss and the sign ``s = 2y - 1``; both feed the gradient without recomputing z."""
        sign = 2 * y - 1
        with np.errstate(over="ignore", invalid="ignore"):
            return np.logaddexp(0, -sign * self.raw_prediction(coef, X)), sign

    def _penalty(self, coef: FloatArray) -> float:
        weights, _ = self.split(coef)
        return 0.5 * self.l2_strength * float(weights @ weights)

    def _assemble_gradient(self, residual: FloatArray, coef: FloatArray, X: FloatArray) -> FloatArray:
        """Gradient ``[X.T @ residual + l2 * w, sum(residual)]`` from the weighted residual ``p - y``."""
        weights, _ = self.split(coef)
        grad = np.empty_like(coef)
        n_features = X.shape[1]
        grad[:n_features] = X.T @ residual + self.l2_strength * weights
        if self.fit_intercept:
            grad[-1] = residual.sum()
        return grad

    def loss(self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray) -> float:
        pointwise, _ = self._pointwise(coef, X, y)
        return float(weights @ pointwise) + self._penalty(coef)

    def _pointwise_residual(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Per-sample loss and the weighted residual ``weights * (p - y) = weights * s * expm1(-loss)``."""
        pointwise, sign = self._pointwise(coef, X, y)
        with np.errstate(over="ignore", invalid="ignore"):
            return pointwise, weights * (sign * np.expm1(-pointwise))

    def loss_gradient(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[float, FloatArray]:
        """Loss and gradient from a single ``X @ w`` and a single ``X.T @ r``."""
        pointwise, residual = self._pointwise_residual(coef, X, y, weights)
        return float(weights @ pointwise) + self._penalty(coef), self._assemble_gradient(residual, coef, X)

    def gradient(self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray) -> FloatArray:
        return self._assemble_gradient(self._pointwise_residual(coef, X, y, weights)[1], coef, X)

    def _hessian_weights(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Gradient and the per-sample Hessian weights ``weights * p * (1 - p)``."""
        pointwise, sign = self._pointwise(coef, X, y)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            one_minus_q = -np.expm1(-pointwise)  # 1 - P(true class), exact when tiny
            residual = weights * (-sign * one_minus_q)
            curvature = weights * (one_minus_q * np.exp(-pointwise))
        return self._assemble_gradient(residual, coef, X), curvature

    def gradient_hessian(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Gradient and the dense Hessian, for Newton's method (O(n p^2))."""
        grad, curvature = self._hessian_weights(coef, X, y, weights)
        n_features = X.shape[1]
        hessian = np.empty((coef.size, coef.size), dtype=coef.dtype)
        hessian[:n_features, :n_features] = X.T @ (curvature[:, None] * X)
        hessian[np.diag_indices(n_features)] += self.l2_strength
        if self.fit_intercept:
            column = X.T @ curvature
            hessian[:n_features, -1] = column
            hessian[-1, :n_features] = column
            hessian[-1, -1] = curvature.sum()
        return grad, hessian

    def gradient_hessian_product(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[FloatArray, Callable[[FloatArray], FloatArray]]:
        """Gradient and a function ``v -> H @ v`` costing one ``X @ v`` and one ``X.T @ r`` per call."""
        grad, curvature = self._hessian_weights(coef, X, y, weights)
        n_features = X.shape[1]

        def hessian_product(vector: FloatArray) -> FloatArray:
            direction_w, direction_b = self.split(vector)
            weighted = curvature * (X @ direction_w + direction_b)
            product = np.empty_like(vector)
            product[:n_features] = X.T @ weighted + self.l2_strength * direction_w
            if self.fit_intercept:
                product[-1] = weighted.sum()
            return product

        return grad, hessian_product
