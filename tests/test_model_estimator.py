"""Behaviour of the estimator: determinism, stopping rules, warm start, precision, errors, divergence."""

import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from logitlab.errors import DivergenceError, LogitlabError
from logitlab.model import LogisticRegression

from .tolerances import summation_tolerance


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=400, n_features=5, n_informative=3, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def fitted_state(model):
    return model.coef_.copy(), model.intercept_.copy(), list(model.cost_history_)


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "minibatch", "update": "adam", "batch_size": 16},
        {"solver": "sgd", "update": "nesterov", "learning_rate": 0.01},
        {"solver": "gd", "init": "random"},
        {"solver": "minibatch", "early_stopping": True, "penalty": "elasticnet"},
    ],
)
def test_same_random_state_gives_bit_identical_fits(data, params):
    first = LogisticRegression(max_iter=5, tol=0, random_state=7, **params).fit(*data)
    second = LogisticRegression(max_iter=5, tol=0, random_state=7, **params).fit(*data)
    coef, intercept, history = fitted_state(first)
    assert np.array_equal(coef, second.coef_) and np.array_equal(intercept, second.intercept_)
    assert history == second.cost_history_
    other = LogisticRegression(max_iter=5, tol=0, random_state=8, **params).fit(*data)
    assert not np.array_equal(coef, other.coef_)


def test_sgd_makes_one_update_per_sample():
    X, y = np.array([[1.0], [-1.0], [2.0]]), np.array([1, 0, 1])
    model = LogisticRegression(
        solver="sgd", penalty=None, learning_rate=0.5, max_iter=1, tol=0, fit_intercept=False, random_state=0
    ).fit(X, y)
    order = np.random.RandomState(0).permutation(3)
    w = 0.0
    for i in order:  # by hand: w <- w - lr * (sigmoid(x w) - y) x
        w -= 0.5 * (1 / (1 + np.exp(-X[i, 0] * w)) - y[i]) * X[i, 0]
    assert model.coef_[0, 0] == pytest.approx(w, rel=1e-12)


def test_tol_zero_runs_exactly_max_iter_epochs(data):
    for solver in ["gd", "minibatch", "lbfgs", "newton"]:
        model = LogisticRegression(solver=solver, max_iter=7, tol=0, random_state=0).fit(*data)
        assert model.n_iter_ == len(model.cost_history_) == 7
        assert not model.converged_


def test_converges_and_stops_before_max_iter(cancer):
    model = LogisticRegression(solver="gd", learning_rate=1.0, max_iter=5000, tol=1e-3).fit(*cancer)
    assert model.converged_ and model.n_iter_ < 5000
    assert isinstance(model.n_iter_, int) and isinstance(model.converged_, bool)


def test_convergence_warning_when_max_iter_is_reached(cancer):
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        model = LogisticRegression(solver="gd", max_iter=3).fit(*cancer)
    assert not model.converged_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LogisticRegression(solver="gd", max_iter=3, tol=0).fit(*cancer)


def test_early_stopping_on_a_stratified_hold_out_keeps_the_best_epoch(cancer):
    model = LogisticRegression(
        solver="gd",
        learning_rate=1.0,
        penalty=None,
        max_iter=5000,
        tol=1e-4,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=5,
        random_state=0,
    ).fit(*cancer)
    assert model.n_iter_ < 5000 and not model.converged_
    assert len(model.val_history_) == model.n_iter_
    history = model.val_history_
    last = len(history) - 5
    # as in scikit-learn: 5 epochs in a row that did not beat the best loss so far by tol
    assert all(history[k] > min(history[:k]) - 1e-4 for k in range(last, len(history)))


def test_explicit_validation_data_fills_val_history(data):
    X, y = data
    model = LogisticRegression(solver="gd", max_iter=20, tol=0).fit(X[:300], y[:300], X_val=X[300:], y_val=y[300:])
    assert len(model.val_history_) == 20 and all(isinstance(v, float) for v in model.val_history_)
    assert model.val_history_[0] == pytest.approx(np.log(2))
    assert model.val_history_[-1] < model.val_history_[0]
    plain = LogisticRegression(solver="gd", max_iter=20, tol=0).fit(X[:300], y[:300])
    assert plain.val_history_ == [] and np.array_equal(plain.coef_, model.coef_)
    stopped = LogisticRegression(
        solver="gd", learning_rate=5.0, penalty=None, max_iter=2000, early_stopping=True, n_iter_no_change=3
    ).fit(X[:300], y[:300], X_val=X[300:], y_val=y[300:])
    assert stopped.n_iter_ < 2000
    kept = log_loss(y[300:], stopped.predict_proba(X[300:]))
    assert kept == pytest.approx(min(stopped.val_history_), rel=1e-9)  # the best epoch's parameters are kept


