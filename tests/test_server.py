"""End-to-end tests of the shared MLflow tracking server (scripts/server.sh).

A real server runs for this module: PostgreSQL cluster + `mlflow server --app-name basic-auth`
with served artifacts, all state in a temporary dir, on free 127.0.0.1 ports.
"""

from __future__ import annotations

import multiprocessing
import stat
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlflow_server import MlflowServer, read_credentials, start_server

pytestmark = [pytest.mark.slow, pytest.mark.server]

N_PROCS = 8  # parallel client processes
N_RUNS = 16  # runs logged by them (2 per process)
N_STEPS = 120  # metric steps per run and metric, logged in batches
BATCH_METRICS = ("loss", "accuracy")
HTTP_TIMEOUT = 30  # seconds for each raw HTTP request


@pytest.fixture(scope="module")
def server():
    srv = start_server()
    try:
        yield srv
    finally:
        srv.stop()


def api(server: MlflowServer, method: str, path: str, auth=None, **kwargs) -> requests.Response:
    """One raw REST call to the server (never retried, bounded in time)."""
    return requests.request(method, f"{server.uri}/api/2.0/mlflow/{path}", auth=auth, timeout=HTTP_TIMEOUT, **kwargs)


def admin(server: MlflowServer) -> tuple[str, str]:
    return (server.username, server.password)


def use_identity(monkeypatch, server: MlflowServer, user: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    # fail fast instead of MLflow's long retry back-off if something is wrong
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT))


def metric_value(task: int, name: str, step: int) -> float:
    return round(task * 1000 + step * 0.5 + (0.25 if name == "accuracy" else 0.0), 4)


# ----------------------------------------------------------------------------- worker
def _log_one_run(args: tuple[str, str, str, str, int]) -> str:
    """Runs in a separate (spawned) process: one run with params, tags and metrics."""
    import os

    uri, user, password, experiment_id, task = args
    os.environ.update(
        {
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
        }
    )
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(experiment_id, run_name=f"task-{task}", tags={"task": str(task)})
    run_id = run.info.run_id
    client.log_batch(
        run_id, params=[Param("task", str(task)), Param("lr", f"0.{task + 1}"), Param("pid", str(os.getpid()))]
    )
    now = int(time.time() * 1000)
    metrics = [
        Metric(name, metric_value(task, name, step), now, step) for step in range(N_STEPS) for name in BATCH_METRICS
    ]
    for i in range(0, len(metrics), 100):  # several batches of 100
        client.log_batch(run_id, metrics=metrics[i : i + 100])
    for step in range(10):  # plus single-metric calls
        client.log_metric(run_id, "single", float(step), step=step)
    client.set_terminated(run_id, "FINISHED")
    return run_id


