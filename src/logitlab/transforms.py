"""The fitted steps between a raw row and the model: preprocessing and feature expansion.

Both are fitted on the training split only and kept as plain JSON-able state (no pickle), so the model
directory can score raw rows anywhere: the DVC evaluate stage, the sweep, and the MLflow pyfunc model.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from logitlab.errors import DataError

# The expanded float64 array, and the DataFrame built from it (pandas copies on construction).
OUTPUT_COPIES = 2


@dataclass
class Preprocessor:
    """Impute, one-hot encode, drop constant columns and scale, with statistics from the training split.

    Unseen categories at transform time encode as all zeros; missing values take the training statistic.
    """

    scaler: str = "standard"
    numeric_impute: str = "median"
    max_categories: int = 50
    numeric: dict[str, dict[str, float]] = field(default_factory=dict)
    categorical: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    input_columns: list[str] = field(default_factory=list)
    output_columns: list[str] = field(default_factory=list)

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        self.input_columns = list(frame.columns)
        self.numeric, self.categorical, self.dropped = {}, {}, []
        for name in frame.columns:
            column = frame[name]
            if column.isna().all():
                raise DataError(f"column '{name}' has no values in the training split; drop it with data.drop")
            if _is_numeric(column):
                self._fit_numeric(name, column.astype(np.float64))
            else:
                self._fit_categorical(name, column)
        self._set_output_columns()
        return self

    def _set_output_columns(self) -> None:
        self.output_columns = list(self.numeric)
        for name, spec in self.categorical.items():
            self.output_columns += [f"{name}={value}" for value in spec["categories"]]
        if not self.output_columns:
            raise DataError("every feature column is constant in the training split; nothing to learn from")

    def _fit_numeric(self, name: str, column: pd.Series) -> None:
        values = column.to_numpy()
        if np.isinf(values).any():
            raise DataError(f"column '{name}' has infinite values; replace or drop them (data.na_values, data.drop)")
        present = values[~np.isnan(values)]
        fill = float(np.median(present) if self.numeric_impute == "median" else np.mean(present))
        filled = np.where(np.isnan(values), fill, values)
        if np.ptp(filled) == 0:
            self.dropped.append(name)
            return
        if self.scaler == "standard":
            shift, scale = float(filled.mean()), float(filled.std())
        elif self.scaler == "minmax":
            shift, scale = float(filled.min()), float(np.ptp(filled))
        else:
            shift, scale = 0.0, 1.0
        self.numeric[name] = {
            "fill": fill,
            "shift": shift,
            "scale": scale,
            "missing": int(np.isnan(values).sum()),
        }

    def _fit_categorical(self, name: str, column: pd.Series) -> None:
        text = column.dropna().astype(str)
        counts = text.value_counts()
        distinct = len(counts)
        if distinct > self.max_categories or (distinct == len(text) and len(text) > 10):
            raise DataError(
                f"column '{name}' is text with {distinct} distinct values in {len(text)} rows (it looks like an "
                f"ID); drop it with data.drop=[{name}] or raise preprocess.max_categories"
            )
        if distinct == 1 and not column.isna().any():
            self.dropped.append(name)
            return
        # Most frequent value fills gaps; ties broken by value so the result is deterministic.
        fill = sorted(counts[counts == counts.max()].index)[0]
        self.categorical[name] = {
            "fill": fill,
            "categories": sorted(counts.index),
            "missing": int(column.isna().sum()),
        }

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise DataError(f"column '{missing[0]}' is missing from the rows to score (expected {self.input_columns})")
        # one row per output column, in `output_columns`' order: the frame's block as pandas holds it (one
        # allocation, no consolidation of 100+ columns: a sweep's first job transforms the data and every fold).
        # By name: a loaded state's sections are in its JSON's (sorted) order, not the output's.
        position = {name: row for row, name in enumerate(self.output_columns)}
        columns = np.zeros((len(self.output_columns), len(frame)), dtype=np.float64)
        for name, spec in self.numeric.items():
            try:
                values = frame[name].astype(np.float64).to_numpy()
            except (TypeError, ValueError):
                raise DataError(f"column '{name}' must be numeric") from None
            if np.isinf(values).any():
                raise DataError(f"column '{name}' has infinite values")
            values = np.where(np.isnan(values), spec["fill"], values)
            columns[position[name]] = (values - spec["shift"]) / spec["scale"]
        for name, category in self.categorical.items():
            column = frame[name]
            if isinstance(column.dtype, pd.StringDtype):  # text already: half the time of the conversion below
                text = column.fillna(category["fill"])
            else:  # numbers or objects in a text column: their text, as the fit counted them
                text = column.astype(object).where(column.notna(), category["fill"]).astype(str)
            rows = np.array([position[f"{name}={value}"] for value in category["categories"]], dtype=np.intp)
            codes = pd.Index(category["categories"]).get_indexer(text)  # -1: unseen, all zeros
            seen = np.flatnonzero(codes >= 0)
            columns[rows[codes[seen]], seen] = 1.0
        return pd.DataFrame(columns.T, index=frame.index, columns=self.output_columns, copy=False)

    def report(self) -> dict[str, Any]:
        """What was done to each column, for the stage's report."""
        return {
            "scaled": {name: self.scaler for name in self.numeric} if self.scaler != "none" else {},
            "imputed": {
                name: spec["fill"] for name, spec in {**self.numeric, **self.categorical}.items() if spec["missing"] > 0
            },
            "one_hot": {name: spec["categories"] for name, spec in self.categorical.items()},
            "dropped_constant": list(self.dropped),
            "n_columns_in": len(self.input_columns),
            "n_columns_out": len(self.output_columns),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "scaler": self.scaler,
            "numeric_impute": self.numeric_impute,
            "max_categories": self.max_categories,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "dropped": self.dropped,
            "input_columns": self.input_columns,
            "output_columns": self.output_columns,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Preprocessor:
        return cls(**state)


@dataclass
class StreamedPreprocessorFit:
    """The `Preprocessor` fitted from training chunks seen one at a time, from statistics that merge exactly
    (counts, mean and sum of squared deviations by Chan's update, min, max, category counts).

    The median does not merge, so `numeric_impute` must be "mean"; the fitted state is the in-memory one up
    to rounding. An ID-like text column is refused as soon as it passes `max_categories`.
    """

    scaler: str = "standard"
    numeric_impute: str = "mean"
    max_categories: int = 50
    columns: list[str] = field(default_factory=list)
    moments: dict[str, list[float]] = field(default_factory=dict)  # count, mean, m2, min, max, missing
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.numeric_impute != "mean":
            raise DataError(
                f"preprocess.numeric_impute={self.numeric_impute} needs every training row in memory and "
                "data.chunk_rows streams them; set preprocess.numeric_impute=mean"
            )

    def update(self, frame: pd.DataFrame) -> None:
        self.columns = self.columns or list(frame.columns)
        for name in self.columns:
            column = frame[name]
            self.missing[name] = self.missing.get(name, 0) + int(column.isna().sum())
            if _is_numeric(column) and name not in self.counts:
                self._update_numeric(name, column.to_numpy(np.float64))
            elif not column.isna().all():
                self._update_categorical(name, column.dropna().astype(str))

    def _update_numeric(self, name: str, values: np.ndarray) -> None:
        if np.isinf(values).any():
            raise DataError(f"column '{name}' has infinite values; replace or drop them (data.na_values, data.drop)")
        present = values[~np.isnan(values)]
        if not present.size:
            return
        count, mean = float(present.size), float(present.mean())
        m2 = float(((present - mean) ** 2).sum())
        low, high = float(present.min()), float(present.max())
        if name not in self.moments:
            self.moments[name] = [count, mean, m2, low, high]
            return
        n_a, mean_a, m2_a, low_a, high_a = self.moments[name]
        total = n_a + count
        delta = mean - mean_a
        self.moments[name] = [
            total,
            mean_a + delta * count / total,
            m2_a + m2 + delta * delta * n_a * count / total,
            min(low_a, low),
            max(high_a, high),
        ]

    def _update_categorical(self, name: str, text: pd.Series) -> None:
        counter = self.counts.setdefault(name, Counter())
        counter.update({str(value): int(n) for value, n in text.value_counts().items()})
        if len(counter) > self.max_categories:
            raise DataError(
                f"column '{name}' is text with more than {self.max_categories} distinct values (it looks like an "
                f"ID); drop it with data.drop=[{name}] or raise preprocess.max_categories"
            )

    def result(self) -> Preprocessor:
        pre = Preprocessor(self.scaler, self.numeric_impute, self.max_categories, input_columns=list(self.columns))
        for name in self.columns:
            if name in self.counts:
                self._categorical(pre, name)
            elif name in self.moments:
                self._numeric(pre, name)
            else:
                raise DataError(f"column '{name}' has no values in the training split; drop it with data.drop")
        pre._set_output_columns()
        return pre

    def _numeric(self, pre: Preprocessor, name: str) -> None:
        count, mean, m2, low, high = self.moments[name]
        if low == high:
            pre.dropped.append(name)
            return
        n_rows = count + self.missing[name]  # imputed rows sit at the mean: no deviation
        if self.scaler == "standard":
            shift, scale = mean, math.sqrt(m2 / n_rows)
        elif self.scaler == "minmax":
            shift, scale = low, high - low
        else:
            shift, scale = 0.0, 1.0
        pre.numeric[name] = {"fill": mean, "shift": shift, "scale": scale, "missing": self.missing[name]}

    def _categorical(self, pre: Preprocessor, name: str) -> None:
        counts = self.counts[name]
        present = sum(counts.values())
        if len(counts) == present and present > 10:
            raise DataError(
                f"column '{name}' is text with {len(counts)} distinct values in {present} rows (it looks like an "
                f"ID); drop it with data.drop=[{name}] or raise preprocess.max_categories"
            )
        if len(counts) == 1 and not self.missing[name]:
            pre.dropped.append(name)
            return
        most = max(counts.values())
        pre.categorical[name] = {
            "fill": sorted(value for value, n in counts.items() if n == most)[0],
            "categories": sorted(counts),
            "missing": self.missing[name],
        }


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


@dataclass
class PolynomialExpander:
    """Polynomial and interaction terms of the chosen columns, named like `x0^2` and `x0 x1`.

    Columns not in `include` pass through unchanged. Powers/products are of the preprocessed (scaled)
    columns, which keeps higher degrees numerically tame.
    """

    degree: int = 1
    interaction_only: bool = False
    include: list[str] | None = None
    max_features: int = 20000
    input_columns: list[str] = field(default_factory=list)
    terms: list[list[int]] = field(default_factory=list)
    output_columns: list[str] = field(default_factory=list)

    def fit(self, frame: pd.DataFrame) -> PolynomialExpander:
        self.input_columns = list(frame.columns)
        expanded = self._expanded_indices()
        n_out = len(self.input_columns) + count_terms(len(expanded), self.degree, self.interaction_only)
        if n_out > self.max_features:
            megabytes = n_out * len(frame) * 8 / 2**20
            raise DataError(
                f"features.degree={self.degree} on {len(expanded)} columns makes {n_out} features "
                f"(~{megabytes:,.0f} MB for the training split), over features.max_features={self.max_features}; "
                "lower features.degree, list fewer columns in features.include, or raise features.max_features"
            )
        self._refuse_unless_fits(len(frame), n_out, "the training split")
        combos = itertools.combinations if self.interaction_only else itertools.combinations_with_replacement
        self.terms = [list(c) for k in range(2, self.degree + 1) for c in combos(expanded, k)]
        self.output_columns = self.input_columns + [self._name(term) for term in self.terms]
        return self

    def _refuse_unless_fits(self, n_rows: int, n_out: int, what: str) -> None:
        """Refuse, before allocating, an expansion whose float64 output (and the frame built from it)
        would not fit in the memory available now."""
        needed = OUTPUT_COPIES * n_rows * n_out * np.dtype(np.float64).itemsize
        available = available_memory()
        if needed > available:
            raise DataError(
                f"features.degree={self.degree} makes {n_out:,} features: {what} ({n_rows:,} rows) would need "
                f"{_gigabytes(needed)} of memory, {_gigabytes(available)} is available; lower features.degree, "
                "list fewer columns in features.include, or stream the data in chunks (data.chunk_rows)"
            )

    def _expanded_indices(self) -> list[int]:
        if self.include is None:
            return list(range(len(self.input_columns)))
        chosen = []
        for name in self.include:
            matches = [i for i, c in enumerate(self.input_columns) if c == name or c.startswith(f"{name}=")]
            if not matches:
                raise DataError(
                    f"features.include: column '{name}' is not among the preprocessed columns "
                    f"({', '.join(self.input_columns[:8])}{' ...' if len(self.input_columns) > 8 else ''})"
                )
            chosen += matches
        return sorted(set(chosen))

    def _name(self, term: list[int]) -> str:
        parts = []
        for index, group in itertools.groupby(term):
            power = len(list(group))
            name = self.input_columns[index]
            parts.append(name if power == 1 else f"{name}^{power}")
        return " ".join(parts)

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        self._refuse_unless_fits(len(frame), len(self.output_columns), "the rows to expand")
        X = frame[self.input_columns].to_numpy(np.float64)
        out = np.empty((X.shape[0], len(self.output_columns)), dtype=np.float64)
        out[:, : X.shape[1]] = X
        for j, term in enumerate(self.terms, start=X.shape[1]):
            np.prod(X[:, term], axis=1, out=out[:, j])
        return pd.DataFrame(out, index=frame.index, columns=self.output_columns)

    def report(self) -> dict[str, Any]:
        return {
            "degree": self.degree,
            "interaction_only": self.interaction_only,
            "expanded_columns": [self.input_columns[i] for i in self._expanded_indices()],
            "n_features_in": len(self.input_columns),
            "n_features_out": len(self.output_columns),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "degree": self.degree,
            "interaction_only": self.interaction_only,
            "include": self.include,
            "max_features": self.max_features,
            "input_columns": self.input_columns,
            "terms": self.terms,
            "output_columns": self.output_columns,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> PolynomialExpander:
        return cls(**state)


def available_memory() -> int:
    """Bytes this process can still allocate: the kernel's MemAvailable, capped by a cgroup limit."""
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    return max(available, 0)


def _gigabytes(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:,.1f} GB"


def count_terms(n_columns: int, degree: int, interaction_only: bool) -> int:
    """Number of terms of degree 2..degree over n_columns columns."""
    if interaction_only:
        return sum(math.comb(n_columns, k) for k in range(2, degree + 1))
    return sum(math.comb(n_columns + k - 1, k) for k in range(2, degree + 1))
