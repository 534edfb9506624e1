"""`make serve` under load: one and eight clients, one worker against the default (one per core), interleaved;
the 413 and the bounded error replies (see serving_load.py). `make bench-serve` runs only this."""

from __future__ import annotations

from . import serving_load


def bench_serving(benchmark, record) -> None:
    sections = benchmark.pedantic(lambda: serving_load.measure(), rounds=1, iterations=1)
    for section, rows in sections.items():
        for row in rows:
            record(section, **row)