# ----------------------------------------------------------------------------- tests
@pytest.mark.timeout(60)
def test_credentials_are_private_and_not_the_stock_default(server):
    cred_file = server.state_dir / "credentials.env"
    for path in (cred_file, server.state_dir / "basic_auth.ini"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    creds = read_credentials(cred_file)
    assert creds["LOGITLAB_SERVER_ADMIN_PASSWORD"] == server.password
    assert server.password != "password1234" and len(server.password) >= 12
    # the admin password is handed to MLflow through the environment, never written to the ini
    assert server.password not in (server.state_dir / "basic_auth.ini").read_text()
    ini = (server.state_dir / "basic_auth.ini").read_text()
    assert "default_permission = READ" in ini
    assert "auth_cache_ttl_seconds = 60" in ini
    assert f"postgresql+psycopg2://mlflow:{creds['LOGITLAB_SERVER_DB_PASSWORD']}@127.0.0.1:{server.pg_port}/" in ini


@pytest.mark.timeout(60)
def test_health_is_open_but_api_needs_credentials(server):
    assert requests.get(f"{server.uri}/health", timeout=HTTP_TIMEOUT).status_code == 200
    path = "experiments/search?max_results=1"
    assert api(server, "GET", path).status_code == 401
    assert api(server, "GET", path, auth=(server.username, "wrong-password-123")).status_code == 401
    assert api(server, "GET", path, auth=("admin", "password1234")).status_code == 401
    ok = api(server, "GET", path, auth=admin(server))
    assert ok.status_code == 200, ok.text
    # unauthenticated writes and artifact access are refused too
    assert api(server, "POST", "experiments/create", json={"name": "anon"}).status_code == 401
    r = requests.get(f"{server.uri}/api/2.0/mlflow-artifacts/artifacts", timeout=HTTP_TIMEOUT)
    assert r.status_code == 401


@pytest.mark.timeout(600)
def test_parallel_logging_from_8_processes_loses_nothing(server, monkeypatch):
    use_identity(monkeypatch, server, server.username, server.password)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.uri)
    experiment_id = client.create_experiment(f"parallel-{uuid.uuid4().hex[:8]}")

    ctx = multiprocessing.get_context("spawn")
    args = [(server.uri, server.username, server.password, experiment_id, task) for task in range(N_RUNS)]
    started = time.monotonic()
    with ctx.Pool(processes=N_PROCS) as pool:
        result = pool.map_async(_log_one_run, args)
        run_ids = result.get(timeout=480)  # bounded: raises TimeoutError instead of hanging
    elapsed = time.monotonic() - started
    assert len(set(run_ids)) == N_RUNS
    # all 8 processes really took part (params record the worker pid)
    runs = client.search_runs([experiment_id], max_results=1000)
    assert {r.info.run_id for r in runs} == set(run_ids)
    pids = {r.data.params["pid"] for r in runs}
    assert 2 <= len(pids) <= N_PROCS

    for r in runs:
        task = int(r.data.params["task"])
        assert r.info.status == "FINISHED", r.info
        assert r.info.end_time is not None
        assert r.data.tags["task"] == str(task)
        assert r.data.params["lr"] == f"0.{task + 1}"
        for name in BATCH_METRICS:
            history = client.get_metric_history(r.info.run_id, name)
            assert sorted(m.step for m in history) == list(range(N_STEPS)), (name, task)
            assert all(m.value == metric_value(task, name, m.step) for m in history)
            assert r.data.metrics[name] == metric_value(task, name, N_STEPS - 1)
        single = client.get_metric_history(r.info.run_id, "single")
        assert sorted(m.step for m in single) == list(range(10))
    print(
        f"\n{N_RUNS} runs x {len(BATCH_METRICS) * N_STEPS + 10} metrics from {N_PROCS} "
        f"processes ({len(pids)} distinct) in {elapsed:.1f}s"
    )


