"""A new local SQLite store (`tracking.store._new_local_store`): a copy of MLflow's empty store, which MLflow opens as
a store it made itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from logitlab import config
from logitlab.tracking import store

from .conftest import REPO

# Set per store and per moment: the experiments' times
TIMES = {"creation_time", "last_update_time"}


def rows(db: Path, root: Path) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, with the project's folder written <root> and the experiments' times left out."""
    with sqlite3.connect(db) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        dumped = {}
        for table in tables:
            cursor = connection.execute(f'SELECT * FROM "{table}"')
            names = [column[0] for column in cursor.description]
            dumped[table] = sorted(
                tuple(
                    str(value).replace(str(root), "<root>") if isinstance(value, str) else value
                    for name, value in zip(names, row, strict=True)
                    if not (table == "experiments" and name in TIMES)
                )
                for row in cursor
            )
    return dumped


def test_a_new_local_store_is_mlflows_empty_store_copied_and_opened_as_mlflow_makes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = config.mlflow_config(
        {**yaml.safe_load((REPO / "conf/mlflow/local.yaml").read_text()), "experiment_name": "e"}
    )
    copied, made = tmp_path / "copied", tmp_path / "made"
    for root in (copied, made):
        root.mkdir()
    assert store.connect(cfg, copied) is not None
    (empty,) = (tmp_path / "cache" / "logitlab").glob("mlflow-*-empty-store.db")
    with sqlite3.connect(empty) as connection:
        assert connection.execute("SELECT COUNT(*) FROM experiments").fetchone() == (0,)
    monkeypatch.setattr(store, "_new_local_store", lambda db: None)  # MLflow makes this one, migrations and all
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # MLflow's set_tracking_uri sets it
    assert store.connect(cfg, made) is not None
    ours, mlflows = rows(copied / "mlflow.db", copied), rows(made / "mlflow.db", made)
    assert ours == mlflows
    assert [row[1] for row in ours["experiments"]] == ["Default", "e"]  # Default added by MLflow on opening