def test_warm_start_continues_from_the_previous_fit(cancer):
    full = LogisticRegression(solver="gd", max_iter=20, tol=0).fit(*cancer)
    warm = LogisticRegression(solver="gd", max_iter=10, tol=0, warm_start=True).fit(*cancer)
    assert warm.fit(*cancer).n_iter_ == 10
    np.testing.assert_allclose(warm.coef_, full.coef_, rtol=1e-12)
    assert warm.cost_history_[0] == pytest.approx(full.cost_history_[10], rel=1e-12)
    cold = LogisticRegression(solver="gd", max_iter=10, tol=0).fit(*cancer)
    assert not np.allclose(cold.fit(*cancer).coef_, full.coef_)
    with pytest.raises(LogitlabError, match="warm_start"):
        warm.fit(cancer[0][:, :5], cancer[1])


@pytest.mark.parametrize("solver", ["gd", "minibatch", "lbfgs", "newton"])
def test_float32_computes_in_float32_and_agrees_with_float64(cancer, solver):
    X, y = cancer
    params = {"solver": solver, "learning_rate": 0.5, "max_iter": 50, "tol": 0, "random_state": 0}
    single = LogisticRegression(dtype="float32", **params).fit(X, y)
    double = LogisticRegression(dtype="float64", **params).fit(X, y)
    assert single.coef_.dtype == np.float32 and single.intercept_.dtype == np.float32
    assert single.decision_function(X).dtype == np.float32
    # float32 sums over the rows, in each of the 50 iterations.
    np.testing.assert_allclose(single.coef_, double.coef_, atol=summation_tolerance(np.float32, y.size, 50))
    assert np.mean(single.predict(X) == double.predict(X)) > 0.99


def test_any_two_labels_and_threshold(cancer):
    X, y = cancer
    labels = np.where(y == 1, "benign", "malignant")
    model = LogisticRegression().fit(X, labels)
    assert list(model.classes_) == ["benign", "malignant"]
    proba = model.predict_proba(X)
    assert proba.shape == (y.size, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(model.predict(X), np.where(proba[:, 1] >= 0.5, "malignant", "benign"))
    assert model.decision_function(X).shape == (y.size,)
    strict = LogisticRegression(threshold=0.9).fit(X, labels)
    assert (strict.predict(X) == "malignant").sum() < (model.predict(X) == "malignant").sum()
    assert np.array_equal(strict.predict(X), np.where(proba[:, 1] >= 0.9, "malignant", "benign"))


def test_dataframe_feature_names_are_kept_and_checked(cancer):
    X, y = cancer
    frame = pd.DataFrame(X[:, :4], columns=["a", "b", "c", "d"])
    model = LogisticRegression().fit(frame, y)
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="Feature names"):
        model.predict(frame[["a", "b", "d", "c"]])
    with (
        pytest.warns(UserWarning, match="feature names"),
        pytest.raises(ValueError, match="X has 3 features"),
    ):
        model.predict(frame[["a", "b", "c"]].to_numpy())


def test_a_frame_of_floats_fits_and_scores_as_its_array_and_other_frames_as_scikit_learn_checks_them(cancer):
    """`estimator._validated`: a float frame is checked by names and count, then as its array (the same model and
    scores, bit for bit, and scikit-learn's errors); a frame with another kind of column takes scikit-learn's
    own checks."""
    X, y = cancer
    frame = pd.DataFrame(X[:, :5], columns=list("abcde")).astype({"e": np.float32})
    from_frame = LogisticRegression(solver="newton").fit(frame, y)
    from_array = LogisticRegression(solver="newton").fit(frame.to_numpy(), y)
    np.testing.assert_array_equal(from_frame.coef_, from_array.coef_)
    np.testing.assert_array_equal(from_frame.predict_proba(frame), from_array.predict_proba(frame.to_numpy()))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        from_frame.predict(frame.assign(a=np.where(np.arange(len(frame)) == 3, np.nan, frame["a"])))
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        from_frame.predict(frame.rename(columns={"e": "f"}))
    with pytest.raises(ValueError, match="could not convert string to float"):
        from_frame.predict(frame.assign(e="x"))
    nullable = frame.astype({"a": "Float64"})  # pandas' nullable floats: scikit-learn's own conversion
    np.testing.assert_array_equal(from_frame.predict_proba(nullable), from_frame.predict_proba(frame))


