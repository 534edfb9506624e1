"""The fast paths against the simple formulas: blocked passes over X, Cholesky Newton, mini-batch shuffling."""

import numpy as np
import pytest
from scipy.special import expit as reference_expit
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.preprocessing import StandardScaler

from logitlab.model import LogisticRegression, _loss
from logitlab.model._loss import BinaryLogisticLoss
from logitlab.model._solvers import Problem

from .tolerances import summation_tolerance


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of `MIN_BLOCK_ROWS` rows, so that a few hundred samples span many blocks and a partial last one."""
    monkeypatch.setattr(_loss, "BLOCK_BYTES", 1)


def naive(loss, coef, X, y, weights):
    """Loss, gradient and Hessian straight from the formulas, on whole arrays."""
    design = np.hstack([X, np.ones((X.shape[0], 1))]) if loss.fit_intercept else X
    penalised = np.ones(coef.size)
    penalised[X.shape[1] :] = 0.0
    z = design @ coef
    p = reference_expit(z)
    value = weights @ np.logaddexp(0, -(2 * y - 1) * z) + 0.5 * loss.l2_strength * (penalised * coef) @ coef
    grad = design.T @ (weights * (p - y)) + loss.l2_strength * penalised * coef
    hessian = design.T @ ((weights * p * (1 - p))[:, None] * design) + loss.l2_strength * np.diag(penalised)
    return value, grad, hessian


@pytest.mark.parametrize("order", ["C", "F"])  # F: a pandas frame's block, whose row blocks are strided views
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("n_samples", [1, 63, 64, 300])
def test_blocked_loss_gradient_hessian_equal_the_formulas(small_blocks, fit_intercept, n_samples, order):
    rng = np.random.RandomState(n_samples)
    X = np.asarray(rng.normal(size=(n_samples, 4)), order=order)
    y = (rng.uniform(size=n_samples) < 0.4).astype(float)
    weights = rng.uniform(0.1, 2.0, size=n_samples)
    weights /= weights.sum()
    loss = BinaryLogisticLoss(fit_intercept, l2_strength=0.3)
    coef = rng.normal(scale=2.0, size=loss.n_params(4))
    value, grad, hessian = naive(loss, coef, X, y, weights)
    # Blocks of 64 rows against whole arrays: sums over the rows, of products over the parameters.
    tol = summation_tolerance(X.dtype, n_samples, coef.size)
    assert loss.loss(coef, X, y, weights) == pytest.approx(value, rel=tol)
    fast_value, fast_grad = loss.loss_gradient(coef, X, y, weights)
    assert fast_value == pytest.approx(value, rel=tol)
    np.testing.assert_allclose(fast_grad, grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss.gradient(coef, X, y, weights), grad, rtol=tol, atol=tol)
    dense_grad, dense_hessian = loss.gradient_hessian(coef, X, y, weights)
    np.testing.assert_allclose(dense_grad, grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(dense_hessian, hessian, rtol=tol, atol=tol)
    curved_value, curved_grad, curvature = loss.loss_gradient_curvature(coef, X, y, weights)
    assert curved_value == pytest.approx(value, rel=tol)
    np.testing.assert_allclose(curved_grad, grad, rtol=tol, atol=tol)
    vector = rng.normal(size=coef.size)
    np.testing.assert_allclose(loss.hessian_product(curvature, X, vector), hessian @ vector, rtol=tol, atol=tol)
    # The bound is the Hessian with every p (1 - p) at its maximum 1/4.
    design = np.hstack([X, np.ones((n_samples, 1))]) if fit_intercept else X
    bound = design.T @ (0.25 * weights[:, None] * design)
    bound[np.diag_indices(4)] += 0.3
    np.testing.assert_allclose(loss.curvature_bound_product(X, weights, vector), bound @ vector, rtol=tol, atol=tol)


def test_residual_and_curvature_are_exact_in_the_tails():
    """At a margin of 40 the residual 1 - p = e^-40 and the curvature p (1 - p) keep full relative precision."""
    X, y, weights = np.ones((2, 1)), np.array([1.0, 0.0]), np.array([0.5, 0.5])
    loss = BinaryLogisticLoss(False)
    grad, hessian = loss.gradient_hessian(np.array([40.0]), X[:1], y[:1], weights[:1])
    tail = reference_expit(-40.0)
    assert grad[0] == pytest.approx(-0.5 * tail, rel=1e-14)
    assert hessian[0, 0] == pytest.approx(0.5 * tail * (1 - tail), rel=1e-14)
    assert loss.gradient(np.array([-40.0]), X[1:], y[1:], weights[1:])[0] == pytest.approx(0.5 * tail, rel=1e-14)


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(n_samples=4000, n_features=20, n_informative=10, random_state=0)
    return StandardScaler().fit_transform(X), y


def sklearn_objective(model, X, y):
    """scikit-learn's objective (C=1, L2) at a model's coefficients, in float64."""
    coef = np.concatenate([model.coef_.ravel(), model.intercept_]).astype(np.float64)
    loss = BinaryLogisticLoss(True, l2_strength=1.0 / X.shape[0])
    return loss.loss(coef, X, y.astype(np.float64), np.full(X.shape[0], 1.0 / X.shape[0]))


@pytest.mark.parametrize("solver", ["newton", "newton-cg", "lbfgs"])
def test_second_order_solvers_reach_the_sklearn_optimum(classification, solver):
    X, y = classification
    reference = SklearnLogisticRegression(solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(X, y)
    optimum = sklearn_objective(reference, X, y)
    model = LogisticRegression(solver=solver, tol=1e-6, max_iter=500).fit(X, y)
    assert model.converged_
    assert (sklearn_objective(model, X, y) - optimum) / optimum < 1e-6


@pytest.mark.parametrize("solver", ["newton", "newton-cg", "lbfgs"])
def test_float32_fits_agree_with_float64(classification, solver):
    X, y = classification
    fit64 = LogisticRegression(solver=solver, tol=1e-6, max_iter=500).fit(X, y)
    fit32 = LogisticRegression(solver=solver, tol=1e-4, max_iter=500, dtype="float32").fit(X, y)
    assert fit32.coef_.dtype == np.float32 and fit32.converged_
    objective64 = sklearn_objective(fit64, X, y)
    assert (sklearn_objective(fit32, X, y) - objective64) / objective64 < 1e-5
    np.testing.assert_allclose(fit32.coef_, fit64.coef_, rtol=0, atol=5e-3)


def test_float32_blocked_gradient_agrees_with_float64(small_blocks, classification):
    X, y = classification
    weights = np.full(X.shape[0], 1.0 / X.shape[0])
    loss = BinaryLogisticLoss(True, l2_strength=1e-3)
    coef = np.random.RandomState(0).normal(scale=0.3, size=X.shape[1] + 1)
    value64, grad64 = loss.loss_gradient(coef, X, y.astype(float), weights)
    value32, grad32 = loss.loss_gradient(*(a.astype(np.float32) for a in (coef, X, y, weights)))
    assert grad32.dtype == np.float32
    tol = summation_tolerance(np.float32, *X.shape)  # float32 over the rows, and over the features for z
    assert value32 == pytest.approx(value64, rel=tol)
    np.testing.assert_allclose(grad32, grad64, rtol=tol, atol=tol)


def epoch_rows(problem, rng, batch_size):
    """The sample ids (column 0 of X) of each batch of one epoch."""
    return [X_batch[:, 0].astype(int) for X_batch, _, _ in problem.minibatches(rng, batch_size)]


@pytest.mark.parametrize("batch_size", [1, 7, 32, 1000])
def test_minibatch_epochs_visit_every_sample_once_deterministically(batch_size):
    n_samples = 250
    X = np.column_stack([np.arange(n_samples), np.zeros(n_samples)]).astype(float)
    y = (np.arange(n_samples) % 3 == 0).astype(float)
    weights = np.random.RandomState(1).uniform(0.5, 1.5, size=n_samples)
    weights /= weights.sum()

    def epochs(seed):
        problem, rng = Problem(BinaryLogisticLoss(True), X, y, weights), np.random.RandomState(seed)
        return [epoch_rows(problem, rng, batch_size) for _ in range(3)]

    first, again, other = epochs(0), epochs(0), epochs(1)
    for epoch, repeat in zip(first, again, strict=True):
        assert [rows.tolist() for rows in epoch] == [rows.tolist() for rows in repeat]
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(n_samples))
        full, rest = divmod(n_samples, batch_size)
        assert sorted(rows.size for rows in epoch) == sorted([batch_size] * full + [rest] * (rest > 0))
    if batch_size < n_samples:
        assert [rows.tolist() for rows in first[0]] != [rows.tolist() for rows in other[0]]
        assert [rows.tolist() for rows in first[0]] != [rows.tolist() for rows in first[1]]


def test_minibatch_labels_and_weights_follow_their_rows():
    n_samples, batch_size = 103, 10
    X = np.arange(n_samples, dtype=float)[:, None]
    y = (np.arange(n_samples) % 2).astype(float)
    weights = np.linspace(1.0, 2.0, n_samples)
    weights /= weights.sum()
    problem = Problem(BinaryLogisticLoss(True), X, y, weights)
    for X_batch, y_batch, weights_batch in problem.minibatches(np.random.RandomState(0), batch_size):
        rows = X_batch[:, 0].astype(int)
        np.testing.assert_array_equal(y_batch, y[rows])
        np.testing.assert_allclose(weights_batch, weights[rows] * n_samples / rows.size, rtol=1e-15)


def test_a_strided_view_fits_exactly_like_its_contiguous_copy(classification):
    """Rows of a larger array (a view whose rows are not adjacent) are copied once into a BLAS-ready layout."""
    X, y = classification
    wide = np.hstack([X, X])[:, : X.shape[1]]
    assert not (wide.flags.c_contiguous or wide.flags.f_contiguous)
    strided = LogisticRegression(solver="gd", learning_rate="auto", update="accelerated", max_iter=50, tol=0)
    contiguous = LogisticRegression(solver="gd", learning_rate="auto", update="accelerated", max_iter=50, tol=0)
    np.testing.assert_array_equal(strided.fit(wide, y).coef_, contiguous.fit(np.ascontiguousarray(X), y).coef_)


@pytest.mark.parametrize(
    "y",
    [
        np.array([0, 1, 1, 0, 1], dtype=np.int64),
        np.array([7, -3, 7, 2, -3, 2, 2], dtype=np.int32),
        np.array([5, 3, 5], dtype=np.uint8),
        np.array([0, 10**9, 0, 10**9], dtype=np.int64),  # a wide range: sorted, as np.unique does
        np.array([2.5, -1.0, 2.5]),
        np.array(["b", "a", "b"]),
        np.array([True, False, True]),
    ],
    ids=["binary", "signed", "unsigned", "wide", "float", "text", "bool"],
)
def test_label_encoding_counts_narrow_integers_and_equals_numpy_unique(y):
    from logitlab.model.estimator import _encoded_labels

    classes, encoded = _encoded_labels(y)
    expected_classes, expected_encoded = np.unique(y, return_inverse=True)
    assert classes.dtype == expected_classes.dtype and np.array_equal(classes, expected_classes)
    assert np.array_equal(encoded, expected_encoded)
