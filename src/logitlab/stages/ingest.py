"""Stage 1: load the configured data set into `data/raw/` as a labelled frame and its schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from logitlab import config, io, sources
from logitlab.cli import run_guarded, setup_logging

RAW = Path("data/raw/dataset.parquet")
SCHEMA = Path("data/raw/schema.json")


def run(cfg: config.DataConfig, root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame, labels = sources.load(cfg, root)
    counts = frame[sources.TARGET].value_counts().sort_index()
    schema = {
        "name": cfg.name,
        "source": cfg.source,
        "n_rows": len(frame),
        "columns": {name: str(dtype) for name, dtype in frame.dtypes.items() if name != sources.TARGET},
        "labels": labels,
        "class_counts": {str(k): int(v) for k, v in counts.items()},
    }
    return frame, schema


def main() -> None:
    params = config.load_params()
    root = config.project_root()
    frame, schema = run(config.data_config(config.section(params, "data")), root)
    io.write_parquet(RAW, frame)
    io.write_json(SCHEMA, schema)


if __name__ == "__main__":
    setup_logging()
    run_guarded(main)
