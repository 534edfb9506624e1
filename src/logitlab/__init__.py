"""logitlab: a from-scratch logistic regression in a DVC pipeline, configured by Hydra, tracked in MLflow."""

from typing import Any

from logitlab.model import LogisticRegression, ParquetChunks

__all__ = ["LogisticRegression", "ParquetChunks", "compare", "load_run"]


def __getattr__(name: str) -> Any:
    """`logitlab.load_run` / `logitlab.compare` import mlflow only when first used."""
    if name in ("compare", "load_run"):
        from logitlab import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'logitlab' has no attribute {name!r}")
