"""`solver="auto"`: the solver chosen for the problem as documented, recorded, and the optimum it reaches; the
start given by `coef_init`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, make_classification

from logitlab.errors import LogitlabError
from logitlab.model import LogisticRegression
from logitlab.model.estimator import NEWTON_MAX_PARAMS, WEAK_L2, choose_solver


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


@pytest.mark.parametrize(
    ("penalty", "l2_strength", "n_params", "expected"),
    [
        ("l1", 0.0, 31, "gd"),
        ("elasticnet", 1e-3, 10_000, "gd"),
        ("l2", 1e-6, 31, "newton"),
        ("l2", 1.0, NEWTON_MAX_PARAMS, "newton"),
        (None, 0.0, NEWTON_MAX_PARAMS + 1, "newton-cg"),
        ("l2", WEAK_L2 / 2, 2_000, "newton-cg"),
        ("l2", WEAK_L2 * 2, 2_000, "lbfgs"),
    ],
)
def test_auto_picks_the_documented_solver(penalty, l2_strength, n_params, expected):
    assert choose_solver(penalty, l2_strength, n_params) == expected


def test_auto_fit_records_its_choice_and_reaches_the_optimum_of_newton_and_lbfgs(cancer, tmp_path: Path):
    auto = LogisticRegression(solver="auto", tol=1e-8, max_iter=100).fit(*cancer)
    assert auto.solver_ == "newton" and auto.converged_
    for solver in ("newton", "lbfgs"):
        reference = LogisticRegression(solver=solver, tol=1e-8, max_iter=1000).fit(*cancer)
        assert reference.solver_ == solver
        # both gradients are below 1e-8 (max-norm): with the L2 term's curvature 1 / (C n) the solutions are
        # within sqrt(P) * 1e-8 * C * n of the optimum each
        bound = 2 * np.sqrt(31) * 1e-8 * cancer[0].shape[0]
        np.testing.assert_allclose(auto.coef_, reference.coef_, atol=bound)
        np.testing.assert_allclose(auto.intercept_, reference.intercept_, atol=bound)
    auto.save(tmp_path / "model")
    assert LogisticRegression.load(tmp_path / "model").solver_ == "newton"


def test_auto_with_l1_runs_proximal_gd_and_wide_data_avoids_the_dense_hessian():
    X, y = make_classification(n_samples=300, n_features=600, n_informative=10, random_state=0)
    sparse = LogisticRegression(
        solver="auto", penalty="l1", C=0.1, learning_rate="auto", update="accelerated", max_iter=5000
    ).fit(X, y)
    assert sparse.solver_ == "gd" and sparse.converged_ and (sparse.coef_ == 0).mean() > 0.5
    strong = LogisticRegression(solver="auto", C=1e-3, tol=1e-6).fit(X, y)  # l2 strength 1 / (C n) = 3.3
    weak = LogisticRegression(solver="auto", C=100.0, tol=1e-6).fit(X, y)  # 3.3e-5
    assert (strong.solver_, weak.solver_) == ("lbfgs", "newton-cg")
    assert strong.converged_ and weak.converged_


def test_coef_init_starts_the_solver_there(cancer):
    optimum = LogisticRegression(solver="newton", tol=1e-10).fit(*cancer)
    restarted = LogisticRegression(solver="lbfgs", tol=1e-6).fit(
        *cancer, coef_init=optimum.coef_, intercept_init=optimum.intercept_
    )
    assert restarted.n_iter_ == 1  # the start already meets tol
    np.testing.assert_array_equal(restarted.coef_, optimum.coef_)
    with pytest.raises(LogitlabError, match=r"coef_init must have shape \(1, 30\)"):
        LogisticRegression().fit(*cancer, coef_init=np.zeros((1, 29)))
