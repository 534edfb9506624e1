"""The `make bench` suite: pytest-benchmark times, a results table and plots in reports/bench/.

Every benchmark times its code with the `benchmark` fixture (best of several rounds: the machines are shared
and noisy) and records one row per measurement with `record(section, **row)`; at the end of the session
the rows become reports/bench/results.json, the tables in reports/bench/results.md and the figures.
Ratios are computed between timings of the same session, never against stored absolute times.
Not part of `make test`: pytest only collects `bench_*.py` here when `make bench` asks it to.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from logitlab.model._loss import cache_bytes
from tests.conftest import REPO

OUT_DIR = Path(os.environ.get("LOGITLAB_BENCH_DIR", REPO / "reports" / "bench"))
_ROWS: dict[str, list[dict[str, Any]]] = defaultdict(list)


def machine() -> dict[str, Any]:
    """What made the numbers: CPU, cores, caches (sysfs, as the solvers read them), BLAS and library versions."""
    import sklearn
    from threadpoolctl import threadpool_info

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), platform.processor())
    # every BLAS loaded, named by its wheel: numpy's (the model's products) and scipy's (its own linalg)
    blas = (
        " + ".join(
            f"{i['internal_api']} {i['version']} ({Path(i['filepath']).parent.name}, {i['num_threads']} threads)"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        )
        or "?"
    )
    caches = cache_bytes()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "L2 per core": f"{caches[2] >> 10} KiB",
        "L3": f"{caches[3] >> 20} MiB",
        "blas": blas,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The machine under every `make bench` run's timings (also with -q): figures compare only on the same one;
    then the model-selection goals, when measured, as the table results.md gets."""
    terminalreporter.write_line("machine: " + ", ".join(f"{key} {value}" for key, value in machine().items()))
    if _ROWS.get("model_selection"):
        from tests.benchmarks import report

        terminalreporter.write_line(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        terminalreporter.write(report.selection(_ROWS))
    if _ROWS.get("async_trials"):
        from tests.benchmarks import report

        terminalreporter.write_line("Optuna trials on joblib, batched against asynchronous (async_trials.py):")
        terminalreporter.write(report.generic(_ROWS["async_trials"]))


@pytest.fixture
def record() -> Callable[..., None]:
    def add(section: str, **row: Any) -> None:
        _ROWS[section].append(row)

    return add


def best_seconds(benchmark: Any) -> float:
    """The fastest round of the benchmark just run: the least disturbed by other work on the machine."""
    return float(benchmark.stats.stats.min)


def interleaved(benchmark: Any, rounds: int, **timed: Callable[[], Any]) -> dict[str, float]:
    """The best time of each callable, run one after the other in every round (the benchmark's rounds).

    Each ratio's two sides are timed within moments of each other, so load from other work on a shared
    machine drifts across both instead of landing on one side of the ratio.
    """
    times: dict[str, list[float]] = {name: [] for name in timed}

    def one_round() -> None:
        for name, call in timed.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=1)
    return {name: min(values) for name, values in times.items()}


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _ROWS:
        return
    from tests.benchmarks import report

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    previous = OUT_DIR / "results.json"
    # A partial run (`make bench BENCH="-k epoch"`) replaces the sections it measured and keeps the others.
    before = json.loads(previous.read_text()) if previous.exists() else {}
    here = machine()
    # each section keeps the machine it was measured on: a partial run elsewhere does not relabel the others
    machines = {name: before["machine"] for name in before.get("sections", {})} | before.get("section_machines", {})
    machines |= {name: here for name in _ROWS}
    measured_on = list(machines.values())
    results = {
        "machine": max(measured_on, key=measured_on.count),  # the header: the machine of most sections
        "section_machines": machines,
        "sections": {**before.get("sections", {}), **_ROWS},
    }
    (OUT_DIR / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    (OUT_DIR / "results.md").write_text(report.markdown(results))
    report.figures(results, OUT_DIR)
