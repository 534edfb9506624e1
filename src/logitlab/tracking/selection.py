"""Which child of a sweep is best: the sweep metric in its direction, ties to the better-calibrated model."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from logitlab import config

if TYPE_CHECKING:
    from mlflow.entities import Run


def best_run(runs: list[Run], sweep: config.SweepConfig) -> Run | None:
    """The best FINISHED run that has the metric, never a pruned one; ties (common for accuracy) go to the lower
    validation log loss (the cross-validated one when ranking by a cross-validation score), then to the earlier
    job."""
    finished = [r for r in runs if r.info.status == "FINISHED" and sweep.metric in r.data.metrics and not pruned(r)]
    return min(finished, key=lambda run: rank_key(run, sweep), default=None)


def pruned(run: Run) -> bool:
    """A child its search's pruner stopped (`tracking.results.log_pruned`)."""
    from logitlab.tracking.results import PRUNED_STEP_TAG

    return PRUNED_STEP_TAG in run.data.tags


def rank_key(run: Run, sweep: config.SweepConfig) -> tuple[float, float, int]:
    """Sorts best first."""
    sign = -1 if sweep.direction == "maximize" else 1
    value = run.data.metrics.get(sweep.metric, math.nan)
    tie_break = "cv_log_loss_mean" if sweep.metric.startswith("cv_") else "val_log_loss"
    return (
        sign * value if math.isfinite(value) else math.inf,
        run.data.metrics.get(tie_break, math.inf),
        run.info.start_time,
    )
