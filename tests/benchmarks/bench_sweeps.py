"""Target 3: what a sweep job costs beyond its fit: a 4-job and a 12-job sweep on the default data, with
tracking on and with `mlflow=off`, interleaved and repeated (see sweep_overhead.py)."""

from __future__ import annotations

from . import sweep_overhead


def bench_sweep_overhead(benchmark, record) -> None:
    rows = benchmark.pedantic(lambda: sweep_overhead.measure(), rounds=1, iterations=1)
    for row in rows:
        record("sweeps", **row)