def test_no_numpy_warnings_even_on_extreme_inputs():
    X = np.array([[1e4], [-1e4], [3e4], [-2e4]])
    y = np.array([1, 0, 1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for solver in ["gd", "sgd", "lbfgs", "newton"]:
            model = LogisticRegression(solver=solver, penalty=None, max_iter=50, tol=0).fit(X, y)
            proba = model.predict_proba(np.array([[1e6], [-1e6]]))
            assert np.all(np.isfinite(proba))


def test_verbose_logs_progress(caplog, cancer):
    with caplog.at_level(logging.INFO, logger="logitlab.model"):
        LogisticRegression(solver="gd", max_iter=20, tol=0, verbose=1).fit(*cancer)
    assert any("epoch 20/20" in message for message in caplog.messages)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"max_iter": 0}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"C": 0}, "C must"),
        ({"C": -1}, "C must"),
        ({"batch_size": 0}, "batch_size"),
        ({"l1_ratio": 1.5}, "l1_ratio"),
        ({"l1_ratio": -0.1}, "l1_ratio"),
        ({"tol": -1e-3}, "tol"),
        ({"momentum": 1.0}, "momentum"),
        ({"threshold": 1.5}, "threshold"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"solver": "saga"}, "solver"),
        ({"update": "rmsprop"}, "update"),
        ({"lr_schedule": "exponential"}, "lr_schedule"),
        ({"penalty": "l3"}, "penalty"),
        ({"init": "ones"}, "init"),
        ({"dtype": "float16"}, "dtype"),
        ({"class_weight": "auto"}, "class_weight"),
        ({"fit_intercept": "yes"}, "fit_intercept"),
        ({"learning_rate": "fast"}, "learning_rate must be a real number"),
        ({"solver": "minibatch", "learning_rate": "auto"}, "learning_rate='auto' is the full-batch step"),
        ({"solver": "gd", "update": "adam", "learning_rate": "auto"}, "learning_rate='auto' is the full-batch step"),
        ({"epoch_loss": "batch"}, "epoch_loss"),
        ({"solver": "gd", "epoch_loss": "running"}, "epoch_loss='running' is for solver='minibatch' or 'sgd'"),
        ({"solver": "newton-cg", "penalty": "l1"}, "solver='newton-cg' does not support penalty='l1'"),
        ({"solver": "lbfgs", "penalty": "l1"}, "solver='lbfgs' does not support penalty='l1'"),
        (
            {"solver": "newton", "penalty": "elasticnet"},
            "solver='newton' does not support penalty='elasticnet'",
        ),
    ],
)
def test_bad_hyperparameters_raise_a_named_error(data, params, match):
    with pytest.raises(LogitlabError, match=match):
        LogisticRegression(**params).fit(*data)


def test_bad_data_raises_clear_errors(data):
    X, y = data
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LogisticRegression().fit(X_nan, y)
    X_inf = X.copy()
    X_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        LogisticRegression().fit(X_inf, y)
    with pytest.raises(ValueError, match="Unknown label type"):
        LogisticRegression().fit(X, X[:, 0])
    with pytest.raises(LogitlabError, match="1 class"):
        LogisticRegression().fit(X, np.zeros(y.size))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LogisticRegression().fit(X, y[:-1])
    with pytest.raises(LogitlabError, match="zero weight"):
        LogisticRegression().fit(X, y, sample_weight=y.astype(float))
    with pytest.raises(LogitlabError, match="X_val and y_val"):
        LogisticRegression().fit(X, y, X_val=X)
    with pytest.raises(LogitlabError, match="X_val has 4 features"):
        LogisticRegression().fit(X, y, X_val=X[:, :4], y_val=y)
    with pytest.raises(LogitlabError, match="y_val has labels not seen"):
        LogisticRegression().fit(X, y, X_val=X, y_val=y + 5)
    with pytest.raises(LogitlabError, match="early_stopping cannot hold out"):
        LogisticRegression(early_stopping=True, validation_fraction=0.01).fit(X[:20], y[:20])
    model = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features, but LogisticRegression is expecting 5"):
        model.predict(X[:, :4])


@pytest.mark.parametrize("solver", ["gd", "minibatch", "sgd"])
def test_divergence_raises_and_names_the_learning_rate(cancer, solver):
    X, y = cancer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(DivergenceError, match=r"diverged at epoch \d+ .*learning_rate=1e\+06 is too large"):
            LogisticRegression(solver=solver, learning_rate=1e6, max_iter=50, tol=0, random_state=0).fit(X * 1e3, y)


def test_the_parameter_spec_is_the_estimators() -> None:
    """`model._params` (what the config layer validates with, without scikit-learn) names every parameter of the
    estimator with its default, and every update rule the solvers have."""
    from logitlab.model import _params
    from logitlab.model._solvers import UPDATE_RULES

    assert LogisticRegression().get_params() == _params.DEFAULTS
    assert tuple(UPDATE_RULES) == _params.UPDATES
