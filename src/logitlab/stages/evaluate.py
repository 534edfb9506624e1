"""Stage 5: metrics on every split (and the cross-validation scores train wrote), a per-class table, curve
data for `dvc plots`, coefficients and figures; the files a run records in MLflow (`record`), whoever
executes the stage. Binary or multiclass, as the schema's labels say."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from logitlab import config, io, reports
from logitlab.scoring import MODEL_STEM, ScoringPipeline
from logitlab.sources import TARGET, class_names
from logitlab.stage import Files, Output, Stage
from logitlab.stages import feature_engineer, ingest, preprocess, train
from logitlab.tracking.results import DatasetRecord, RunRecord

if TYPE_CHECKING:  # matplotlib is imported where figures are drawn (`draw_figures`), not by a sweep's jobs
    from matplotlib.figure import Figure

log = logging.getLogger("logitlab.stages.evaluate")  # not __main__ when DVC runs it

SPLITS = preprocess.SPLITS
INPUT_EXAMPLE_ROWS = 5

# The model's input tables: frames in memory, or (streamed data) parquet files scored row group by row group.
Splits = Mapping[str, pd.DataFrame] | Mapping[str, Path]


def run(pipeline: ScoringPipeline, splits: Splits) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The metrics and the test split's tables (curves and `per_class`)."""
    names = class_names(pipeline.labels)
    if all(isinstance(table, Path) for table in splits.values()):
        paths = cast(Mapping[str, Path], splits)
        chunks = {name: functools.partial(io.read_row_groups, path) for name, path in paths.items()}
        return reports.evaluate_chunks(pipeline.model, chunks, names)
    return reports.evaluate(pipeline.model, cast(Mapping[str, pd.DataFrame], splits), names)


def settings(params: Mapping[str, Any]) -> config.MlflowConfig:
    return config.mlflow_config(params["mlflow"])


def execute(cfg: config.MlflowConfig, files: Files) -> dict[str, Any]:
    """metrics.json (with the cross-validation summary, if any), the per-class table, the curve CSVs and the
    coefficient table; the metrics."""
    pipeline = ScoringPipeline.load(files.inputs["model"])
    paths = {name: files.inputs[name] for name in SPLITS}
    streamed = any(io.row_groups(path) > 1 for path in paths.values())
    splits: Splits = paths if streamed else {name: io.read_parquet_kept(path) for name, path in paths.items()}
    metrics, tables = run(pipeline, splits)
    cv_scores = io.read_json(files.inputs["cv"] / train.CV_SCORES_FILE)
    metrics.update({key: value for key, value in cv_scores.items() if key in config.CV_METRICS})
    per_class = tables.pop("per_class")
    io.write_json(files.outputs["metrics"], metrics)
    io.write_csv(files.outputs["per_class"], per_class)
    io.write_json(files.outputs["per_class_metrics"], reports.per_class_metrics(per_class))
    with io.replaced_folder(files.outputs["curves"]) as curves:  # the files differ between binary and multiclass
        for name, table in tables.items():
            io.write_csv(curves / f"{name}.csv", table)
    coefficients = reports.coefficients(pipeline.model, pipeline.expander.output_columns, class_names(pipeline.labels))
    io.write_csv(files.outputs["coefficients"], coefficients)
    log.info("%s", reports.summary(metrics))
    return metrics


def draw_figures(files: Files) -> None:
    """Every figure from the files `execute` and the upstream stages wrote: nothing downstream reads them,
    so a sweep may draw them in another process (and only that process imports matplotlib)."""
    from logitlab import plots

    pipeline = ScoringPipeline.load(files.inputs["model"])
    out, curves = files.outputs["figures"], files.outputs["curves"]
    metrics = io.read_json(files.outputs["metrics"])
    curve = {name: pd.read_csv(curves / f"{name}.csv") for name in ("roc", "pr", "calibration")}
    # label names as written ("01" stays "01", "NA" is a label)
    curve["confusion"] = pd.read_csv(curves / "confusion.csv", dtype=str, keep_default_na=False)
    names = class_names(pipeline.labels)
    multiclass = len(names) > 2
    per_class_roc = pd.read_csv(curves / "roc_ovr.csv") if multiclass else None
    auc = metrics.get("test_roc_auc", float("nan"))
    history, coefficients = pd.read_csv(files.inputs["cost_history"]), pd.read_csv(files.outputs["coefficients"])
    # Streamed data: the first chunk of the test split is plenty of points for the decision boundary.
    points = next(io.read_row_groups(files.inputs["interim_test"]))
    figures: list[tuple[Callable[[], Figure], Path]] = [
        (lambda: plots.loss_curve(history), out / "loss_curve.png"),
        (lambda: plots.roc(curve["roc"], auc, per_class_roc), out / "roc.png"),
        (lambda: plots.precision_recall(curve["pr"], micro_average=multiclass), out / "precision_recall.png"),
        (lambda: plots.confusion(curve["confusion"], names), out / "confusion.png"),
        (lambda: plots.calibration(curve["calibration"], top_label=multiclass), out / "calibration.png"),
        (lambda: plots.coefficients(coefficients), out / "coefficients.png"),
        (lambda: _decision_boundary(pipeline, points, names), out / "decision_boundary.png"),
    ]
    plots.save_all(figures)


