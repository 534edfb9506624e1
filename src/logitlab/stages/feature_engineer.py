"""Stage 3: polynomial and interaction terms with readable names, written as the model's input tables."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pandas as pd

from logitlab import config, io
from logitlab.cli import run_guarded, setup_logging
from logitlab.sources import TARGET
from logitlab.stages import preprocess
from logitlab.transforms import PolynomialExpander

OUT_DIR = Path("data/processed")
STATE = OUT_DIR / "features.json"
REPORT = Path("reports/features.json")


def run(
    splits: dict[str, pd.DataFrame], cfg: config.FeaturesConfig
) -> tuple[dict[str, pd.DataFrame], PolynomialExpander, dict[str, Any]]:
    expander = PolynomialExpander(cfg.degree, cfg.interaction_only, cfg.include, cfg.max_features)
    expander.fit(splits["train"].drop(columns=[TARGET]))
    out = {}
    for name, part in splits.items():
        frame = expander.transform(part.drop(columns=[TARGET]))
        frame[TARGET] = part[TARGET].to_numpy()
        out[name] = frame
    return out, expander, expander.report()


def stream(in_dir: Path, out_dir: Path, cfg: config.FeaturesConfig) -> tuple[PolynomialExpander, dict[str, Any]]:
    """The chunked `run`: fitted on the first training chunk (the expansion depends only on the columns,
    and a chunk is what must fit in memory), then each split expanded row group by row group."""
    expander = PolynomialExpander(cfg.degree, cfg.interaction_only, cfg.include, cfg.max_features)
    first = next(io.read_row_groups(in_dir / "train.parquet"))
    expander.fit(first.drop(columns=[TARGET]))
    del first
    with contextlib.ExitStack() as stack:
        for name in preprocess.SPLITS:
            writer = stack.enter_context(io.chunk_writer(out_dir / f"{name}.parquet"))
            for part in io.read_row_groups(in_dir / f"{name}.parquet"):
                frame = expander.transform(part.drop(columns=[TARGET]))
                frame[TARGET] = part[TARGET].to_numpy()
                writer.write(frame)
    return expander, expander.report()


def main() -> None:
    params = config.load_params()
    cfg = config.features_config(config.section(params, "features"))
    if io.row_groups(preprocess.OUT_DIR / "train.parquet") > 1:
        expander, report = stream(preprocess.OUT_DIR, OUT_DIR, cfg)
        io.write_json(STATE, expander.to_dict())
        io.write_json(REPORT, report)
        return
    splits = {name: io.read_parquet(preprocess.OUT_DIR / f"{name}.parquet") for name in preprocess.SPLITS}
    out, expander, report = run(splits, cfg)
    for name, frame in out.items():
        io.write_parquet(OUT_DIR / f"{name}.parquet", frame)
    io.write_json(STATE, expander.to_dict())
    io.write_json(REPORT, report)


if __name__ == "__main__":
    setup_logging()
    run_guarded(main)
