"""Agreement with scikit-learn's LogisticRegression: same objective, same optimum."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import check_estimator

from logitlab.model import LogisticRegression


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def optimum(cancer):
    """The L2 (C=1) optimum, to machine precision, and its objective."""
    model = LogisticRegression(solver="newton", tol=1e-10, max_iter=100).fit(*cancer)
    return model.coef_, model.intercept_, model.cost_history_[-1]


def test_passes_every_sklearn_estimator_check_multiclass_ones_included():
    assert get_tags(LogisticRegression()).classifier_tags.multi_class  # so the multiclass problems are checked
    results = check_estimator(LogisticRegression(), on_fail=None)
    failures = [(result["check_name"], result["exception"]) for result in results if result["status"] == "failed"]
    assert failures == []
    assert "check_classifier_not_supporting_multiclass" not in {result["check_name"] for result in results}


def test_seed_guide_example_reaches_exactly_ninety_percent():
    X, y = make_classification(
        n_samples=1000, n_features=2, n_informative=2, n_redundant=0, n_clusters_per_class=1, random_state=42
    )
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    model = LogisticRegression(solver="gd", learning_rate=0.1, max_iter=1000, tol=0, penalty=None, init="zeros").fit(
        X_train, y_train
    )
    assert f"{100 * model.score(X_test, y_test):.2f}" == "90.00"
    assert len(model.cost_history_) == 1000 == model.n_iter_
    assert all(isinstance(value, float) for value in model.cost_history_)
    assert np.all(np.diff(model.cost_history_) <= 0)


@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_second_order_solvers_match_sklearn_lbfgs(cancer, solver):
    reference = SklearnLogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(*cancer)
    model = LogisticRegression(solver=solver, C=1.0, tol=1e-8, max_iter=1000).fit(*cancer)
    assert model.converged_
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=1e-4)


@pytest.mark.parametrize(
    "weighting",
    [{"class_weight": "balanced"}, {"class_weight": {0: 3.0, 1: 0.5}}, {"class_weight": None}],
    ids=["balanced", "dict", "sample_weight_only"],
)
def test_class_and_sample_weights_match_sklearn(cancer, weighting):
    X, y = cancer
    sample_weight = np.random.RandomState(0).uniform(0.1, 3.0, size=y.size)
    reference = SklearnLogisticRegression(tol=1e-10, max_iter=10_000, **weighting).fit(X, y, sample_weight)
    model = LogisticRegression(tol=1e-8, **weighting).fit(X, y, sample_weight=sample_weight)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=1e-4)


@pytest.mark.parametrize("update, learning_rate", [("plain", 1.0), ("nesterov", 0.1)])
def test_l1_proximal_gd_matches_saga_with_the_same_zeros(cancer, update, learning_rate):
    reference = SklearnLogisticRegression(l1_ratio=1.0, C=0.1, solver="saga", tol=1e-12, max_iter=100_000)
    reference.fit(*cancer)
    model = LogisticRegression(
        penalty="l1",
        C=0.1,
        solver="gd",
        update=update,
        learning_rate=learning_rate,
        tol=1e-7,
        max_iter=20_000,
    ).fit(*cancer)
    assert model.converged_
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_allclose(model.intercept_, reference.intercept_, atol=1e-4)
    np.testing.assert_array_equal(model.coef_ == 0, reference.coef_ == 0)
    assert (model.coef_ == 0).sum() > 10


def test_elasticnet_matches_saga(cancer):
    reference = SklearnLogisticRegression(l1_ratio=0.5, C=0.5, solver="saga", tol=1e-12, max_iter=100_000)
    reference.fit(*cancer)
    model = LogisticRegression(
        penalty="elasticnet", l1_ratio=0.5, C=0.5, solver="gd", learning_rate=1.0, tol=1e-7, max_iter=20_000
    ).fit(*cancer)
    np.testing.assert_allclose(model.coef_, reference.coef_, atol=1e-4)
    np.testing.assert_array_equal(model.coef_ == 0, reference.coef_ == 0)


# Every update rule reaches the L2 optimum: objective within 1e-4, coefficients within 2e-2 (the problem is
# ill-conditioned, so a tiny objective gap still allows visible coefficient differences).
# Momentum-type rules take learning_rate / 10, as their effective step is lr / (1 - momentum).
FIRST_ORDER_CASES = [
    ("gd", "plain", 1.0, "constant", 3000),
    ("gd", "momentum", 0.1, "constant", 3000),
    ("gd", "nesterov", 0.1, "constant", 3000),
    ("gd", "adam", 0.05, "cosine", 3000),
    ("gd", "accelerated", "auto", "constant", 3000),
    ("minibatch", "plain", 2.0, "cosine", 200),
    ("minibatch", "momentum", 0.2, "cosine", 200),
    ("minibatch", "nesterov", 0.2, "cosine", 200),
    ("minibatch", "adam", 0.04, "cosine", 200),
]


@pytest.mark.parametrize("solver, update, learning_rate, schedule, max_iter", FIRST_ORDER_CASES)
def test_every_update_rule_reaches_the_optimum(cancer, optimum, solver, update, learning_rate, schedule, max_iter):
    coef, intercept, objective = optimum
    model = LogisticRegression(
        solver=solver,
        update=update,
        learning_rate=learning_rate,
        lr_schedule=schedule,
        max_iter=max_iter,
        batch_size=64,
        tol=1e-6,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stochastic runs end by max_iter, not by tol
        model.fit(*cancer)
    assert model.cost_history_[-1] - objective < 1e-4
    np.testing.assert_allclose(model.coef_, coef, atol=2e-2)
    np.testing.assert_allclose(model.intercept_, intercept, atol=2e-2)


@pytest.mark.parametrize("schedule", ["inverse_scaling", "step"])
def test_decaying_schedules_make_sgd_approach_the_optimum(cancer, optimum, schedule):
    model = LogisticRegression(
        solver="sgd", learning_rate=0.05, lr_schedule=schedule, max_iter=20, tol=0, random_state=0
    ).fit(*cancer)
    assert model.cost_history_[-1] - optimum[2] < 1e-2
