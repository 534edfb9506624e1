"""Data sources: scikit-learn's generators and bundled sets, or a user's CSV, as one labelled frame.

Every source returns features with string column names plus a `target` column of class codes, and a
description of where the labels came from. Binary: codes 0/1 and which original value is the positive class
(`{"positive": ..., "negative": ...}`). A CSV whose label column has more than two values and no
`data.positive_label`/`data.negative_label` is multiclass: codes 0..K-1 and the original values in code
order (`{"classes": [...]}`). `class_names` reads either description.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from logitlab.config import (
    BreastCancerData,
    CirclesData,
    CsvData,
    DataConfig,
    MakeClassificationData,
    MoonsData,
)
from logitlab.errors import DataError

TARGET = "target"


def class_names(labels: dict[str, Any]) -> list[str]:
    """The original label values as text, in code order, from either kind of label description."""
    if "classes" in labels:
        return [str(value) for value in labels["classes"]]
    return [str(labels["negative"]), str(labels["positive"])]


def task(labels: dict[str, Any]) -> str:
    """ "multiclass" for a description of more than two classes, else "binary"."""
    return "multiclass" if "classes" in labels else "binary"


def load(cfg: DataConfig, root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The data set `cfg` names, as (frame with a 0/1 `target` column, label description)."""
    if isinstance(cfg, CsvData):
        return _from_csv(cfg, root)
    X, y, names, labels = _generated(cfg)
    frame = pd.DataFrame(X, columns=names)
    frame[TARGET] = y.astype(np.int64)
    return frame, {"negative": labels[0], "positive": labels[1]}


def _generated(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray, list[str], tuple[Any, Any]]:
    from sklearn import datasets

    if isinstance(cfg, MakeClassificationData):
        X, y = datasets.make_classification(
            n_samples=cfg.n_samples,
            n_features=cfg.n_features,
            n_informative=cfg.n_informative,
            n_redundant=cfg.n_redundant,
            n_clusters_per_class=cfg.n_clusters_per_class,
            class_sep=cfg.class_sep,
            flip_y=cfg.flip_y,
            random_state=cfg.random_state,
        )
    elif isinstance(cfg, MoonsData):
        X, y = datasets.make_moons(n_samples=cfg.n_samples, noise=cfg.noise, random_state=cfg.random_state)
    elif isinstance(cfg, CirclesData):
        X, y = datasets.make_circles(
            n_samples=cfg.n_samples, noise=cfg.noise, factor=cfg.factor, random_state=cfg.random_state
        )
    elif isinstance(cfg, BreastCancerData):
        bunch = datasets.load_breast_cancer()
        # scikit-learn codes malignant as 0; the positive class here is the one to detect.
        return bunch.data, 1 - bunch.target, list(bunch.feature_names), ("benign", "malignant")
    else:  # pragma: no cover - config validation admits only the sources above
        raise DataError(f"data.source: unknown source {cfg.source!r}")
    return X, y, [f"x{i}" for i in range(X.shape[1])], (0, 1)


def resolve_input(path: str, root: Path) -> Path:
    file = Path(os.path.expanduser(path))
    return file if file.is_absolute() else root / file


def _csv_file(cfg: CsvData, root: Path) -> Path:
    file = resolve_input(cfg.path, root)
    if not file.is_file():
        raise DataError(f"data.path: CSV file '{file}' not found")
    return file


def _read_csv(cfg: CsvData, file: Path, **options: Any) -> Any:
    """`pd.read_csv` with the config's options (a reader of chunks when `chunksize` is given); a file that does
    not decode in `data.encoding` is a DataError naming the byte and the key to set. A chunk reader decodes
    lazily, so a bad byte past its first chunk shows as the chunks are read: see `_decoded`."""
    encoding = _text_encoding(cfg, file)
    try:
        return pd.read_csv(
            file,
            header=0 if cfg.header else None,
            sep=cfg.sep,
            na_values=cfg.na_values or None,
            skipinitialspace=True,
            encoding=encoding,
            **options,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"data.path: CSV file '{file}' is empty") from None
    except UnicodeDecodeError:
        raise _undecodable(file, encoding) from None
    except pd.errors.ParserError as err:
        raise DataError(f"data.path: CSV file '{file}' cannot be parsed: {' '.join(str(err).split())}") from None


def _decoded(reader: Any, file: Path, cfg: CsvData) -> Iterator[pd.DataFrame]:
    """The chunks of a chunk reader, a byte that does not decode past the first chunk told as `_read_csv` does."""
    try:
        yield from reader
    except UnicodeDecodeError:
        raise _undecodable(file, _text_encoding(cfg, file)) from None


UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
SNIFF_BYTES = 4096


