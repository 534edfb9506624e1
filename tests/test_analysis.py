"""The notebook API (logitlab.analysis) on the store of real sweeps: two sweeps in one project copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlflow.tracking import MlflowClient

from conftest import logitlab, make_project, run, store_uri
from logitlab.analysis import RunData, compare, default_tracking_uri, load_run
from logitlab.errors import TrackingError

NAME = "circles"
FAST = ["model.max_iter=150", "features.degree=2"]
SWEEP_A = ["sweep", "-m", "data=circles", "model.learning_rate=0.1,1", *FAST]
SWEEP_B = ["sweep", "-m", "data=circles", "model.learning_rate=0.5", *FAST]


@pytest.fixture(scope="module")
def sweeps(module_project: Path) -> dict[str, Any]:
    """Two sweeps (2 jobs, then 1 job); their parent run ids and sweep directories."""
    found: dict[str, Any] = {"project": module_project, "uri": store_uri(module_project)}
    for label, args in (("a", SWEEP_A), ("b", SWEEP_B)):
        before = set(module_project.glob("multirun/*/*/mlflow_parent.json"))
        logitlab(args, module_project)
        (new,) = set(module_project.glob("multirun/*/*/mlflow_parent.json")) - before
        found[label] = {"parent": json.loads(new.read_text())["run_id"], "dir": new.parent}
    return found


@pytest.fixture(autouse=True)
def no_inherited_store(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "LOGITLAB_ROOT", "DVC_ROOT"):
        monkeypatch.delenv(name, raising=False)


def test_compare_lists_every_run_of_the_experiment(sweeps: dict[str, Any]) -> None:
    table = compare(NAME, tracking_uri=sweeps["uri"])
    assert len(table) == 2 + 3  # two parents, three jobs
    assert list(table.columns[:6]) == ["run_id", "run_name", "status", "parent_run_id", "start_time", "end_time"]
    assert set(table["status"]) == {"FINISHED"}
    parents = table[table["parent_run_id"].isna()]
    assert set(parents["run_id"]) == {sweeps["a"]["parent"], sweeps["b"]["parent"]}
    assert all(name.startswith("sweep-") for name in parents["run_name"])
    assert table["start_time"].is_monotonic_increasing
    for column in (
        "params.model.learning_rate",
        "params.features.degree",
        "metrics.val_accuracy",
        "metrics.train_loss",
    ):
        assert column in table.columns
    # parameters come back as numbers where they are numbers
    assert pd.api.types.is_float_dtype(table["params.model.learning_rate"])
    assert pd.api.types.is_integer_dtype(table["params.features.degree"])
    assert table["params.data.name"].eq(NAME).all()


def test_compare_one_sweep_gives_its_jobs_only(sweeps: dict[str, Any]) -> None:
    jobs = compare(NAME, tracking_uri=sweeps["uri"], parent_run_id=sweeps["a"]["parent"])
    assert len(jobs) == 2
    assert (jobs["parent_run_id"] == sweeps["a"]["parent"]).all()
    assert sorted(jobs["params.model.learning_rate"]) == [0.1, 1.0]
    assert sorted(jobs["run_name"]) == ["lr=0.1", "lr=1"]  # by what the sweep varies
    other = compare(NAME, tracking_uri=sweeps["uri"], parent_run_id=sweeps["b"]["parent"])
    assert other["params.model.learning_rate"].tolist() == [0.5]
    assert compare(NAME, tracking_uri=sweeps["uri"], parent_run_id="0" * 32).empty


def test_compare_matches_each_jobs_reports(sweeps: dict[str, Any]) -> None:
    jobs = compare(NAME, tracking_uri=sweeps["uri"], parent_run_id=sweeps["a"]["parent"], tags=True)
    for _, row in jobs.iterrows():
        job_dir = sweeps["a"]["dir"] / row["tags.hydra_job_num"]
        reported = json.loads((job_dir / "reports" / "metrics.json").read_text())
        for key, value in reported.items():
            assert row[f"metrics.{key}"] == pytest.approx(value, abs=1e-12), key


def test_load_run_gives_params_final_metrics_history_and_tags(sweeps: dict[str, Any]) -> None:
    jobs = compare(NAME, tracking_uri=sweeps["uri"], parent_run_id=sweeps["a"]["parent"])
    job = load_run(jobs["run_id"].iloc[0], tracking_uri=sweeps["uri"])
    assert isinstance(job, RunData)
    assert job.status == "FINISHED" and job.parent_run_id == sweeps["a"]["parent"]
    assert job.run_name == jobs["run_name"].iloc[0]
    assert job["metrics"] is job.metrics and set(dict(job)) == set(RunData.KEYS)

    job_dir = sweeps["a"]["dir"] / job.tags["hydra_job_num"]
    assert job.params["model.learning_rate"] == 0.1 and job.params["features.degree"] == 2
    assert job.params["data.name"] == NAME and job.params["model.max_iter"] == 150
    reported = json.loads((job_dir / "reports" / "metrics.json").read_text())
    for key, value in reported.items():
        assert job.metrics[key] == pytest.approx(value, abs=1e-12), key

    history = job.history
    assert list(history.columns) == ["epoch", "train_loss", "val_loss"]
    assert pd.api.types.is_integer_dtype(history["epoch"])
    on_disk = pd.read_csv(job_dir / "reports" / "cost_history.csv")
    assert history["epoch"].tolist() == on_disk["epoch"].tolist() == list(range(1, 151))
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(history[column], on_disk[column], rtol=1e-9)
    # the final metric is the history's last point
    assert job.metrics["train_loss"] == history["train_loss"].iloc[-1]
    assert job.tags["logitlab.entry"] == "sweep"


def test_load_run_of_a_sweep_parent(sweeps: dict[str, Any]) -> None:
    parent = load_run(sweeps["a"]["parent"], tracking_uri=sweeps["uri"])
    assert parent.parent_run_id is None and parent.run_name.startswith("sweep-")
    assert parent.metrics["n_jobs"] == 2 and parent.metrics["n_failed"] == 0
    # the parent holds its best job's final metrics, but no per-epoch history (a step-0 value is none)
    assert parent.metrics["val_accuracy"] == 1.0 and parent.history.empty
    assert list(parent.history.columns) == ["epoch", "train_loss", "val_loss"]
    assert "history=<0 epochs>" in repr(parent)
    assert parent.tags["best_run_id"] in set(compare(NAME, tracking_uri=sweeps["uri"])["run_id"])


def test_default_store_is_the_projects(sweeps: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sweeps["project"] / "conf")  # anywhere inside the project
    assert default_tracking_uri() == sweeps["uri"]
    assert len(compare(NAME)) == 5
    assert load_run(sweeps["b"]["parent"]).status == "FINISHED"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nonexistent/elsewhere.db")
    assert default_tracking_uri() == "sqlite:////nonexistent/elsewhere.db"


def test_errors_name_what_is_missing(sweeps: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(TrackingError, match=r"no MLflow experiment 'nope'.*experiments: .*circles"):
        compare("nope", tracking_uri=sweeps["uri"])
    with pytest.raises(TrackingError, match="no MLflow tracking store"):
        compare(NAME, tracking_uri=f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()  # looking does not create a store
    with pytest.raises(TrackingError, match="MLflow run 'deadbeef'"):
        load_run("deadbeef", tracking_uri=sweeps["uri"])


def test_experiment_by_id(sweeps: dict[str, Any]) -> None:
    job = load_run(sweeps["a"]["parent"], tracking_uri=sweeps["uri"])
    assert len(compare(job.experiment_id, tracking_uri=sweeps["uri"])) == 5


def test_importing_does_not_import_mlflow(tmp_path: Path) -> None:
    code = "import sys, logitlab.analysis; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    run([sys.executable, "-c", code], tmp_path)


def test_load_run_reads_every_epoch_of_a_thinned_history(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    project = make_project(tmp_path / "project")
    logitlab(["sweep", "data=circles", "model.max_iter=1500", "model.tol=0", "mlflow.history_points=50"], project)
    client = MlflowClient(store_uri(project))
    (run,) = client.search_runs([client.get_experiment_by_name("circles").experiment_id])
    capfd.readouterr()
    history = load_run(run.info.run_id, store_uri(project)).history
    printed = capfd.readouterr()
    assert "Downloading" not in printed.out + printed.err and "it/s" not in printed.err, printed  # no progress bar
    assert history["epoch"].tolist() == list(range(1, 1501))
    assert history["train_loss"].iloc[-1] == pytest.approx(run.data.metrics["train_loss"], rel=1e-8)
