"""Stage 1: load the configured data set as a labelled frame (class codes in `target`) and its schema (the
original labels, binary or multiclass).

A CSV with `data.chunk_rows` is copied chunk by chunk into a parquet file of one row group per chunk; every
later stage sees the row groups and streams too, whoever runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from logitlab import config, io, sources
from logitlab.stage import Files, Output, Stage


def run(cfg: config.DataConfig, root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    frame, labels = sources.load(cfg, root)
    counts = frame[sources.TARGET].value_counts().sort_index()
    schema = {
        "name": cfg.name,
        "source": cfg.source,
        "n_rows": len(frame),
        "columns": {name: str(dtype) for name, dtype in frame.dtypes.items() if name != sources.TARGET},
        "labels": labels,
        "task": sources.task(labels),
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
        "task": sources.task(chunks.labels),
        "class_counts": {str(k): v for k, v in sorted(chunks.class_counts.items())},
        "chunk_rows": cfg.chunk_rows,
    }


def settings(params: Mapping[str, Any]) -> config.DataConfig:
    return config.data_config(params["data"])


def execute(cfg: config.DataConfig, files: Files) -> None:
    root = config.project_root()
    if isinstance(cfg, config.CsvData) and cfg.chunk_rows is not None:
        io.write_json(files.outputs["schema"], stream(cfg, root, files.outputs["dataset"]))
        return
    frame, schema = run(cfg, root)
    io.write_parquet(files.outputs["dataset"], frame)
    io.write_json(files.outputs["schema"], schema)


def named_files(cfg: config.DataConfig) -> list[Path]:
    """The user's CSV: its content is part of what the stage computes from."""
    return [sources.resolve_input(cfg.path, config.project_root())] if isinstance(cfg, config.CsvData) else []


STAGE = Stage(
    name="ingest",
    params=("data",),
    inputs={"external": Path("data/raw/external")},  # user CSVs live here, so that editing one re-runs the pipeline
    outputs={
        "dataset": Output(Path("data/raw/dataset.parquet")),
        "schema": Output(Path("data/raw/schema.json"), cache=False),
    },
    sources=("src/logitlab/stages/ingest.py", "src/logitlab/sources.py"),
    settings=settings,
    run=execute,
    shared=True,
    named_files=named_files,
)

if __name__ == "__main__":
    from logitlab import dvc_stage

    dvc_stage.main(STAGE)
