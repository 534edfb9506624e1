"""Dask arrays as fit input: each full gradient is computed block by block on a `LocalCluster` and summed
there, and the fit equals the in-memory one."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sklearn.datasets import make_classification

from logitlab import LogisticRegression
from logitlab.errors import LogitlabError

from .tolerances import summation_tolerance

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """Two single-threaded worker processes, for as long as this module's tests run."""
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def data(client) -> tuple[np.ndarray, np.ndarray, object, object]:
    X, y = make_classification(6000, 5, n_informative=3, random_state=1)
    labels = np.where(y == 1, "spam", "ham")
    return X, labels, da.from_array(X, chunks=(1000, 3)).persist(), da.from_array(labels, chunks=1500).persist()


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "lbfgs", "tol": 1e-8},
        {"solver": "gd", "max_iter": 20, "tol": 0, "penalty": "l1", "C": 0.5},
        {"solver": "newton", "tol": 1e-10, "class_weight": {"spam": 2.0}},
        {"solver": "newton-cg", "tol": 1e-10},
        {"solver": "gd", "max_iter": 30, "tol": 0, "learning_rate": "auto", "update": "accelerated"},
    ],
    ids=["lbfgs", "gd-l1", "newton-weighted", "newton-cg", "gd-auto-fista"],
)
def test_dask_fit_equals_in_memory_fit(data, params) -> None:
    X, labels, dX, dy = data
    memory = LogisticRegression(**params).fit(X, labels, X_val=X[:2000], y_val=labels[:2000])
    distributed_fit = LogisticRegression(**params).fit(dX, dy, X_val=dX[:2000], y_val=dy[:2000])
    assert distributed_fit.n_iter_ == memory.n_iter_
    # Blocks of 1000 rows summed on the workers against one pass over 6,000, in every iteration.
    tol = summation_tolerance(X.dtype, X.shape[0], memory.n_iter_)
    np.testing.assert_allclose(distributed_fit.coef_, memory.coef_, rtol=0, atol=tol)
    np.testing.assert_allclose(distributed_fit.intercept_, memory.intercept_, rtol=0, atol=tol)
    np.testing.assert_allclose(distributed_fit.val_history_, memory.val_history_, rtol=tol)
    assert list(distributed_fit.classes_) == ["ham", "spam"] and distributed_fit.n_features_in_ == 5
    np.testing.assert_array_equal(distributed_fit.predict(X), memory.predict(X))


@pytest.mark.parametrize("solver", ["lbfgs", "newton"])
def test_dask_multinomial_fit_equals_in_memory_fit(client, solver: str) -> None:
    X, y = make_classification(3000, 5, n_informative=3, n_classes=3, n_clusters_per_class=1, random_state=2)
    labels = np.array(["ant", "bee", "cat"])[y]
    memory = LogisticRegression(solver=solver, tol=1e-10).fit(X, labels)
    distributed_fit = LogisticRegression(solver=solver, tol=1e-10).fit(
        da.from_array(X, chunks=(700, 5)), da.from_array(labels, chunks=700)
    )
    assert distributed_fit.coef_.shape == (3, 5)
    # Blocks of 700 rows sum in another order than one block of 3000: both stop at a gradient below 1e-10.
    np.testing.assert_allclose(distributed_fit.coef_, memory.coef_, rtol=0, atol=1e-8)
    np.testing.assert_allclose(distributed_fit.intercept_, memory.intercept_, rtol=0, atol=1e-8)
    assert list(distributed_fit.classes_) == ["ant", "bee", "cat"]


def test_dask_minibatch_pulls_blocks_and_is_deterministic(data) -> None:
    X, labels, dX, dy = data
    params = {"solver": "minibatch", "learning_rate": 0.01, "update": "momentum", "max_iter": 5, "tol": 0}
    first = LogisticRegression(**params, random_state=0).fit(dX, dy)
    again = LogisticRegression(**params, random_state=0).fit(dX, dy)
    np.testing.assert_array_equal(first.coef_, again.coef_)
    assert first.score(X, labels) > 0.8


def test_dask_input_mistakes_are_named(data) -> None:
    _, _, dX, dy = data
    with pytest.raises(LogitlabError, match="y is required"):
        LogisticRegression().fit(dX)
    with pytest.raises(LogitlabError, match="6000 samples but its labels"):
        LogisticRegression().fit(dX, dy[:10])
    unknown = dX[dX[:, 0] > 0]  # boolean selection: row counts unknown until computed
    with pytest.raises(LogitlabError, match="unknown chunk sizes"):
        LogisticRegression().fit(unknown, dy)
