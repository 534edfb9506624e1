"""Targets 2 and 5: one epoch against the bare matvec floor, and how epoch time grows with N and D.

An epoch's cost is marginal: (fit of 1 + E epochs - fit of 1 epoch) / E, with tol=0 so that exactly that
many run. It includes everything an epoch does (the gradient pass, the objective the monitor records, the
update, shuffling); what a fit pays once (input validation, the once-per-fit shuffled copy of mini-batch
data) cancels. The floor is one ``X @ w`` plus one ``X.T @ r`` on the same array, timed in the same session.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from logitlab.model import LogisticRegression

from .conftest import best_seconds
from .data import matvec_floor, problem

ANCHOR = (200_000, 50)
BATCH_SIZES = (32, 256, 1024, 4096, 16384)
SCALING_N = [(n, 50) for n in (25_000, 50_000, 100_000, 200_000, 400_000)]
SCALING_D = [(100_000, d) for d in (10, 25, 50, 100, 200)]
ROUNDS = 5


def _epoch_seconds(benchmark, X: np.ndarray, y: np.ndarray, epochs: int, **params) -> float:
    def fit(n_epochs: int) -> None:
        LogisticRegression(max_iter=n_epochs, tol=0.0, learning_rate=0.1, random_state=0, **params).fit(X, y)

    benchmark.pedantic(fit, args=(1 + epochs,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    one_epoch = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fit(1)
        one_epoch.append(time.perf_counter() - start)
    return (best_seconds(benchmark) - min(one_epoch)) / epochs


def _floor_seconds(benchmark, X: np.ndarray) -> float:
    w, r = np.full(X.shape[1], 1e-3, dtype=X.dtype), np.full(X.shape[0], 1e-3, dtype=X.dtype)
    benchmark.pedantic(matvec_floor, args=(X, w, r), rounds=20, iterations=5, warmup_rounds=2)
    return best_seconds(benchmark)


FLOORS = [(ANCHOR, "float32")] + [(shape, "float64") for shape in dict.fromkeys([ANCHOR, *SCALING_N, *SCALING_D])]


@pytest.mark.parametrize("shape,dtype", FLOORS, ids=lambda v: f"{v[0]}x{v[1]}" if isinstance(v, tuple) else v)
def bench_floor(benchmark, record, shape: tuple[int, int], dtype: str) -> None:
    X, _ = problem(*shape, dtype=dtype)
    record("floor", shape=f"{shape[0]}x{shape[1]}", dtype=dtype, seconds=_floor_seconds(benchmark, X))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def bench_gd_epoch(benchmark, record, dtype: str) -> None:
    X, y = problem(*ANCHOR, dtype=dtype)
    seconds = _epoch_seconds(benchmark, X, y, 20, solver="gd", dtype=dtype)
    record("epochs", shape=f"{ANCHOR[0]}x{ANCHOR[1]}", solver="gd", dtype=dtype, batch_size=None, seconds=seconds)


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
def bench_minibatch_epoch(benchmark, record, batch_size: int) -> None:
    X, y = problem(*ANCHOR)
    seconds = _epoch_seconds(benchmark, X, y, 5, solver="minibatch", batch_size=batch_size)
    record(
        "epochs",
        shape=f"{ANCHOR[0]}x{ANCHOR[1]}",
        solver="minibatch",
        dtype="float64",
        batch_size=batch_size,
        seconds=seconds,
    )


@pytest.mark.parametrize("shape", list(dict.fromkeys(SCALING_N + SCALING_D)), ids=lambda s: f"{s[0]}x{s[1]}")
def bench_scaling(benchmark, record, shape: tuple[int, int]) -> None:
    X, y = problem(*shape)
    seconds = _epoch_seconds(benchmark, X, y, 10, solver="gd")
    record("scaling", shape=f"{shape[0]}x{shape[1]}", n=shape[0], d=shape[1], solver="gd", seconds=seconds)
