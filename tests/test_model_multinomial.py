"""K > 2 classes: the multinomial (softmax) model reaches scikit-learn's multinomial optimum at the same C, and
its loss object, solvers, penalties, weights, dtypes, persistence and out-of-core inputs behave as the binary
ones do. Multinomial parameters are defined up to a common shift of the K rows, so decision functions are
compared centred per row."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from logitlab.errors import LogitlabError
from logitlab.model import LogisticRegression, ParquetChunks, _loss
from logitlab.model._loss import MultinomialLoss

from .tolerances import summation_tolerance

GAP = 1e-4


def centred(scores: np.ndarray) -> np.ndarray:
    return scores - scores.mean(axis=1, keepdims=True)


def gap(model, reference, X) -> float:
    return float(np.abs(centred(model.decision_function(X)) - centred(reference.decision_function(X))).max())


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def four_classes() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(
        n_samples=600, n_features=6, n_informative=4, n_classes=4, n_clusters_per_class=1, random_state=0
    )
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def sklearn_iris(iris) -> SklearnLogisticRegression:
    return SklearnLogisticRegression(C=1.0, tol=1e-12, max_iter=10_000).fit(*iris)


@pytest.fixture(scope="module")
def iris_optimum(iris) -> float:
    """Our objective at the L2 (C=1) optimum, to machine precision."""
    return LogisticRegression(solver="newton", tol=1e-12, max_iter=100).fit(*iris).cost_history_[-1]


# ------------------------------------------------------------------------------- scikit-learn's optimum
@pytest.mark.parametrize(
    "params",
    [
        {"solver": "lbfgs"},
        {"solver": "newton"},
        {"solver": "newton-cg"},
        {"solver": "gd", "learning_rate": "auto", "update": "accelerated", "max_iter": 5000},
    ],
    ids=["lbfgs", "newton", "newton-cg", "gd"],
)
def test_reaches_the_sklearn_multinomial_optimum_on_iris(iris, sklearn_iris, params):
    X, y = iris
    model = LogisticRegression(**{"tol": 1e-8, "max_iter": 1000, **params}).fit(X, y)
    assert model.converged_
    assert gap(model, sklearn_iris, X) <= GAP
    assert model.coef_.shape == (3, 4) and model.intercept_.shape == (3,)
    np.testing.assert_allclose(model.predict_proba(X), sklearn_iris.predict_proba(X), atol=GAP)
    np.testing.assert_array_equal(model.predict(X), sklearn_iris.predict(X))


@pytest.mark.parametrize("C", [0.05, 20.0])
def test_same_optimum_at_other_strengths_and_without_intercept(four_classes, C):
    X, y = four_classes
    for fit_intercept in (True, False):
        reference = SklearnLogisticRegression(C=C, fit_intercept=fit_intercept, tol=1e-12, max_iter=10_000)
        reference.fit(X, y)
        model = LogisticRegression(solver="newton", C=C, fit_intercept=fit_intercept, tol=1e-10).fit(X, y)
        assert gap(model, reference, X) <= GAP


@pytest.mark.parametrize(
    "weighting",
    [{"class_weight": "balanced"}, {"class_weight": {0: 3.0, 2: 0.5}}, {"class_weight": None}],
    ids=["balanced", "dict", "sample_weight_only"],
)
def test_class_and_sample_weights_match_sklearn(four_classes, weighting):
    X, y = four_classes
    sample_weight = np.random.RandomState(0).uniform(0.1, 3.0, size=y.size)
    reference = SklearnLogisticRegression(tol=1e-12, max_iter=10_000, **weighting).fit(X, y, sample_weight)
    model = LogisticRegression(tol=1e-9, max_iter=1000, **weighting).fit(X, y, sample_weight=sample_weight)
    assert gap(model, reference, X) <= GAP


@pytest.mark.parametrize("penalty, l1_ratio, C", [("l1", 1.0, 0.1), ("elasticnet", 0.5, 0.2)])
def test_proximal_l1_and_elasticnet_match_saga_with_the_same_zeros(iris, penalty, l1_ratio, C):
    X, y = iris
    reference = SklearnLogisticRegression(l1_ratio=l1_ratio, C=C, solver="saga", tol=1e-12, max_iter=100_000)
    reference.fit(X, y)
    model = LogisticRegression(
        penalty=penalty,
        l1_ratio=l1_ratio,
        C=C,
        solver="gd",
        learning_rate="auto",
        update="accelerated",
        tol=1e-9,
        max_iter=50_000,
    ).fit(X, y)
    assert model.converged_
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=GAP)
    np.testing.assert_array_equal(model.coef_ == 0, reference.coef_ == 0)
    assert (model.coef_ == 0).sum() >= 2
    assert gap(model, reference, X) <= GAP


# Every solver and update rule reaches the optimum's objective; momentum-type rules take smaller steps.
FIRST_ORDER_CASES = [
    ("gd", "plain", 1.0, "constant", 3000),
    ("gd", "momentum", 0.1, "constant", 3000),
    ("gd", "nesterov", 0.1, "constant", 3000),
    ("gd", "adam", 0.05, "cosine", 3000),
    ("minibatch", "plain", 1.0, "cosine", 300),
    ("minibatch", "nesterov", 0.1, "cosine", 300),
    ("minibatch", "adam", 0.02, "cosine", 300),
]


@pytest.mark.parametrize("solver, update, learning_rate, schedule, max_iter", FIRST_ORDER_CASES)
def test_every_update_rule_reaches_the_optimum(iris, iris_optimum, solver, update, learning_rate, schedule, max_iter):
    model = LogisticRegression(
        solver=solver,
        update=update,
        learning_rate=learning_rate,
        lr_schedule=schedule,
        max_iter=max_iter,
        batch_size=16,
        tol=1e-6,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stochastic runs end by max_iter, not by tol
        model.fit(*iris)
    assert model.cost_history_[-1] - iris_optimum < 1e-4


@pytest.mark.parametrize("schedule", ["inverse_scaling", "step"])
def test_sgd_with_a_decaying_schedule_approaches_the_optimum(iris, iris_optimum, schedule):
    model = LogisticRegression(
        solver="sgd", learning_rate=0.1, lr_schedule=schedule, max_iter=30, tol=0, random_state=0
    ).fit(*iris)
    assert model.cost_history_[-1] - iris_optimum < 1e-2


# ------------------------------------------------------------------------------------- the loss object
@pytest.fixture(params=[True, False], ids=["intercept", "no_intercept"])
def problem(request):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 5))
    y = rng.randint(0, 4, size=150).astype(float)
    weights = rng.uniform(0.1, 2.0, size=150)
    loss = MultinomialLoss(4, request.param, l2_strength=0.05)
    return loss, rng.normal(size=loss.n_params(5)), X, y, weights / weights.sum()


def test_loss_is_the_weighted_cross_entropy(problem):
    loss, coef, X, y, weights = problem
    scores = loss.raw_prediction(coef, X)
    proba = np.exp(scores - np.logaddexp.reduce(scores, axis=1, keepdims=True))
    weights_part = loss.split(coef)[0]
    expected = log_loss(y, proba, sample_weight=weights, labels=range(4)) + 0.025 * float(np.sum(weights_part**2))
    assert loss.loss(coef, X, y, weights) == pytest.approx(expected, rel=summation_tolerance(X.dtype, *X.shape, 4))


def test_gradient_and_hessian_products_match_differences(problem):
    loss, coef, X, y, weights = problem
    value, grad, curvature = loss.loss_gradient_curvature(coef, X, y, weights)
    tol = summation_tolerance(X.dtype, *X.shape, 4)  # over rows, features and the 4 classes
    assert value == pytest.approx(loss.loss(coef, X, y, weights), rel=tol)
    step = 1e-6
    numeric = np.array(
        [
            (loss.loss(coef + step * e, X, y, weights) - loss.loss(coef - step * e, X, y, weights)) / (2 * step)
            for e in np.eye(coef.size)
        ]
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    vector = np.random.RandomState(1).normal(size=coef.size)
    numeric_product = (
        loss.gradient(coef + step * vector, X, y, weights) - loss.gradient(coef - step * vector, X, y, weights)
    ) / (2 * step)
    product = loss.hessian_product(curvature, X, vector)
    np.testing.assert_allclose(product, numeric_product, rtol=1e-6, atol=1e-8)
    dense_grad, data_hessian = loss.data_gradient_hessian(coef, X, y, weights)
    np.testing.assert_allclose(dense_grad, grad, rtol=tol, atol=tol)
    n_weights = loss.n_weights(X.shape[1])
    data_hessian[np.arange(n_weights), np.arange(n_weights)] += loss.l2_strength
    # The dense product also sums over the parameters.
    np.testing.assert_allclose(data_hessian @ vector, product, rtol=tol * coef.size, atol=tol * coef.size)


def test_hessian_is_definite_and_unchanged_off_the_shift_directions(problem):
    """The projector `penalise_hessian` adds acts only on the shifts (same vector added to every class),
    along which the gradient is zero: the Newton step is the minimum-norm one, by Cholesky."""
    loss, coef, X, y, weights = problem
    grad, hessian = loss.gradient_hessian(coef, X, y, weights)
    _, data_hessian = loss.data_gradient_hessian(coef, X, y, weights)
    n_weights = loss.n_weights(X.shape[1])
    data_hessian[np.arange(n_weights), np.arange(n_weights)] += loss.l2_strength
    shift_free = np.random.RandomState(2).normal(size=(coef.size // 4, 4))
    shift_free -= shift_free.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(hessian @ shift_free.ravel(), data_hessian @ shift_free.ravel(), atol=1e-12)
    assert np.linalg.eigvalsh(hessian).min() > 0
    if loss.fit_intercept:  # the intercepts' gradient sums to zero over the classes
        assert abs(grad[n_weights:].sum()) < 1e-12


def test_curvature_bound_dominates_the_hessian(problem):
    loss, coef, X, y, weights = problem
    _, hessian = loss.data_gradient_hessian(coef, X, y, weights)
    n_weights = loss.n_weights(X.shape[1])
    hessian[np.arange(n_weights), np.arange(n_weights)] += loss.l2_strength
    bound = np.column_stack([loss.curvature_bound_product(X, weights, e) for e in np.eye(coef.size)])
    assert np.linalg.eigvalsh(bound - hessian).min() > -1e-12


def test_blocked_passes_equal_one_block(monkeypatch, problem):
    loss, coef, X, y, weights = problem
    value, grad = loss.loss_gradient(coef, X, y, weights)
    _, hessian = loss.gradient_hessian(coef, X, y, weights)
    monkeypatch.setattr(_loss, "BLOCK_BYTES", 1)  # blocks of 64 rows: two full ones and a partial one
    fresh = MultinomialLoss(loss.n_classes, loss.fit_intercept, loss.l2_strength)
    blocked_value, blocked_grad = fresh.loss_gradient(coef, X, y, weights)
    tol = summation_tolerance(X.dtype, *X.shape, 4)  # blocks of 64 rows against one block
    assert blocked_value == pytest.approx(value, rel=tol)
    np.testing.assert_allclose(blocked_grad, grad, rtol=tol, atol=tol)
    np.testing.assert_allclose(fresh.gradient_hessian(coef, X, y, weights)[1], hessian, rtol=tol, atol=tol)
    by_columns = np.asfortranarray(X)  # a pandas frame's block: each block of rows a strided view
    f_value, f_grad = MultinomialLoss(loss.n_classes, loss.fit_intercept, loss.l2_strength).loss_gradient(
        coef, by_columns, y, weights
    )
    assert f_value == pytest.approx(value, rel=tol)
    np.testing.assert_allclose(f_grad, grad, rtol=tol, atol=tol)


def test_huge_scores_are_finite_and_silent():
    X = np.array([[1e4], [-1e4], [3e4], [-2e4], [0.0]])
    y = np.array([0, 1, 2, 0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = MultinomialLoss(3, True)
        coef = np.array([1e3, -1e3, 0.0, 0.0, 0.0, 0.0])
        value, grad = loss.loss_gradient(coef, X.astype(float), y.astype(float), np.full(5, 0.2))
        assert np.isfinite(value) and np.isfinite(grad).all()
        for solver, step in (("gd", "auto"), ("sgd", 1e-9), ("lbfgs", 0.1), ("newton", 0.1), ("newton-cg", 0.1)):
            model = LogisticRegression(solver=solver, learning_rate=step, penalty=None, max_iter=30, tol=0).fit(X, y)
            proba = model.predict_proba(np.array([[1e6], [-1e6]]))
            assert np.isfinite(proba).all()
            np.testing.assert_allclose(proba.sum(axis=1), 1.0)


# ------------------------------------------------------------------------------------------- the estimator
def test_labels_probabilities_and_shapes(four_classes):
    X, y = four_classes
    labels = np.array(["ant", "bee", "cat", "dog"])[y]
    model = LogisticRegression(threshold=0.9).fit(X, labels)
    assert list(model.classes_) == ["ant", "bee", "cat", "dog"]
    proba = model.predict_proba(X)
    assert proba.shape == (y.size, 4) and model.decision_function(X).shape == (y.size, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=summation_tolerance(proba.dtype, 4))
    assert np.array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])  # the threshold is binary-only
    assert model.score(X, labels) > 0.8


@pytest.mark.parametrize("solver", ["gd", "lbfgs", "newton", "newton-cg", "minibatch"])
def test_float32_computes_in_float32_and_agrees_with_float64(four_classes, solver):
    X, y = four_classes
    params = {"solver": solver, "learning_rate": 0.5, "max_iter": 40, "tol": 0, "random_state": 0}
    single = LogisticRegression(dtype="float32", **params).fit(X, y)
    double = LogisticRegression(**params).fit(X, y)
    assert single.coef_.dtype == np.float32 and single.predict_proba(X).dtype == np.float32
    # float32 sums over the rows, in each of the 40 iterations.
    np.testing.assert_allclose(single.coef_, double.coef_, atol=summation_tolerance(np.float32, y.size, 40))
    assert np.mean(single.predict(X) == double.predict(X)) > 0.99


@pytest.mark.parametrize("params", [{"solver": "minibatch", "update": "adam"}, {"solver": "sgd", "init": "random"}])
def test_same_random_state_gives_bit_identical_fits(four_classes, params):
    first = LogisticRegression(max_iter=5, tol=0, random_state=7, **params).fit(*four_classes)
    again = LogisticRegression(max_iter=5, tol=0, random_state=7, **params).fit(*four_classes)
    assert np.array_equal(first.coef_, again.coef_) and first.cost_history_ == again.cost_history_


def test_early_stopping_and_validation_history(four_classes):
    X, y = four_classes
    model = LogisticRegression(
        solver="gd", learning_rate=5.0, penalty=None, max_iter=3000, early_stopping=True, n_iter_no_change=3
    ).fit(X[:400], y[:400], X_val=X[400:], y_val=y[400:])
    assert model.n_iter_ < 3000 and len(model.val_history_) == model.n_iter_
    kept = log_loss(y[400:], model.predict_proba(X[400:]))
    assert kept == pytest.approx(min(model.val_history_), rel=1e-9)  # the best epoch's parameters
    held_out = LogisticRegression(solver="gd", max_iter=30, tol=0, early_stopping=True, random_state=0)
    assert held_out.fit(X, y).val_history_


def test_warm_start_continues_and_refuses_other_classes(four_classes):
    X, y = four_classes
    full = LogisticRegression(solver="gd", max_iter=20, tol=0).fit(X, y)
    warm = LogisticRegression(solver="gd", max_iter=10, tol=0, warm_start=True).fit(X, y)
    np.testing.assert_allclose(warm.fit(X, y).coef_, full.coef_, rtol=1e-12)
    with pytest.raises(LogitlabError, match="warm_start"):
        warm.fit(X, y % 3)


def test_save_and_load_round_trip(tmp_path, four_classes):
    X, y = four_classes
    labels = np.array(["ant", "bee", "cat", "dog"])[y]
    model = LogisticRegression(dtype="float32", class_weight={"bee": 2.0}).fit(X, labels)
    model.save(tmp_path / "model")
    loaded = LogisticRegression.load(tmp_path / "model")
    assert loaded.coef_.shape == (4, 6) and loaded.coef_.dtype == np.float32
    assert list(loaded.classes_) == list(model.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_zero_weight_class_and_mismatched_validation_labels_are_named(four_classes):
    X, y = four_classes
    with pytest.raises(LogitlabError, match="class 3 has zero weight"):
        LogisticRegression().fit(X, y, sample_weight=(y != 3).astype(float))
    with pytest.raises(LogitlabError, match="y_val has labels not seen"):
        LogisticRegression().fit(X, y, X_val=X, y_val=y + 4)


# ---------------------------------------------------------------------------------------- out of core
@pytest.mark.parametrize(
    "params",
    [
        {"solver": "lbfgs", "tol": 1e-8},
        {"solver": "newton", "tol": 1e-10, "class_weight": "balanced"},
        {"solver": "newton-cg", "tol": 1e-10},
        {"solver": "gd", "learning_rate": "auto", "update": "accelerated", "max_iter": 60, "tol": 0},
        {"solver": "gd", "penalty": "l1", "C": 0.1, "learning_rate": 0.5, "max_iter": 60, "tol": 0},
    ],
    ids=["lbfgs", "newton-balanced", "newton-cg", "gd-auto", "gd-l1"],
)
def test_parquet_chunks_fit_equals_in_memory_fit(tmp_path: Path, four_classes, params):
    X, y = four_classes
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])]).assign(target=y)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "t.parquet", row_group_size=130)
    memory = LogisticRegression(**params).fit(X, y, X_val=X[:100], y_val=y[:100])
    chunked = LogisticRegression(**params).fit(ParquetChunks(tmp_path / "t.parquet"), X_val=X[:100], y_val=y[:100])
    # Row groups of 130 against one pass, over the rows and the 4 classes, in every iteration.
    tol = summation_tolerance(X.dtype, y.size, 4, memory.n_iter_)
    np.testing.assert_allclose(chunked.coef_, memory.coef_, rtol=0, atol=tol)
    np.testing.assert_allclose(chunked.intercept_, memory.intercept_, rtol=0, atol=tol)
    np.testing.assert_allclose(chunked.val_history_, memory.val_history_, rtol=tol)
    assert chunked.n_iter_ == memory.n_iter_ and list(chunked.classes_) == [0, 1, 2, 3]
