"""A from-scratch logistic regression (binary, and multinomial for K > 2 classes) with scikit-learn's objective
and several solvers.

The estimator and the streamed data source are imported when first asked for (PEP 562): importing a submodule
(`model._params`, what the config layer validates `model.*` with) does not bring in scikit-learn, scipy or pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from logitlab.model._chunked import ParquetChunks
    from logitlab.model.estimator import LogisticRegression

__all__ = ["LogisticRegression", "ParquetChunks"]


def __getattr__(name: str) -> Any:
    if name == "LogisticRegression":
        from logitlab.model.estimator import LogisticRegression

        return LogisticRegression
    if name == "ParquetChunks":
        from logitlab.model._chunked import ParquetChunks

        return ParquetChunks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
