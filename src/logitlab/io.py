"""File I/O at the edges: atomic writes, so a killed process never leaves a half-written output."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from logitlab.errors import DataError

# Read once at import (single-threaded then): mkstemp makes 0600 files, outputs get the usual 0666 & ~umask.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_TMP_SUFFIX = re.compile(r"(\d+)\.[a-z0-9_]{8}\.tmp")  # <pid>.<mkstemp's 8 random chars>.tmp


def _remove_orphans(target: Path) -> None:
    """Remove temp files of `target` left by writers that were killed (SIGKILL cannot run `finally`)."""
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        match = _TMP_SUFFIX.fullmatch(tmp.name[len(target.name) + 2 :])
        if match is None:
            continue
        try:
            os.kill(int(match[1]), 0)
        except ProcessLookupError:
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
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"'{file}' not found; run the stage that writes it (`dvc repro`)")
    try:
        return pd.read_parquet(file, engine="pyarrow")
    except (OSError, ValueError) as err:
        raise DataError(f"'{file}' is not a readable parquet file ({' '.join(str(err).split())})") from None


def write_csv(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")
