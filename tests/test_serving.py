"""`make serve` (scripts/serve.sh): the registered champion behind `mlflow models serve`, for real.

One project copy runs a real sweep; the script serves `models:/logitlab-circles@champion` on a free 127.0.0.1 port
from the copy's own store, and the probabilities it returns for raw rows must be the pipeline's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import BASE_ENV, logitlab, make_project, run, store_uri

pytestmark = pytest.mark.slow

NAME = "logitlab-circles"  # what the sweep registers its best model as (mlflow.registered_model_name)
SWEEP = ["sweep", "-m", "data=circles", "model.learning_rate=0.1,1", "features.degree=1,2"]
START_TIMEOUT = 150  # seconds for every worker of the server to start (a busy 2-core machine: ~60)
TOL = 1e-9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_env(**extra: str) -> dict[str, str]:
    return {**BASE_ENV, "LOGITLAB_PYTHON": sys.executable, **extra}


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def swept(module_project: Path) -> Path:
    logitlab(SWEEP, module_project)
    return module_project


@pytest.fixture(scope="module")
def champion(swept: Path) -> dict[str, Any]:
    """The champion's version, run and the job directory (model/ and reports/) that produced it."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store_uri(swept), registry_uri=store_uri(swept))
    version = client.get_model_version_by_alias(NAME, "champion")
    run_ = client.get_run(version.run_id)
    parent_id = run_.data.tags["mlflow.parentRunId"]
    sweep_dirs = [
        f.parent
        for f in swept.glob("multirun/*/*/mlflow_parent.json")
        if json.loads(f.read_text())["run_id"] == parent_id
    ]
    assert len(sweep_dirs) == 1, sweep_dirs
    job_dir = sweep_dirs[0] / run_.data.tags["hydra_job_num"]
    assert (job_dir / "models").is_dir() and (job_dir / "reports" / "metrics.json").is_file()
    return {"version": version, "run": run_, "job_dir": job_dir}


