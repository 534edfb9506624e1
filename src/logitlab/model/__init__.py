"""A from-scratch binary logistic regression with scikit-learn's objective and several solvers."""

from logitlab.model.estimator import LogisticRegression

__all__ = ["LogisticRegression"]
