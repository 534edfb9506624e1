"""The real `dvc repro`, `dvc plots`, `dvc exp run -S` in a throw-away copy of the project.

Slow (minutes each on two cores): `make test` covers the same behaviour without DVC, in test_pipeline.py
(the stage commands in order against a sweep job, dvc.yaml from the declarations, what a param or a source
edit recomputes), test_config.py (params.yaml composed as `dvc exp run -S` does), test_stages.py and
test_multiclass.py (the reports, the multiclass and cross-validated runs)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from logitlab.scoring import ScoringPipeline

from .conftest import logitlab, make, make_project, run, store_uri

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def dvc(project: Path, *args: str, **kwargs: object):
    return run(["dvc", *args], project, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("repro") / "project")
    dvc(project, "repro")
    return project


def test_repro_reaches_90_percent_and_writes_every_report(reproduced: Path) -> None:
    metrics = json.loads((reproduced / "reports/metrics.json").read_text())
    assert metrics["test_accuracy"] == 0.9
    for name in ("roc", "pr", "confusion", "calibration"):
        assert (reproduced / f"reports/plots/{name}.csv").stat().st_size > 0
    figures = {p.name for p in (reproduced / "reports/figures").iterdir()}
    assert {"loss_curve.png", "roc.png", "confusion.png", "decision_boundary.png"} <= figures
    assert (reproduced / "models/model.npz").is_file() and (reproduced / "models/transforms.json").is_file()


def same_run(dvc_project: Path, job_dir: Path) -> None:
    """`dvc repro` in the project and a sweep job in `job_dir`: the same metrics and the same model bytes."""
    assert json.loads((job_dir / "reports/metrics.json").read_text()) == json.loads(
        (dvc_project / "reports/metrics.json").read_text()
    )
    for name in ("model.npz", "transforms.json"):
        assert (job_dir / "models" / name).read_bytes() == (dvc_project / "models" / name).read_bytes(), name


def test_a_sweep_job_on_the_same_config_gives_what_dvc_repro_gives(reproduced: Path) -> None:
    logitlab(["sweep", "mlflow=off", "hydra.run.dir=outputs/same"], reproduced)
    same_run(reproduced, reproduced / "outputs/same")


def test_second_repro_does_nothing(reproduced: Path) -> None:
    started = time.perf_counter()
    done = dvc(reproduced, "repro")
    elapsed = time.perf_counter() - started
    print(f"no-op dvc repro took {elapsed:.2f} s")
    assert "didn't change, skipping" in done.stdout + done.stderr or "up to date" in done.stdout
    assert "Running stage" not in done.stdout


def test_repro_is_tracked_as_one_mlflow_run(reproduced: Path) -> None:
    client = MlflowClient(store_uri(reproduced))
    experiment = client.get_experiment_by_name("synthetic")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    tags, metrics = runs[0].data.tags, runs[0].data.metrics
    assert runs[0].info.status == "FINISHED" and metrics["test_accuracy"] == 0.9
    assert tags["logitlab.entry"] == "dvc repro" and "git_commit" in tags
    assert {"dvc.stage.ingest", "dvc.stage.preprocess", "dvc.stage.feature-engineer", "dvc.stage.train"} <= set(tags)
    steps = [point.step for point in client.get_metric_history(runs[0].info.run_id, "train_loss")]
    n_iter = int(metrics["n_iter"])  # the curve thinned to mlflow.history_points, first and last epoch kept
    assert len(steps) == min(n_iter, 500) and min(steps) == 1 and max(steps) == n_iter


def test_plots_show_renders_roc_confusion_and_cost_history(reproduced: Path) -> None:
    done = dvc(reproduced, "plots", "show", "--json")
    shown = json.loads(done.stdout)
    assert not shown.get("errors"), shown.get("errors")
    names = " ".join(shown["data"])
    for expected in ("ROC", "Confusion matrix", "Loss per epoch", "Precision-recall", "Calibration"):
        assert expected in names, names
    dvc(reproduced, "plots", "show", "-o", "plots_html")
    assert (reproduced / "plots_html" / "index.html").stat().st_size > 1000


def test_metrics_show_lists_the_metrics(reproduced: Path) -> None:
    shown = json.loads(dvc(reproduced, "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert "test_accuracy" in flat and "test_roc_auc" in flat


def test_make_repro_follows_an_edit_of_conf(reproduced: Path) -> None:
    """`dvc repro` alone would train with the params.yaml of before: `make repro` recomposes it first."""
    gd = reproduced / "conf" / "model" / "gd.yaml"
    original = gd.read_text()
    assert "\nC: 1.0\n" in original
    gd.write_text(original.replace("\nC: 1.0\n", "\nC: 0.5\n"))
    try:
        ran = make(reproduced, "repro")
        assert yaml.safe_load((reproduced / "params.yaml").read_text())["model"]["C"] == 0.5
        assert "Running stage 'train'" in ran and "Running stage 'ingest'" not in ran
    finally:
        gd.write_text(original)
        make(reproduced, "repro")


def test_a_model_param_reruns_only_train_and_evaluate(reproduced: Path) -> None:
    params_file = reproduced / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["model"]["learning_rate"] = 0.2
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        ran = dvc(reproduced, "repro").stdout
        assert "Running stage 'train'" in ran and "Running stage 'evaluate'" in ran
        assert not any(f"Running stage '{s}'" in ran for s in ("ingest", "preprocess", "feature-engineer"))
    finally:
        params_file.write_text(original)
        dvc(reproduced, "repro")


def test_exp_run_set_param_recomposes_params_and_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    dvc(project, "exp", "run", "-S", "features.degree=2", "-S", "data=circles", "-n", "circles-deg2")
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["features"]["degree"] == 2 and params["data"]["name"] == "circles"
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.97
    shown = dvc(project, "exp", "show", "--json").stdout
    assert "circles-deg2" in shown and "test_accuracy" in shown
    header = next(line for line in make(project, "exps").splitlines() if line.startswith("| Experiment"))
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[:2] == ["Experiment", "Created"]
    assert {"val_accuracy", "test_accuracy", "features.degree", "data.name"} <= set(columns)
    assert not {"model.learning_rate", "train_accuracy", "models"} & set(columns), "only what varies, headline metrics"
    logitlab(
        ["sweep", "-m", "features.degree=2", "data=circles", "mlflow=off", "hydra.sweep.dir=multirun/same"], project
    )
    same_run(project, project / "multirun/same/0")


def iris_csv(path: Path) -> None:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    names = np.array(["setosa", "versicolor", "virginica"])
    X.assign(species=names[y]).sample(frac=1, random_state=0).to_csv(path, index=False)


def test_exp_run_on_a_three_class_csv_writes_multiclass_metrics_plots_and_a_servable_model(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    iris_csv(project / "data/raw/external/iris.csv")
    overrides = ["data=csv", "data.path=data/raw/external/iris.csv", "data.target=species"]
    dvc(project, "exp", "run", *(arg for override in overrides for arg in ("-S", override)), "-n", "iris")
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.9 and {"test_f1_macro", "test_f1_weighted", "test_roc_auc"} <= set(metrics)
    assert "test_tp" not in metrics
    assert json.loads((project / "reports/preprocess.json").read_text())["task"] == "multiclass"
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    assert "virginica" in json.dumps(shown) and "test_f1_macro" in json.dumps(shown)  # per_class.json, metrics.json
    plots = json.loads(dvc(project, "plots", "show", "--json").stdout)
    errors = [error["name"] for error in plots.get("errors", [])]
    assert errors == [], errors  # four features: decision_boundary.png is a placeholder saying why
    assert any("Confusion" in name for name in plots["data"])
    confusion = pd.read_csv(project / "reports/plots/confusion.csv")
    assert set(confusion["actual"]) == {"setosa", "versicolor", "virginica"}
    figures = {p.name for p in (project / "reports/figures").iterdir()}
    assert {"roc.png", "confusion.png", "decision_boundary.png"} <= figures

    client = MlflowClient(store_uri(project))
    (run,) = client.search_runs([client.get_experiment_by_name("csv").experiment_id])
    assert run.data.tags["logitlab.task"] == "multiclass" and run.data.tags["logitlab.n_classes"] == "3"
    assert run.data.metrics["test_f1_macro"] == metrics["test_f1_macro"]
    import mlflow

    mlflow.set_tracking_uri(store_uri(project))
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    raw = pd.read_csv(project / "data/raw/external/iris.csv").drop(columns=["species"]).head(10)
    served = model.predict(raw)
    columns = ["label", "probability_setosa", "probability_versicolor", "probability_virginica"]
    assert list(served.columns) == columns
    assert [c.name for c in model.metadata.get_output_schema().inputs] == columns
    expected = ScoringPipeline.load(project / "models").class_probabilities(raw)
    np.testing.assert_allclose(served[columns[1:]].to_numpy(), expected, rtol=0, atol=1e-12)


def test_exp_run_with_cv_folds_on_sonar_writes_cross_validated_scores(tmp_path: Path, sonar: Path) -> None:
    project = make_project(tmp_path / "project")
    dvc(project, "exp", "run", "-S", "data=sonar", "-S", f"data.path={sonar}", "-S", "preprocess.cv_folds=5")
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert 0.6 < metrics["cv_accuracy_mean"] < 1 and 0 < metrics["cv_accuracy_std"] < 0.2
    assert {"cv_log_loss_mean", "cv_log_loss_std", "cv_roc_auc_mean", "cv_roc_auc_std"} <= set(metrics)
    assert "cv_accuracy_mean" in dvc(project, "exp", "show", "--json").stdout
    curves = sorted(p.name for p in (project / "reports/cv").glob("fold-*-cost_history.csv"))
    assert curves == [f"fold-{i}-cost_history.csv" for i in range(5)]
    client = MlflowClient(store_uri(project))
    (run,) = client.search_runs([client.get_experiment_by_name("sonar").experiment_id])
    assert run.data.metrics["cv_accuracy_mean"] == metrics["cv_accuracy_mean"]
    assert run.data.tags["logitlab.cv_folds"] == "5" and run.data.tags["logitlab.task"] == "binary"
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "cv")}
    assert set(curves) | {"scores.json"} == logged
