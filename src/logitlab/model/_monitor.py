"""Per-epoch bookkeeping shared by all solvers: histories, stopping rules, divergence and progress."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from logitlab.errors import DivergenceError, TrialPruned

logger = logging.getLogger("logitlab.model")

# A loss this many times the first one (or above it, when the first is below 1) means divergence.
EXPLOSION_FACTOR = 1e3


@dataclass(frozen=True)
class EpochReporter:
    """Every `every` epochs, a fit reports its validation `score` ("loss" or "accuracy") to `report(epoch,
    value)`, which returns True when the fit should stop there (a sweep's pruner: `sweeps.job`)."""

    every: int
    score: str
    report: Callable[[int, float], bool]


# Set by a sweep job around its fits, so that the pipeline's stages need no parameter for it.
_REPORTER: contextvars.ContextVar[EpochReporter | None] = contextvars.ContextVar("epoch_reporter", default=None)


def current_reporter() -> EpochReporter | None:
    """The reporter fits started here report to (`reporting`), if any."""
    return _REPORTER.get()


@contextlib.contextmanager
def reporting(reporter: EpochReporter) -> Iterator[None]:
    """Fits started inside report to `reporter`, and raise `TrialPruned` when it says to stop."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by more than `tol` for `patience` epochs."""

    patience: int
    tol: float
    best_loss: float = math.inf
    best_coef: np.ndarray | None = None
    epochs_without_improvement: int = 0

    def should_stop(self, val_loss: float, coef: np.ndarray) -> bool:
        if val_loss < self.best_loss - self.tol:
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        if val_loss < self.best_loss:
            self.best_loss, self.best_coef = val_loss, coef.copy()
        return self.epochs_without_improvement >= self.patience


@dataclass
class TrainingMonitor:
    """Called once per epoch with a consistent (coef, objective, optimality) triple.

    Records the training objective and the validation loss, raises `DivergenceError` on a non-finite or
    exploding objective, and decides whether to stop (tolerance reached or early stopping).
    """

    max_iter: int
    tol: float
    divergence_hint: str
    validation_loss: Callable[[np.ndarray], float] | None = None
    # the validation accuracy at coef, for a reporter that ranks by it (fits in memory only)
    validation_accuracy: Callable[[np.ndarray], float] | None = None
    early_stopping: EarlyStopping | None = None
    verbose: int = 0
    # Stop (converged) when the recorded loss has stalled: the running-loss rule of the stochastic solvers.
    stall: EarlyStopping | None = None
    cost_history: list[float] = field(default_factory=list)
    val_history: list[float] = field(default_factory=list)
    converged: bool = False
    stopped_early: bool = False
    optimality: float = math.inf
    _progress: tqdm | None = None
    _reporter: EpochReporter | None = field(default_factory=_REPORTER.get)

    def __post_init__(self) -> None:
        if self.verbose > 0 and sys.stderr.isatty() and not os.environ.get("CI"):
            self._progress = tqdm(total=self.max_iter, desc="epochs", unit="epoch", leave=False)

    @property
    def n_iter(self) -> int:
        return len(self.cost_history)

    def end_epoch(self, coef: np.ndarray, objective: float, optimality: float) -> bool:
        """Record one epoch; return True when training should stop."""
        epoch = self.n_iter + 1
        self._check_divergence(epoch, coef, objective)
        self.cost_history.append(objective)
        self.optimality = optimality
        if self.validation_loss is not None:
            self.val_history.append(self.validation_loss(coef))
        self._report(epoch, objective)
        if self._reporter is not None and epoch % self._reporter.every == 0:
            self._report_to(self._reporter, epoch, coef)
        if (self.tol > 0 and optimality < self.tol) or (
            self.stall is not None and self.stall.should_stop(objective, coef)
        ):
            self.converged = True
            return True
        if self.early_stopping is not None and self.early_stopping.should_stop(self.val_history[-1], coef):
            self.stopped_early = True
            return True
        return False

    def _report_to(self, reporter: EpochReporter, epoch: int, coef: np.ndarray) -> None:
        """The validation score at this epoch to the reporter; stopped here (`TrialPruned`) when it says so. A
        fit with no validation data (cross-validation's refit) has nothing to report."""
        score = self.validation_accuracy if reporter.score == "accuracy" else self.validation_loss
        if score is None:
            return
        value = self.val_history[-1] if reporter.score == "loss" else score(coef)
        if reporter.report(epoch, value):
            self.close()
            raise TrialPruned(epoch, value, list(self.cost_history), list(self.val_history))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()

    def _check_divergence(self, epoch: int, coef: np.ndarray, objective: float) -> None:
        initial = self.cost_history[0] if self.cost_history else objective
        exploded = objective > EXPLOSION_FACTOR * max(initial, 1.0)
        # One call for the coefficients: their squared norm is finite exactly when no coefficient is inf, NaN or
        # beyond 1e154, any of which means divergence.
        if not math.isfinite(objective) or exploded or not math.isfinite(float(coef @ coef)):
            self.close()
            raise DivergenceError(f"training diverged at epoch {epoch} (loss={objective:.6g}): {self.divergence_hint}")

    def _report(self, epoch: int, objective: float) -> None:
        if self._progress is not None:
            self._progress.update(1)
            self._progress.set_postfix(loss=f"{objective:.6g}")
        every = max(1, self.max_iter // 10)
        if self.verbose > 0 and (epoch % every == 0 or epoch == 1):
            extra = f", val_loss={self.val_history[-1]:.6g}" if self.val_history else ""
            logger.info(
                "epoch %d/%d: loss=%.6g, optimality=%.3g%s",
                epoch,
                self.max_iter,
                objective,
                self.optimality,
                extra,
            )