def _text_encoding(cfg: CsvData, file: Path) -> str:
    """The codec to read with: `data.encoding`, utf-8 as utf-8-sig (a byte-order mark is not part of the first
    column's name). A file that looks like UTF-16 (its byte-order mark, or NUL bytes, which no CSV in an 8-bit
    encoding holds) while another encoding is set is a DataError saying so."""
    name = codecs.lookup(cfg.encoding).name
    if name.startswith("utf-16"):
        return cfg.encoding
    with open(file, "rb") as stream:
        head = stream.read(SNIFF_BYTES)
    if head.startswith(UTF16_BOMS) or head.count(0) > len(head) // 4:
        raise DataError(
            f"data.path: CSV file '{file}' looks like UTF-16 (its first bytes are {head[:4].hex(' ')}), "
            f"not {cfg.encoding}; set data.encoding=utf-16"
        )
    return "utf-8-sig" if name == "utf-8" else cfg.encoding


def _undecodable(file: Path, encoding: str) -> DataError:
    """Where the file first fails to decode, found by decoding it again block by block (pandas' own error
    counts from the start of its buffer, not of the file)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    with open(file, "rb") as stream:
        while True:
            block = stream.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                start = offset - (len(err.object) - len(block)) + err.start  # bytes held over from the last block
                byte, name = err.object[err.start], encoding.removesuffix("-sig")
                return DataError(
                    f"data.path: CSV file '{file}' is not {name}: byte 0x{byte:02x} at offset {start} does not "
                    "decode; set data.encoding to the file's encoding, e.g. data.encoding=latin-1"
                )
            if not block:
                break
            offset += len(block)
    return DataError(f"data.path: CSV file '{file}' does not decode as {encoding}; set data.encoding")


def _checked_labels(frame: pd.DataFrame, cfg: CsvData, file: Path) -> pd.Series:
    """Name the columns as strings, check the target and dropped columns exist; the label column."""
    frame.columns = [str(c) for c in frame.columns]
    target = str(cfg.target)
    if target not in frame.columns:
        shown = ", ".join(list(frame.columns)[:8]) + (" ..." if frame.shape[1] > 8 else "")
        what = "column" if cfg.header else "column index"
        raise DataError(f"data.target: {what} '{target}' not in '{file.name}' (columns: {shown})")
    for dropped in cfg.drop:
        if str(dropped) not in frame.columns:
            raise DataError(f"data.drop: column '{dropped}' not in '{file.name}'")
    labels = frame[target]
    if labels.isna().any():
        raise DataError(
            f"data.target: column '{target}' of '{file.name}' has {int(labels.isna().sum())} missing labels"
        )
    return labels


def _labelled_features(frame: pd.DataFrame, y: np.ndarray, cfg: CsvData, file: Path) -> pd.DataFrame:
    target = str(cfg.target)
    features = frame.drop(columns=[target, *map(str, cfg.drop)])
    if features.shape[1] == 0:
        raise DataError(f"data: '{file.name}' has no feature columns besides the target '{target}'")
    if not cfg.header:
        features.columns = [f"x{c}" for c in features.columns]
    if TARGET in features.columns:
        raise DataError(f"data: '{file.name}' has a feature column named '{TARGET}', a reserved name; rename it")
    features = features.copy()
    features[TARGET] = y
    return features


def _from_csv(cfg: CsvData, root: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    file = _csv_file(cfg, root)
    frame = _read_csv(cfg, file)
    if frame.empty:
        raise DataError(f"data.path: CSV file '{file}' has no data rows")
    labels = _checked_labels(frame, cfg, file)
    y, description = _encoded_labels(labels, cfg, file.name)
    return _labelled_features(frame, y, cfg, file).reset_index(drop=True), description


class CsvChunks:
    """A user CSV read `data.chunk_rows` rows at a time, each chunk labelled as `load` labels the whole file.

    With data.positive_label/negative_label a chunk is labelled on its own. Without, codes are given in the
    order `load` gives them to the values the first chunk shows (one pass over the label column finds them
    when it shows fewer than two); a value first met in a later chunk takes the next code, so a streamed
    multiclass file may list its classes in order of appearance rather than sorted. Two values in all is
    binary, more is multiclass, as in memory.
    Numeric columns become float64 and text columns strings in every chunk, so a column whose type still
    differs between chunks is a real inconsistency (the writer refuses it). `labels` and `class_counts`
    (by code) are complete once the iteration ends.
    """

    def __init__(self, cfg: CsvData, root: Path) -> None:
        if cfg.chunk_rows is None:
            raise DataError("data.chunk_rows is not set")  # pragma: no cover - callers check
        self.cfg = cfg
        self.file = _csv_file(cfg, root)
        self.labels: dict[str, Any] = {}
        self.class_counts: dict[int, int] = {}
        self.n_rows = 0

    def __iter__(self) -> Iterator[pd.DataFrame]:
        cfg, file = self.cfg, self.file
        named = cfg.positive_label is not None or cfg.negative_label is not None
        codes: dict[str, int] = {}  # label as text -> its code (no label named)
        seen: dict[str, Any] = {}  # label as text -> the original value, in code order (kept for the schema)
        with _read_csv(cfg, file, chunksize=cfg.chunk_rows) as reader:
            for frame in _decoded(reader, file, cfg):
                labels = _checked_labels(frame, cfg, file)
                text = labels.astype(str)
                new = {str(value): value for value in labels.unique().tolist() if str(value) not in seen}
                if not seen and not named and len(new) < 2:
                    new = {**new, **self._all_label_values()}
                for value in _ordered(list(new.values()), len(seen) + len(new)):
                    seen[str(value)] = value
                    codes[str(value)] = len(codes)
                y: np.ndarray
                if cfg.negative_label is not None:
                    y = (text != str(cfg.negative_label)).to_numpy(np.int64)
                elif cfg.positive_label is not None:
                    y = (text == str(cfg.positive_label)).to_numpy(np.int64)
                else:
                    y = text.map(codes).to_numpy(np.int64)
                self.n_rows += len(y)
                for code, count in zip(*np.unique(y, return_counts=True), strict=True):
                    self.class_counts[int(code)] = self.class_counts.get(int(code), 0) + int(count)
                yield _stable_types(_labelled_features(frame, y, cfg, file))
        if self.n_rows == 0:
            raise DataError(f"data.path: CSV file '{file}' has no data rows")
        values = pd.Series(list(seen.values()), dtype=object)
        _, self.labels = _encoded_labels(values, cfg, file.name, order=None if named else list(seen.values()))

    def _all_label_values(self) -> dict[str, Any]:
        target = self.cfg.target if self.cfg.header else int(self.cfg.target)
        values: dict[str, Any] = {}
        with _read_csv(self.cfg, self.file, chunksize=self.cfg.chunk_rows, usecols=[target]) as reader:
            for frame in _decoded(reader, self.file, self.cfg):
                values.update({str(value): value for value in frame.iloc[:, 0].dropna().unique().tolist()})
        return values


def _stable_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric feature columns as float64, others as strings (None when missing), all-missing as None."""
    out: dict[Any, pd.Series] = {}
    for name, column in frame.items():
        if name == TARGET:
            out[name] = column
        elif column.isna().all():
            out[name] = pd.Series([None] * len(column), index=column.index, dtype=object)
        elif pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            out[name] = column.astype(np.float64)
        else:
            out[name] = column.astype(str).where(column.notna(), None)
    return pd.DataFrame(out, index=frame.index)


