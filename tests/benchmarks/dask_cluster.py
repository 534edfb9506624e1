"""Dask demo: an lbfgs fit whose gradients run on a `LocalCluster`, timed and checked against the in-memory fit.

    python tests/benchmarks/dask_cluster.py --rows 2000000 --features 20 --workers 2

On a real cluster replace the LocalCluster with `Client("tcp://scheduler:8786")` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np


def measure(rows: int = 2_000_000, features: int = 20, workers: int = 2, chunk_rows: int = 250_000) -> dict[str, Any]:
    import dask
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    from logitlab import LogisticRegression

    params = {"solver": "lbfgs", "tol": 1e-6, "max_iter": 200}
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        # The data is generated on the workers and stays there (persist), as it would be read from storage.
        rng = da.random.RandomState(0)
        dX = rng.normal(size=(rows, features), chunks=(chunk_rows, features))
        score = dX @ np.linspace(-1, 1, features) * 3 / np.sqrt(features) + rng.logistic(size=rows, chunks=chunk_rows)
        dX, dy = dask.persist(dX, (score > 0).astype(np.int64))
        X, y = dask.compute(dX, dy)
        start = time.perf_counter()
        memory = LogisticRegression(**params).fit(X, y)
        memory_s = time.perf_counter() - start
        start = time.perf_counter()
        distributed = LogisticRegression(**params).fit(dX, dy)
        dask_s = time.perf_counter() - start
    return {
        "rows": rows,
        "features": features,
        "workers": workers,
        "blocks": -(-rows // chunk_rows),
        "iterations": distributed.n_iter_,
        "in_memory_s": memory_s,
        "dask_s": dask_s,
        "max_coef_difference": float(np.abs(distributed.coef_ - memory.coef_).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    args = parser.parse_args()
    result = measure(args.rows, args.features, args.workers, args.chunk_rows)
    print(
        f"{result['rows']:,} rows x {result['features']} features in {result['blocks']} blocks, "
        f"{result['workers']} workers: lbfgs {result['iterations']} iterations\n"
        f"  in memory {result['in_memory_s']:.2f} s, on the LocalCluster {result['dask_s']:.2f} s, "
        f"max |coef difference| {result['max_coef_difference']:.1e}"
    )


if __name__ == "__main__":
    main()