@pytest.fixture(scope="module")
def server(swept: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with serving(swept, NAME, tmp_path_factory.mktemp("serve") / "serve.log") as served:
        yield served


@contextlib.contextmanager
def serving(project: Path, name: str, log_file: Path, **settings: str) -> Iterator[dict[str, Any]]:
    """`make serve`'s script serving `name`'s champion from `project`'s store, until the block ends."""
    port = free_port()
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(
            ["bash", str(project / "scripts" / "serve.sh")],
            cwd=project,
            env=serve_env(PORT=str(port), MODEL_NAME=name, **settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown ends mlflow and uvicorn together
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve.sh exited {proc.returncode}:\n{log_file.read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200 and all_workers_started(log_file):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not every worker answers on {url} in {START_TIMEOUT} s:\n{log_file.read_text()[-4000:]}")
            time.sleep(0.5)
        yield {"url": url, "log": log_file, "proc": proc}
    finally:
        stop(proc)


def all_workers_started(log_file: Path) -> bool:
    """Has each of the workers the server announced (`serving: N worker(s) ...`) finished its startup?"""
    log = log_file.read_text(errors="replace")
    announced = re.search(r"^serving: (\d+) worker", log, re.MULTILINE)
    return announced is not None and log.count("Application startup complete.") >= int(announced[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------- helpers
def job_config(job_dir: Path) -> Any:
    """The job's validated preprocess settings (split config and seed)."""
    from logitlab.stages import preprocess

    return preprocess.settings(yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text()))


def raw_rows(project: Path, job_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """The raw frame the sweep ingested (its memoised ingest output), its test split as the preprocess
    stage cut it (features, target), with the same config and seed."""
    from logitlab.sources import TARGET
    from logitlab.stages import preprocess

    raws = sorted(project.glob(".cache/logitlab/ingest/*/data/raw/dataset.parquet"))
    assert len(raws) == 1, raws  # one data set in this sweep
    raw = pd.read_parquet(raws[0])
    cfg = job_config(job_dir)
    test = preprocess.split(raw, cfg.preprocess, cfg.seed)["test"]
    return raw.drop(columns=[TARGET]), test.drop(columns=[TARGET]), test[TARGET]


def evaluate_stage_proba(project: Path, pipeline: Any) -> np.ndarray:
    """What the evaluate stage scored: the model on the processed (feature-engineered) test split."""
    from logitlab.sources import TARGET

    wanted = [*pipeline.expander.output_columns, TARGET]
    entries = sorted(project.glob(".cache/logitlab/feature-engineer/*/data/processed/test.parquet"))
    tables = [pd.read_parquet(f) for f in entries]
    matching = [t for t in tables if list(t.columns) == wanted]
    assert len(matching) == 1, [list(t.columns) for t in tables]
    return np.asarray(pipeline.model.predict_proba(matching[0].drop(columns=[TARGET]))[:, 1])


def invoke(url: str, rows: pd.DataFrame) -> pd.DataFrame:
    # Python's float repr round-trips exactly (pandas' to_json stops at 15 digits)
    payload = {"dataframe_split": {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}}
    response = requests.post(f"{url}/invocations", json=payload, timeout=60)
    assert response.status_code == 200, response.text[:2000]
    return pd.DataFrame(response.json()["predictions"])


def pyfunc_predict(project: Path, rows: pd.DataFrame, tmp: Path) -> pd.DataFrame:
    """`mlflow.pyfunc.load_model('models:/logitlab-circles@champion').predict(rows)` in a clean process."""
    rows.to_parquet(tmp / "rows.parquet")
    code = (
        "import sys, mlflow, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model('models:/{NAME}@champion')\n"
        "model.predict(pd.read_parquet(sys.argv[1])).to_parquet(sys.argv[2])\n"
    )
    env = {"MLFLOW_TRACKING_URI": store_uri(project), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    run([sys.executable, "-c", code, str(tmp / "rows.parquet"), str(tmp / "out.parquet")], project, env=env)
    return pd.read_parquet(tmp / "out.parquet")


# -------------------------------------------------------------------------------------------- tests
@pytest.mark.timeout(300)
def test_served_champion_scores_raw_rows_like_the_pipeline(
    swept: Path, champion: dict[str, Any], server: Any, tmp_path: Path
) -> None:
    from logitlab.scoring import ScoringPipeline

    job_dir = champion["job_dir"]
    raw, test_x, test_y = raw_rows(swept, job_dir)
    rows = pd.concat([raw.head(5), test_x], ignore_index=True)  # the logged input example + the test split
    served = invoke(server["url"], rows)
    assert list(served.columns) == ["probability", "label"] and len(served) == len(rows)
    served_p = served["probability"].to_numpy(dtype=np.float64)

    pipeline = ScoringPipeline.load(job_dir / "models")
    expected = pipeline.predict_frame(rows)
    np.testing.assert_allclose(served_p, expected["probability"].to_numpy(), rtol=0, atol=TOL)
    assert served["label"].astype(str).tolist() == expected["label"].tolist()

    from_registry = pyfunc_predict(swept, rows, tmp_path)
    np.testing.assert_allclose(served_p, from_registry["probability"].to_numpy(), rtol=0, atol=TOL)

    # the evaluate stage's own scores of the test split, and its per-row predictions (plots/confusion.csv)
    served_test = served_p[5:]
    np.testing.assert_allclose(served_test, evaluate_stage_proba(swept, pipeline), rtol=0, atol=TOL)
    confusion = pd.read_csv(job_dir / "reports" / "plots" / "confusion.csv")
    assert confusion["actual"].tolist() == test_y.tolist()
    positive = str(pipeline.labels["positive"])
    assert (served["label"].astype(str)[5:] == positive).astype(int).tolist() == confusion["predicted"].tolist()
    # and the accuracy the run logged follows from the served labels
    accuracy = float(np.mean((served_test >= pipeline.model.threshold).astype(int) == test_y.to_numpy()))
    assert accuracy == pytest.approx(champion["run"].data.metrics["test_accuracy"], abs=1e-9)
    assert json.loads((job_dir / "reports" / "metrics.json").read_text())["test_accuracy"] == pytest.approx(accuracy)


@pytest.mark.timeout(120)
def test_the_champion_scores_integers_in_a_float_column(swept: Path, champion: dict[str, Any], tmp_path: Path) -> None:
    """MLflow held each column to the type of the logged example's values: `pyfunc.predict` refused integers in
    a float column (`Can not safely convert int64 to float64`). The model takes any number."""
    from logitlab.scoring import ScoringPipeline

    rows = pd.DataFrame({"x0": [1, 0, -1], "x1": [0, 1, 2]})
    expected = ScoringPipeline.load(champion["job_dir"] / "models").predict_frame(rows)
    scored = pyfunc_predict(swept, rows, tmp_path)
    np.testing.assert_allclose(scored["probability"], expected["probability"], rtol=0, atol=TOL)


def test_server_reports_which_model_it_serves(server: Any, champion: dict[str, Any]) -> None:
    log = server["log"].read_text()
    assert f"models:/{NAME}@champion (version {champion['version'].version})" in log
    assert "127.0.0.1" in log


@pytest.mark.timeout(120)
def test_a_request_lacking_a_column_is_a_400_in_one_line_naming_it(server: Any) -> None:
    response = requests.post(
        f"{server['url']}/invocations", json={"dataframe_split": {"columns": ["x0"], "data": [[1.0]]}}, timeout=60
    )
    assert response.status_code == 400, (response.status_code, response.text[:500])
    answer = response.json()
    assert "stack_trace" not in answer and "Traceback" not in response.text
    assert "\n" not in answer["message"] and answer["message"].startswith("column 'x1' is missing"), answer
    assert requests.get(f"{server['url']}/ping", timeout=10).status_code == 200
    assert server["proc"].poll() is None


@pytest.mark.timeout(120)
def test_no_champion_is_one_line_error(project: Path, swept: Path) -> None:
    script = str(project / "scripts" / "serve.sh")
    # a fresh copy: no store at all; default model name (the default config's experiment)
    done = run(["bash", script], project, env=serve_env(PORT=str(free_port())), check=False, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("run a sweep first: make sweep"), done.stderr
    assert "synthetic" in lines[0] and store_uri(project) in lines[0]
    # a store with a champion of another name
    env = serve_env(PORT=str(free_port()), MLFLOW_TRACKING_URI=store_uri(swept))
    done = run(["bash", script], project, env=env, check=False, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no model 'logitlab-synthetic' with alias 'champion'" in lines[0], done.stderr
    assert "run a sweep first: make sweep" in lines[0]
    assert lines[0].endswith(f"(champions in this store: {NAME}; serve one with MODEL_NAME={NAME})")


@pytest.mark.timeout(60)
def test_bad_port_is_refused(project: Path) -> None:
    done = run(["bash", str(project / "scripts" / "serve.sh")], project, env=serve_env(PORT="http"), check=False)
    assert done.returncode == 1 and done.stderr.strip() == "serve.sh: error: PORT must be a number, got 'http'"


# ------------------------------------------------------------------ limits, error replies, workers
def worker_pids(server_pid: int) -> list[int]:
    """The uvicorn workers serving: the processes uvicorn spawned, or the server itself when it runs one."""
    import psutil

    children = psutil.Process(server_pid).children(recursive=True)
    spawned = [child.pid for child in children if "spawn_main" in " ".join(child.cmdline())]
    return spawned or [server_pid]


def cpu_seconds(pids: list[int]) -> list[float]:
    import psutil

    return [sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids]


def body_chunks(size: int, chunk: int = 64 << 10) -> Iterator[bytes]:
    """`size` bytes of non-JSON, handed to requests as a generator: sent chunked, with no Content-Length."""
    for start in range(0, size, chunk):
        yield b"a" * min(chunk, size - start)


def assert_one_line_error(response: requests.Response, status: int, max_chars: int = 1200) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert len(response.content) <= max_chars, len(response.content)
    answer = response.json()
    assert "\n" not in answer["message"] and "stack_trace" not in answer, answer
    return dict(answer)


@pytest.mark.timeout(180)
def test_an_over_limit_body_is_a_413_in_one_line_whether_its_length_is_declared_or_streamed(server: Any) -> None:
    from logitlab.serving import DEFAULT_MAX_REQUEST_BYTES

    url = f"{server['url']}/invocations"
    headers = {"Content-Type": "application/json"}
    over = DEFAULT_MAX_REQUEST_BYTES + 1
    declared = requests.post(url, data=b"a" * over, headers=headers, timeout=60)
    answer = assert_one_line_error(declared, 413, max_chars=300)
    assert answer["message"] == (
        f"request body of {over} bytes is over the limit of {DEFAULT_MAX_REQUEST_BYTES} bytes (MAX_REQUEST_BYTES)"
    )
    streamed = requests.post(url, data=body_chunks(10 * DEFAULT_MAX_REQUEST_BYTES), headers=headers, timeout=60)
    assert "content-length" not in {k.lower() for k in streamed.request.headers}
    answer = assert_one_line_error(streamed, 413, max_chars=300)
    assert answer["message"] == (
        f"request body (streamed, no Content-Length) is over the limit of {DEFAULT_MAX_REQUEST_BYTES} bytes"
        " (MAX_REQUEST_BYTES)"
    )
    # a body at the limit is read (and refused as the non-JSON it is); the server goes on serving
    at_limit = requests.post(url, data=b"a" * DEFAULT_MAX_REQUEST_BYTES, headers=headers, timeout=60)
    assert_one_line_error(at_limit, 400)
    assert requests.get(f"{server['url']}/ping", timeout=10).status_code == 200


@pytest.mark.timeout(180)
def test_error_replies_never_echo_more_than_an_excerpt_of_the_request(server: Any) -> None:
    from logitlab.serving import DEFAULT_MAX_REQUEST_BYTES

    url = f"{server['url']}/invocations"
    big = DEFAULT_MAX_REQUEST_BYTES - 10
    for content_type, body in [
        ("application/json", b"x" * big),  # MLflow: "Ensure that input is a valid JSON ... Input: <the body>"
        ("application/json", body_chunks(big)),
        ("application/json", b'{"dataframe_split": {"columns": ["x0", "x1"], "data": "' + b"y" * (big - 100) + b'"}}'),
        ("text/csv", b"x0,x1\n" + b"abc,1\n" * (big // 6)),  # a column that is not a number: with a stack trace
    ]:
        response = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=120)
        assert_one_line_error(response, 400)
    # a content type MLflow refuses in plain text: bounded and one line too
    response = requests.post(url, data=b"z" * 1000, headers={"Content-Type": "text/" + "z" * 5000}, timeout=60)
    assert response.status_code == 415 and len(response.content) <= 1200 and "\n" not in response.text


@pytest.mark.timeout(300)
def test_the_default_server_runs_a_worker_per_core(server: Any) -> None:
    from logitlab.serving import DEFAULT_MAX_REQUEST_BYTES, cores

    assert len(worker_pids(server["proc"].pid)) == cores()
    assert f"serving: {cores()} worker(s) on {cores()} core(s), requests up to {DEFAULT_MAX_REQUEST_BYTES} bytes" in (
        server["log"].read_text()
    )


@pytest.fixture(scope="module")
def small_server(swept: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two workers (whatever the cores) and a 4000-byte request limit, set as a user would."""
    log_file = tmp_path_factory.mktemp("serve-small") / "serve.log"
    with serving(swept, NAME, log_file, WORKERS="2", MAX_REQUEST_BYTES="4000") as served:
        yield served


def rows_payload(rows: int) -> dict[str, Any]:
    data = [[round(0.001 * i, 3), round(-0.002 * i, 3)] for i in range(rows)]
    return {"dataframe_split": {"columns": ["x0", "x1"], "data": data}}


@pytest.mark.timeout(300)
def test_workers_and_the_request_limit_are_configurable_and_every_worker_serves(small_server: Any) -> None:
    url = f"{small_server['url']}/invocations"
    small, large = rows_payload(100), rows_payload(400)
    assert len(json.dumps(small)) < 4000 < len(json.dumps(large))
    assert requests.post(url, json=small, timeout=60).status_code == 200
    answer = assert_one_line_error(requests.post(url, json=large, timeout=60), 413, max_chars=300)
    assert "over the limit of 4000 bytes (MAX_REQUEST_BYTES)" in answer["message"]

    workers = worker_pids(small_server["proc"].pid)
    assert len(workers) == 2, workers
    before = cpu_seconds(workers)

    def score(_: int) -> int:  # a new connection per request: uvicorn's workers share the listening socket
        return requests.post(url, json=small, timeout=60, headers={"Connection": "close"}).status_code

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(score, range(160)))
    assert statuses == [200] * 160
    used = [after - earlier for after, earlier in zip(cpu_seconds(workers), before, strict=True)]
    assert min(used) > 0.1 * max(used), used  # both workers scored a share of the requests


@pytest.mark.timeout(120)
def test_bad_worker_count_or_limit_is_refused_in_one_line(project: Path) -> None:
    script = str(project / "scripts" / "serve.sh")
    for name, value in [("WORKERS", "0"), ("WORKERS", "all"), ("MAX_REQUEST_BYTES", "1MB")]:
        done = run(["bash", script], project, env=serve_env(**{name: value}), check=False, timeout=60)
        assert done.returncode == 1
        assert done.stderr.strip() == f"serve.sh: error: {name} must be a positive whole number, got '{value}'"


@pytest.fixture(scope="module")
def multiclass_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A one-job sweep on a three-class CSV, its champion served by `make serve`'s script."""
    from sklearn.datasets import load_iris

    project = make_project(tmp_path_factory.mktemp("multiclass") / "project")
    X, y = load_iris(return_X_y=True, as_frame=True)
    X["sepal length (mm)"] = (X.pop("sepal length (cm)") * 10).round().astype(int)  # an integer column
    X.assign(species=np.array(["setosa", "versicolor", "virginica"])[y]).to_csv(
        project / "data/raw/external/iris.csv", index=False
    )
    logitlab(["sweep", "-m", "data=csv", "data.path=data/raw/external/iris.csv", "data.target=species"], project)
    with serving(project, "logitlab-csv", tmp_path_factory.mktemp("serve-multiclass") / "serve.log") as served:
        yield {**served, "project": project, "rows": X}


@pytest.mark.timeout(300)
def test_served_multiclass_champion_returns_the_label_and_a_probability_per_class(multiclass_server: Any) -> None:
    from logitlab.scoring import ScoringPipeline

    rows = multiclass_server["rows"].iloc[::15].reset_index(drop=True)
    served = invoke(multiclass_server["url"], rows)
    names = ["setosa", "versicolor", "virginica"]
    assert list(served.columns) == ["label", *(f"probability_{name}" for name in names)]
    (job_dir,) = (multiclass_server["project"] / "multirun").glob("*/*/0")
    expected = ScoringPipeline.load(job_dir / "models").predict_frame(rows)
    np.testing.assert_allclose(served.iloc[:, 1:].to_numpy(float), expected.iloc[:, 1:].to_numpy(), rtol=0, atol=TOL)
    assert served["label"].tolist() == expected["label"].tolist()
    assert (served["label"] == np.array(names)[np.arange(len(rows)) * 15 // 50]).mean() > 0.8


@pytest.mark.timeout(300)
def test_a_missing_value_in_an_integer_column_is_imputed_not_refused(multiclass_server: Any) -> None:
    """The CSV's integer column was typed `long` from the logged example, and MLflow refused a request with a
    missing value in it; the model imputes it as the pipeline does (the training median)."""
    from logitlab.scoring import ScoringPipeline

    rows = multiclass_server["rows"].iloc[::30].reset_index(drop=True).astype({"sepal length (mm)": float})
    rows.loc[0, "sepal length (mm)"] = np.nan
    payload = {
        "dataframe_split": {
            "columns": list(rows.columns),
            "data": rows.astype(object).where(rows.notna(), None).to_numpy().tolist(),
        }
    }
    response = requests.post(f"{multiclass_server['url']}/invocations", json=payload, timeout=60)
    assert response.status_code == 200, response.text[:2000]
    served = pd.DataFrame(response.json()["predictions"])
    (job_dir,) = (multiclass_server["project"] / "multirun").glob("*/*/0")
    expected = ScoringPipeline.load(job_dir / "models").predict_frame(rows)
    np.testing.assert_allclose(served.iloc[:, 1:].to_numpy(float), expected.iloc[:, 1:].to_numpy(), rtol=0, atol=TOL)


def test_the_workers_listening_socket_is_tcp_so_asyncio_turns_nagle_off() -> None:
    """uvicorn binds its workers' socket with proto 0; asyncio sets TCP_NODELAY on accepted connections only
    when proto is IPPROTO_TCP (without it a sequential client waited ~40 ms per request on delayed ACKs)."""
    import uvicorn

    from logitlab.serving import listening_socket

    config = uvicorn.Config("logitlab.serving:create_app", factory=True, host="127.0.0.1", port=0, workers=2)
    with contextlib.closing(config.bind_socket()) as theirs:
        assert theirs.proto == 0  # uvicorn's own: why listening_socket exists
    with contextlib.closing(listening_socket(config)) as ours:
        assert (ours.family, ours.type, ours.proto) == (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        ours.listen()
        with socket.create_connection(ours.getsockname(), timeout=10):
            accepted, _ = ours.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP  # what asyncio's _set_nodelay checks


@pytest.mark.timeout(300)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_stopped_server_leaves_no_model_copy_behind(swept: Path, tmp_path: Path, workers: str) -> None:
    """The model is downloaded to a temporary folder at start; SIGTERM (how the tests, systemd and `kill` stop
    it) removes it, also in uvicorn's single-process mode, which re-raises the signal once it is down."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    with serving(swept, NAME, tmp_path / "serve.log", WORKERS=workers, TMPDIR=str(temp)):
        assert [p.name.startswith("logitlab-serve-") for p in temp.iterdir()] == [True]
    assert list(temp.iterdir()) == []
