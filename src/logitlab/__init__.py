"""logitlab: a from-scratch logistic regression in a DVC pipeline, configured by Hydra, tracked in MLflow."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logitlab.analysis import compare, load_run
    from logitlab.model import LogisticRegression, ParquetChunks

__all__ = ["LogisticRegression", "ParquetChunks", "compare", "load_run"]


def __getattr__(name: str) -> Any:
    """Each name imports its module when first used: `import logitlab.sweep` (a sweep's start-up) needs neither
    the estimator (scikit-learn) nor `load_run` (mlflow)."""
    if name in ("LogisticRegression", "ParquetChunks"):
        from logitlab import model

        return getattr(model, name)
    if name in ("compare", "load_run"):
        from logitlab import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module 'logitlab' has no attribute {name!r}")
