"""Issue 20's "Pruning" section: 40 TPE trials of the lr_penalty space on the flights CSV with the median and the
successive-halving pruner against none, same seed (see pruning.py). `make bench BENCH='-k pruning'` runs it alone."""

from __future__ import annotations

from . import pruning


def bench_pruning(benchmark, record) -> None:
    rows = benchmark.pedantic(pruning.measure, rounds=1, iterations=1)
    for row in rows:
        record("pruning", **row)
