"""Stage 2: stratified, seeded train/val/test split, then imputation, encoding and scaling fitted on train.

With `preprocess.cv_folds=k` the validation split joins training ("train+val"): the preprocessing is fitted
on all of it, `val` is written empty, and `folds/` holds k stratified folds of it, each fold's two parts
transformed by a preprocessing fitted on that fold's training part only (no statistic of a held-out part
leaks into its own scores). Splitting and fitting happen here once per data and config; a sweep shares them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from logitlab import config, io
from logitlab.errors import DataError
from logitlab.sources import TARGET, class_names, task
from logitlab.stage import Files, Output, Stage
from logitlab.stages import ingest
from logitlab.transforms import Preprocessor, StreamedPreprocessorFit

SPLITS = ("train", "val", "test")
FOLD_PARTS = ("train", "val")  # a fold's training part and its held-out part


def fold_file(folder: Path, fold: int, part: str) -> Path:
    """Where fold `fold`'s `part` lives in a folds folder (preprocess's and feature-engineer's)."""
    return folder / f"fold-{fold}-{part}.parquet"


FOLDS_FILE = "folds.json"  # in every folds folder, so that none is empty (DVC warns about empty outputs)


def fold_count(folder: Path) -> int:
    """The number of folds a folds folder holds (0: cross-validation is off)."""
    return int(io.read_json(folder / FOLDS_FILE)["n_folds"])


@dataclass(frozen=True)
class Settings:
    preprocess: config.PreprocessConfig
    seed: int


def split(frame: pd.DataFrame, cfg: config.PreprocessConfig, seed: int) -> dict[str, pd.DataFrame]:
    """Stratified split; val_size and test_size are fractions of the whole data set.

    Two classes: each split needs both. More classes: scikit-learn's stratified split when every class is
    common enough for it, else `split_by_class`, which keeps a class too rare for three splits in train
    (the model must see every class; a split's metrics then cover the classes it holds).
    """
    n = len(frame)
    counts = frame[TARGET].value_counts()
    smallest = int(counts.min())
    n_test, n_val = math.ceil(cfg.test_size * n), math.ceil(cfg.val_size * n)
    too_small = DataError(
        f"data set too small for the split: {n} rows ({smallest} in the smallest class) cannot give "
        f"stratified train/val/test splits with preprocess.test_size={cfg.test_size} and "
        f"preprocess.val_size={cfg.val_size}; each split needs both classes"
    )
    if n - n_test - n_val < 2 or n_test < 2 or n_val < 2 or (counts.size == 2 and smallest < 3):
        raise too_small
    from sklearn.model_selection import train_test_split  # here, not at import: `settings` validates without it

    try:
        rest, test = train_test_split(frame, test_size=cfg.test_size, random_state=seed, stratify=frame[TARGET])
        train, val = train_test_split(
            rest, test_size=cfg.val_size / (1 - cfg.test_size), random_state=seed, stratify=rest[TARGET]
        )
    except ValueError as err:
        if counts.size == 2:
            raise DataError(f"data set too small for the split with preprocess.test_size/val_size: {err}") from None
        return split_by_class(frame, cfg, seed)
    if train[TARGET].nunique() < counts.size:
        return split_by_class(frame, cfg, seed)
    return {"train": train, "val": val, "test": test}


def split_by_class(frame: pd.DataFrame, cfg: config.PreprocessConfig, seed: int) -> dict[str, pd.DataFrame]:
    """Each class's rows shuffled and cut by the split fractions (rounded), at least one row kept for train."""
    rng = np.random.default_rng(seed)
    y = frame[TARGET].to_numpy()
    rows: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = min(round(cfg.test_size * members.size), members.size - 1)
        n_val = min(round(cfg.val_size * members.size), members.size - 1 - n_test)
        rows["test"].append(members[:n_test])
        rows["val"].append(members[n_test : n_test + n_val])
        rows["train"].append(members[n_test + n_val :])
    parts = {name: frame.iloc[np.sort(np.concatenate(chosen))] for name, chosen in rows.items()}
    if len(parts["val"]) < 2 or len(parts["test"]) < 2:
        raise DataError(
            f"data set too small for the split: {len(frame)} rows cannot give train/val/test splits with "
            f"preprocess.test_size={cfg.test_size} and preprocess.val_size={cfg.val_size}"
        )
    return parts


