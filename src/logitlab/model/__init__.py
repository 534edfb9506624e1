"""A from-scratch logistic regression (binary, and multinomial for K > 2 classes) with scikit-learn's objective
and several solvers."""

from logitlab.model._chunked import ParquetChunks
from logitlab.model.estimator import LogisticRegression

__all__ = ["LogisticRegression", "ParquetChunks"]
