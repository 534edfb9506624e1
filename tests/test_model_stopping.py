"""Every solver stops on `tol` and says so truthfully: on an easy problem it stops well before `max_iter` with
`converged_` True, `n_iter_` the number of recorded epochs, and a gradient (computed here, from the formulas)
whose max-norm is below `tol`; with `tol=0` it runs every epoch it is given and does not claim convergence.
A solver that ignored `tol` would pass every test that only looks at its optimum."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from logitlab import LogisticRegression

from .tolerances import summation_tolerance

MAX_ITER = 2000
# The stochastic solvers need a decaying step to settle the full gradient; tol 1e-3 keeps them quick.
SOLVERS = {
    "gd-plain": ({"solver": "gd", "update": "plain", "learning_rate": 1.0}, 1e-4),
    "gd-momentum": ({"solver": "gd", "update": "momentum", "learning_rate": 0.3}, 1e-4),
    "gd-nesterov": ({"solver": "gd", "update": "nesterov", "learning_rate": 0.3}, 1e-4),
    "gd-adam": ({"solver": "gd", "update": "adam", "learning_rate": 0.05}, 1e-4),
    "gd-accelerated": ({"solver": "gd", "update": "accelerated", "learning_rate": 1.0}, 1e-4),
    "gd-plain-auto": ({"solver": "gd", "update": "plain", "learning_rate": "auto"}, 1e-4),
    "gd-accelerated-auto": ({"solver": "gd", "update": "accelerated", "learning_rate": "auto"}, 1e-4),
    "minibatch": (
        {"solver": "minibatch", "batch_size": 40, "update": "momentum", "learning_rate": 0.3,
         "lr_schedule": "inverse_scaling"},
        1e-3,
    ),
    "sgd": ({"solver": "sgd", "learning_rate": 0.1, "lr_schedule": "inverse_scaling"}, 1e-3),
    "newton": ({"solver": "newton"}, 1e-4),
    "newton-cg": ({"solver": "newton-cg"}, 1e-4),
    "lbfgs": ({"solver": "lbfgs"}, 1e-4),
}  # fmt: skip
# epoch_loss="running" stops when the running loss has stalled for n_iter_no_change epochs (no full gradient).
RUNNING = {
    "minibatch-running": {"solver": "minibatch", "batch_size": 40, "learning_rate": 0.5, "epoch_loss": "running"},
    "sgd-running": {
        "solver": "sgd", "learning_rate": 0.05, "lr_schedule": "inverse_scaling", "epoch_loss": "running"
    },
}  # fmt: skip


@pytest.fixture(scope="module", params=[2, 3], ids=["binary", "multinomial"])
def easy(request) -> tuple[np.ndarray, np.ndarray]:
    """120 rows of standardised data, 4 features, well separated classes: every solver converges quickly."""
    X, y = make_classification(
        300, 4, n_informative=3, n_redundant=0, n_classes=request.param, n_clusters_per_class=1, random_state=0
    )
    return StandardScaler().fit_transform(X)[:120], y[:120]


def gradient_max_norm(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    """The max-norm of the objective's gradient at the fitted parameters, from the formulas (not the loss
    object): mean log-loss (softmax cross-entropy for K > 2) plus ``||W||^2 / (2 C n)``."""
    n_samples = X.shape[0]
    l2_strength = 1.0 / (model.C * n_samples)
    if model.coef_.shape[0] == 1:
        residual = (expit(X @ model.coef_[0] + model.intercept_[0]) - y) / n_samples
        weights_grad, intercept_grad = X.T @ residual + l2_strength * model.coef_[0], residual.sum()
    else:
        scores = X @ model.coef_.T + model.intercept_
        residual = (softmax(scores, axis=1) - np.eye(model.coef_.shape[0])[y]) / n_samples
        weights_grad, intercept_grad = residual.T @ X + l2_strength * model.coef_, residual.sum(axis=0)
    return float(max(np.abs(weights_grad).max(), np.abs(intercept_grad).max()))


def fit(X: np.ndarray, y: np.ndarray, **params) -> tuple[LogisticRegression, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(random_state=0, **params).fit(X, y)
    return model, [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def assert_runs_every_epoch_without_tol(X: np.ndarray, y: np.ndarray, params: dict, converged_at: int) -> None:
    """tol=0 runs exactly max_iter epochs, past the one where tol stopped, and claims no convergence."""
    max_iter = converged_at + 1
    model, caught = fit(X, y, **params, tol=0, max_iter=max_iter)
    assert model.n_iter_ == max_iter == len(model.cost_history_)
    assert model.converged_ is False and not caught


@pytest.mark.parametrize("name", SOLVERS)
def test_solver_stops_at_tol_well_before_max_iter_and_reports_it(easy, name: str) -> None:
    X, y = easy
    params, tol = SOLVERS[name]
    model, caught = fit(X, y, **params, tol=tol, max_iter=MAX_ITER)
    assert model.converged_ is True and not caught
    assert model.n_iter_ == len(model.cost_history_) and model.n_iter_ < MAX_ITER // 4
    # The check sums in another order than the solver: allow that rounding on top of tol.
    assert gradient_max_norm(model, X, y) < tol + summation_tolerance(X.dtype, *X.shape)
    assert_runs_every_epoch_without_tol(X, y, params, model.n_iter_)


@pytest.mark.parametrize("name", RUNNING)
def test_running_loss_stops_when_it_stalls_and_reports_it(easy, name: str) -> None:
    X, y = easy
    params, tol, patience = RUNNING[name], 1e-4, 5
    model, caught = fit(X, y, **params, tol=tol, n_iter_no_change=patience, max_iter=MAX_ITER)
    assert model.converged_ is True and not caught
    history = model.cost_history_
    assert model.n_iter_ == len(history) and model.n_iter_ < MAX_ITER // 4
    # The stall rule, from the history: none of the last `patience` epochs beat the best before it by tol.
    for epoch in range(len(history) - patience, len(history)):
        assert history[epoch] >= min(history[:epoch]) - tol, epoch
    assert_runs_every_epoch_without_tol(X, y, {**params, "n_iter_no_change": patience}, model.n_iter_)


def test_newton_cg_without_tol_stops_only_where_no_step_can_lower_the_objective(easy) -> None:
    """tol=0 asks for every epoch, but once no step lowers the objective as a float can tell (a step near the
    optimum lowers it by about the gradient's square) a Newton-CG step cannot be taken: the fit ends there, at
    a gradient near sqrt(machine epsilon), claiming no convergence (the others run on at the same point)."""
    X, y = easy
    model, caught = fit(X, y, solver="newton-cg", tol=0, max_iter=MAX_ITER)
    assert model.n_iter_ < MAX_ITER and len(model.cost_history_) == model.n_iter_
    assert model.converged_ is False and not caught
    assert gradient_max_norm(model, X, y) < 1e-9
