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


def stream(cfg: config.CsvData, root: Path, out: Path) -> dict[str, Any]:
    """Copy the CSV into `out` chunk by chunk, one parquet row group per `data.chunk_rows` rows; the schema."""
    chunks = sources.CsvChunks(cfg, root)
    columns: dict[str, str] = {}
    with io.chunk_writer(out, f"'{chunks.file.name}'") as writer:
        for frame in chunks:
            columns = columns or {str(name): str(kind) for name, kind in frame.dtypes.items() if name != sources.TARGET}
            writer.write(frame)
    return {
        "name": cfg.name,
        "source": cfg.source,
        "n_rows": chunks.n_rows,
        "columns": columns,
        "labels": chunks.labels,
        "class_counts": {str(k): v for k, v in chunks.class_counts.items() if v},
        "chunk_rows": cfg.chunk_rows,
    }


def main() -> None:
    params = config.load_params()
    root = config.project_root()
    cfg = config.data_config(config.section(params, "data"))
    if isinstance(cfg, config.CsvData) and cfg.chunk_rows is not None:
        io.write_json(SCHEMA, stream(cfg, root, RAW))
        return
    frame, schema = run(cfg, root)
    io.write_parquet(RAW, frame)
    io.write_json(SCHEMA, schema)


if __name__ == "__main__":
    setup_logging()
    run_guarded(main)
