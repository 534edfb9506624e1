"""How long a tracking-server outage a sweep survives with MLflow's default retry settings, and what it does past
that (docs/reliability.md has the numbers). Not a test: one run takes minutes of waiting.

    python -m tests.benchmarks.outage_window --stop mlflow --outage-s 200   # back after 200 s
    python -m tests.benchmarks.outage_window --stop postgres --outage-s 0    # never back (0)

A real server (`scripts/server.sh`) in a temporary directory and an 8-job sweep into it; after two jobs the
MLflow process is SIGKILLed (or PostgreSQL stopped); it comes back after `--outage-s` seconds. Printed: when
each job started, failed or finished, when the sweep ended and how, and every run's status.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import BASE_ENV, make_project
from tests.mlflow_server import MlflowServer, start_server

RATES = ",".join(str(round(0.05 * (i + 1), 2)) for i in range(8))
JOB = ["model.max_iter=400", "model.tol=0", f"model.learning_rate={RATES}", "mlflow.experiment_name=outage"]
EVENT = re.compile(r"#\d+ : |job \d+ failed|sweep finished|^error:")


def children(server: MlflowServer) -> list[str]:
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient(server.uri).get_experiment_by_name("outage")
    if experiment is None:
        return []
    runs = MlflowClient(server.uri).search_runs([experiment.experiment_id])
    return [run.info.status for run in runs if "mlflow.parentRunId" in run.data.tags]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stop", choices=("mlflow", "postgres"), required=True)
    parser.add_argument("--outage-s", type=float, required=True, help="0: the server never comes back")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each event as it happens
    server = start_server()
    os.environ.update({**server.client_env(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"})  # this script's own calls
    try:
        project = make_project(Path(tempfile.mkdtemp(prefix="outage-")) / "project")
        log = project.parent / "sweep.log"
        with open(log, "wb") as out:
            sweep = subprocess.Popen(
                [sys.executable, "-m", "logitlab.sweep", "-m", *JOB],
                cwd=project,
                env={**BASE_ENV, **server.client_env()},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300
        while len(children(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        started = time.monotonic()
        server.kill_tracking() if args.stop == "mlflow" else server.stop_postgres()
        print(f"t=0: {args.stop} stopped")
        back = started + args.outage_s if args.outage_s > 0 else None
        seen = 0
        while sweep.poll() is None and time.monotonic() - started < 1800:
            if back is not None and time.monotonic() >= back:
                server.start()
                print(f"t={time.monotonic() - started:.0f}s: server back")
                back = None
            lines = log.read_text(errors="replace").splitlines()
            for line in lines[seen:]:
                if EVENT.search(line):
                    print(f"t={time.monotonic() - started:.0f}s: {line[:220]}")
            seen = len(lines)
            time.sleep(1)
        print(f"t={time.monotonic() - started:.0f}s: sweep exited {sweep.returncode}")
        if back is not None or args.outage_s <= 0:
            server.start()
        print("children:", sorted(children(server)))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
