"""Property tests of the loss object every solver relies on: derivatives, stability, precision."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from logitlab.model._loss import BinaryLogisticLoss, expit

from .tolerances import summation_tolerance

finite = st.floats(-3, 3, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, max_abs_coef: float = 3.0):
    """A small random problem: X, y in {0, 1}, normalised weights, coef, and a loss object."""
    n_samples = draw(st.integers(1, 12))
    n_features = draw(st.integers(1, 5))
    fit_intercept = draw(st.booleans())
    l2_strength = draw(st.sampled_from([0.0, 0.01, 1.0]))
    X = draw(arrays(np.float64, (n_samples, n_features), elements=finite))
    y = draw(arrays(np.float64, n_samples, elements=st.sampled_from([0.0, 1.0])))
    raw_weights = draw(arrays(np.float64, n_samples, elements=st.floats(0.1, 3)))
    loss = BinaryLogisticLoss(fit_intercept, l2_strength)
    coef = draw(arrays(np.float64, loss.n_params(n_features), elements=st.floats(-max_abs_coef, max_abs_coef)))
    return loss, coef, X, y, raw_weights / raw_weights.sum()


@settings(max_examples=60, deadline=None, database=None)
@given(problems())
def test_gradient_matches_central_differences(problem):
    loss, coef, X, y, weights = problem
    value, grad = loss.loss_gradient(coef, X, y, weights)
    assert value == pytest.approx(loss.loss(coef, X, y, weights), rel=1e-12)
    step = 1e-6
    numeric = np.array(
        [
            (loss.loss(coef + step * e, X, y, weights) - loss.loss(coef - step * e, X, y, weights)) / (2 * step)
            for e in np.eye(coef.size)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@settings(max_examples=60, deadline=None, database=None)
@given(problems(), st.data())
def test_hessian_product_matches_differences_of_the_gradient(problem, data):
    loss, coef, X, y, weights = problem
    vector = data.draw(arrays(np.float64, coef.size, elements=finite))
    _, grad, curvature = loss.loss_gradient_curvature(coef, X, y, weights)

    def hessian_product(v):
        return loss.hessian_product(curvature, X, v)

    step = 1e-6
    numeric = (
        loss.gradient(coef + step * vector, X, y, weights) - loss.gradient(coef - step * vector, X, y, weights)
    ) / (2 * step)
    np.testing.assert_allclose(hessian_product(vector), numeric, rtol=1e-5, atol=1e-7)
    grad_dense, hessian = loss.gradient_hessian(coef, X, y, weights)
    np.testing.assert_allclose(grad_dense, grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(hessian @ vector, hessian_product(vector), rtol=1e-10, atol=1e-12)


@settings(max_examples=60, deadline=None, database=None)
@given(problems(max_abs_coef=1e4))
def test_loss_and_gradient_are_finite_and_silent_for_huge_scores(problem):
    loss, coef, X, y, weights = problem
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, grad = loss.loss_gradient(coef, X, y, weights)
        _, hessian = loss.gradient_hessian(coef, X, y, weights)
    assert np.isfinite(value) and value >= 0
    assert np.isfinite(grad).all() and np.isfinite(hessian).all()


def test_expit_is_exact_and_silent_at_extremes():
    z = np.array([-1e308, -1e4, -745.0, -40.0, 0.0, 40.0, 1e4, 1e308])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = expit(z)
        value = BinaryLogisticLoss(False).loss(np.ones(1), z[:, None], np.zeros(z.size), np.full(z.size, 1 / z.size))
    assert np.all((p >= 0) & (p <= 1))
    assert p[0] == 0.0 and p[-1] == 1.0 and p[4] == 0.5
    assert p[3] == pytest.approx(np.exp(-40.0), rel=1e-12)  # no cancellation in the tails
    assert np.isfinite(value)  # log(1 + e^z) is never clipped: its mean is ~ (1e308 + 1e4 + 40) / 8
    assert value == pytest.approx((1e308 + 1e4 + 40 + np.log(2) + np.logaddexp(0, -40)) / z.size, rel=1e-12)


@settings(max_examples=40, deadline=None, database=None)
@given(problems())
def test_float32_agrees_with_float64(problem):
    loss, coef, X, y, weights = problem
    value64, grad64 = loss.loss_gradient(coef, X, y, weights)
    as32 = [a.astype(np.float32) for a in (coef, X, y, weights)]
    value32, grad32 = loss.loss_gradient(*as32)
    assert grad32.dtype == np.float32
    # float32 sums over the samples and features; the terms are of magnitude up to |x| |coef| <= 9.
    tol = summation_tolerance(np.float32, X.shape[0], coef.size) * 9
    assert value32 == pytest.approx(value64, rel=tol, abs=tol)
    np.testing.assert_allclose(grad32, grad64, rtol=tol, atol=tol)
