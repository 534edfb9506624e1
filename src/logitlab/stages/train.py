"""Stage 4: fit the estimator on the training split (validation split for its val loss), save it with
the fitted preprocessing and feature steps so that raw rows can be scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from logitlab import config, io
from logitlab.cli import run_guarded, setup_logging
from logitlab.model import LogisticRegression, ParquetChunks
from logitlab.scoring import ScoringPipeline
from logitlab.sources import TARGET
from logitlab.stages import feature_engineer, ingest, preprocess
from logitlab.transforms import PolynomialExpander, Preprocessor

MODEL_DIR = Path("models")
COST_HISTORY = Path("reports/cost_history.csv")


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


def main() -> None:
    params = config.load_params()
    model_params = config.model_params(
        config.section(params, "model"), config.seed_value(config.section(params, "seed"))
    )
    train_file, val_file = feature_engineer.OUT_DIR / "train.parquet", feature_engineer.OUT_DIR / "val.parquet"
    if io.row_groups(train_file) > 1:
        model = run(io.parquet_chunks(train_file), io.parquet_chunks(val_file), model_params)
    else:
        model = run(io.read_parquet(train_file), io.read_parquet(val_file), model_params)
    pipeline = ScoringPipeline(
        Preprocessor.from_dict(io.read_json(preprocess.STATE)),
        PolynomialExpander.from_dict(io.read_json(feature_engineer.STATE)),
        model,
        io.read_json(ingest.SCHEMA)["labels"],
    )
    pipeline.save(MODEL_DIR)
    io.write_csv(COST_HISTORY, cost_history(model))


if __name__ == "__main__":
    setup_logging()
    run_guarded(main)
