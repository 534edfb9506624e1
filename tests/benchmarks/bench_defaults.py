"""Target 0: the default configuration on real-shaped data against scikit-learn's default fit, on one split.

The data is `one_hot_like` at the size of a well-known census CSV (32,561 rows; 6 numeric columns and 100
one-hot columns after preprocess), split as the pipeline splits (60 % train, 20 % val). Ours is the train
stage's own work, `stages.train.run` with the model section of the real conf/ (it also records the val loss
per epoch); theirs is `LogisticRegression()` on the training rows. Both are scored against the optimum.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

from logitlab import config
from logitlab.sources import TARGET
from logitlab.stages import train
from tests.conftest import REPO

from .conftest import interleaved
from .data import objective, one_hot_like

N_SAMPLES = 32_561


def _splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    X, y = one_hot_like(N_SAMPLES)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    frame[TARGET] = y.astype(np.int64)
    n_train, n_val = int(0.6 * N_SAMPLES), int(0.2 * N_SAMPLES)
    return frame.iloc[:n_train], frame.iloc[n_train : n_train + n_val]


def bench_default_fit(benchmark, record) -> None:
    train_frame, val_frame = _splits()
    features, y = train_frame.drop(columns=[TARGET]), train_frame[TARGET].to_numpy()
    X = features.to_numpy()
    composed = config.compose([], REPO / "conf")
    params = train.settings(composed)
    fitted: dict[str, Any] = {}

    def ours() -> None:
        fitted["logitlab default config"] = train.run(train_frame, val_frame, params)

    def theirs() -> None:
        fitted["scikit-learn default"] = SklearnLogisticRegression().fit(X, y)

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # neither default may warn
        best = interleaved(benchmark, 9, **{"logitlab default config": ours, "scikit-learn default": theirs})
    optimum = SklearnLogisticRegression(solver="newton-cholesky", tol=1e-12, max_iter=100).fit(X, y)
    lowest = objective(X, y, optimum.coef_[0], optimum.intercept_[0])
    for library, model in fitted.items():
        record(
            "defaults",
            data=f"one_hot_like {X.shape[0]}x{X.shape[1]}",
            library=library,
            seconds=best[library],
            iterations=int(np.max(model.n_iter_)),
            gap=(objective(X, y, model.coef_[0], model.intercept_[0]) - lowest) / lowest,
            accuracy=float(model.score(features if library.startswith("logitlab") else X, y)),
            optimum_accuracy=float(optimum.score(X, y)),
        )
