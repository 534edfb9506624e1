"""Targets 2 and 5: one epoch against the bare matvec floor, and how epoch time grows with N and D.

An epoch's cost is marginal: (fit of 1 + E epochs - fit of 1 epoch) / E, with tol=0 so that exactly that
many run. It includes everything an epoch does (the gradient pass, the objective the monitor records, the
update, shuffling); what a fit pays once (input validation, the once-per-fit shuffled copy of mini-batch
data, the power iteration of learning_rate="auto") cancels. The floor is one ``X @ w`` plus one ``X.T @ r``
on the same array, timed in the same rounds as the fits (interleaved), so that both sides of the ratio see
the same load on a shared machine.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDClassifier

from logitlab.model import LogisticRegression
from logitlab.model._loss import cache_bytes

from .conftest import interleaved
from .data import matvec_floor, problem

ANCHOR = (200_000, 50)
# 16 MB: inside half of a 32 MiB L3, so it stays cache-resident between passes (the case of a machine whose
# L3 holds the anchor problem); 20k x 100 is the same size, twice as wide.
RESIDENT = (40_000, 50)
RESIDENT_WIDE = (20_000, 100)
BATCH_SIZES = (32, 256, 1024, 4096, 16384)
SCALING_N = [(n, 50) for n in (25_000, 50_000, 100_000, 200_000, 400_000)]
SCALING_D = [(100_000, d) for d in (10, 25, 50, 100, 200)]
ROUNDS = 7


def _shape(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _in_cache(X: np.ndarray) -> bool:
    return X.nbytes <= cache_bytes()[3] // 2


def _marginal(
    benchmark, fit: Callable[[int], object], epochs: int, X: np.ndarray | None = None, rounds: int = ROUNDS
) -> tuple[float, float]:
    """Seconds per epoch, ``(fit(1 + E) - fit(1)) / E``, and the matvec floor on X (0 without X), all three
    timed in every round, one after the other."""
    timed = {"long": lambda: fit(1 + epochs), "short": lambda: fit(1)}
    if X is not None:
        w, r = np.full(X.shape[1], 1e-3, dtype=X.dtype), np.full(X.shape[0], 1e-3, dtype=X.dtype)

        def floor() -> None:
            for _ in range(5):
                matvec_floor(X, w, r)

        timed["floor"] = floor
    best = interleaved(benchmark, rounds, **timed)
    return (best["long"] - best["short"]) / epochs, best.get("floor", 0.0) / 5


def _epoch_seconds(benchmark, X: np.ndarray, y: np.ndarray, epochs: int, **params) -> tuple[float, float]:
    params = {"learning_rate": 0.1, **params}

    def fit(n_epochs: int) -> None:
        LogisticRegression(max_iter=n_epochs, tol=0.0, random_state=0, **params).fit(X, y)

    return _marginal(benchmark, fit, epochs, X)


@pytest.mark.parametrize(
    "shape,dtype,update",
    [
        (ANCHOR, "float64", "plain"),
        (ANCHOR, "float64", "accelerated"),
        (ANCHOR, "float32", "plain"),
        (RESIDENT, "float64", "plain"),
        (RESIDENT, "float64", "accelerated"),
        (RESIDENT_WIDE, "float64", "plain"),
    ],
    ids=str,
)
def bench_gd_epoch(benchmark, record, shape: tuple[int, int], dtype: str, update: str) -> None:
    X, y = problem(*shape, dtype=dtype)
    seconds, floor = _epoch_seconds(benchmark, X, y, 20, solver="gd", dtype=dtype, update=update)
    record(
        "epochs",
        shape=_shape(shape),
        in_cache=_in_cache(X),
        solver=f"gd {update}",
        dtype=dtype,
        batch_size=None,
        epoch_loss=None,
        seconds=seconds,
        floor=floor,
    )


@pytest.mark.parametrize("epoch_loss", ["full", "running"])
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def bench_minibatch_epoch(benchmark, record, batch_size: int, epoch_loss: str) -> None:
    X, y = problem(*ANCHOR)
    seconds, floor = _epoch_seconds(
        benchmark, X, y, 5, solver="minibatch", batch_size=batch_size, epoch_loss=epoch_loss
    )
    record(
        "epochs",
        shape=_shape(ANCHOR),
        in_cache=_in_cache(X),
        solver="minibatch",
        dtype="float64",
        batch_size=batch_size,
        epoch_loss=epoch_loss,
        seconds=seconds,
        floor=floor,
    )


def bench_sgdclassifier_epoch(benchmark, record) -> None:
    """scikit-learn's SGDClassifier (log loss, one sample per step, Cython) on the same data: the reference for
    per-batch overhead at small batches. Its epoch is marginal too, with tol=None for exact epoch counts."""
    X, y = problem(*ANCHOR)

    def fit(n_epochs: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            SGDClassifier(loss="log_loss", max_iter=n_epochs, tol=None, random_state=0).fit(X, y)

    seconds, _ = _marginal(benchmark, fit, 3)
    record("sgd", shape=_shape(ANCHOR), library="scikit-learn SGDClassifier", seconds=seconds)


@pytest.mark.parametrize("update", ["plain", "accelerated"])
def bench_small_epoch(benchmark, record, update: str) -> None:
    """The default data's training split (700 x 2): a sweep job's fit is thousands of such epochs at most, so
    the fixed cost per epoch (numpy calls, the monitor, the update) is what it is made of."""
    X, y = make_classification(
        n_samples=1000, n_features=2, n_informative=2, n_redundant=0, n_clusters_per_class=1, random_state=42
    )
    X, y = X[:700], y[:700]

    def fit(n_epochs: int) -> None:
        LogisticRegression(solver="gd", update=update, learning_rate=0.1, max_iter=n_epochs, tol=0).fit(X, y)

    seconds, _ = _marginal(benchmark, fit, 2000, rounds=15)
    record("small", shape="700x2", solver=f"gd {update}", epoch_us=seconds * 1e6)


@pytest.mark.parametrize("shape", list(dict.fromkeys(SCALING_N + SCALING_D)), ids=_shape)
def bench_scaling(benchmark, record, shape: tuple[int, int]) -> None:
    X, y = problem(*shape)
    seconds, floor = _epoch_seconds(benchmark, X, y, 10, solver="gd")
    record("scaling", shape=_shape(shape), n=shape[0], d=shape[1], solver="gd", seconds=seconds, floor=floor)
