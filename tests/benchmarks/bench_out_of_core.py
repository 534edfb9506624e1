"""Target 4: a CSV larger than a worker's memory budget through the five stages, streamed, and a fit on a
Dask cluster. `LOGITLAB_BENCH_OOC_GB` sets the CSV size (default 5; the files are deleted afterwards)."""

from __future__ import annotations

import os
from pathlib import Path

from . import dask_cluster, out_of_core

SIZE_GB = float(os.environ.get("LOGITLAB_BENCH_OOC_GB", "5"))


def bench_out_of_core(benchmark, record, tmp_path: Path) -> None:
    result = benchmark.pedantic(lambda: out_of_core.measure(tmp_path, size_gb=SIZE_GB), rounds=1, iterations=1)
    for stage, row in result["stages"].items():
        record(
            "out_of_core",
            csv_gb=round(result["csv_gb"], 2),
            rows=result["rows"],
            chunk_rows=result["chunk_rows"],
            stage=stage,
            seconds=row["seconds"],
            peak_rss_mb=row["peak_rss_mb"],
            test_accuracy=result["test_accuracy"] if stage == "evaluate" else None,
        )


def bench_dask_cluster(benchmark, record) -> None:
    result = benchmark.pedantic(dask_cluster.measure, rounds=1, iterations=1)
    record("dask", **result)
