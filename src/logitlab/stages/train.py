"""Stage 4: fit the estimator on the training split (validation split for its val loss), save it with
the fitted preprocessing and feature steps so that raw rows can be scored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from logitlab import config, io
from logitlab.cli import run_guarded, setup_logging
from logitlab.model import LogisticRegression
from logitlab.scoring import ScoringPipeline
from logitlab.sources import TARGET
from logitlab.stages import feature_engineer, ingest, preprocess
from logitlab.transforms import PolynomialExpander, Preprocessor

MODEL_DIR = Path("models")
COST_HISTORY = Path("reports/cost_history.csv")


def run(train: pd.DataFrame, val: pd.DataFrame, params: dict[str, Any]) -> LogisticRegression:
    model = LogisticRegression(**params)
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
    train_split = io.read_parquet(feature_engineer.OUT_DIR / "train.parquet")
    val_split = io.read_parquet(feature_engineer.OUT_DIR / "val.parquet")
    model = run(train_split, val_split, model_params)
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