def _refuse_unusable_values(raw: pd.DataFrame) -> None:
    """Checks on the whole data set, before the split could hide a bad value from the training fit:
    infinite numbers, and numeric columns with a few text markers (e.g. '?') not declared missing."""
    features = raw.drop(columns=[TARGET])
    numeric = features.select_dtypes("number")
    bad = numeric.columns[np.isinf(numeric.to_numpy(np.float64)).any(axis=0)]
    if len(bad):
        raise DataError(f"column '{bad[0]}' has infinite values; replace or drop them (data.na_values, data.drop)")
    for name in features.columns.difference(numeric.columns):
        # each distinct value parsed once, weighted by its count: the rows one by one took ~20 ms a column of 30k
        counts = features[name].value_counts(dropna=True)
        counts = counts[counts > 0]  # a categorical column counts its unused categories too
        text = pd.Series(counts.index.astype(str))
        parsed = pd.to_numeric(text, errors="coerce").notna().to_numpy()
        rows = counts.to_numpy()
        if rows.sum() and rows[parsed].sum() / rows.sum() >= 0.9:
            markers = sorted(set(text[~parsed]))[:3]
            raise DataError(
                f"column '{name}' is numeric but has non-numeric values {markers}; "
                f"declare them missing with data.na_values={markers}"
            )


Fold = dict[str, pd.DataFrame]  # "train" and "val" (held out), transformed by the fold's own preprocessing


def run(
    raw: pd.DataFrame, cfg: config.PreprocessConfig, seed: int, labels: dict[str, Any] | None = None
) -> tuple[dict[str, pd.DataFrame], Preprocessor, dict[str, Any], list[Fold]]:
    """The transformed splits, the fitted preprocessing, the report and the cross-validation folds (none
    unless `cv_folds`). `labels` (the schema's) names the classes in the report."""
    _refuse_unusable_values(raw)
    parts = split(raw, cfg, seed)
    folds: list[Fold] = []
    if cfg.cv_folds is not None:
        parts = {
            "train": pd.concat([parts["train"], parts["val"]]),
            "val": parts["val"].iloc[:0],
            "test": parts["test"],
        }
        folds = [
            _transformed({"train": part_train, "val": held_out}, _fitted(part_train, cfg))
            for part_train, held_out in cv_split(parts["train"], cfg.cv_folds, seed)
        ]
    pre = _fitted(parts["train"], cfg)
    codes = np.unique(raw[TARGET].to_numpy())
    names = class_names(labels) if labels else [str(code) for code in codes]
    report = {
        **pre.report(),
        "task": task(labels) if labels else ("multiclass" if codes.size > 2 else "binary"),
        "classes": names,
        "rows": {name: len(part) for name, part in parts.items()},
        "class_rows": {name: _class_rows(part[TARGET].to_numpy(), names) for name, part in parts.items()},
    }
    if folds:
        report["cv_folds"] = cfg.cv_folds
        report["fold_rows"] = [{part: len(fold[part]) for part in FOLD_PARTS} for fold in folds]
    return _transformed(parts, pre), pre, report, folds


def _fitted(train: pd.DataFrame, cfg: config.PreprocessConfig) -> Preprocessor:
    return Preprocessor(cfg.scaler, cfg.numeric_impute, cfg.max_categories).fit(train.drop(columns=[TARGET]))


def _transformed(parts: Mapping[str, pd.DataFrame], pre: Preprocessor) -> dict[str, pd.DataFrame]:
    out = {}
    for name, part in parts.items():
        frame = pre.transform(part.drop(columns=[TARGET])).reset_index(drop=True)
        frame[TARGET] = part[TARGET].to_numpy()
        out[name] = frame
    return out


def _class_rows(codes: np.ndarray, names: list[str]) -> dict[str, int]:
    return dict(zip(names, np.bincount(codes.astype(np.intp), minlength=len(names)).tolist(), strict=True))


def cv_split(rest: pd.DataFrame, k: int, seed: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """k stratified folds of train+val as (training part, held-out part), seeded: scikit-learn's
    StratifiedKFold with shuffling. Every class needs k rows, so that every held-out part can hold it."""
    counts = rest[TARGET].value_counts()
    if int(counts.min()) < k or len(rest) < 2 * k:
        raise DataError(
            f"preprocess.cv_folds={k} needs at least {k} rows of every class in train+validation ({len(rest)} "
            f"rows, {int(counts.min())} in the smallest class); lower preprocess.cv_folds"
        )
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(rest.iloc[train], rest.iloc[held_out]) for train, held_out in folds.split(rest, rest[TARGET])]


def split_chunk(frame: pd.DataFrame, cfg: config.PreprocessConfig, seed: int, index: int) -> dict[str, pd.DataFrame]:
    """Stratified split of one chunk seeded by (seed, chunk index), class by class: every pass sends a row to
    the same split."""
    rng = np.random.default_rng([seed, index])
    y = frame[TARGET].to_numpy()
    rows: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test, n_val = round(cfg.test_size * members.size), round(cfg.val_size * members.size)
        rows["test"].append(members[:n_test])
        rows["val"].append(members[n_test : n_test + n_val])
        rows["train"].append(members[n_test + n_val :])
    return {name: frame.iloc[np.sort(np.concatenate(parts))] for name, parts in rows.items()}


