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


class TrialPruned(Exception):  # noqa: N818  (optuna's name for the same event)
    """The sweep's pruner stopped this fit at `step` (an epoch) where its reported value was `value`: not a
    failure, so not a `LogitlabError`. It carries the loss curves up to that epoch for the job's run."""

    def __init__(self, step: int, value: float, cost_history: list[float], val_history: list[float]) -> None:
        super().__init__(f"pruned at epoch {step} ({value:.6g})")
        self.step, self.value = step, value
        self.cost_history, self.val_history = cost_history, val_history

    def __reduce__(self) -> tuple[type["TrialPruned"], tuple[int, float, list[float], list[float]]]:
        """Rebuilt from its fields when it crosses to another process (the helper logs a pruned job's run)."""
        return type(self), (self.step, self.value, self.cost_history, self.val_history)
