"""`python -m logitlab.runs figures|model <run id>` on the light children of a real sweep (MLflow SQLite store):
the figures and the model an `mlflow.child_artifacts=all` sweep logs, made later, once; and the key's checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from logitlab import config
from logitlab.errors import ConfigError

from .conftest import logitlab, make_project, store_uri

pytestmark = pytest.mark.timeout(900)

GRID = ["data=circles", "model.learning_rate=0.1,1", "features.degree=2", "model.max_iter=300", "model.tol=0"]


@dataclass(frozen=True)
class Sweeps:
    project: Path
    light: dict[str, str]  # learning rate -> child run id, `mlflow.child_artifacts=best` (the default)
    full: dict[str, str]  # the same, `mlflow.child_artifacts=all`
    best: str  # the light sweep's best child


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> Sweeps:
    project = make_project(tmp_path_factory.mktemp("runs") / "project")
    found = {}
    for mode in ("best", "all"):
        logitlab(["sweep", "-m", *GRID, f"mlflow.child_artifacts={mode}", f"mlflow.experiment_name={mode}"], project)
        client = MlflowClient(store_uri(project))
        experiment = client.get_experiment_by_name(mode).experiment_id
        runs = client.search_runs([experiment])
        found[mode] = {
            r.data.params["model.learning_rate"]: r.info.run_id for r in runs if "mlflow.parentRunId" in r.data.tags
        }
        if mode == "best":
            (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
            best = parent.data.tags["best_run_id"]
    return Sweeps(project, found["best"], found["all"], best)


def _other(sweeps: Sweeps) -> tuple[str, str]:
    """A light child that is not the best, with its learning rate."""
    return next((lr, run_id) for lr, run_id in sweeps.light.items() if run_id != sweeps.best)


def _listing(client: MlflowClient, run_id: str, folder: str) -> list[tuple[str, int | None]]:
    return sorted((Path(a.path).name, a.file_size) for a in client.list_artifacts(run_id, folder))


def test_runs_figures_draws_what_an_all_sweep_logs_once(sweeps: Sweeps) -> None:
    client = MlflowClient(store_uri(sweeps.project))
    lr, run_id = _other(sweeps)
    assert client.list_artifacts(run_id, "figures") == []
    done = logitlab(["runs", "figures", run_id], sweeps.project)
    assert "figures added" in done.stderr, done.stderr
    figures = _listing(client, run_id, "figures")
    assert [name for name, _ in figures] == [name for name, _ in _listing(client, sweeps.full[lr], "figures")]
    assert len(figures) == 7 and all(size and size > 1000 for _, size in figures)
    assert client.get_run(run_id).data.tags["logitlab.figures"] == "attached"
    again = logitlab(["runs", "figures", run_id], sweeps.project)
    assert "were there already" in again.stderr and _listing(client, run_id, "figures") == figures


def test_runs_model_logs_the_model_an_all_sweep_logs_once(sweeps: Sweeps) -> None:
    client = MlflowClient(store_uri(sweeps.project))
    lr, run_id = _other(sweeps)
    experiment = client.get_run(run_id).info.experiment_id

    def models() -> list[str]:
        found = client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
        return [model.model_id for model in found]

    assert models() == []
    logitlab(["runs", "model", run_id], sweeps.project)
    logitlab(["runs", "model", run_id], sweeps.project)
    (model_id,) = models()
    assert client.get_run(run_id).data.tags["logitlab.model_id"] == model_id
    mlflow.set_tracking_uri(store_uri(sweeps.project))
    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"x0": rng.uniform(-1.5, 1.5, 200), "x1": rng.uniform(-1.5, 1.5, 200)})
    later = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(rows)
    logged = mlflow.pyfunc.load_model(f"runs:/{sweeps.full[lr]}/model").predict(rows)
    pd.testing.assert_frame_equal(later, logged, check_exact=True)
    assert later["label"].nunique() == 2, "the rows straddle the boundary: the comparison means something"


@pytest.mark.parametrize(
    ("run_id", "env", "expected"),
    [
        ("nope", {}, "run id 'nope': expected an MLflow run id (32 hex digits)"),
        ("0" * 32, {}, f"run id '{'0' * 32}': no such run in the tracking store sqlite:///"),
        ("0" * 32, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5153"}, "http://127.0.0.1:5153 is unreachable"),
        ("conf", {}, "no figure_inputs.json; expected the folder of a job of an untracked sweep"),
    ],
)
def test_a_bad_run_id_or_an_unreachable_store_is_one_line(
    sweeps: Sweeps, run_id: str, env: dict[str, str], expected: str
) -> None:
    done = logitlab(["runs", "figures", run_id], sweeps.project, env=env, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert expected in line, line


@pytest.mark.parametrize("value", ["some", "top3", "", "ALL"])
def test_the_child_artifacts_key_takes_best_or_all(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.mlflow_config({"child_artifacts": value})
    assert str(err.value) == f"config key 'mlflow.child_artifacts': expected best|all, got {value!r}"
    assert config.mlflow_config({}).child_artifacts == "best"


def test_a_sweeps_jobs_log_one_copy_of_their_samples(sweeps: Sweeps) -> None:
    """The samples a child logs for later (a few raw rows, the test points) are the same for every job on the
    same data: written once per sweep process, linked into the other jobs' folders, and logged by each child."""
    client = MlflowClient(store_uri(sweeps.project))
    for sweep_dir in sorted(sweeps.project.glob("multirun/*/*")):
        first, *others = sorted(sweep_dir.glob("*/later/samples"))
        assert others, sweep_dir
        for other in others:
            for name in ("input_example.parquet", "test_points.parquet"):
                assert (other / name).stat().st_ino == (first / name).stat().st_ino, other / name
    for run_id in sweeps.light.values():
        assert [name for name, _ in _listing(client, run_id, "samples")] == [
            "input_example.parquet",
            "test_points.parquet",
        ]
