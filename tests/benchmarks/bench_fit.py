"""Fit-time benchmark: our gd and lbfgs against the bare matvec floor and scikit-learn's lbfgs.

Run as ``python tests/benchmarks/bench_fit.py [--repeats K] [--epochs N]``. Not collected by pytest (the file
name does not start with ``test_``) and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression
from sklearn.preprocessing import StandardScaler

from logitlab.model import LogisticRegression

SIZES = [(10_000, 20), (100_000, 50)]
TOL = 1e-6


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Minimum wall time over `repeats` runs and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def matvec_floor(X: np.ndarray, epochs: int) -> None:
    """What one gradient epoch cannot go below: one ``X @ w`` and one ``X.T @ r``."""
    w = np.full(X.shape[1], 1e-3)
    for _ in range(epochs):
        r = X @ w
        w = w - 1e-3 * (X.T @ r) / X.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    header = (
        f"{'n x p':>12} {'floor s':>8} {'gd s':>8} {'gd/floor':>8} {'lbfgs s':>8} {'lbfgs/floor':>11} "
        f"{'sk s':>8} {'ours/sk':>8} {'it ours':>7} {'it sk':>6} {'acc gd':>7} {'acc ours':>8} {'acc sk':>7}"
    )
    print(f"best of {args.repeats}; gd runs {args.epochs} epochs (tol=0); lbfgs tol={TOL}; floor = same epochs")
    print(header)
    for n_samples, n_features in SIZES:
        X, y = make_classification(
            n_samples=n_samples, n_features=n_features, n_informative=n_features // 2, random_state=0
        )
        X = StandardScaler().fit_transform(X)
        floor, _ = best_time(lambda X=X: matvec_floor(X, args.epochs), args.repeats)
        gd_time, gd = best_time(
            lambda X=X, y=y: LogisticRegression(solver="gd", learning_rate=1.0, max_iter=args.epochs, tol=0).fit(X, y),
            args.repeats,
        )
        ours_time, ours = best_time(
            lambda X=X, y=y: LogisticRegression(solver="lbfgs", tol=TOL, max_iter=1000).fit(X, y),
            args.repeats,
        )
        sk_time, sk = best_time(
            lambda X=X, y=y: SklearnLogisticRegression(tol=TOL, max_iter=1000).fit(X, y), args.repeats
        )
        lbfgs_floor = floor / args.epochs * ours.n_iter_
        print(
            f"{f'{n_samples}x{n_features}':>12} {floor:8.3f} {gd_time:8.3f} {gd_time / floor:8.2f} "
            f"{ours_time:8.3f} {ours_time / lbfgs_floor:11.2f} {sk_time:8.3f} {ours_time / sk_time:8.2f} "
            f"{ours.n_iter_:7d} {int(sk.n_iter_[0]):6d} {gd.score(X, y):7.4f} {ours.score(X, y):8.4f} "
            f"{sk.score(X, y):7.4f}"
        )
    print("lbfgs/floor compares with the floor for as many epochs as our lbfgs ran iterations.")


if __name__ == "__main__":
    main()
