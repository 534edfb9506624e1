"""Issue 20's asynchronous trials in `make bench`: an Optuna search on the joblib launcher with two trials in
flight, batched (`hydra.sweeper.asynchronous=false`, hydra-optuna-sweeper's way: each batch waits for its
slowest trial) against asynchronous (a freed slot gets the next trial at once), same seed, side by side, both
with `hydra/sweeper/pruner=median` (the issue's case: a pruned trial frees its slot early, which a batch leaves
idle until its slowest trial ends).

The search is `hparams_search=lr_penalty` (C log-uniform, l1/l2, degree 1-3), whose trials differ in cost: a
degree-3 L1 fit runs hundreds of epochs more than a degree-1 one, on `make_classification` data of 20,000 rows
and 8 features (164 columns at degree 3). Each search runs tracked in the project's SQLite store, from a cold
upstream cache, in a temporary copy of the project. The workers' busy fraction is the sweeper's own measure (the
summary's `search:` line, the parent run's `busy_fraction`): the time a trial was in flight, summed over the
trials, against two slots times the search's wall time. Goal: asynchronous, pruned, >= 0.85.

Run alone as ``python -m tests.benchmarks.async_trials [--trials 20]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import BASE_ENV, make_project

N_JOBS = 2
DATA = ["data.n_samples=20000", "data.n_features=8", "data.n_informative=6"]
BUSY_GOAL = 0.85
SEARCH_LINE = re.compile(
    r"search: (\d+) trials? in flight at a time, busy \d+% of its ([0-9.]+) s \(busy_fraction ([0-9.]+)\)"
)
RUN_TIMEOUT_S = 3600
PRUNER = "median"


def search(root: Path, n_trials: int, asynchronous: bool) -> dict[str, Any]:
    """One search, from a cold upstream cache: its busy fraction, wall time and best value."""
    shutil.rmtree(root / ".cache" / "logitlab", ignore_errors=True)
    sweep_dir = root / "multirun" / ("asynchronous" if asynchronous else "batched")
    command = [
        sys.executable,
        "-m",
        "logitlab.sweep",
        "-m",
        "hparams_search=lr_penalty",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={N_JOBS}",
        f"hydra.sweeper.n_jobs={N_JOBS}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.asynchronous={str(asynchronous).lower()}",
        f"hydra/sweeper/pruner={PRUNER}",
        f"hydra.sweep.dir={sweep_dir}",
        *DATA,
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=BASE_ENV, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    found = SEARCH_LINE.search(output)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(command[2:6])} ... exited {done.returncode}:\n{output[-3000:]}")
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    busy = float(found.group(3))
    met = "-" if not asynchronous else ("yes" if busy >= BUSY_GOAL else "no")
    pruned = sum(json.loads(path.read_text())["status"] == "PRUNED" for path in sweep_dir.glob("*/job.json"))
    return {
        "trials": ("asynchronous" if asynchronous else "batched") + f", pruner={PRUNER}",
        "pruned": pruned,
        "n_trials": n_trials,
        "slots": int(found.group(1)),
        "busy_fraction": busy,
        "goal": f">= {BUSY_GOAL}" if asynchronous else "-",
        "met": met,
        "search_s": float(found.group(2)),
        "process_s": seconds,
        "best_val_accuracy": results["best_value"],
    }


def measure(n_trials: int = 20) -> list[dict[str, Any]]:
    """Batched, then asynchronous, in one temporary project; the second row's wall time against the first's."""
    with tempfile.TemporaryDirectory(prefix="logitlab-async-bench-") as tmp:
        root = make_project(Path(tmp) / "project")
        batched = search(root, n_trials, asynchronous=False)
        asynchronous = search(root, n_trials, asynchronous=True)
    asynchronous["x_batched_search_s"] = asynchronous["search_s"] / batched["search_s"]
    return [batched, asynchronous]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    for row in measure(args.trials):
        print(row)


if __name__ == "__main__":
    main()