@pytest.mark.timeout(180)
def test_second_user_can_read_but_not_write_first_users_run(server, monkeypatch):
    import mlflow.server
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    suffix = uuid.uuid4().hex[:6]
    user1, pw1 = f"alice-{suffix}", f"alice-pw-{uuid.uuid4().hex}"
    user2, pw2 = f"bob-{suffix}", f"bob-pw-{uuid.uuid4().hex}"

    # admin creates the users through the auth app's client
    use_identity(monkeypatch, server, server.username, server.password)
    auth_client = mlflow.server.get_app_client("basic-auth", tracking_uri=server.uri)
    auth_client.create_user(username=user1, password=pw1)
    auth_client.create_user(username=user2, password=pw2)
    assert auth_client.get_user(user2).is_admin is False

    # a non-admin cannot create users
    r = api(server, "POST", "users/create", auth=(user2, pw2), json={"username": f"eve-{suffix}", "password": "x" * 16})
    assert r.status_code == 403, r.text

    # user1 owns an experiment and a run
    r = api(server, "POST", "experiments/create", auth=(user1, pw1), json={"name": f"owned-by-{user1}"})
    assert r.status_code == 200, r.text
    exp_id = r.json()["experiment_id"]
    r = api(
        server,
        "POST",
        "runs/create",
        auth=(user1, pw1),
        json={"experiment_id": exp_id, "start_time": int(time.time() * 1000)},
    )
    assert r.status_code == 200, r.text
    run_id = r.json()["run"]["info"]["run_id"]
    r = api(
        server,
        "POST",
        "runs/log-metric",
        auth=(user1, pw1),
        json={"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 0, "step": 0},
    )
    assert r.status_code == 200, r.text

    # user2 may read (default_permission = READ) ...
    r = api(server, "GET", "runs/get", auth=(user2, pw2), params={"run_id": run_id})
    assert r.status_code == 200, r.text
    assert r.json()["run"]["data"]["metrics"][0]["key"] == "m"
    r = api(server, "GET", "metrics/get-history", auth=(user2, pw2), params={"run_id": run_id, "metric_key": "m"})
    assert r.status_code == 200, r.text

    # ... but not write: every write endpoint answers 403
    writes = [
        ("runs/log-metric", {"run_id": run_id, "key": "m", "value": 2.0, "timestamp": 0, "step": 1}),
        ("runs/log-batch", {"run_id": run_id, "metrics": [{"key": "m", "value": 3.0, "timestamp": 0, "step": 2}]}),
        ("runs/set-tag", {"run_id": run_id, "key": "hijacked", "value": "yes"}),
        ("runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v"}),
        ("runs/update", {"run_id": run_id, "status": "KILLED"}),
        ("runs/delete", {"run_id": run_id}),
        ("runs/create", {"experiment_id": exp_id}),
        ("experiments/update", {"experiment_id": exp_id, "new_name": "stolen"}),
    ]
    for path, body in writes:
        r = api(server, "POST", path, auth=(user2, pw2), json=body)
        assert r.status_code == 403, (path, r.status_code, r.text)
    # artifact upload into user1's run through the proxy is refused as well
    r = requests.put(
        f"{server.uri}/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run_id}/artifacts/evil.txt",
        data=b"x",
        auth=(user2, pw2),
        timeout=HTTP_TIMEOUT,
    )
    assert r.status_code == 403, r.text

    # the MLflow client surfaces the same refusal
    use_identity(monkeypatch, server, user2, pw2)
    with pytest.raises(MlflowException) as excinfo:
        MlflowClient(tracking_uri=server.uri).set_tag(run_id, "hijacked", "yes")
    assert excinfo.value.get_http_status_code() == 403

    # nothing user2 tried landed
    r = api(server, "GET", "runs/get", auth=(user1, pw1), params={"run_id": run_id})
    run = r.json()["run"]
    assert run["info"]["status"] == "RUNNING"
    assert [m["value"] for m in run["data"]["metrics"]] == [1.0]
    assert "hijacked" not in {t["key"] for t in run["data"].get("tags", [])}
    assert not run["data"].get("params")

    # after the admin grants EDIT on the experiment, user2 may write
    use_identity(monkeypatch, server, server.username, server.password)
    auth_client.grant_user_permission(user2, "experiment", exp_id, "EDIT")
    r = api(
        server,
        "POST",
        "runs/log-metric",
        auth=(user2, pw2),
        json={"run_id": run_id, "key": "m", "value": 2.0, "timestamp": 0, "step": 1},
    )
    assert r.status_code == 200, r.text


@pytest.mark.timeout(180)
def test_artifacts_upload_and_download_through_server(server, monkeypatch, tmp_path):
    use_identity(monkeypatch, server, server.username, server.password)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=server.uri)
    exp_id = client.create_experiment(f"artifacts-{uuid.uuid4().hex[:8]}")
    assert client.get_experiment(exp_id).artifact_location.startswith("mlflow-artifacts:/")
    run_id = client.create_run(exp_id).info.run_id

    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    payload = {"model.txt": b"weights " * 1000, "plots/curve.bin": bytes(range(256)) * 64}
    for rel, data in payload.items():
        (src / rel).write_bytes(data)
    client.log_artifact(run_id, str(src / "model.txt"))
    client.log_artifacts(run_id, str(src / "plots"), artifact_path="plots")
    client.set_terminated(run_id)

    listed = {a.path for a in client.list_artifacts(run_id)}
    assert listed == {"model.txt", "plots"}
    assert {a.path for a in client.list_artifacts(run_id, "plots")} == {"plots/curve.bin"}

    dst = tmp_path / "dst"
    dst.mkdir()
    local = Path(client.download_artifacts(run_id, "", str(dst)))
    for rel, data in payload.items():
        assert (local / rel).read_bytes() == data, rel

    # they were stored in the server's artifact directory, not on the client side
    stored = list(server.artifacts_dir.rglob("curve.bin"))
    assert len(stored) == 1 and stored[0].read_bytes() == payload["plots/curve.bin"]
    assert run_id in str(stored[0])


