"""File I/O at the edges: atomic writes, so a killed process never leaves a half-written output."""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from logitlab.errors import DataError

if TYPE_CHECKING:  # pandas and pyarrow are imported where a table is read or written: JSON callers skip them
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

# Read once at import (single-threaded then): mkstemp makes 0600 files, outputs get the usual 0666 & ~umask.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
# <pid>.<mkstemp's 8 random chars>.tmp, and .old for the folder `replaced_folder` moves aside
_TMP_SUFFIX = re.compile(r"(\d+)\.[a-z0-9_]{8}\.(?:tmp|old)")
KEPT_FRAMES = 4  # `read_parquet_kept`: a job's train, val and test, and one more
T = TypeVar("T")
FileVersion = tuple[int, int, int, int]  # device, inode, modification time, size (`file_version`)


def _remove_orphans(target: Path) -> None:
    """Remove temp files and folders of `target` left by writers that were killed (SIGKILL cannot run
    `finally`)."""
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*"):
        match = _TMP_SUFFIX.fullmatch(tmp.name[len(target.name) + 2 :])
        if match is None:
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        except OSError:
            pass  # alive (another user's process)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    On any exception the temporary file is removed and `path` keeps its previous content.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def replaced_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path` and whatever was in it.

    For outputs that are folders of a varying set of files (one per fold, one per class): files of an
    earlier run must not linger. Two renames, so a kill between them leaves the new folder under its
    temporary name and `path` missing, never a mix of old and new files.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
    old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old")
    try:
        yield tmp
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def link_or_copy(source: str, target: str) -> None:
    """A hard link where the file system allows one (no bytes copied), else a copy; `shutil.copytree`'s
    `copy_function` for a folder made of links."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def link_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """`target` the same file as `source` (`link_or_copy`), put in place by a rename as `atomic_path` does (a
    link's mode is its source's: no chmod, which would change both)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")  # as mkstemp names them
    try:
        link_or_copy(str(source), str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def link_folder(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """`target` a folder of links to `source`'s files, replaced whole as `replaced_folder` does."""
    with replaced_folder(target) as tmp:
        shutil.copytree(source, tmp, copy_function=link_or_copy, dirs_exist_ok=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON with sorted keys and a final newline, so equal content gives equal bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"'{file}' not found; run the stage that writes it (`dvc repro`)")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"'{file}' is not valid JSON ({err}); rerun `dvc repro -f` to rebuild it") from None


def write_parquet(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """One row group, whatever the size: several row groups are how a file says it is streamed. The frame is
    kept for this process's readers of the file (`read_parquet`) where the file would give it back as it is
    (`_as_read`): a sweep's first job reads what its preprocess has just written, the folds and the splits,
    ~0.2 s of reading on a 30k-row CSV."""
    as_read = _as_read(frame)
    with atomic_path(path) as tmp:
        if as_read is None:
            frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd", row_group_size=max(1, len(frame)))
        else:
            import pyarrow.parquet as pq

            pq.write_table(_numeric_table(frame), tmp, compression="zstd", row_group_size=max(1, len(frame)))
    if as_read is not None:
        _keep_written(file_version(path), as_read)


def _numeric_table(frame: pd.DataFrame) -> pa.Table:
    """A frame of numbers (`_as_read`) as an arrow table, NaN written as missing as pandas writes it, without
    pandas' schema metadata, which a read does not need for such a frame: pandas' conversion took ~10 ms a file
    of 134 columns (a cross-validated preprocess writes 13), most of it looking for NaN column by column."""
    import numpy as np
    import pyarrow as pa

    columns = []
    for _, column in frame.items():
        values = column.to_numpy()
        columns.append(pa.array(values, from_pandas=values.dtype.kind == "f" and bool(np.isnan(values).any())))
    return pa.Table.from_arrays(columns, names=[str(name) for name in frame.columns])


# What `write_parquet` wrote in this process, by the file's version (`file_version`: a hard link is the same
# file, and a file written again is another): the last few, within a memory budget, for the readers that follow.
KEPT_WRITTEN, KEPT_WRITTEN_BYTES = 16, 1 << 29
_written: OrderedDict[FileVersion, tuple[pd.DataFrame, int]] = OrderedDict()  # each frame with its bytes
_written_lock = threading.Lock()  # `write_parquets` writes from two threads


def _as_read(frame: pd.DataFrame) -> pd.DataFrame | None:
    """`frame` as reading its file gives it back (a new frame over the same data, with the index a read makes),
    or None where a read could differ: only numbers and booleans in numpy dtypes (a read gives text, categories
    and nullable columns its own types), string column names in pandas' `str` dtype, no `attrs`."""
    import numpy as np
    import pandas as pd

    columns = frame.columns
    if (
        frame.attrs
        or isinstance(columns, pd.MultiIndex)
        or columns.dtype != pd.Index(["name"]).dtype
        or not columns.is_unique
    ):
        return None
    if not all(
        isinstance(t, np.dtype) and (t.kind in "biu" or (t.kind == "f" and t.itemsize >= 4)) for t in frame.dtypes
    ):
        return None
    return frame.reset_index(drop=True)  # a new frame (copy-on-write): the writer's later changes stay its own


def _keep_written(version: FileVersion, frame: pd.DataFrame) -> None:
    """Sized once: pandas sums a frame's bytes column by column (~1 ms at 134 columns), and summing every kept
    frame at each write, in the writer threads and holding the GIL, cost a CV sweep's first job ~0.3 s."""
    size = _bytes(frame)
    if size > KEPT_WRITTEN_BYTES:
        return
    with _written_lock:
        _written[version] = (frame, size)
        while len(_written) > KEPT_WRITTEN or sum(kept for _, kept in _written.values()) > KEPT_WRITTEN_BYTES:
            _written.popitem(last=False)


def _bytes(frame: pd.DataFrame) -> int:
    return int(frame.memory_usage(index=False).sum())


def write_parquets(frames: Mapping[Path, pd.DataFrame]) -> None:
    """`write_parquet` for each file, two at a time: pyarrow encodes and writes outside the GIL. A
    cross-validated preprocess writes 13 files: a 30k-row CSV's took 0.41 s one after another, 0.26 s two at a
    time."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="write-parquet")
    try:
        for written in [pool.submit(write_parquet, path, frame) for path, frame in frames.items()]:
            written.result()
    finally:  # a failed write or Ctrl-C: the files not begun are not written, the ones begun end (atomically)
        pool.shutdown(wait=True, cancel_futures=True)


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The file's frame: the one this process wrote to it, if it kept it (`write_parquet`), else read."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"'{file}' not found; run the stage that writes it (`dvc repro`)")
    with _written_lock:
        written = _written.get(file_version(file))
    if written is not None:
        return written[0].copy(deep=False)  # the caller's own frame: what it changes, it changes in its copy
    import pandas as pd

    try:
        return pd.read_parquet(file, engine="pyarrow")
    except (OSError, ValueError) as err:
        raise DataError(f"'{file}' is not a readable parquet file ({' '.join(str(err).split())})") from None


def file_version(path: str | os.PathLike[str]) -> FileVersion:
    """What tells one version of a file from the next: every write here is a rename of a new file, so a file
    written again has another inode (and time, and usually size), while a hard link to it is the same file. The
    key of the per-process caches of what a file holds."""
    stat = Path(path).stat()
    return stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size


def _per_version(maxsize: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """`function(path, *args)` kept for the process by the file's version (`file_version`), for the last
    `maxsize` calls; a missing file goes to `function` (its one-line error)."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        @functools.lru_cache(maxsize=maxsize)
        def kept(path: Path, version: FileVersion, *args: Any) -> T:
            return function(path, *args)

        @functools.wraps(function)
        def per_version(path: str | os.PathLike[str], *args: Any) -> T:
            file = Path(path)
            if not file.is_file():
                return function(file, *args)
            return kept(file.resolve(), file_version(file), *args)

        per_version.cache_info = kept.cache_info  # type: ignore[attr-defined]
        return per_version

    return decorate


@_per_version(KEPT_FRAMES)
def read_parquet_kept(path: str | os.PathLike[str]) -> pd.DataFrame:
    """`read_parquet`, the frame kept for the next reader of the same version of the file (its inode, time and
    size: an atomic rewrite is a new file) in this process: a sweep's jobs read the same outputs of the shared
    stages, ~25 ms a file on a 30k-row CSV's features. The last `KEPT_FRAMES` files; readers must not modify
    the frame."""
    return read_parquet(path)


def _parquet_file(path: str | os.PathLike[str]) -> pq.ParquetFile:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"'{file}' not found; run the stage that writes it (`dvc repro`)")
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(file)
    except (OSError, ValueError) as err:
        raise DataError(f"'{file}' is not a readable parquet file ({' '.join(str(err).split())})") from None


@_per_version(64)
def row_groups(path: str | os.PathLike[str]) -> int:
    """Number of row groups: more than one means the data is streamed, one row group at a time. Kept per file
    version: each job of a sweep asks it of the same five files (~1 ms a footer of 134 columns)."""
    return _parquet_file(path).num_row_groups


def column_types(path: str | os.PathLike[str]) -> dict[str, str]:
    """The file's columns and their arrow types (as text, e.g. "double"), from its footer alone; pandas' index
    columns left out."""
    schema = _parquet_file(path).schema_arrow
    return {field.name: str(field.type) for field in schema if not field.name.startswith("__index_level_")}


def head(path: str | os.PathLike[str], rows: int) -> pd.DataFrame:
    """The first `rows` rows, reading no more of the file than that; kept for the process by the file's version
    (`file_version`): a tracked sweep's every job logs its dataset's first rows, ~10 ms a read of a 30k-row
    file's one row group."""
    return _head_of(path, rows).copy()


@_per_version(4)
def _head_of(path: Path, rows: int) -> pd.DataFrame:
    batch = next(_parquet_file(path).iter_batches(batch_size=rows), None)
    return batch.to_pandas() if batch is not None else read_parquet(path).head(0)


def read_row_groups(path: str | os.PathLike[str], columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The file's row groups as frames, one at a time (memory bounded by the largest row group)."""
    import pyarrow as pa

    file = _parquet_file(path)
    for index in range(file.num_row_groups):
        table = file.read_row_group(index, columns=columns)
        frame = table.to_pandas()
        del table
        pa.default_memory_pool().release_unused()
        yield frame


class ChunkWriter:
    """Appends frames to a parquet file, one row group each, refusing a column whose type changes."""

    def __init__(self, path: Path, label: str) -> None:
        self.path, self.label = path, label
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        elif not table.schema.equals(self.writer.schema, check_metadata=False):
            expected = {field.name: field.type for field in self.writer.schema}
            for field in table.schema:
                if expected.get(field.name) != field.type and not (
                    pa.types.is_null(field.type) and field.name in expected  # all missing in this chunk
                ):
                    raise DataError(
                        f"column '{field.name}' of {self.label} changes type between chunks: "
                        f"{expected.get(field.name)} up to row {self.rows}, then {field.type}; "
                        "declare its non-numeric markers missing (data.na_values), drop it, or raise data.chunk_rows"
                    )
            if table.schema.names != self.writer.schema.names:
                raise DataError(f"the columns of {self.label} change between chunks at row {self.rows}")
            table = table.cast(self.writer.schema)
        self.writer.write_table(table, row_group_size=len(frame))
        self.rows += len(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def chunk_writer(path: str | os.PathLike[str], label: str | None = None) -> Iterator[ChunkWriter]:
    """A `ChunkWriter` on a temporary file renamed over `path` once all chunks are written."""
    with atomic_path(path) as tmp:
        writer = ChunkWriter(tmp, label or f"'{path}'")
        try:
            yield writer
        finally:
            writer.close()
        if writer.writer is None:
            raise DataError(f"no rows to write to '{path}'")


FLOAT_FORMAT = "%.10g"  # 10 digits: the last bits of a fit differ by CPU (`stages.train.portable`)


def write_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """The frame without its index, floats at `FLOAT_FORMAT` and missing values empty: pandas' `to_csv`, whose
    bytes these are (tests/test_stages.py), formatted here for frames of numbers and strings. pandas' writer costs
    ~2 ms a file whatever its size, and a sweep job writes twelve, most of a few rows."""
    cells = _csv_cells(frame)
    with atomic_path(path) as tmp:
        if cells is None:
            frame.to_csv(tmp, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")
            return
        header = [str(name) for name in frame.columns]
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            if len(header) > 1 and not any(map(_QUOTED.search, header)) and cells.unquoted:
                # nothing to quote: the rows joined, as csv's writer would write them (in half its time)
                fh.write(",".join(header) + "\n")
                fh.writelines(line + "\n" for line in map(",".join, zip(*cells.columns, strict=True)))
                return
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(zip(*cells.columns, strict=True))


_QUOTED = re.compile(r'[",\r\n]')  # what makes csv's writer (QUOTE_MINIMAL) quote a cell


@dataclass(frozen=True)
class _Cells:
    columns: list[list[str]]
    unquoted: bool  # no cell holds what csv's writer quotes (numbers never do; text is checked)


def _csv_cells(frame: pd.DataFrame) -> _Cells | None:
    """Each column's cells as pandas writes them, or None for a column of another kind (pandas writes it)."""
    import numpy as np
    import pandas as pd

    if frame.shape[1] == 0:  # rows of nothing: pandas writes an empty line for each
        return None
    columns, unquoted = [], True
    for index in range(frame.shape[1]):
        column = frame.iloc[:, index]
        kind = column.dtype.kind if isinstance(column.dtype, np.dtype) else None
        if kind == "f":
            columns.append(["" if value != value else FLOAT_FORMAT % value for value in column.tolist()])
        elif kind is not None and kind in "iub":
            columns.append([str(value) for value in column.tolist()])
        elif kind == "O" or isinstance(column.dtype, pd.StringDtype):
            values = column.tolist()
            if not all(type(value) is str for value in values):  # missing values, or objects
                return None
            columns.append(values)
            unquoted = unquoted and not any(map(_QUOTED.search, set(values)))  # a few labels in many rows
        else:  # pandas' other kinds (nullable, categorical, dates)
            return None
    return _Cells(columns, unquoted)
