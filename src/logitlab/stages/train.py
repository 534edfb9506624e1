"""Stage 4: fit the estimator on the training split (validation split for its val loss), save it with
the fitted preprocessing and feature steps so that raw rows can be scored."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from logitlab import config, io
from logitlab.errors import ConfigError
from logitlab.model import LogisticRegression, ParquetChunks
from logitlab.scoring import ScoringPipeline
from logitlab.sources import TARGET
from logitlab.stage import Files, Output, Stage
from logitlab.stages import feature_engineer, ingest, preprocess
from logitlab.transforms import PolynomialExpander, Preprocessor


def run(
    train: pd.DataFrame | ParquetChunks, val: pd.DataFrame | ParquetChunks, params: dict[str, Any]
) -> LogisticRegression:
    """Fit on frames in memory, or on parquet files streamed row group by row group (labels in `target`)."""
    model = LogisticRegression(**params)
    if isinstance(train, ParquetChunks):
        return model.fit(train, X_val=val)
    assert isinstance(val, pd.DataFrame)
    model.fit(
        train.drop(columns=[TARGET]),
        train[TARGET].to_numpy(),
        X_val=val.drop(columns=[TARGET]),
        y_val=val[TARGET].to_numpy(),
    )
    return model


def cost_history(model: LogisticRegression) -> pd.DataFrame:
    """Train and validation loss per epoch (epochs count from 1)."""
    train_loss = list(model.cost_history_)
    val_loss = list(model.val_history_) or [float("nan")] * len(train_loss)
    return pd.DataFrame({"epoch": range(1, len(train_loss) + 1), "train_loss": train_loss, "val_loss": val_loss})


def model_params(raw: Any, seed: int) -> dict[str, Any]:
    """The estimator's keyword arguments: the `model` section plus `random_state` from `seed`.

    The estimator owns its parameter checks; here they run early and their message gets the `model.` prefix.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'model': expected a mapping of estimator parameters, got {raw!r}")
    allowed = set(LogisticRegression().get_params()) - {"random_state", "warm_start"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"config key 'model.{unknown[0]}' is unknown; model takes: {', '.join(sorted(allowed))}")
    params = {**raw, "random_state": seed}
    try:
        LogisticRegression(**params).validate_params()
    except ValueError as err:
        raise ConfigError(f"config key 'model.{_param_named_in(str(err), params)}': {err}") from None
    return params


def _param_named_in(message: str, params: dict[str, Any]) -> str:
    named = [p for p in params if f"'{p}'" in message or message.startswith(f"{p} ") or f" {p}=" in message]
    return max(named, key=len) if named else "?"


def settings(params: Mapping[str, Any]) -> dict[str, Any]:
    return model_params(params["model"], config.seed_value(params["seed"]))


def _model_input(path: Path) -> pd.DataFrame | ParquetChunks:
    """A file of one row group in memory; a streamed file (several) as chunks the solvers read in turn."""
    return ParquetChunks(path, TARGET) if io.row_groups(path) > 1 else io.read_parquet(path)


def execute(params: dict[str, Any], files: Files) -> None:
    model = run(_model_input(files.inputs["train"]), _model_input(files.inputs["val"]), params)
    pipeline = ScoringPipeline(
        Preprocessor.from_dict(io.read_json(files.inputs["preprocessor"])),
        PolynomialExpander.from_dict(io.read_json(files.inputs["features"])),
        model,
        io.read_json(files.inputs["schema"])["labels"],
    )
    pipeline.save(files.outputs["model"])
    io.write_csv(files.outputs["cost_history"], cost_history(model))


STAGE = Stage(
    name="train",
    params=("model", "seed"),
    inputs={
        "train": feature_engineer.STAGE.output("train"),
        "val": feature_engineer.STAGE.output("val"),
        "features": feature_engineer.STAGE.output("state"),
        "preprocessor": preprocess.STAGE.output("state"),
        "schema": ingest.STAGE.output("schema"),
    },
    outputs={
        "model": Output(Path("models")),
        "cost_history": Output(Path("reports/cost_history.csv"), cache=False),  # the plot "Loss per epoch"
    },
    sources=("src/logitlab/stages/train.py", "src/logitlab/model"),
    settings=settings,
    run=execute,
)

if __name__ == "__main__":
    from logitlab import dvc_stage

    dvc_stage.main(STAGE)