def _decision_boundary(pipeline: ScoringPipeline, points: pd.DataFrame, names: list[str]) -> Figure:
    """The model's decision boundary (or regions) over two raw features; a placeholder for other data."""
    from logitlab import plots

    if points.shape[1] != 3:  # two raw features and the label
        n_features = points.shape[1] - 1
        reason = f"Not drawn: the data has {n_features} raw features;\na decision boundary is drawn for 2."
        return plots.placeholder("Decision boundary", reason)
    multiclass = len(names) > 2
    title = f"Decision {'regions' if multiclass else 'boundary'} (degree {pipeline.expander.degree})"
    features, y = points.drop(columns=[TARGET]), points[TARGET].to_numpy()
    if multiclass:
        predict = lambda grid: reports.probabilities(  # noqa: E731
            pipeline.model, pipeline.expander.transform(grid), len(names)
        ).argmax(axis=1)
        return plots.decision_regions(features, y, predict, names, title)
    proba_of = lambda grid: pipeline.model.predict_proba(pipeline.expander.transform(grid))[:, 1]  # noqa: E731
    return plots.decision_boundary(features, y, proba_of, title)


def record(files: Files) -> RunRecord:
    """What MLflow logs of a finished run: metrics, curves, every report file and the model."""
    declared = {**STAGE.inputs, **{name: out.path for name, out in STAGE.outputs.items()}}
    located = {**files.inputs, **files.outputs}
    preprocessed = io.read_json(files.inputs["preprocess_report"])
    metrics = io.read_json(files.outputs["metrics"])
    tags = {
        "logitlab.task": preprocessed["task"],
        "logitlab.n_classes": str(len(preprocessed["classes"])),
        # a filter in the runs table (`tags.logitlab.converged = 'false'`); n_iter is a metric
        "logitlab.converged": "true" if metrics["converged"] else "false",
        # the solver fitted with (model.solver=auto chooses per fit)
        "logitlab.solver": io.read_json(files.inputs["model"] / f"{MODEL_STEM}.json")["solver"],
    }
    if "cv_folds" in preprocessed:
        tags["logitlab.cv_folds"] = str(preprocessed["cv_folds"])
    return RunRecord(
        metrics=metrics,
        history=pd.read_csv(files.inputs["cost_history"]),
        artifacts=[located[name] for name, path in declared.items() if path.parts[0] == "reports"],
        model_dir=files.inputs["model"],
        input_example=io.head(files.inputs["dataset"], INPUT_EXAMPLE_ROWS).drop(columns=[TARGET]),
        dataset=DatasetRecord(
            name=io.read_json(files.inputs["schema"])["name"],
            digest=io.read_json(files.inputs["features_report"])["data_hash"],
            path=files.inputs["dataset"],
            rows=preprocessed["rows"],
        ),
        tags=tags,
    )


STAGE = Stage(
    name="evaluate",
    params=("mlflow",),
    inputs={
        "model": train.STAGE.output("model"),
        "cost_history": train.STAGE.output("cost_history"),
        **{name: feature_engineer.STAGE.output(name) for name in SPLITS},
        "features_report": feature_engineer.STAGE.output("report"),  # data_hash
        "preprocess_report": preprocess.STAGE.output("report"),
        "interim_test": preprocess.STAGE.output("test"),  # raw features: the decision boundary
        "dataset": ingest.STAGE.output("dataset"),  # a few raw rows: the logged model's input example
        "schema": ingest.STAGE.output("schema"),  # the data set's name: the run's MLflow dataset
        "cv": train.STAGE.output("cv"),  # the cross-validation scores (and fold loss curves, as artifacts)
    },
    outputs={
        "metrics": Output(Path("reports/metrics.json"), cache=False, metric=True),
        "per_class_metrics": Output(Path("reports/per_class.json"), cache=False, metric=True),
        "per_class": Output(Path("reports/per_class.csv"), cache=False),
        "coefficients": Output(Path("reports/coefficients.csv"), cache=False),
        "curves": Output(Path("reports/plots"), cache=False),  # the top-level plots' data
        "figures": Output(Path("reports/figures"), by_finish=True),
    },
    sources=("src/logitlab/stages/evaluate.py", "src/logitlab/reports.py", "src/logitlab/plots.py"),
    settings=settings,
    run=execute,
    finish=draw_figures,
    record=record,
)

if __name__ == "__main__":
    from logitlab import dvc_stage

    dvc_stage.main(STAGE)
