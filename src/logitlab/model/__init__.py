"""A from-scratch binary logistic regression with scikit-learn's objective and several solvers."""

from logitlab.model._chunked import ParquetChunks
from logitlab.model.estimator import LogisticRegression

__all__ = ["LogisticRegression", "ParquetChunks"]
