"""SQLAlchemy 1.4 compatibility shim for the MLflow tracking *server* process only.

scripts/server.sh puts this directory on PYTHONPATH of `mlflow server` (and so of its
uvicorn workers); nothing else in the project loads it.

Why: logitlab pins SQLAlchemy<2 (optuna 2.x needs it) while mlflow 3.17.2 declares
``sqlalchemy>=1.4.0,<3`` but evaluates SQLAlchemy-2-only top-level names at import time,
e.g. ``def sql_trace_rollup_rows_exist(engine: sa.Engine)`` in
mlflow/store/db/trace_rollups.py:185, which `mlflow server` imports unconditionally
(mlflow/server/__init__.py:481), so the server dies at startup with
``AttributeError: module 'sqlalchemy' has no attribute 'Engine'``.

SQLAlchemy 2.0 merely re-exports these classes at top level; in 1.4 the same classes
live in submodules. We add the missing aliases (and nothing else). On SQLAlchemy 2.x
this is a no-op.
"""

try:
    import sqlalchemy as _sa
except Exception:  # pragma: no cover - sqlalchemy not installed: nothing to patch
    _sa = None

if _sa is not None and not hasattr(_sa, "Engine"):
    from sqlalchemy.engine import Connection as _Connection
    from sqlalchemy.engine import Engine as _Engine
    from sqlalchemy.engine import Row as _Row
    from sqlalchemy.sql.expression import BinaryExpression as _BinaryExpression
    from sqlalchemy.sql.expression import ColumnElement as _ColumnElement
    from sqlalchemy.sql.expression import Select as _Select
    from sqlalchemy.sql.expression import Update as _Update

    for _name, _obj in {
        "Engine": _Engine,
        "Connection": _Connection,
        "Row": _Row,
        "Select": _Select,
        "Update": _Update,
        "ColumnElement": _ColumnElement,
        "BinaryExpression": _BinaryExpression,
    }.items():
        if not hasattr(_sa, _name):
            setattr(_sa, _name, _obj)
