"""Data that is not one array in memory: a parquet file read row group by row group, or a Dask array.

The solvers reach data only through `Problem`. `ChunkedProblem` keeps that interface over a sequence of row
blocks: the full objective, gradient and Hessian are sums of per-block partials (each row's weight is
already divided by the total, as in memory), so gd/lbfgs/newton give the in-memory fit to rounding while
holding one block at a time. For a Dask array the per-block partials are computed on the cluster and summed
there, one `compute` per gradient. Mini-batches visit the blocks in a random order and shuffle the rows
within each block, so a stochastic epoch also holds one block.
"""

from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from logitlab.errors import LogitlabError
from logitlab.model._loss import LogisticLoss
from logitlab.model._solvers import HessianProduct, Problem

BlockTerms = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ParquetChunks:
    """A parquet file as `LogisticRegression.fit` input, read one row group at a time.

    The features are every column but `target` (all numeric); the labels are the `target` column. Peak memory
    is about two row groups, whatever the file size: write the file with the row-group size you can afford.
    """

    def __init__(self, path: str | Path, target: str = "target") -> None:
        self.path = Path(path)
        self.target = target
        file = _open(self.path)
        schema = file.schema_arrow
        if target not in schema.names:
            raise LogitlabError(f"'{self.path}' has no target column '{target}' (columns: {schema.names[:8]})")
        self.feature_names = [name for name in schema.names if name != target]
        for name in self.feature_names:
            kind = schema.field(name).type
            if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
                raise LogitlabError(f"column '{name}' of '{self.path}' is {kind}, not numeric")
        self.chunk_rows = [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)]

    @property
    def n_samples(self) -> int:
        return sum(self.chunk_rows)

    @property
    def n_chunks(self) -> int:
        return len(self.chunk_rows)

    def __repr__(self) -> str:
        return f"ParquetChunks('{self.path}', target={self.target!r}, {self.n_chunks} row groups)"


