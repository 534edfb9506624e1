"""Which child of a sweep is best: the sweep metric in its direction, ties to the better-calibrated model; with
several objectives, by the champion rule (`sweep.champion`) over them and their Pareto front."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from logitlab import config

if TYPE_CHECKING:
    import numpy as np
    from mlflow.entities import Run


def best_run(runs: list[Run], sweep: config.SweepConfig) -> Run | None:
    """The best FINISHED run that has every objective, never a pruned one. `first` (and one objective): the best
    by the first objective, ties to the next objectives in order, then to the lower validation log loss (the
    cross-validated one when ranking by a cross-validation score), then to the earlier job. `balanced`: the
    Pareto front's run nearest the utopia point (`balanced`)."""
    if sweep.several and sweep.champion == "balanced":
        return balanced(pareto_front(runs, sweep), sweep)
    return min(ranked(runs, sweep), key=lambda run: rank_key(run, sweep), default=None)


def ranked(runs: list[Run], sweep: config.SweepConfig) -> list[Run]:
    """The runs a champion may come from: FINISHED, not pruned, with every objective."""
    return [
        r
        for r in runs
        if r.info.status == "FINISHED" and all(m in r.data.metrics for m in sweep.metrics) and not pruned(r)
    ]


def pruned(run: Run) -> bool:
    """A child its search's pruner stopped (`tracking.results.log_pruned`)."""
    from logitlab.tracking.results import PRUNED_STEP_TAG

    return PRUNED_STEP_TAG in run.data.tags


def rank_key(run: Run, sweep: config.SweepConfig) -> tuple[float, ...]:
    """Sorts best first: each objective in order (in its direction), then the tie-breaks."""
    tie_break = "cv_log_loss_mean" if sweep.metric.startswith("cv_") else "val_log_loss"
    return (
        *costs(run, sweep),
        run.data.metrics.get(tie_break, math.inf),
        run.info.start_time,
    )


def costs(run: Run, sweep: config.SweepConfig) -> list[float]:
    """Each objective as a value to minimise (a maximised one negated); a missing or NaN value is the worst."""
    costs = []
    for metric, direction in zip(sweep.metrics, sweep.directions, strict=True):
        value = run.data.metrics.get(metric, math.nan)
        costs.append((-value if direction == "maximize" else value) if math.isfinite(value) else math.inf)
    return costs


def non_dominated(costs: np.ndarray) -> np.ndarray:
    """Which rows of `costs` (one row per point, every column minimised) no other row dominates: another is as
    good in every column and better in one."""
    import numpy as np

    as_good = np.all(costs[None, :, :] <= costs[:, None, :], axis=2)  # [i, j]: j is as good as i everywhere
    better = np.any(costs[None, :, :] < costs[:, None, :], axis=2)
    return np.asarray(~np.any(as_good & better, axis=1))


def pareto_front(runs: list[Run], sweep: config.SweepConfig) -> list[Run]:
    """The non-dominated runs among those a champion may come from (`ranked`), best first by the `first` rule."""
    import numpy as np

    candidates = ranked(runs, sweep)
    if not candidates:
        return []
    keep = non_dominated(np.array([costs(run, sweep) for run in candidates], dtype=float))
    front = [run for run, kept in zip(candidates, keep, strict=True) if kept]
    return sorted(front, key=lambda run: rank_key(run, sweep))


def balanced(front: list[Run], sweep: config.SweepConfig) -> Run | None:
    """The front's run nearest the utopia point (the best value of each objective over the front), every
    objective min-max normalised over the front so that none weighs by its units; ties by the `first` rule."""
    import numpy as np

    if not front:
        return None
    matrix = np.array([costs(run, sweep) for run in front], dtype=float)
    low, high = matrix.min(axis=0), matrix.max(axis=0)
    spread = np.where(high > low, high - low, 1.0)
    distance = np.linalg.norm((matrix - low) / spread, axis=1)
    order = sorted(range(len(front)), key=lambda i: (round(float(distance[i]), 12), rank_key(front[i], sweep)))
    return front[order[0]]