def _ordered(values: list[Any], n_classes: int) -> list[Any]:
    """Label values in code order: two classes sorted as text (negative, positive), as ever; more classes
    numerically when all are numbers (grades 3..10), else as text."""
    numeric = all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in values)
    return sorted(values, key=float) if n_classes > 2 and numeric else sorted(values, key=str)


def _encoded_labels(
    labels: pd.Series, cfg: CsvData, filename: str, order: list[Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Codes and the label description: binary when a label is named or there are two values, else
    multiclass with codes in `order` (default `_ordered`)."""
    values = sorted(labels.unique().tolist(), key=str)
    key = f"data.target: column '{cfg.target}' of '{filename}'"
    if len(values) < 2:
        raise DataError(f"{key} has one class ({values[0]!r}); classification needs two or more")
    as_text = labels.astype(str)
    for option in ("positive_label", "negative_label"):
        wanted = getattr(cfg, option)
        if wanted is not None and str(wanted) not in set(as_text):
            raise DataError(
                f"data.{option}: {wanted!r} does not occur in {key[len('data.target: ') :]} (values: {values[:6]})"
            )
    if cfg.positive_label is not None:
        positive = as_text == str(cfg.positive_label)
        others = sorted({str(v) for v in values} - {str(cfg.positive_label)})
        return positive.to_numpy(np.int64), {"positive": cfg.positive_label, "negative": "|".join(others)}
    if cfg.negative_label is not None:
        negative = as_text == str(cfg.negative_label)
        others = sorted({str(v) for v in values} - {str(cfg.negative_label)})
        return (~negative).to_numpy(np.int64), {"positive": "|".join(others), "negative": cfg.negative_label}
    if len(values) > 2:
        classes = order if order is not None else _ordered(values, len(values))
        codes = {str(value): code for code, value in enumerate(classes)}
        return as_text.map(codes).to_numpy(np.int64), {"classes": classes}
    negative, positive = order if order is not None else values
    return (as_text == str(positive)).to_numpy(np.int64), {"positive": positive, "negative": negative}
