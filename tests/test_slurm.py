"""Sweeps on a real SLURM cluster: the project's single-node cluster (`scripts/slurm.sh`), real sbatch jobs.

`.ci/run` starts the cluster before the slow tests; run alone, this module starts it (as root) and stops it
again. Each job is a SLURM job run by hydra-submitit-launcher through `hydra/launcher=slurm`.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import BASE_ENV, REPO, logitlab, make_project, store_uri
from .mlflow_server import MlflowServer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SLURM_SH = REPO / "scripts" / "slurm.sh"
FAST = ["model.max_iter=300", "model.tol=0"]
SLOW_SECOND_JOB = ["model.max_iter=300,500000", "model.tol=0", "data.n_samples=20000"]
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")


def slurm_script(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SLURM_SH), command], capture_output=True, text=True, timeout=900, check=False, env=BASE_ENV
    )


@pytest.fixture(scope="module")
def slurm_env() -> Iterator[dict[str, str]]:
    """The environment a sweep needs to submit to the project's cluster; the cluster started if it is down."""
    started = False
    if slurm_script("status").returncode != 0:
        if os.geteuid() != 0:
            message = "the SLURM cluster is not running and only root can start it (sudo scripts/slurm.sh start)"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        done = slurm_script("start")
        assert done.returncode == 0, done.stdout + done.stderr
        started = True
    yield {"SLURM_CONF": str(REPO / ".slurm" / "slurm.conf")}
    if started:
        slurm_script("stop")


@pytest.fixture(scope="module")
def server() -> Iterator[MlflowServer]:
    srv = start_server()
    try:
        with pytest.MonkeyPatch.context() as env:  # this process's checks read from it
            for key, value in {**srv.client_env(), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}.items():
                env.setenv(key, value)
            yield srv
    finally:
        srv.stop()


def slurm(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True, env={**BASE_ENV, **env})
    return done.stdout


def check_sweep_on_slurm(client: MlflowClient, experiment: str, env: dict[str, str], tmp_path: Path) -> None:
    """One FINISHED parent; each job a FINISHED child tagged with its own SLURM job, which SLURM's accounting
    says COMPLETED, with that job's whole log as an artifact."""
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("logitlab.entry") == "sweep parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(c.data.params["model.C"] for c in children) == ["0.1", "1", "10"]
    assert {c.info.status for c in children} == {"FINISHED"}
    job_ids = [c.data.tags["slurm.job_id"] for c in children]
    assert len(set(job_ids)) == 3
    for child, job_id in zip(children, job_ids, strict=True):
        state = slurm(["sacct", "-n", "-P", "-X", "-o", "State", "-j", job_id], env).split()
        assert state == ["COMPLETED"], (job_id, state)
        logs = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "slurm")}
        assert logs == {f"{job_id}_0_log.out", f"{job_id}_0_log.err"}, logs
        log = Path(client.download_artifacts(child.info.run_id, f"slurm/{job_id}_0_log.out", str(tmp_path)))
        text = log.read_text()
        # the job's own log, to its last line: written in the SLURM job, attached once that ended
        assert f"JobEnvironment(job_id={job_id}," in text and "Job completed successfully" in text, text


def test_script_is_idempotent_and_reports_a_node_that_takes_jobs(slurm_env: dict[str, str]) -> None:
    pids = {name: (REPO / ".slurm" / "run" / f"{name}.pid").read_text() for name in DAEMONS}
    again = slurm_script("start")
    assert again.returncode == 0, again.stdout + again.stderr
    assert {name: (REPO / ".slurm" / "run" / f"{name}.pid").read_text() for name in DAEMONS} == pids
    status = slurm_script("status")
    assert (status.returncode == 0 and "idle" in status.stdout) or "mixed" in status.stdout, status.stdout
    node = slurm(["sinfo", "-h", "-o", "%c %m %P"], slurm_env).split()
    assert int(node[0]) == os.cpu_count() and node[2] == "logitlab*", node  # this machine's CPUs, the default