def _open(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise LogitlabError(f"'{path}' not found")
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise LogitlabError(f"'{path}' is not a readable parquet file ({' '.join(str(err).split())})") from None


class Blocks(Protocol):
    """Rows in blocks: what `ChunkedProblem` needs from a data source."""

    n_samples: int
    n_features: int
    n_blocks: int

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct labels and their counts."""
        ...

    def block(self, index: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Block `index` as (X, raw labels) in memory."""
        ...

    def reduce(self, terms: BlockTerms, size: int, dtype: np.dtype) -> np.ndarray:
        """Sum of `terms(X, labels)` (a vector of `size`) over all blocks."""
        ...


class ParquetBlocks:
    """Row groups of a `ParquetChunks` file, converted into one reused float buffer each."""

    def __init__(self, chunks: ParquetChunks) -> None:
        self.chunks = chunks
        self.file = _open(chunks.path)
        self.n_samples = chunks.n_samples
        self.n_features = len(chunks.feature_names)
        self.n_blocks = chunks.n_chunks
        self._buffer: np.ndarray | None = None

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        found: list[np.ndarray] = []
        counted: list[np.ndarray] = []
        for index in range(self.n_blocks):
            column = self.file.read_row_group(index, columns=[self.chunks.target]).column(0).to_numpy()
            values, counts = np.unique(column, return_counts=True)
            found.append(values)
            counted.append(counts)
        return _merge_counts(found, counted)

    def block(self, index: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        table = self.file.read_row_group(index, columns=[*self.chunks.feature_names, self.chunks.target])
        n_rows = table.num_rows
        if self._buffer is None or self._buffer.dtype != dtype:
            # Fortran order: each column is filled by one contiguous copy; BLAS takes either layout.
            rows = max(self.chunks.chunk_rows)
            self._buffer = np.empty((rows, self.n_features), dtype=dtype, order="F")
        X = self._buffer[:n_rows]
        for j in range(self.n_features):
            X[:, j] = table.column(j).to_numpy()
        labels = table.column(self.n_features).to_numpy()
        del table
        pa.default_memory_pool().release_unused()  # hand the arrow buffers back, so RSS stays at one block
        return X, labels

    def reduce(self, terms: BlockTerms, size: int, dtype: np.dtype) -> np.ndarray:
        total = np.zeros(size, dtype=dtype)
        for index in range(self.n_blocks):
            total += terms(*self.block(index, dtype))
        return total


class ArrayBlocks:
    """Arrays in memory as a single block (e.g. an in-memory validation set beside chunked training data)."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y
        self.n_samples, self.n_features = X.shape
        self.n_blocks = 1

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        return np.unique(self.y, return_counts=True)

    def block(self, index: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        return self.X.astype(dtype, copy=False), self.y

    def reduce(self, terms: BlockTerms, size: int, dtype: np.dtype) -> np.ndarray:
        return terms(*self.block(0, dtype))


class DaskBlocks:
    """A Dask array's row blocks: partial sums run where the blocks live, on the current Dask scheduler
    (a `distributed.Client` if one is active), and come back summed."""

    def __init__(self, X: Any, y: Any, name: str) -> None:
        import dask.array as da

        if X.ndim != 2:
            raise LogitlabError(f"{name} must be a 2-D Dask array; got {X.ndim} dimensions")
        if any(np.isnan(size) for size in X.shape):
            raise LogitlabError(
                f"{name} has unknown chunk sizes; build it with to_dask_array(lengths=True) or compute_chunk_sizes()"
            )
        if y is None:
            raise LogitlabError(f"y is required with a Dask {name} (a Dask or numpy array of labels)")
        y = y if isinstance(y, da.Array) else da.from_array(np.asarray(y).ravel())
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise LogitlabError(f"{name} has {X.shape[0]} samples but its labels have shape {y.shape}")
        self.X = X.rechunk({1: -1}) if X.numblocks[1] > 1 else X
        self.y = y.rechunk((self.X.chunks[0],))
        self.n_samples, self.n_features = (int(size) for size in self.X.shape)
        self.n_blocks = self.X.numblocks[0]

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        import dask
        import dask.array as da

        values, counts = dask.compute(*da.unique(self.y, return_counts=True))
        return np.asarray(values), np.asarray(counts)

    def block(self, index: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        import dask

        X, y = dask.compute(self.X.blocks[index], self.y.blocks[index])
        return np.asarray(X, dtype=dtype), np.asarray(y)

    def reduce(self, terms: BlockTerms, size: int, dtype: np.dtype) -> np.ndarray:
        import dask.array as da

        rows = da.blockwise(
            _as_row,
            "ik",
            self.X,
            "ij",
            self.y,
            "i",
            terms=terms,
            new_axes={"k": size},
            adjust_chunks={"i": 1},
            concatenate=True,
            dtype=dtype,
            meta=np.empty((0, 0), dtype=dtype),
        )
        return np.asarray(rows.sum(axis=0).compute(), dtype=dtype)


def _as_row(X: np.ndarray, y: np.ndarray, terms: BlockTerms) -> np.ndarray:
    return terms(X, y)[None, :]


def _merge_counts(values: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    distinct, inverse = np.unique(np.concatenate(values), return_inverse=True)
    totals = np.zeros(distinct.size, dtype=np.int64)
    np.add.at(totals, inverse, np.concatenate(counts))
    return distinct, totals


def is_dask(X: Any) -> bool:
    """A Dask array, checked without importing Dask when the caller has not."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(X, module.Array)


def is_chunked(X: Any) -> bool:
    return isinstance(X, ParquetChunks) or is_dask(X)


def blocks_of(X: Any, y: Any, name: str) -> Blocks:
    """The block view of a fit input: `ParquetChunks` (labels in the file), a Dask array, or arrays."""
    if isinstance(X, ParquetChunks):
        if y is not None:
            raise LogitlabError(f"the labels of a ParquetChunks {name} are its '{X.target}' column; pass no y")
        return ParquetBlocks(X)
    if is_dask(X):
        return DaskBlocks(X, y, name)
    if y is None:
        raise LogitlabError(f"labels for {name} are missing")
    return ArrayBlocks(np.asarray(X), np.asarray(y).ravel())


def feature_names(X: Any) -> list[str] | None:
    return list(X.feature_names) if isinstance(X, ParquetChunks) else None


def class_codes(labels: np.ndarray, classes: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Each label's index in the sorted `classes` (labels are known to be among them), as floats."""
    return np.searchsorted(classes, labels.ravel()).astype(dtype)


def _block_terms(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    coef: np.ndarray,
    loss: LogisticLoss,
    classes: np.ndarray,
    class_weights: np.ndarray,
    order: int,
    vector: np.ndarray | None = None,
) -> np.ndarray:
    """One block's share of the objective: [loss] (order 0), [loss, gradient] (1), [gradient, Hessian] (2),
    the Hessian at `coef` times `vector` (3), the Hessian bound times `vector` (4).

    A module-level function, so that a Dask worker in another process can run it."""
    X = X.astype(coef.dtype, copy=False)
    y = class_codes(labels, classes, coef.dtype)
    weights = class_weights[y.astype(np.intp)]
    if order == 0:
        return np.array([loss.loss(coef, X, y, weights)], dtype=coef.dtype)
    if order == 1:
        value, grad = loss.loss_gradient(coef, X, y, weights)
        return np.concatenate([np.array([value], dtype=coef.dtype), grad])
    if order == 2:
        grad, hessian = loss.data_gradient_hessian(coef, X, y, weights)
        return np.concatenate([grad, hessian.ravel()])
    assert vector is not None
    if order == 3:
        _, _, curvature = loss.loss_gradient_curvature(coef, X, y, weights)
        return loss.hessian_product(curvature, X, vector)
    return loss.curvature_bound_product(X, weights, vector)


class ChunkedProblem(Problem):
    """`Problem` over row blocks: sums of per-block partials, one block in memory at a time.

    `class_weights[k]` is the weight of a row of class `classes[k]` already divided by the total weight, so the
    sums are the in-memory weighted means. The L2 (and L1) terms are added once, after the sum.
    """

    def __init__(
        self,
        loss: LogisticLoss,
        blocks: Blocks,
        classes: np.ndarray,
        class_weights: np.ndarray,
        l1_strength: float = 0.0,
    ) -> None:
        # No dataclass __init__: there is no X, y or weights in memory, only `blocks`.
        self.loss = loss
        self.l1_strength = l1_strength
        self.blocks = blocks
        self.classes = classes
        self.class_weights = class_weights
        self._data_loss = copy.copy(loss)
        self._data_loss.l2_strength = 0.0

    @property
    def n_features(self) -> int:
        return self.blocks.n_features

    @property
    def dtype(self) -> np.dtype:
        return self.class_weights.dtype

    def _sum(self, coef: np.ndarray, order: int, vector: np.ndarray | None = None) -> np.ndarray:
        terms = functools.partial(
            _block_terms,
            coef=coef,
            loss=self._data_loss,
            classes=self.classes,
            class_weights=self.class_weights,
            order=order,
            vector=vector,
        )
        size = {0: 1, 1: 1 + coef.size, 2: coef.size + coef.size**2}.get(order, coef.size)
        return self.blocks.reduce(terms, size, coef.dtype)

    def _add_l2(self, product: np.ndarray, vector: np.ndarray) -> np.ndarray:
        product[: self.n_weights] += self.loss.l2_strength * vector[: self.n_weights]
        return product

    def loss_value(self, coef: np.ndarray) -> float:
        """The smooth objective only (no gradient): the per-epoch validation loss."""
        weights = coef[: self.n_weights]
        return float(self._sum(coef, 0)[0]) + 0.5 * self.loss.l2_strength * float(weights @ weights)

    def objective_gradient(self, coef: np.ndarray, keep_curvature: bool = False) -> tuple[float, np.ndarray]:
        """As in memory; no curvature is kept (`Problem.hessian` makes the Hessian in a pass of its own)."""
        terms = self._sum(coef, 1)
        weights = coef[: self.n_weights]
        l2 = self.loss.l2_strength
        grad = terms[1:]
        grad[: self.n_weights] += l2 * weights
        return float(terms[0]) + 0.5 * l2 * float(weights @ weights) + self.l1_penalty(coef), grad

    def gradient_hessian(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        terms = self._sum(coef, 2)
        grad = terms[: coef.size]
        grad[: self.n_weights] += self.loss.l2_strength * coef[: self.n_weights]
        hessian = terms[coef.size :].reshape(coef.size, coef.size)
        return grad, self.loss.penalise_hessian(hessian, self.n_features)

    def objective_gradient_hessian_product(self, coef: np.ndarray) -> tuple[float, np.ndarray, HessianProduct]:
        """As in memory, but each Hessian-vector product is one more pass over the blocks: the per-sample
        curvature is not kept, as only one block is in memory at a time."""
        objective, grad = self.objective_gradient(coef)

        def hessian_product(vector: np.ndarray) -> np.ndarray:
            return self._add_l2(self._sum(coef, 3, vector), vector)

        return objective, grad, hessian_product

    def curvature_bound_product(self, vector: np.ndarray) -> np.ndarray:
        return self._add_l2(self._sum(vector, 4, vector), vector)

    def minibatches(self, rng: np.random.RandomState, batch_size: int) -> Iterator[tuple[np.ndarray, ...]]:
        """Blocks in a random order, rows shuffled within each; weights scaled as in `Problem.minibatches`."""
        dtype = self.class_weights.dtype
        n_samples = self.blocks.n_samples
        for index in rng.permutation(self.blocks.n_blocks):
            X_block, labels = self.blocks.block(int(index), dtype)
            order = rng.permutation(X_block.shape[0])
            X = X_block[order]
            y = class_codes(labels[order], self.classes, dtype)
            weights = self.class_weights[y.astype(np.intp)] * n_samples
            for start in range(0, X.shape[0], batch_size):
                stop = min(start + batch_size, X.shape[0])
                yield X[start:stop], y[start:stop], weights[start:stop] / (stop - start)
