"""Target 1: time to scikit-learn's optimum, our second-order solvers against scikit-learn's fastest.

Every solver, ours and scikit-learn's, is timed at the loosest `tol` (of 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6,
1e-8, 1e-10) whose result is within a relative objective gap of 1e-6 of the optimum, so each gets its fair best
time (the grid is the same for both libraries; a finer one than the decades lets neither overshoot by 100x).
The optimum is the lower of scikit-learn's and our Newton at tol=1e-12.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

from logitlab.model import LogisticRegression
from logitlab.model._params import SOLVERS

from .conftest import best_seconds, interleaved
from .data import SOLVER_SHAPES, multinomial_objective, multinomial_problem, objective, problem

GAP = 1e-6
TOLS = (1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 1e-6, 1e-8, 1e-10)
OURS = [name for name in ("newton", "newton-cg", "lbfgs") if name in SOLVERS]
THEIRS = ["newton-cholesky", "lbfgs"]
ROUNDS = 7


def _ours(solver: str, tol: float, dtype: str = "float64") -> Any:
    return LogisticRegression(solver=solver, tol=tol, max_iter=1000, dtype=dtype)


def _theirs(solver: str, tol: float, dtype: str = "float64") -> Any:
    return SklearnLogisticRegression(solver=solver, tol=tol, max_iter=1000)


@pytest.fixture(scope="module", params=SOLVER_SHAPES, ids=lambda shape: f"{shape[0]}x{shape[1]}")
def shape_and_optimum(request: pytest.FixtureRequest) -> tuple[tuple[int, int], float]:
    X, y = problem(*request.param)
    fits = [_ours("newton", 1e-12).fit(X, y), _theirs("newton-cholesky", 1e-12).fit(X, y)]
    return request.param, min(objective(X, y, f.coef_[0], f.intercept_[0]) for f in fits)


def _binary_objective(X: np.ndarray, y: np.ndarray, fitted: Any) -> float:
    return objective(X, y, fitted.coef_[0], fitted.intercept_[0])


def _multinomial_objective(X: np.ndarray, y: np.ndarray, fitted: Any) -> float:
    return multinomial_objective(X, y, fitted.coef_, fitted.intercept_)


def _loosest_tol(
    make: Callable[[str, float], Any], solver: str, X, y, optimum: float, objective_of=_binary_objective
) -> tuple[float, float, int]:
    """The loosest tol reaching the gap, with the gap and the iteration count it gave."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for tol in TOLS:
            fitted = make(solver, tol).fit(X, y)
            gap = (objective_of(X, y, fitted) - optimum) / abs(optimum)
            if gap <= GAP:
                break
    return tol, gap, int(np.max(fitted.n_iter_))


def bench_time_to_optimum(benchmark, record, shape_and_optimum) -> None:
    """Every solver, ours and scikit-learn's, at its loosest sufficient tol, timed round-robin (interleaved)."""
    shape, optimum = shape_and_optimum
    X, y = problem(*shape)
    contenders = [("logitlab", s, _ours) for s in OURS] + [("scikit-learn", s, _theirs) for s in THEIRS]
    chosen = {
        f"{library} {solver}": (make, solver, *_loosest_tol(make, solver, X, y, optimum))
        for library, solver, make in contenders
    }
    fits = {name: functools.partial(_fit, make, solver, tol, X, y) for name, (make, solver, tol, *_) in chosen.items()}
    best = interleaved(benchmark, ROUNDS, **fits)
    for name, (_, _, tol, gap, n_iter) in chosen.items():
        library, solver = name.split(" ", 1)
        record(
            "solvers",
            shape=f"{shape[0]}x{shape[1]}",
            library=library,
            solver=solver,
            tol=tol,
            seconds=best[name],
            iterations=n_iter,
            gap=gap,
        )


def _fit(make: Callable[[str, float], Any], solver: str, tol: float, X: np.ndarray, y: np.ndarray) -> None:
    make(solver, tol).fit(X, y)


@pytest.mark.parametrize("solver", OURS)
def bench_float32(benchmark, record, solver: str) -> None:
    """dtype='float32' on request: time and the gap to the float64 optimum it can reach."""
    shape = SOLVER_SHAPES[0]
    X32, y32 = problem(*shape, dtype="float32")
    X, y = problem(*shape)
    benchmark.pedantic(lambda: _ours(solver, 1e-4, "float32").fit(X32, y32), rounds=ROUNDS, iterations=1)
    fitted = _ours(solver, 1e-4, "float32").fit(X32, y32)
    reference = _ours("newton", 1e-12).fit(X, y)
    optimum = objective(X, y, reference.coef_[0], reference.intercept_[0])
    gap = (objective(X, y, fitted.coef_[0], fitted.intercept_[0]) - optimum) / abs(optimum)
    record(
        "float32",
        shape=f"{shape[0]}x{shape[1]}",
        solver=solver,
        seconds=best_seconds(benchmark),
        iterations=int(fitted.n_iter_),
        gap=gap,
    )


MULTINOMIAL_SHAPE = (100_000, 50, 5)  # rows, features, classes
MULTINOMIAL_ROUNDS = 5


def bench_multinomial_time_to_optimum(benchmark, record) -> None:
    """K = 5 classes: every solver, ours and scikit-learn's (multinomial, the same objective at C=1), at its loosest
    tol within the gap of the optimum (the lower of both libraries' at tol=1e-12), timed round-robin."""
    n_samples, n_features, n_classes = MULTINOMIAL_SHAPE
    X, y = multinomial_problem(n_samples, n_features, n_classes)
    references = [_ours("newton", 1e-12).fit(X, y), _theirs("newton-cholesky", 1e-12).fit(X, y)]
    optimum = min(_multinomial_objective(X, y, fitted) for fitted in references)
    contenders = [("logitlab", s, _ours) for s in OURS] + [("scikit-learn", s, _theirs) for s in THEIRS]
    chosen = {
        f"{library} {solver}": (make, solver, *_loosest_tol(make, solver, X, y, optimum, _multinomial_objective))
        for library, solver, make in contenders
    }
    fits = {name: functools.partial(_fit, make, solver, tol, X, y) for name, (make, solver, tol, *_) in chosen.items()}
    best = interleaved(benchmark, MULTINOMIAL_ROUNDS, **fits)
    for name, (_, _, tol, gap, n_iter) in chosen.items():
        library, solver = name.split(" ", 1)
        record(
            "multinomial",
            shape=f"{n_samples}x{n_features}, K={n_classes}",
            library=library,
            solver=solver,
            tol=tol,
            seconds=best[name],
            iterations=n_iter,
            gap=gap,
        )
