"""Stage 3: polynomial and interaction terms with readable names, written as the model's input tables."""

from __future__ import annotations

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


def main() -> None:
    params = config.load_params()
    cfg = config.features_config(config.section(params, "features"))
    splits = {name: io.read_parquet(preprocess.OUT_DIR / f"{name}.parquet") for name in preprocess.SPLITS}
    out, expander, report = run(splits, cfg)
    for name, frame in out.items():
        io.write_parquet(OUT_DIR / f"{name}.parquet", frame)
    io.write_json(STATE, expander.to_dict())
    io.write_json(REPORT, report)


if __name__ == "__main__":
    setup_logging()
    run_guarded(main)
