"""Regularisation paths across a sweep's jobs (`model.warm_start: true`): a fit starts from the nearest
finished solution of the same problem at another C, as LogisticRegressionCV starts each C from its
neighbour's. The solutions are kept in this process, so the jobs a launcher runs in one process (the local
launcher, taking a grid's jobs in order of C; a joblib worker) share them; a job in a process of its own
starts cold.

A problem is its training data and every model parameter but C. The data is a file of the shared stages'
cache (`<root>/.cache/logitlab/<stage>/<key>/`: content-addressed, written once), or of a fold there, named
by its path, size and modification time; the refit and each cross-validation fold are problems of their own.
A start moves where the solver begins, not the optimum it stops at (the objective is convex, and with an L2
penalty strictly so), so a job's result is the same to the solver's tolerance whichever jobs ran before it;
`train.model_params` allows `warm_start` only for fits that run to a tolerance.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Problems kept (least recently used dropped) and solutions per problem: a sweep over a few data and config
# choices with tens of Cs each, at a few kB per solution.
MAX_PROBLEMS = 64
MAX_SOLUTIONS = 64

Solution = tuple[np.ndarray, np.ndarray]  # coef_ and intercept_, as the estimator has them

_solutions: OrderedDict[str, dict[float, Solution]] = OrderedDict()


def problem_key(data: Path, params: Mapping[str, Any]) -> str | None:
    """The problem fitting `params` on the file `data` poses, whatever its C; None when `params` do not ask
    for warm starts."""
    if not params.get("warm_start"):
        return None
    stat = data.stat()
    others = {name: value for name, value in params.items() if name != "C"}
    return json.dumps([str(data.resolve()), stat.st_size, stat.st_mtime_ns, others], sort_keys=True, default=str)


def nearest(key: str | None, C: float) -> dict[str, np.ndarray]:
    """The fit's keyword arguments that start it from the solution at the C nearest to `C` on a log scale
    (the smaller C of two as near), or none."""
    solutions = _solutions.get(key) if key is not None else None
    if not solutions:
        return {}
    _solutions.move_to_end(key)  # type: ignore[arg-type]
    chosen = min(solutions, key=lambda known: (abs(math.log(known) - math.log(C)), known))
    coef, intercept = solutions[chosen]
    return {"coef_init": coef, "intercept_init": intercept}


def remember(key: str | None, C: float, coef: np.ndarray, intercept: np.ndarray) -> None:
    """Keep a finished fit's solution for the problem's later fits."""
    if key is None:
        return
    solutions = _solutions.setdefault(key, {})
    _solutions.move_to_end(key)
    solutions[float(C)] = (coef.copy(), intercept.copy())
    while len(solutions) > MAX_SOLUTIONS:
        del solutions[next(iter(solutions))]
    while len(_solutions) > MAX_PROBLEMS:
        _solutions.popitem(last=False)


def forget() -> None:
    """Drop every kept solution (tests compare warm and cold fits in one process)."""
    _solutions.clear()