@pytest.mark.timeout(300)  # 8 jobs on 4 joblib workers beside the slow tier's other workers, on 2 cores
def test_parallel_sweep_into_the_server_loses_no_run_and_no_step(
    server: MlflowServer, tmp_path: Path, monkeypatch
) -> None:
    """An 8-job joblib sweep tracked in the PostgreSQL-backed server: every child and every epoch arrives."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import logitlab, make_project

    project = make_project(tmp_path / "project")
    rates = ",".join(str(0.02 * (i + 1)) for i in range(8))
    overrides = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", f"model.learning_rate={rates}"]
    overrides += ["model.max_iter=150", "model.tol=0", "mlflow.experiment_name=server-sweep"]
    logitlab(["sweep", "-m", *overrides], project, env=server.client_env())

    use_identity(monkeypatch, server, server.username, server.password)
    client = MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("server-sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 8 and all(c.info.status == "FINISHED" for c in children)
    for child in children:
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "train_loss")]
        assert sorted(steps) == list(range(1, 151))
    assert client.search_runs(["0"]) == [], "nothing may land in the Default experiment"
    assert not (project / "mlflow.db").exists(), "the sweep must not fall back to the local store"


def test_script_is_idempotent_and_reports_status(server):
    r = server.run_script("start")
    assert r.returncode == 0, r.stderr
    assert "already running" in r.stdout
    assert f"export MLFLOW_TRACKING_URI={server.uri}" in r.stdout
    r = server.run_script("status")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"127.0.0.1:{server.pg_port}" in r.stdout and "healthy" in r.stdout
    r = server.run_script("install")
    assert r.returncode == 0 and "found" in r.stdout, r.stdout + r.stderr


@pytest.mark.timeout(300)
def test_a_sweep_on_the_server_prints_one_line_per_job_with_its_runs_url(server: MlflowServer, tmp_path: Path) -> None:
    """MLflow's own "View run ... / View experiment ..." pair at each run's end is silenced; each job logs one line
    with its run's page in the server's UI."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import logitlab, make_project

    project = make_project(tmp_path / "project")
    overrides = ["model.C=0.5,1", "model.max_iter=50", "mlflow.experiment_name=server-lines", "mlflow.register=false"]
    done = logitlab(["sweep", "-m", *overrides], project, env=server.client_env())
    printed = done.stdout + done.stderr
    assert "View run" not in printed and "View experiment" not in printed
    lines = [line for line in printed.splitlines() if "MLflow run" in line and "FINISHED" in line]
    assert len(lines) == 2, printed[-3000:]

    client = MlflowClient(server.uri)
    with pytest.MonkeyPatch.context() as env:
        for key, value in server.client_env().items():
            env.setenv(key, value)
        experiment = client.get_experiment_by_name("server-lines")
        runs = client.search_runs([experiment.experiment_id])
    for line, job in zip(lines, (0, 1), strict=True):
        (child,) = [run for run in runs if run.data.tags.get("hydra_job_num") == str(job)]
        url = f"{server.uri}/#/experiments/{experiment.experiment_id}/runs/{child.info.run_id}"
        assert line.endswith(f"job {job}: MLflow run {child.info.run_id} FINISHED ({url})"), line


@pytest.mark.timeout(300)
def test_restart_keeps_data_and_applies_a_new_admin_password(server):
    """Runs last: restarts the module's server with a rotated admin password."""
    name = f"persist-{uuid.uuid4().hex[:8]}"
    r = api(server, "POST", "experiments/create", auth=admin(server), json={"name": name})
    assert r.status_code == 200, r.text

    r = server.run_script("stop")
    assert r.returncode == 0, r.stderr
    status = server.run_script("status")
    assert status.returncode != 0 and "stopped" in status.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.uri}/health", timeout=5)

    new_password = f"rotated-{uuid.uuid4().hex}"
    r = server.run_script("start", extra_env={"LOGITLAB_SERVER_ADMIN_PASSWORD": new_password})
    assert r.returncode == 0, r.stdout + r.stderr
    path = f"experiments/get-by-name?experiment_name={name}"
    assert api(server, "GET", path, auth=admin(server)).status_code == 401  # old password
    r = api(server, "GET", path, auth=(server.username, new_password))
    assert r.status_code == 200, r.text
    assert r.json()["experiment"]["name"] == name
