"""Issue 22's "Model selection" section: sweeps and cross-validation against a hand-written MLflow loop, a
LogisticRegressionCV pipeline and MLflow's own start-up, process start to exit (see model_selection.py).
`make bench-selection` runs this section alone."""

from __future__ import annotations

import os

from . import model_selection

ROUNDS = int(os.environ.get("LOGITLAB_BENCH_SELECTION_ROUNDS", "3"))
BUDGET_S = float(os.environ.get("LOGITLAB_BENCH_SELECTION_BUDGET_S", "300"))


def bench_model_selection(benchmark, record) -> None:
    rows = benchmark.pedantic(lambda: model_selection.measure(ROUNDS, BUDGET_S), rounds=1, iterations=1)
    for row in rows:
        record("model_selection", **row)
