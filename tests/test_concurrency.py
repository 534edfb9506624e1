"""Concurrent writers with real processes: a parallel joblib sweep into a brand-new SQLite store, and DVC queue
workers running experiments side by side, all tracking into the project's one store."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import BASE_ENV, logitlab, run, store_uri

RATES = ["0.01", "0.02", "0.05", "0.1", "0.2", "0.3", "0.5", "1.0"]


@pytest.mark.slow
def test_parallel_joblib_sweep_into_new_store_loses_no_run_or_metric_step(project: Path) -> None:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    assert not (project / "mlflow.db").exists()
    sweep_dir = project / "multirun" / "parallel"
    logitlab(
        [
            "sweep",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=4",
            f"hydra.sweep.dir={sweep_dir}",
            "model.max_iter=300",
            "model.tol=0",  # every job runs all its epochs (the accelerated default converges early at high rates)
            f"model.learning_rate={','.join(RATES)}",
            "mlflow.child_artifacts=all",  # every parallel job logs its model into the one store
        ],
        project,
    )
    client = MlflowClient(store_uri(project))
    parent_id = json.loads((sweep_dir / "mlflow_parent.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_jobs"] == len(RATES)
    assert parent.data.metrics["n_failed"] == 0

    experiment = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_id]
    assert len(children) == len(RATES)
    assert len(runs) == len(RATES) + 1, "runs outside the sweep appeared"
    assert sorted(float(r.data.params["model.learning_rate"]) for r in children) == sorted(map(float, RATES))
    assert {r.data.tags["hydra_job_num"] for r in children} == {str(i) for i in range(len(RATES))}
    for child in children:
        assert child.info.status == "FINISHED", (child.info.run_id, child.data.tags.get("error"))
        job_dir = sweep_dir / child.data.tags["hydra_job_num"]
        n_iter = json.loads((job_dir / "models" / "model.json").read_text())["n_iter"]
        assert n_iter == 300
        for metric in ("train_loss", "val_loss"):
            history = client.get_metric_history(child.info.run_id, metric)
            assert sorted(m.step for m in history) == list(range(1, n_iter + 1)), (child.info.run_id, metric)
        assert child.data.tags.get("logitlab.model_id"), "the job's model was not logged"

    default_runs = client.search_runs(["0"], run_view_type=ViewType.ALL)
    assert default_runs == [], "runs landed in MLflow's Default experiment"


def queue_status(project: Path) -> str:
    return run(["dvc", "queue", "status"], project, timeout=120).stdout


@pytest.mark.slow
def test_dvc_queue_workers_in_parallel_both_track_into_the_project_store(project: Path) -> None:
    from mlflow.tracking import MlflowClient

    for rate in ("0.05", "0.2"):
        run(["dvc", "exp", "run", "--queue", "-S", f"model.learning_rate={rate}", "-S", "model.max_iter=300"], project)
    assert queue_status(project).count("Queued") == 2
    # `dvc queue start` leaves a daemon behind that would hold captured pipes open: give it none.
    subprocess.run(
        ["dvc", "queue", "start", "-j", "2"],
        cwd=project,
        env=BASE_ENV,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=True,
    )
    try:
        deadline = time.monotonic() + 480
        status = queue_status(project)
        while ("Queued" in status or "Running" in status) and time.monotonic() < deadline:
            time.sleep(5)
            status = queue_status(project)
        assert status.count("Success") == 2, status
    finally:
        run(["dvc", "queue", "stop", "--kill"], project, check=False, timeout=120)

    exps = run(["dvc", "exp", "show", "--json"], project).stdout
    client = MlflowClient(store_uri(project))
    experiment = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`logitlab.entry` = 'dvc repro'")
    assert len(runs) == 2, [(r.info.run_id, r.data.tags) for r in runs]
    names = sorted(r.data.tags.get("dvc_exp_name", "") for r in runs)
    assert all(names) and len(set(names)) == 2, names
    assert all(name in exps for name in names)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(float(r.data.params["model.learning_rate"]) for r in runs) == [0.05, 0.2]
    assert not list((project / ".dvc" / "tmp" / "exps").glob("**/mlflow.db")), "a worker made its own store"


WRITERS = 4


def _log_the_same_dataset(uri: str, experiment_id: str, data: str, start: Any) -> None:
    """One job of a parallel sweep, reduced to its dataset: a run, then the experiment's dataset once all are in."""
    import mlflow
    import pandas as pd

    from logitlab.tracking.results import DatasetRecord, log_dataset

    mlflow.set_tracking_uri(uri)
    record = DatasetRecord("synthetic", "0123456789abcdef", Path(data), {"train": 6, "val": 2, "test": 2})
    with mlflow.start_run(experiment_id=experiment_id) as run:
        start.wait(timeout=120)
        log_dataset(run.info.run_id, record, pd.DataFrame({"x0": [0.5], "x1": [1.5]}))


@pytest.mark.slow
def test_parallel_jobs_log_an_experiments_first_dataset_at_once(tmp_path: Path) -> None:
    """MLflow inserts a dataset it has not seen in the experiment without a lock: jobs that log it at the same
    moment collide on its unique key, and each job must still end with the dataset as its input."""
    import multiprocessing

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("race")
    data = tmp_path / "dataset.parquet"
    data.write_bytes(b"")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WRITERS)
    writers = [
        context.Process(target=_log_the_same_dataset, args=(uri, experiment_id, str(data), start))
        for _ in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=180)
    assert [writer.exitcode for writer in writers] == [0] * WRITERS
    runs = client.search_runs([experiment_id])
    assert len(runs) == WRITERS
    assert all([d.dataset.digest for d in run.inputs.dataset_inputs] == ["0123456789abcdef"] for run in runs)
