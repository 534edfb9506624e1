"""Cross-validation's fold fits reporting to a pruned search as one fit: every `report_every` epochs the trial
gets the mean over the folds of their held-out score at that epoch (`stages.train.cross_validate`, which fits
the folds in threads of their own: numpy's kernels release the GIL)."""

from __future__ import annotations

import functools
import threading

from logitlab.model._monitor import EpochReporter

# How often a fold waiting for the others looks again without being woken: a safety net, since every change
# of state wakes the waiting folds.
POLL_SECONDS = 1.0


class FoldStopped(Exception):  # noqa: N818  (an event, not an error of the fold's own)
    """Raised in a fold waiting for the others when another fold failed: the failure is the job's error."""


class FoldsInLockstep:
    """The folds' per-epoch reports, joined: a fold's `report(epoch, value)` waits until every fold still
    fitting has reported that epoch; whichever fold completes the round reports the mean to `outer` once, and
    every fold gets its answer (stop or go on).

    A fold that ends (it converged, stopped early or reached max_iter) leaves with its final held-out score,
    which stands for it in every later mean: the score its cross-validation result will have, so the means
    move towards the job's `cv_*_mean`, and every mean averages all k folds (a fold ending before its first
    report would otherwise be missing from it). A fold that raises leaves as failed: the others stop at their
    next report (`FoldStopped`) and the caller raises the fold's error.
    """

    def __init__(self, outer: EpochReporter, n_folds: int) -> None:
        self.outer = outer
        self._changed = threading.Condition()
        self._values: list[float | None] = [None] * n_folds
        self._reported_at = [0] * n_folds
        self._fitting = set(range(n_folds))
        self._decided: dict[int, bool] = {}
        self._failed = False
        self.pruned: tuple[int, float] | None = None  # the epoch the trial was stopped at, and its mean there

    def reporter(self, fold: int) -> EpochReporter:
        """What fold `fold`'s fit reports to (`model._monitor.reporting`, set inside the fold's thread)."""
        return EpochReporter(self.outer.every, self.outer.score, functools.partial(self._report, fold))

    def leave(self, fold: int, final_value: float | None, failed: bool = False) -> None:
        """Fold `fold` fits no more: it ended with `final_value` (None: it has none), or it `failed`."""
        with self._changed:
            self._fitting.discard(fold)
            if final_value is not None:
                self._values[fold] = final_value
            self._failed = self._failed or failed
            if self._fitting:
                self._decide(max(self._reported_at[other] for other in self._fitting))
            self._changed.notify_all()

    def _report(self, fold: int, epoch: int, value: float) -> bool:
        with self._changed:
            self._values[fold], self._reported_at[fold] = value, epoch
            self._decide(epoch)
            while epoch not in self._decided:
                if self._failed:
                    raise FoldStopped(f"fold {fold} stopped at epoch {epoch}: another fold failed")
                self._changed.wait(POLL_SECONDS)
            return self._decided[epoch]

    def _decide(self, epoch: int) -> None:
        """With the lock held: once every fold still fitting has reported `epoch`, the mean goes to `outer`."""
        waiting_for = [other for other in self._fitting if self._reported_at[other] != epoch]
        if epoch == 0 or self._failed or epoch in self._decided or waiting_for:
            return
        values = [value for value in self._values if value is not None]
        mean = sum(values) / len(values)
        try:
            stop = self.outer.report(epoch, mean)
        except BaseException:
            self._failed = True
            self._changed.notify_all()
            raise
        self._decided[epoch] = stop
        if stop:
            self.pruned = (epoch, mean)
        self._changed.notify_all()
