"""Stage 5: metrics on every split, curve data for `dvc plots`, figures, and (when tracking is on) one
MLflow run recording this repro."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd

from logitlab import config, io, plots, reports
from logitlab.cli import run_guarded, setup_logging
from logitlab.scoring import ScoringPipeline
from logitlab.sources import TARGET
from logitlab.stages import feature_engineer, ingest, preprocess, train

log = logging.getLogger(__name__)

METRICS = Path("reports/metrics.json")
CURVES_DIR = Path("reports/plots")
FIGURES_DIR = Path("reports/figures")


# The model's input tables: frames in memory, or (streamed data) parquet files scored row group by row group.
Splits = Mapping[str, pd.DataFrame] | Mapping[str, Path]


def run(pipeline: ScoringPipeline, splits: Splits) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    if all(isinstance(table, Path) for table in splits.values()):
        paths = cast(Mapping[str, Path], splits)
        chunks = {name: functools.partial(io.read_row_groups, path) for name, path in paths.items()}
        return reports.evaluate_chunks(pipeline.model, chunks)
    frames = cast(Mapping[str, pd.DataFrame], splits)
    return reports.evaluate(pipeline.model, dict(frames)), reports.curves(pipeline.model, frames["test"])


def write_reports(
    out: Path,
    pipeline: ScoringPipeline,
    splits: Splits,
    interim_test: pd.DataFrame,
    history: pd.DataFrame,
) -> dict[str, Any]:
    """Write metrics.json, curve CSVs and figures under `out` (the same layout for DVC and for sweep jobs)."""
    metrics, curves = run(pipeline, splits)
    io.write_json(out / METRICS.name, metrics)
    for name, table in curves.items():
        io.write_csv(out / CURVES_DIR.name / f"{name}.csv", table)
    coefs = reports.coefficients(pipeline.model, pipeline.expander.output_columns)
    io.write_csv(out / "coefficients.csv", coefs)
    figures = out / FIGURES_DIR.name
    labels = (str(pipeline.labels["negative"]), str(pipeline.labels["positive"]))
    plots.save(plots.loss_curve(history), figures / "loss_curve.png")
    plots.save(plots.roc(curves["roc"], metrics["test_roc_auc"]), figures / "roc.png")
    plots.save(plots.precision_recall(curves["pr"]), figures / "precision_recall.png")
    plots.save(plots.confusion(curves["confusion"], labels), figures / "confusion.png")
    plots.save(plots.calibration(curves["calibration"]), figures / "calibration.png")
    plots.save(plots.coefficients(coefs), figures / "coefficients.png")
    points = interim_test.drop(columns=[TARGET])
    if points.shape[1] == 2:
        degree = pipeline.expander.degree
        proba_of = lambda grid: pipeline.model.predict_proba(pipeline.expander.transform(grid))[:, 1]  # noqa: E731
        figure = plots.decision_boundary(
            points, interim_test[TARGET].to_numpy(), proba_of, f"Decision boundary (degree {degree})"
        )
        plots.save(figure, figures / "decision_boundary.png")
    else:  # outputs persist across runs: drop the figure of an earlier 2-D data set
        (figures / "decision_boundary.png").unlink(missing_ok=True)
    return metrics


def main() -> None:
    params = config.load_params()
    mlflow_cfg = config.mlflow_config(config.section(params, "mlflow"))
    pipeline = ScoringPipeline.load(train.MODEL_DIR)
    paths = {name: feature_engineer.OUT_DIR / f"{name}.parquet" for name in preprocess.SPLITS}
    streamed = any(io.row_groups(path) > 1 for path in paths.values())
    splits: Splits = paths if streamed else {name: io.read_parquet(path) for name, path in paths.items()}
    history = pd.read_csv(train.COST_HISTORY)
    interim_test = preprocess.OUT_DIR / "test.parquet"
    # Streamed: the first chunk of the test split is plenty of points for the decision-boundary figure.
    points = next(io.read_row_groups(interim_test)) if streamed else io.read_parquet(interim_test)
    metrics = write_reports(Path("reports"), pipeline, splits, points, history)
    log.info("%s", reports.summary(metrics))
    if mlflow_cfg.enabled:
        from logitlab import tracking
        from logitlab.pipeline import data_hash

        if streamed:
            example = next(io.read_row_groups(ingest.RAW)).drop(columns=[TARGET]).head(5)
            hashed = data_hash({name: io.read_row_groups(path) for name, path in paths.items()})
        else:
            example = io.read_parquet(ingest.RAW).drop(columns=[TARGET]).head(5)
            hashed = data_hash({name: [cast(pd.DataFrame, frame)] for name, frame in splits.items()})
        tracking.log_repro(params, mlflow_cfg, metrics, history, Path("reports"), train.MODEL_DIR, example, hashed)


if __name__ == "__main__":
    setup_logging()
    run_guarded(main)
