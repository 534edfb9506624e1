"""Stage 5: metrics on every split, curve data for `dvc plots`, coefficients and figures; the files a run
records in MLflow (`record`), whoever executes the stage."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd

from logitlab import config, io, plots, reports
from logitlab.scoring import ScoringPipeline
from logitlab.sources import TARGET
from logitlab.stage import Files, Output, Stage
from logitlab.stages import feature_engineer, ingest, preprocess, train
from logitlab.tracking.results import DatasetRecord, RunRecord

log = logging.getLogger("logitlab.stages.evaluate")  # not __main__ when DVC runs it

SPLITS = preprocess.SPLITS
INPUT_EXAMPLE_ROWS = 5

# The model's input tables: frames in memory, or (streamed data) parquet files scored row group by row group.
Splits = Mapping[str, pd.DataFrame] | Mapping[str, Path]


def run(pipeline: ScoringPipeline, splits: Splits) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    if all(isinstance(table, Path) for table in splits.values()):
        paths = cast(Mapping[str, Path], splits)
        chunks = {name: functools.partial(io.read_row_groups, path) for name, path in paths.items()}
        return reports.evaluate_chunks(pipeline.model, chunks)
    frames = cast(Mapping[str, pd.DataFrame], splits)
    return reports.evaluate(pipeline.model, dict(frames)), reports.curves(pipeline.model, frames["test"])


def settings(params: Mapping[str, Any]) -> config.MlflowConfig:
    return config.mlflow_config(params["mlflow"])


def execute(cfg: config.MlflowConfig, files: Files) -> dict[str, Any]:
    """metrics.json, the curve CSVs and the coefficient table; the metrics."""
    pipeline = ScoringPipeline.load(files.inputs["model"])
    paths = {name: files.inputs[name] for name in SPLITS}
    streamed = any(io.row_groups(path) > 1 for path in paths.values())
    splits: Splits = paths if streamed else {name: io.read_parquet(path) for name, path in paths.items()}
    metrics, curves = run(pipeline, splits)
    io.write_json(files.outputs["metrics"], metrics)
    for name, table in curves.items():
        io.write_csv(files.outputs["curves"] / f"{name}.csv", table)
    io.write_csv(files.outputs["coefficients"], reports.coefficients(pipeline.model, pipeline.expander.output_columns))
    log.info("%s", reports.summary(metrics))
    return metrics


def draw_figures(files: Files) -> None:
    """Every figure from the files `execute` and the upstream stages wrote: nothing downstream reads them,
    so a sweep may draw them in another process."""
    pipeline = ScoringPipeline.load(files.inputs["model"])
    out, curves = files.outputs["figures"], files.outputs["curves"]
    metrics = io.read_json(files.outputs["metrics"])
    curve = {name: pd.read_csv(curves / f"{name}.csv") for name in ("roc", "pr", "calibration", "confusion")}
    labels = (str(pipeline.labels["negative"]), str(pipeline.labels["positive"]))
    plots.save(plots.loss_curve(pd.read_csv(files.inputs["cost_history"])), out / "loss_curve.png")
    plots.save(plots.roc(curve["roc"], metrics["test_roc_auc"]), out / "roc.png")
    plots.save(plots.precision_recall(curve["pr"]), out / "precision_recall.png")
    plots.save(plots.confusion(curve["confusion"], labels), out / "confusion.png")
    plots.save(plots.calibration(curve["calibration"]), out / "calibration.png")
    plots.save(plots.coefficients(pd.read_csv(files.outputs["coefficients"])), out / "coefficients.png")
    # Streamed data: the first chunk of the test split is plenty of points for the decision boundary.
    points = next(io.read_row_groups(files.inputs["interim_test"]))
    if points.shape[1] == 3:  # two raw features and the label
        degree = pipeline.expander.degree
        proba_of = lambda grid: pipeline.model.predict_proba(pipeline.expander.transform(grid))[:, 1]  # noqa: E731
        figure = plots.decision_boundary(
            points.drop(columns=[TARGET]), points[TARGET].to_numpy(), proba_of, f"Decision boundary (degree {degree})"
        )
        plots.save(figure, out / "decision_boundary.png")
    else:
        n_features = points.shape[1] - 1
        reason = f"Not drawn: the data has {n_features} raw features;\na decision boundary is drawn for 2."
        plots.save(plots.placeholder("Decision boundary", reason), out / "decision_boundary.png")


def record(files: Files) -> RunRecord:
    """What MLflow logs of a finished run: metrics, curves, every report file and the model."""
    declared = {**STAGE.inputs, **{name: out.path for name, out in STAGE.outputs.items()}}
    located = {**files.inputs, **files.outputs}
    return RunRecord(
        metrics=io.read_json(files.outputs["metrics"]),
        history=pd.read_csv(files.inputs["cost_history"]),
        artifacts=[located[name] for name, path in declared.items() if path.parts[0] == "reports"],
        model_dir=files.inputs["model"],
        input_example=io.head(files.inputs["dataset"], INPUT_EXAMPLE_ROWS).drop(columns=[TARGET]),
        dataset=DatasetRecord(
            name=io.read_json(files.inputs["schema"])["name"],
            digest=io.read_json(files.inputs["features_report"])["data_hash"],
            path=files.inputs["dataset"],
            rows=io.read_json(files.inputs["preprocess_report"])["rows"],
        ),
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
    },
    outputs={
        "metrics": Output(Path("reports/metrics.json"), cache=False, metric=True),
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