def stream(
    raw: Path, outputs: Mapping[str, Path], cfg: config.PreprocessConfig, seed: int, labels: dict[str, Any]
) -> tuple[Preprocessor, dict[str, Any]]:
    """The chunked `run`: one pass for the training statistics, one to transform and write each split,
    chunk by chunk (one row group per chunk and split). Returns the fitted state and the report."""
    if cfg.cv_folds is not None:
        raise DataError(
            "preprocess.cv_folds: k-fold cross-validation refits the preprocessing on every fold in memory; "
            "it is not available for streamed data (data.chunk_rows): leave preprocess.cv_folds=null"
        )
    names = class_names(labels)
    fit = StreamedPreprocessorFit(cfg.scaler, cfg.numeric_impute, cfg.max_categories)
    counts = {name: np.zeros(len(names), dtype=np.int64) for name in SPLITS}
    for index, chunk in enumerate(io.read_row_groups(raw)):
        _refuse_unusable_values(chunk)
        parts = split_chunk(chunk, cfg, seed, index)
        fit.update(parts["train"].drop(columns=[TARGET]))
        for name, part in parts.items():
            counts[name] += np.bincount(part[TARGET].to_numpy(), minlength=len(names))
    for name, count in counts.items():
        # Two classes: every split needs both. More: train needs every class, val and test some rows.
        short = count.min() == 0 if len(names) == 2 or name == "train" else count.sum() == 0
        if short or count.sum() < 2:
            raise DataError(
                f"data set too small for the split: the {name} split gets {count.tolist()} rows per class with "
                f"preprocess.test_size={cfg.test_size} and preprocess.val_size={cfg.val_size}; "
                + ("each split needs both classes" if len(names) == 2 else "train needs every class")
            )
    pre = fit.result()
    with contextlib.ExitStack() as stack:
        writers = {name: stack.enter_context(io.chunk_writer(outputs[name])) for name in SPLITS}
        for index, chunk in enumerate(io.read_row_groups(raw)):
            for name, part in split_chunk(chunk, cfg, seed, index).items():
                frame = pre.transform(part.drop(columns=[TARGET])).reset_index(drop=True)
                frame[TARGET] = part[TARGET].to_numpy()
                writers[name].write(frame)
    report = {
        **pre.report(),
        "task": task(labels),
        "classes": names,
        "rows": {name: int(count.sum()) for name, count in counts.items()},
        "class_rows": {name: dict(zip(names, count.tolist(), strict=True)) for name, count in counts.items()},
    }
    return pre, report


def settings(params: Mapping[str, Any]) -> Settings:
    return Settings(config.preprocess_config(params["preprocess"]), config.seed_value(params["seed"]))


def execute(cfg: Settings, files: Files) -> None:
    raw = files.inputs["dataset"]
    labels = io.read_json(files.inputs["schema"])["labels"]
    folds: list[Fold] = []
    if io.row_groups(raw) > 1:
        pre, report = stream(raw, files.outputs, cfg.preprocess, cfg.seed, labels)
    else:
        splits, pre, report, folds = run(io.read_parquet(raw), cfg.preprocess, cfg.seed, labels)
        io.write_parquets({files.outputs[name]: frame for name, frame in splits.items()})
    write_folds(files.outputs["folds"], folds)
    io.write_json(files.outputs["state"], pre.to_dict())
    io.write_json(files.outputs["report"], report)


def fold_files(folder: Path) -> list[Path]:
    return [fold_file(folder, i, part) for i in range(fold_count(folder)) for part in FOLD_PARTS]


def read_folds(folder: Path) -> list[Fold]:
    return [
        {part: io.read_parquet(fold_file(folder, i, part)) for part in FOLD_PARTS} for i in range(fold_count(folder))
    ]


def write_folds(folder: Path, folds: list[Fold]) -> None:
    """The folds folder, replaced whole (empty without cross-validation: no fold of an earlier run lingers)."""
    with io.replaced_folder(folder) as tmp:
        io.write_parquets(
            {fold_file(tmp, index, part): fold[part] for index, fold in enumerate(folds) for part in FOLD_PARTS}
        )
        io.write_json(tmp / FOLDS_FILE, {"n_folds": len(folds)})


STAGE = Stage(
    name="preprocess",
    params=("preprocess", "seed"),
    inputs={"dataset": ingest.STAGE.output("dataset"), "schema": ingest.STAGE.output("schema")},
    outputs={
        **{name: Output(Path(f"data/interim/{name}.parquet")) for name in SPLITS},
        "state": Output(Path("data/interim/preprocessor.json")),
        "report": Output(Path("reports/preprocess.json"), cache=False),
        "folds": Output(Path("data/interim/folds")),  # folds.json; cv_folds: fold-<i>-{train,val}.parquet
    },
    sources=("src/logitlab/stages/preprocess.py", "src/logitlab/transforms.py"),
    settings=settings,
    run=execute,
    shared=True,
)

if __name__ == "__main__":
    from logitlab import dvc_stage

    dvc_stage.main(STAGE)