def test_sweep_runs_each_job_as_a_slurm_job(slurm_env: dict[str, str], tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    logitlab(["sweep", "-m", "hydra/launcher=slurm", "model.C=0.1,1,10", *FAST], project, env=slurm_env)
    check_sweep_on_slurm(MlflowClient(store_uri(project)), "synthetic", slurm_env, tmp_path)


def test_the_readme_command_finds_the_project_cluster_from_a_fresh_shell(
    slurm_env: dict[str, str], tmp_path: Path
) -> None:
    """After `make slurm`, a shell that never exported SLURM_CONF: the sweep finds the project's own cluster."""
    project = make_project(tmp_path / "project")
    (project / ".slurm").symlink_to(REPO / ".slurm")  # this project's `make slurm`
    fresh_shell = {key: value for key, value in BASE_ENV.items() if not key.startswith("SLURM")}
    command = [sys.executable, "-m", "logitlab.sweep", "-m", "hydra/launcher=slurm", "model.C=0.1,1,10", *FAST]
    done = subprocess.run(command, cwd=project, env=fresh_shell, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    check_sweep_on_slurm(MlflowClient(store_uri(project)), "synthetic", slurm_env, tmp_path)


@pytest.mark.server
def test_sweep_on_slurm_into_the_team_tracking_server(
    slurm_env: dict[str, str], server: MlflowServer, tmp_path: Path
) -> None:
    """As a team would: jobs on the cluster log to the PostgreSQL-backed server, artifacts served by it."""
    project = make_project(tmp_path / "project")
    env = {**slurm_env, **server.client_env()}
    overrides = ["hydra/launcher=slurm", "model.C=0.1,1,10", *FAST, "mlflow.experiment_name=cluster"]
    logitlab(["sweep", "-m", *overrides], project, env=env)
    check_sweep_on_slurm(MlflowClient(server.uri), "cluster", env, tmp_path)
    assert not (project / "mlflow.db").exists(), "the jobs must not fall back to a local store"


def start_sweep(project: Path, overrides: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m logitlab.sweep -m ...` in its own process group, its output in `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "logitlab.sweep", "-m", *overrides],
            cwd=project,
            env={**BASE_ENV, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def running_children(db: Path) -> list[tuple[str, str]]:
    """(run id, SLURM job id) of the RUNNING children in a SQLite store, read-only."""
    if not db.is_file():
        return []
    query = """SELECT r.run_uuid, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'slurm.job_id'
               WHERE r.status = 'RUNNING'"""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return list(conn.execute(query))
    except sqlite3.OperationalError:  # tables not there yet
        return []


def test_a_job_slurm_cancels_is_a_failed_child_with_its_log(slurm_env: dict[str, str], tmp_path: Path) -> None:
    """scancel one job of two: that job's run ends FAILED with SLURM's state, its log attached; the other job
    finishes and the sweep ends with its summary; nothing stays RUNNING, in MLflow or on the cluster."""
    project = make_project(tmp_path / "project")
    log = tmp_path / "sweep.log"
    proc = start_sweep(project, ["hydra/launcher=slurm", *SLOW_SECOND_JOB], slurm_env, log)
    try:
        deadline = time.monotonic() + 240
        slow: list[tuple[str, str]] = []
        while not slow and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
            slow = [run for run in running_children(project / "mlflow.db") if run[1].endswith("_1")]
        assert slow, log.read_text()[-3000:]
        ((run_id, job_id),) = slow
        slurm(["scancel", job_id], slurm_env)
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in output, output[-5000:]
    assert "1 jobs finished, 1 failed" in output, output[-3000:]
    client = MlflowClient(store_uri(project))
    cancelled = client.get_run(run_id)
    assert cancelled.info.status == "FAILED"
    assert f"SLURM job {job_id} ended CANCELLED" in cancelled.data.tags["error"], cancelled.data.tags["error"]
    assert {Path(a.path).name for a in client.list_artifacts(run_id, "slurm")} == {
        f"{job_id}_0_log.out",
        f"{job_id}_0_log.err",
    }
    exp = client.get_experiment_by_name("synthetic")
    statuses = sorted(r.info.status for r in client.search_runs([exp.experiment_id]))
    assert statuses == ["FAILED", "FINISHED", "FINISHED"], statuses  # the cancelled job, the other, the parent
    assert slurm(["squeue", "-h", "-j", job_id.split("_")[0]], slurm_env).strip() == ""


def test_a_sweep_whose_process_died_resumes_without_submitting_finished_jobs(
    slurm_env: dict[str, str], tmp_path: Path
) -> None:
    """The sweep's own process SIGKILLed once its jobs are submitted: the jobs run on and end their runs; after
    they are gone, `sweep.resume=last` submits nothing and ends the parent with the summary of all three."""
    project = make_project(tmp_path / "project")
    overrides = ["hydra/launcher=slurm", "model.C=0.1,1,10", *FAST]
    log = tmp_path / "sweep.log"
    proc = start_sweep(project, overrides, slurm_env, log)
    try:
        deadline = time.monotonic() + 120
        while "Submitted 3 SLURM jobs" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        array = log.read_text().split("Submitted 3 SLURM jobs: ")[1].split("_")[0]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 300
    while slurm(["squeue", "-h", "-j", array], slurm_env).strip() and time.monotonic() < deadline:
        time.sleep(1)
    done = logitlab(["sweep", "-m", *overrides, "sweep.resume=last"], project, env=slurm_env)
    assert "Submitted 0 SLURM jobs" in done.stdout + done.stderr
    client = MlflowClient(store_uri(project))
    exp = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4  # the parent and its three jobs, once each
    assert {r.data.tags.get("slurm.job_id", "").split("_")[0] for r in runs} == {array, ""}


def test_three_slurm_sweeps_started_together_keep_their_runs_apart(slurm_env: dict[str, str], tmp_path: Path) -> None:
    """Issue 21's collision, on the cluster: three sweeps started in the same second, each job a SLURM job
    reading its sweep's hand-over from the sweep's own folder."""
    from .test_many_sweeps import TINY, check_apart, start_together, wait_all

    project = make_project(tmp_path / "project")
    outputs = wait_all(start_together(project, slurm_env, [*TINY, "hydra/launcher=slurm", "model.C=0.1,1"]))
    check_apart(MlflowClient(store_uri(project)), project, outputs, "{data}", "logitlab-{data}")


def test_an_optuna_search_keeps_two_slurm_jobs_in_flight(slurm_env: dict[str, str], project: Path) -> None:
    """Asynchronous trials on SLURM: each trial its own SLURM job, submitted while the other trial's runs."""
    from .test_optuna_async import search_in_flight

    children = search_in_flight(project, ["hydra/launcher=slurm"], env=slurm_env)
    assert len({child.data.tags["slurm.job_id"] for child in children}) == 4
