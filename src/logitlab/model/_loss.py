"""The binary logistic loss, its gradient and its Hessian, shared by every solver.

Modelled on scikit-learn's `LinearModelLoss`: the parameters are one flat vector
``coef = [w_1, ..., w_p, b]`` (the intercept ``b`` only when ``fit_intercept``), and the objective is

    sum_i weights_i * log(1 + exp(-s_i * z_i)) + l2_strength / 2 * ||w||^2,   z = X @ w + b,  s_i = 2 y_i - 1

where ``weights`` already include the ``1 / sum(sample_weight)`` normalisation, so that the objective
equals scikit-learn's ``LogisticRegression`` objective one to one. The intercept is never penalised.

Speed: ``X`` is visited in blocks of rows that fit in the L2 cache, so ``X_b @ w``, ``X_b.T @ r`` and the
Hessian's ``A_b.T @ A_b`` read each block from memory once: loss, gradient (and Hessian) cost one pass over
``X``. The per-sample work runs in place on block-sized buffers.

Stability: with ``t = -s * z`` and ``e = exp(-|t|) <= 1``, the per-sample loss is
``softplus(t) = max(t, 0) + log1p(e)``, the residual ``p - y = -s * sigmoid(t)`` with
``sigmoid(t) = exp(min(t, 0) - log1p(e))``, and the curvature ``p (1 - p) = e / (1 + e)^2``: no
overflow, no clipping, and each is exact to a few ulps even when ``p`` is within an ulp of 0 or 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

FloatArray = np.ndarray

# Rows per block are chosen so that a block of X takes about this many bytes (the L2 cache of one core):
# large enough to amortise the per-block Python calls, small enough to stay in cache for the second use.
BLOCK_BYTES = 1 << 20
MIN_BLOCK_ROWS = 64


def expit(z: FloatArray) -> FloatArray:
    """Logistic sigmoid ``1 / (1 + exp(-z))`` without overflow or warnings for any finite ``z``."""
    with np.errstate(under="ignore", over="ignore"):
        return np.exp(-np.logaddexp(0, -z))


def block_rows(n_samples: int, row_bytes: int) -> int:
    """Rows per block: about `BLOCK_BYTES` of X, at least `MIN_BLOCK_ROWS`, at most all of them."""
    return max(1, min(n_samples, max(MIN_BLOCK_ROWS, BLOCK_BYTES // max(row_bytes, 1))))


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def _single_threaded_blas() -> Any:
    """A context with BLAS on one thread, for the per-block ``A.T @ A`` of the Hessian: each call is small, and
    OpenBLAS would wake its threads for every one, which on a busy machine costs more than the work itself
    (measured: 10x slower at 100 features; the same speed on one thread at 50)."""
    return _blas_controller().limit(limits=1, user_api="blas")


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

    def _penalty(self, coef: FloatArray) -> float:
        weights, _ = self.split(coef)
        return 0.5 * self.l2_strength * float(weights @ weights)

    def _add_penalty_gradient(self, grad: FloatArray, coef: FloatArray) -> FloatArray:
        weights, _ = self.split(coef)
        grad[: weights.size] += self.l2_strength * weights
        return grad

    def _pass(
        self,
        coef: FloatArray,
        X: FloatArray,
        y: FloatArray,
        weights: FloatArray,
        *,
        want_loss: bool,
        want_gradient: bool,
        want_hessian: bool = False,
        curvature_out: FloatArray | None = None,
    ) -> tuple[float, FloatArray, FloatArray]:
        """One blocked pass over X: the data parts of the loss, the gradient and the Hessian, as asked.

        Without the L2 term; the Hessian is 0 x 0 unless asked for. ``curvature_out`` (length n_samples), if
        given, receives ``weights * p * (1 - p)``.
        """
        n_samples, n_features = X.shape
        dtype = np.result_type(X, coef)
        coef_w, intercept = self.split(coef)
        rows = block_rows(n_samples, n_features * X.itemsize)
        buffers = np.empty((5, rows), dtype=dtype)
        n_hessian = coef.size if want_hessian else 0
        design = np.empty((rows if want_hessian else 0, n_hessian), dtype=dtype)
        total = 0.0
        grad = np.zeros_like(coef, dtype=dtype)
        hessian = np.zeros((n_hessian, n_hessian), dtype=dtype)
        for start in range(0, n_samples, rows):
            block = slice(start, start + rows)
            X_b, w_b = X[block], weights[block]
            size = X_b.shape[0]
            z, neg_sign, expo, log_term, scratch = buffers if size == rows else buffers[:, :size]
            np.dot(X_b, coef_w, out=z)
            if self.fit_intercept:
                z += intercept
            np.multiply(y[block], -2, out=neg_sign)
            neg_sign += 1  # 1 - 2y = -s
            margin = np.multiply(neg_sign, z, out=z)  # t = -s * z: the loss is softplus(t)
            np.abs(margin, out=expo)
            np.negative(expo, out=expo)
            np.exp(expo, out=expo)  # e = exp(-|t|)
            if want_loss or want_gradient:
                np.log1p(expo, out=log_term)
            if want_loss:
                np.maximum(margin, 0, out=scratch)
                scratch += log_term
                total += float(w_b @ scratch)
            if want_gradient:
                residual = np.minimum(margin, 0, out=scratch)
                residual -= log_term
                np.exp(residual, out=residual)  # sigmoid(t): the probability of the wrong class
                residual *= neg_sign
                residual *= w_b  # weights * (p - y)
                grad[:n_features] += residual @ X_b
                if self.fit_intercept:
                    grad[-1] += residual.sum()
            if want_hessian or curvature_out is not None:
                curvature = np.add(expo, 1, out=log_term)
                np.square(curvature, out=curvature)
                np.divide(expo, curvature, out=curvature)
                curvature *= w_b  # weights * p * (1 - p) = weights * e / (1 + e)^2
                if curvature_out is not None:
                    curvature_out[block] = curvature
                if want_hessian:
                    # H = A.T @ A with A = sqrt(curvature) * [X, 1]: a symmetric rank-k update (syrk).
                    root = np.sqrt(curvature, out=curvature)
                    A = design[:size]
                    np.multiply(X_b, root[:, None], out=A[:, :n_features])
                    if self.fit_intercept:
                        A[:, -1] = root
                    hessian += A.T @ A
        return total, grad, hessian

    def loss(self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray) -> float:
        total, _, _ = self._pass(coef, X, y, weights, want_loss=True, want_gradient=False)
        return total + self._penalty(coef)

    def loss_gradient(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[float, FloatArray]:
        """Loss and gradient from one pass over ``X``."""
        total, grad, _ = self._pass(coef, X, y, weights, want_loss=True, want_gradient=True)
        return total + self._penalty(coef), self._add_penalty_gradient(grad, coef)

    def gradient(self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray) -> FloatArray:
        _, grad, _ = self._pass(coef, X, y, weights, want_loss=False, want_gradient=True)
        return self._add_penalty_gradient(grad, coef)

    def gradient_hessian(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Gradient and the dense Hessian, for Newton's method: one pass over ``X``, O(n p^2) flops."""
        with _single_threaded_blas():
            _, grad, hessian = self._pass(coef, X, y, weights, want_loss=False, want_gradient=True, want_hessian=True)
        n_features = X.shape[1]
        hessian[np.diag_indices(n_features)] += self.l2_strength
        return self._add_penalty_gradient(grad, coef), hessian

    def gradient_hessian_product(
        self, coef: FloatArray, X: FloatArray, y: FloatArray, weights: FloatArray
    ) -> tuple[FloatArray, Callable[[FloatArray], FloatArray]]:
        """Gradient and a function ``v -> H @ v`` costing one ``X @ v`` and one ``X.T @ r`` per call."""
        curvature = np.empty(X.shape[0], dtype=np.result_type(X, coef))
        _, grad, _ = self._pass(coef, X, y, weights, want_loss=False, want_gradient=True, curvature_out=curvature)
        n_features = X.shape[1]

        def hessian_product(vector: FloatArray) -> FloatArray:
            direction_w, direction_b = self.split(vector)
            weighted = curvature * (X @ direction_w + direction_b)
            product = np.empty_like(vector)
            product[:n_features] = X.T @ weighted + self.l2_strength * direction_w
            if self.fit_intercept:
                product[-1] = weighted.sum()
            return product

        return self._add_penalty_gradient(grad, coef), hessian_product
