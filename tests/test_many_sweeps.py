"""Several sweeps started at the same moment from one checkout into one store, as a script or CI starts them:
each sweep's folder, parent run and children are its own, whatever its launcher and sweeper."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from mlflow.tracking import MlflowClient

from .conftest import BASE_ENV, logitlab, store_uri
from .mlflow_server import MlflowServer, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DATASETS = ("synthetic", "circles", "moons")
TINY = ["model.max_iter=50", "model.tol=0"]
KINDS = {
    "grid": ["model.C=0.1,1"],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.C=0.1,1"],
    "optuna": ["hparams_search=lr_penalty", "hydra.sweeper.n_trials=2"],
}
N_JOBS = 2


def start_together(project: Path, env: dict[str, str], overrides: list[str]) -> dict[str, subprocess.Popen[str]]:
    """One sweep per data set, all started at once with the default `hydra.sweep.dir`. `overrides` may name
    `{data}`."""
    return {
        data: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "logitlab.sweep",
                "-m",
                f"data={data}",
                *(override.format(data=data) for override in overrides),
            ],
            cwd=project,
            env={**BASE_ENV, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for data in DATASETS
    }


def wait_all(procs: dict[str, subprocess.Popen[str]]) -> dict[str, str]:
    """Each sweep's output, once all exited 0."""
    outputs = {}
    try:
        for data, proc in procs.items():
            output = proc.communicate(timeout=1200)[0]
            assert proc.returncode == 0, f"{data}: {output[-4000:]}"
            outputs[data] = output
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return outputs


def sweep_together(project: Path, kind: str, env: dict[str, str], extra: list[str]) -> dict[str, str]:
    return wait_all(start_together(project, env, [*TINY, *KINDS[kind], *extra]))


def check_apart(
    client: MlflowClient, project: Path, outputs: dict[str, str], experiment: str, model: str, n_jobs: int = N_JOBS
) -> None:
    """Each data set: one FINISHED parent whose children are exactly its own jobs on that data set, each with its
    whole loss history, nothing RUNNING, its champion registered from one of those children, its sweep folder
    its own."""
    folders = set()
    for data, output in outputs.items():
        exp = client.get_experiment_by_name(experiment.format(data=data))
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        assert "RUNNING" not in {r.info.status for r in runs}
        parents = [r for r in runs if r.data.tags.get("logitlab.entry") == "sweep parent"]
        assert [p.info.status for p in parents] == ["FINISHED"], (data, output[-3000:])
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(children) == n_jobs, (data, len(children), output[-3000:])
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
        assert {c.data.params["data.name"] for c in children} == {data}
        assert {c.info.status for c in children} == {"FINISHED"}
        assert parents[0].data.metrics["n_jobs"] == n_jobs
        for child in children:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")]
            assert sorted(steps) == list(range(1, int(child.data.metrics["n_iter"]) + 1)), child.info.run_id
        champion = client.get_model_version_by_alias(model.format(data=data), "champion")
        assert champion.run_id in {c.info.run_id for c in children}
        (folder,) = [
            file.parent
            for file in project.glob("multirun/*/*/mlflow_parent.json")
            if json.loads(file.read_text())["run_id"] == parents[0].info.run_id
        ]
        assert len(list(folder.glob("*/job.json"))) == n_jobs
        folders.add(folder)
    assert len(folders) == len(DATASETS), folders
    assert client.search_runs(["0"]) == [], "runs landed in MLflow's Default experiment"


@pytest.mark.parametrize("kind", KINDS)
def test_three_sweeps_started_together_keep_their_runs_apart(project: Path, kind: str) -> None:
    """Into a brand-new SQLite store: the store and the experiments are made by three processes at once."""
    outputs = sweep_together(project, kind, {}, [])
    check_apart(MlflowClient(store_uri(project)), project, outputs, "{data}", "logitlab-{data}")


@pytest.fixture(scope="module")
def team_server() -> Iterator[MlflowServer]:
    srv = start_server()
    try:
        with pytest.MonkeyPatch.context() as env:
            for key, value in srv.client_env().items():
                env.setenv(key, value)
            yield srv
    finally:
        srv.stop()


@pytest.mark.server
@pytest.mark.parametrize("kind", KINDS)
def test_three_sweeps_started_together_keep_their_runs_apart_on_the_team_server(
    project: Path, kind: str, team_server: MlflowServer
) -> None:
    names = [f"mlflow.experiment_name={kind}-{{data}}", f"mlflow.registered_model_name=logitlab-{kind}-{{data}}"]
    outputs = sweep_together(project, kind, team_server.client_env(), names)
    check_apart(MlflowClient(team_server.uri), project, outputs, f"{kind}-{{data}}", f"logitlab-{kind}-{{data}}")


def test_a_sweep_folder_in_use_by_a_running_sweep_is_refused_in_one_line(project: Path) -> None:
    """Two sweeps given the same `hydra.sweep.dir`: the second stops before its first job (the first holds
    the folder's lock for as long as it runs; here the test holds it)."""
    sweep_dir = project / "multirun" / "shared"
    sweep_dir.mkdir(parents=True)
    with FileLock(sweep_dir / ".sweep.lock"):
        done = logitlab(["sweep", "-m", "model.C=0.1,1", *TINY, f"hydra.sweep.dir={sweep_dir}"], project, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(errors) == 1 and "hydra.sweep.dir" in errors[0] and "another sweep" in errors[0], errors
    assert not (sweep_dir / "mlflow_parent.json").exists() and not list(sweep_dir.glob("*/job.json"))


@pytest.mark.server
def test_restarting_only_postgres_while_three_sweeps_log_loses_nothing(
    project: Path, team_server: MlflowServer
) -> None:
    """`scripts/server.sh restart-db` in the middle of three sweeps: the MLflow server stays up (same process)
    and answers 5xx meanwhile, which the clients retry through; every run and step arrives, nothing RUNNING."""
    rates = "model.learning_rate=0.05,0.1,0.2,0.4"
    names = ["mlflow.experiment_name=restart-db-{data}", "mlflow.registered_model_name=logitlab-restart-db-{data}"]
    procs = start_together(project, team_server.client_env(), ["model.max_iter=300", "model.tol=0", rates, *names])
    try:
        client = MlflowClient(team_server.uri)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # every sweep has a child logging
            assert all(proc.poll() is None for proc in procs.values()), "a sweep ended before the restart"
            experiments = [client.get_experiment_by_name(f"restart-db-{data}") for data in DATASETS]
            if all(experiments) and all(
                client.search_runs([exp.experiment_id], filter_string="tags.`logitlab.entry` = 'sweep'")
                for exp in experiments
            ):
                break
            time.sleep(0.5)
        mlflow_pid = (team_server.state_dir / "mlflow.pid").read_text()
        done = team_server.run_script("restart-db")
        assert done.returncode == 0 and "MLflow kept running" in done.stdout, done.stdout + done.stderr
        assert (team_server.state_dir / "mlflow.pid").read_text() == mlflow_pid
        assert "restart-db" in team_server.run_script("help").stderr  # the usage names it
    finally:
        outputs = wait_all(procs)
    model = "logitlab-restart-db-{data}"
    check_apart(MlflowClient(team_server.uri), project, outputs, "restart-db-{data}", model, n_jobs=4)
