"""Stage 2: stratified, seeded train/val/test split, then imputation, encoding and scaling fitted on train."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from logitlab import config, io
from logitlab.errors import DataError
from logitlab.sources import TARGET
from logitlab.stage import Files, Output, Stage
from logitlab.stages import ingest
from logitlab.transforms import Preprocessor, StreamedPreprocessorFit

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Settings:
    preprocess: config.PreprocessConfig
    seed: int


def split(frame: pd.DataFrame, cfg: config.PreprocessConfig, seed: int) -> dict[str, pd.DataFrame]:
    """Stratified split; val_size and test_size are fractions of the whole data set."""
    n = len(frame)
    counts = frame[TARGET].value_counts()
    smallest = int(counts.min())
    n_test, n_val = math.ceil(cfg.test_size * n), math.ceil(cfg.val_size * n)
    if smallest < 3 or n - n_test - n_val < 2 or n_test < 2 or n_val < 2:
        raise DataError(
            f"data set too small for the split: {n} rows ({smallest} in the smaller class) cannot give "
            f"stratified train/val/test splits with preprocess.test_size={cfg.test_size} and "
            f"preprocess.val_size={cfg.val_size}; each split needs both classes"
        )
    try:
        rest, test = train_test_split(frame, test_size=cfg.test_size, random_state=seed, stratify=frame[TARGET])
        train, val = train_test_split(
            rest, test_size=cfg.val_size / (1 - cfg.test_size), random_state=seed, stratify=rest[TARGET]
        )
    except ValueError as err:
        raise DataError(f"data set too small for the split with preprocess.test_size/val_size: {err}") from None
    return {"train": train, "val": val, "test": test}


def _refuse_unusable_values(raw: pd.DataFrame) -> None:
    """Checks on the whole data set, before the split could hide a bad value from the training fit:
    infinite numbers, and numeric columns with a few text markers (e.g. '?') not declared missing."""
    features = raw.drop(columns=[TARGET])
    numeric = features.select_dtypes("number")
    bad = numeric.columns[np.isinf(numeric.to_numpy(np.float64)).any(axis=0)]
    if len(bad):
        raise DataError(f"column '{bad[0]}' has infinite values; replace or drop them (data.na_values, data.drop)")
    for name in features.columns.difference(numeric.columns):
        text = features[name].dropna().astype(str)
        parsed = pd.to_numeric(text, errors="coerce")
        if len(text) and parsed.notna().mean() >= 0.9:
            markers = sorted(set(text[parsed.isna()]))[:3]
            raise DataError(
                f"column '{name}' is numeric but has non-numeric values {markers}; "
                f"declare them missing with data.na_values={markers}"
            )


def run(
    raw: pd.DataFrame, cfg: config.PreprocessConfig, seed: int
) -> tuple[dict[str, pd.DataFrame], Preprocessor, dict[str, Any]]:
    _refuse_unusable_values(raw)
    parts = split(raw, cfg, seed)
    features = parts["train"].drop(columns=[TARGET])
    pre = Preprocessor(cfg.scaler, cfg.numeric_impute, cfg.max_categories).fit(features)
    out = {}
    for name, part in parts.items():
        frame = pre.transform(part.drop(columns=[TARGET])).reset_index(drop=True)
        frame[TARGET] = part[TARGET].to_numpy()
        out[name] = frame
    report = {**pre.report(), "rows": {name: len(part) for name, part in parts.items()}}
    return out, pre, report


def split_chunk(frame: pd.DataFrame, cfg: config.PreprocessConfig, seed: int, index: int) -> dict[str, pd.DataFrame]:
    """Stratified split of one chunk seeded by (seed, chunk index): every pass sends a row to the same split."""
    rng = np.random.default_rng([seed, index])
    y = frame[TARGET].to_numpy()
    rows: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test, n_val = round(cfg.test_size * members.size), round(cfg.val_size * members.size)
        rows["test"].append(members[:n_test])
        rows["val"].append(members[n_test : n_test + n_val])
        rows["train"].append(members[n_test + n_val :])
    return {name: frame.iloc[np.sort(np.concatenate(parts))] for name, parts in rows.items()}


def stream(
    raw: Path, outputs: Mapping[str, Path], cfg: config.PreprocessConfig, seed: int
) -> tuple[Preprocessor, dict[str, Any]]:
    """The chunked `run`: one pass for the training statistics, one to transform and write each split,
    chunk by chunk (one row group per chunk and split). Returns the fitted state and the report."""
    fit = StreamedPreprocessorFit(cfg.scaler, cfg.numeric_impute, cfg.max_categories)
    counts = {name: np.zeros(2, dtype=np.int64) for name in SPLITS}
    for index, chunk in enumerate(io.read_row_groups(raw)):
        _refuse_unusable_values(chunk)
        parts = split_chunk(chunk, cfg, seed, index)
        fit.update(parts["train"].drop(columns=[TARGET]))
        for name, part in parts.items():
            counts[name] += np.bincount(part[TARGET].to_numpy(), minlength=2)[:2]
    for name, count in counts.items():
        if count.min() == 0 or count.sum() < 2:
            raise DataError(
                f"data set too small for the split: the {name} split gets {count.tolist()} rows per class with "
                f"preprocess.test_size={cfg.test_size} and preprocess.val_size={cfg.val_size}; "
                "each split needs both classes"
            )
    pre = fit.result()
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(io.chunk_writer(outputs[name])) for name in SPLITS}
        for index, chunk in enumerate(io.read_row_groups(raw)):
            for name, part in split_chunk(chunk, cfg, seed, index).items():
                frame = pre.transform(part.drop(columns=[TARGET])).reset_index(drop=True)
                frame[TARGET] = part[TARGET].to_numpy()
                writers[name].write(frame)
    return pre, {**pre.report(), "rows": {name: int(count.sum()) for name, count in counts.items()}}


def settings(params: Mapping[str, Any]) -> Settings:
    return Settings(config.preprocess_config(params["preprocess"]), config.seed_value(params["seed"]))


def execute(cfg: Settings, files: Files) -> None:
    raw = files.inputs["dataset"]
    if io.row_groups(raw) > 1:
        pre, report = stream(raw, files.outputs, cfg.preprocess, cfg.seed)
    else:
        splits, pre, report = run(io.read_parquet(raw), cfg.preprocess, cfg.seed)
        for name, frame in splits.items():
            io.write_parquet(files.outputs[name], frame)
    io.write_json(files.outputs["state"], pre.to_dict())
    io.write_json(files.outputs["report"], report)


STAGE = Stage(
    name="preprocess",
    params=("preprocess", "seed"),
    inputs={"dataset": ingest.STAGE.output("dataset")},
    outputs={
        **{name: Output(Path(f"data/interim/{name}.parquet")) for name in SPLITS},
        "state": Output(Path("data/interim/preprocessor.json")),
        "report": Output(Path("reports/preprocess.json"), cache=False),
    },
    sources=("src/logitlab/stages/preprocess.py", "src/logitlab/transforms.py"),
    settings=settings,
    run=execute,
    shared=True,
)

if __name__ == "__main__":
    from logitlab import dvc_stage

    dvc_stage.main(STAGE)
