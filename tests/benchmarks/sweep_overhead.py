"""Sweep overhead benchmark: what one more sweep job costs, with full MLflow tracking and with `mlflow=off`.

Run as ``python -m tests.benchmarks.sweep_overhead [--repeats K] [--counts 4 12]``. It copies the project
into a temporary git repository (`tests.conftest.make_project`), warms the upstream memo cache there, then
times whole ``python -m logitlab.sweep -m model.C=...`` commands (the default launcher, data and model; the
values are C=1 nudged by 0.1% per job, so every job is the default fit). Each tracked sweep writes to
a fresh SQLite store in the temporary copy: nothing piles up and nothing leaves 127.0.0.1. Best-of-K wall times
give the derived numbers (the machine is shared and noisy); medians are reported alongside. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.conftest import BASE_ENV, make_project

SWEEP_TIMEOUT_S = 900


def c_values(jobs: int) -> str:
    return ",".join(f"{1 + i / 1000:.6g}" for i in range(jobs))


def run_sweep(project: Path, jobs: int, tracking: bool, label: str) -> float:
    """Wall seconds of one whole sweep command."""
    env = dict(BASE_ENV)
    overrides = [f"model.C={c_values(jobs)}", f"hydra.sweep.dir={project / 'multirun' / label}"]
    if tracking:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'stores' / label / 'mlflow.db'}"
    else:
        overrides.append("mlflow=off")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "logitlab.sweep", "-m", *overrides],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=SWEEP_TIMEOUT_S,
        check=False,
    )
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"sweep {label} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return took


def measure(counts: Sequence[int] = (4, 12), repeats: int = 3) -> list[dict[str, Any]]:
    """One row per (jobs, tracking): best and median wall seconds, per-job and per-extra-job seconds (against
    the smallest count), and tracking's overhead per job (against the same sweep with `mlflow=off`)."""
    counts = sorted(counts)
    with tempfile.TemporaryDirectory(prefix="logitlab-sweep-bench-") as tmp:
        project = make_project(Path(tmp) / "project")
        run_sweep(project, 1, tracking=False, label="warm-up")  # fills the memo cache: every timed job hits it
        walls: dict[tuple[int, bool], list[float]] = {}
        for repeat in range(repeats):  # interleaved, so a slow spell of the machine hits every variant
            for jobs in counts:
                for tracking in (True, False):
                    label = f"{jobs}-{'on' if tracking else 'off'}-{repeat}"
                    walls.setdefault((jobs, tracking), []).append(run_sweep(project, jobs, tracking, label))
    best = {key: min(times) for key, times in walls.items()}
    median = {key: statistics.median(times) for key, times in walls.items()}
    smallest = counts[0]
    rows = []
    for jobs in counts:
        for tracking in (True, False):
            wall = best[jobs, tracking]
            extra = jobs > smallest
            row: dict[str, Any] = {
                "jobs": jobs,
                "tracking": "on" if tracking else "off",
                "wall_s": wall,
                "wall_median_s": median[jobs, tracking],
                "per_job_s": wall / jobs,
                "per_extra_job_s": _per_extra_job(best, jobs, smallest, tracking) if extra else None,
                "per_extra_job_median_s": _per_extra_job(median, jobs, smallest, tracking) if extra else None,
                "tracking_overhead_per_job_s": (wall - best[jobs, False]) / jobs if tracking else None,
                "tracking_overhead_per_extra_job_s": None,
            }
            if tracking and extra:
                row["tracking_overhead_per_extra_job_s"] = _per_extra_job(best, jobs, smallest, True) - _per_extra_job(
                    best, jobs, smallest, False
                )
            rows.append(row)
    return rows


def _per_extra_job(walls: dict[tuple[int, bool], float], jobs: int, smallest: int, tracking: bool) -> float:
    """What each job beyond the smallest sweep added: start-up, store creation and the summary cancel out."""
    return (walls[jobs, tracking] - walls[smallest, tracking]) / (jobs - smallest)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--repeats", type=int, default=3, choices=range(1, 11), metavar="K (1-10)")
    args = parser.parse_args()
    print(format_table(measure(args.counts, args.repeats)))


if __name__ == "__main__":
    main()
