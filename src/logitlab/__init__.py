"""logitlab: a from-scratch logistic regression in a DVC pipeline, configured by Hydra, tracked in MLflow."""

from logitlab.model import LogisticRegression

__all__ = ["LogisticRegression"]
