"""The tracking server goes away in the middle of a sweep: its MLflow process killed, or its PostgreSQL stopped.

A real server (`scripts/server.sh`, PostgreSQL + basic auth) and a real sweep into it. Within MLflow's HTTP
retries nothing may be lost: every run, every metric step and every artifact arrives. Past them the sweep
exits with one line naming the server, and `sweep.resume` completes it once the server is back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import BASE_ENV, make_project
from .mlflow_server import MlflowServer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.timeout(900)]

N_JOBS = 8
RATES = ",".join(str(round(0.05 * (i + 1), 2)) for i in range(N_JOBS))
# Long enough jobs that the outage lands in the middle of the sweep, short enough for CI.
# Every child logs its figures and model (`mlflow.child_artifacts=all`): all of it must arrive.
JOB = ["model.max_iter=400", "model.tol=0", f"model.learning_rate={RATES}", "mlflow.child_artifacts=all"]
FIGURES = {"loss_curve.png", "roc.png", "precision_recall.png", "confusion.png", "calibration.png"}


@pytest.fixture(scope="module")
def server() -> Iterator[MlflowServer]:
    """The module's server; this process's own client calls (the checks) retry little, so that a check never
    waits out an outage."""
    srv = start_server()
    try:
        with pytest.MonkeyPatch.context() as env:
            for key, value in {**srv.client_env(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}.items():
                env.setenv(key, value)
            yield srv
    finally:
        srv.stop()


def start_sweep(project: Path, server: MlflowServer, experiment: str, env: dict[str, str], *extra: str):
    log = project.parent / f"{experiment}.log"
    out = open(log, "wb")  # noqa: SIM115 - closed by the caller's wait
    proc = subprocess.Popen(
        [sys.executable, "-m", "logitlab.sweep", "-m", *JOB, f"mlflow.experiment_name={experiment}", *extra],
        cwd=project,
        env={**BASE_ENV, **server.client_env(), **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


def wait_for_children(server: MlflowServer, experiment: str, count: int, proc: subprocess.Popen, log: Path) -> None:
    """Until `count` children of the experiment's sweep exist (bounded in time)."""
    client = MlflowClient(server.uri)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            runs = client.search_runs([exp.experiment_id], filter_string="tags.`logitlab.entry` = 'sweep'")
            if len(runs) >= count:
                return
        time.sleep(0.5)
    raise AssertionError(f"no {count} children after 300 s:\n{log.read_text()[-3000:]}")


def check_complete(server: MlflowServer, experiment: str, tmp_path: Path) -> None:
    """One parent FINISHED, every job a FINISHED child with its whole loss history (no step twice) and its
    artifacts; nothing RUNNING anywhere in the experiment."""
    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert "RUNNING" not in {r.info.status for r in runs}
    parents = [r for r in runs if r.data.tags.get("logitlab.entry") == "sweep parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", [(r.info.status) for r in parents]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    finished = [c for c in children if c.info.status == "FINISHED"]
    rates = sorted(c.data.params["model.learning_rate"] for c in finished)
    assert rates == sorted(str(float(r)) for r in RATES.split(",")), rates
    for child in finished:
        n_iter = int(child.data.metrics["n_iter"])
        for key in ("train_loss", "val_loss"):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert sorted(steps) == list(range(1, n_iter + 1)), (key, child.info.run_id)
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "metrics.json", "cost_history.csv", "figures"} <= artifacts, artifacts
        model = {a.path for a in client.list_logged_model_artifacts(child.data.tags["logitlab.model_id"])}
        assert {"MLmodel", "artifacts", "pyfunc_model.py"} <= model, model
        figures = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "figures")}
        assert figures >= FIGURES, figures
        local = client.download_artifacts(child.info.run_id, "metrics.json", str(tmp_path))
        assert json.loads(Path(local).read_text())["val_accuracy"] == child.data.metrics["val_accuracy"]
    summary = {Path(a.path).name for a in client.list_artifacts(parents[0].info.run_id, "sweep")}
    assert "sweep_table.csv" in summary


@pytest.mark.parametrize("stopped", ["mlflow", "postgres"])
def test_an_outage_of_15_s_mid_sweep_loses_nothing(server: MlflowServer, stopped: str, tmp_path: Path) -> None:
    """Default retry settings. After two jobs, the MLflow process is SIGKILLed (or the server's PostgreSQL
    stopped, open connections cut: the server answers 5xx meanwhile); `scripts/server.sh start` 15 s later."""
    project = make_project(tmp_path / "project")
    experiment = f"outage-{stopped}"
    proc, log = start_sweep(project, server, experiment, {})
    try:
        wait_for_children(server, experiment, 2, proc, log)
        server.kill_tracking() if stopped == "mlflow" else server.stop_postgres()
        time.sleep(15)
        server.start()
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert proc.returncode == 0, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    check_complete(server, experiment, tmp_path)


def test_past_the_retries_the_sweep_exits_in_one_line_and_a_resume_completes_it(
    server: MlflowServer, tmp_path: Path
) -> None:
    """Retries cut to one: an outage outlasts them. The job in progress fails, the jobs after it do not start
    (they would only wait out the same outage), and the sweep exits 2 with one line naming the server and the
    resume; once the server is back, `sweep.resume=last` runs the rest and nothing is left RUNNING."""
    project = make_project(tmp_path / "project")
    impatient = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    proc, log = start_sweep(project, server, "outage-past", impatient)
    try:
        wait_for_children(server, "outage-past", 2, proc, log)
        server.kill_tracking()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.start()
    output = log.read_text()
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in output, output[-5000:]
    assert len(errors) == 1 and f"MLflow tracking server {server.uri} stopped answering" in errors[0], errors
    assert "sweep.resume=" in errors[0], errors
    done = subprocess.run(
        [sys.executable, "-m", "logitlab.sweep", "-m", *JOB, "mlflow.experiment_name=outage-past", "sweep.resume=last"],
        cwd=project,
        env={**BASE_ENV, **server.client_env()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    check_complete(server, "outage-past", tmp_path)


def test_two_outages_in_a_row_on_a_busy_machine_lose_nothing(server: MlflowServer, tmp_path: Path) -> None:
    """The MLflow process SIGKILLed 8 s into the sweep and started again 15 s later (`scripts/server.sh start`,
    which itself takes its time on a busy machine), twice in a row, while another sweep keeps both cores busy:
    exit 0, every job FINISHED with all it logged, the parent FINISHED."""
    project = make_project(tmp_path / "project")
    experiment = "outage-twice"
    busy_sweep = [
        "mlflow=off",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "data.n_samples=20000",
        "model.tol=0",
    ]
    busy = subprocess.Popen(
        [sys.executable, "-m", "logitlab.sweep", "-m", *busy_sweep, "model.max_iter=20000", "model.C=0.01,0.1,1,10"],
        cwd=project,
        env=BASE_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proc, log = start_sweep(project, server, experiment, {})
    try:
        wait_for_children(server, experiment, 1, proc, log)
        for _ in range(2):
            time.sleep(8)
            server.kill_tracking()
            time.sleep(15)
            server.start()
        proc.wait(timeout=900)
    finally:
        for started in (proc, busy):
            if started.poll() is None:
                os.killpg(started.pid, signal.SIGKILL)
    output = log.read_text()
    assert proc.returncode == 0, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    check_complete(server, experiment, tmp_path)
