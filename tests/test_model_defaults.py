"""The default configuration converges fast on real-shaped data; a numeric learning rate means what it says."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.preprocessing import StandardScaler

from logitlab import config
from logitlab.model import LogisticRegression
from logitlab.model._loss import BinaryLogisticLoss
from logitlab.stages import train
from tests.benchmarks.data import one_hot_like
from tests.conftest import REPO


def default_model(*overrides: str) -> LogisticRegression:
    """The estimator exactly as `dvc repro` builds it from the real conf/ tree."""
    params = config.compose(list(overrides), REPO / "conf")
    return LogisticRegression(**train.settings(params))


def objective(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    coef = np.concatenate([model.coef_.ravel(), model.intercept_])
    return BinaryLogisticLoss(True, 1.0 / X.shape[0]).loss(coef, X, y, np.full(X.shape[0], 1.0 / X.shape[0]))


@pytest.fixture(scope="module")
def one_hot() -> tuple[np.ndarray, np.ndarray]:
    X, y = one_hot_like(8000)
    assert X.shape[1] == 106 and np.isin(X[:, 6:], (0.0, 1.0)).all()
    return X, y


def test_default_configuration_converges_on_one_hot_data_and_scores_the_optimum(one_hot) -> None:
    X, y = one_hot
    optimum = SklearnLogisticRegression(solver="newton-cholesky", tol=1e-12, max_iter=100).fit(X, y)
    model = default_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X, y)
    assert model.converged_ and model.n_iter_ < 500  # the old default had not converged after 5000
    # tol=1e-4 on the gradient leaves a relative gap of ~1e-4, as scikit-learn's default fit does here.
    assert (objective(model, X, y) - objective(optimum, X, y)) / objective(optimum, X, y) < 5e-4
    assert abs(model.score(X, y) - optimum.score(X, y)) <= 2 / X.shape[0]
    assert len(model.cost_history_) == model.n_iter_


def test_the_old_default_step_crawls_where_the_default_converges(one_hot) -> None:
    """Plain steps at learning rate 0.1 (the default before) stay far from the tolerance in the same budget."""
    X, y = one_hot
    default = default_model().fit(X, y)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        old = default_model("model.update=plain", "model.learning_rate=0.1", f"model.max_iter={default.n_iter_}").fit(
            X, y
        )
    assert not old.converged_ and old.cost_history_[-1] > default.cost_history_[-1]


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y.astype(np.float64)


def test_a_numeric_learning_rate_is_the_step_taken(cancer) -> None:
    X, y = cancer
    loss, weights = BinaryLogisticLoss(True, 1.0 / X.shape[0]), np.full(X.shape[0], 1.0 / X.shape[0])
    first_gradient = loss.gradient(np.zeros(X.shape[1] + 1), X, y, weights)
    for update in ("plain", "accelerated"):  # the first accelerated step has no momentum yet
        model = LogisticRegression(solver="gd", update=update, learning_rate=0.37, max_iter=1, tol=0).fit(X, y)
        np.testing.assert_allclose(model.coef_[0], -0.37 * first_gradient[:-1], rtol=1e-12)


def test_auto_learning_rate_is_one_over_the_lipschitz_constant(cancer) -> None:
    X, y = cancer
    n_samples = X.shape[0]
    loss, weights = BinaryLogisticLoss(True, 1.0 / n_samples), np.full(n_samples, 1.0 / n_samples)
    design = np.hstack([X, np.ones((n_samples, 1))])
    bound = 0.25 * design.T @ (weights[:, None] * design)
    bound[np.diag_indices(X.shape[1])] += 1.0 / n_samples
    lipschitz = np.linalg.eigvalsh(bound)[-1]
    first_gradient = loss.gradient(np.zeros(X.shape[1] + 1), X, y, weights)
    model = LogisticRegression(solver="gd", learning_rate="auto", max_iter=1, tol=0).fit(X, y)
    np.testing.assert_allclose(model.coef_[0], -first_gradient[:-1] / lipschitz, rtol=2e-3)


def test_acceleration_needs_far_fewer_epochs_than_plain_steps_of_the_same_size(cancer) -> None:
    X, y = cancer
    fits = {
        update: LogisticRegression(solver="gd", update=update, learning_rate="auto", max_iter=20_000, tol=1e-5).fit(
            X, y
        )
        for update in ("plain", "accelerated")
    }
    assert fits["plain"].converged_ and fits["accelerated"].converged_
    assert fits["accelerated"].n_iter_ * 5 < fits["plain"].n_iter_
    assert fits["accelerated"].cost_history_[-1] == pytest.approx(fits["plain"].cost_history_[-1], abs=1e-6)


def test_running_loss_stops_without_a_full_pass_per_epoch(cancer, monkeypatch) -> None:
    """epoch_loss='running' records the mean batch loss and stops when it stalls (scikit-learn's SGD rule)."""
    X, y = cancer
    params = {"solver": "minibatch", "batch_size": 32, "learning_rate": 0.05, "max_iter": 500, "random_state": 0}
    full = LogisticRegression(**params, tol=0, epoch_loss="full").fit(X, y)
    from logitlab.model import _solvers

    def no_full_pass(self, coef):
        raise AssertionError("the running loss needs no full objective")

    monkeypatch.setattr(_solvers.Problem, "objective_gradient", no_full_pass)
    running = LogisticRegression(**params, tol=1e-4, n_iter_no_change=5, epoch_loss="running").fit(X, y)
    assert running.converged_ and 5 < running.n_iter_ < 500
    # The running loss is the objective along the epoch: close to the full objective, not equal to it.
    epochs = running.n_iter_
    assert running.cost_history_[-1] == pytest.approx(full.cost_history_[epochs - 1], rel=0.2)
    history = running.cost_history_
    for epoch in range(epochs - 5, epochs):  # none of the last n_iter_no_change epochs beat the best by tol
        assert history[epoch] > min(history[:epoch]) - 1e-4
