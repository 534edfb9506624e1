"""Issue 20's "asynchronous parallel trials": an Optuna search on joblib with two trials in flight, batched
against asynchronous, the workers' busy fraction of each (see async_trials.py). `make bench BENCH='-k async'`
runs this section alone."""

from __future__ import annotations

import os

from . import async_trials

TRIALS = int(os.environ.get("LOGITLAB_BENCH_ASYNC_TRIALS", "20"))


def bench_async_trials(benchmark, record) -> None:
    rows = benchmark.pedantic(lambda: async_trials.measure(TRIALS), rounds=1, iterations=1)
    for row in rows:
        record("async_trials", **row)
