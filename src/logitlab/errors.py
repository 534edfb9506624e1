"""The exceptions a user can cause.

Every user mistake is a `LogitlabError` (a `ValueError`, so scikit-learn conventions hold). Entry points
catch it and print its message as one line; anything else is a bug and keeps its traceback.
"""


class LogitlabError(ValueError):
    """A mistake in the user's input: its message names the key, file or column and what is expected."""


class ConfigError(LogitlabError):
    """A config key is unknown, missing, or has a value of the wrong type or range."""


class DataError(LogitlabError):
    """A data file or data set cannot be used as asked."""


class ModelFileError(LogitlabError):
    """A saved model is missing, truncated, tampered with or of another format."""


class DivergenceError(LogitlabError):
    """Training produced a non-finite or exploding loss."""


class TrackingError(LogitlabError):
    """The MLflow tracking store cannot be reached or used."""


class TrackingLostError(TrackingError):
    """The tracking server stopped answering during a run and was still away after MLflow's HTTP retries."""
