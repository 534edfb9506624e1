"""The estimator's hyperparameters: their names, defaults and checks, in one place and without scikit-learn.

`LogisticRegression` takes its signature's defaults from `DEFAULTS` and validates with `validate`; the config layer
validates `model.*` with the same function before the job imports the maths (scikit-learn, scipy, pyarrow), so a
bad value is refused in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

from logitlab.errors import LogitlabError

PENALTIES = (None, "l2", "l1", "elasticnet")
SOLVERS = ("gd", "minibatch", "sgd", "newton", "newton-cg", "lbfgs", "auto")
BATCH_SOLVERS = ("minibatch", "sgd")  # an epoch is many steps on batches of rows
FIRST_ORDER_SOLVERS = ("gd", *BATCH_SOLVERS)
SECOND_ORDER_SOLVERS = ("newton", "newton-cg", "lbfgs")
UPDATES = ("plain", "momentum", "nesterov", "adam", "accelerated")  # the keys of `_solvers.UPDATE_RULES`
LR_SCHEDULES = ("constant", "inverse_scaling", "step", "cosine")
INITS = ("zeros", "random")
DTYPES = ("float64", "float32")
EPOCH_LOSSES = ("full", "running")

DEFAULTS: dict[str, Any] = {
    "penalty": "l2",
    "C": 1.0,
    "l1_ratio": 0.5,
    "solver": "lbfgs",
    "update": "plain",
    "learning_rate": 0.1,
    "lr_schedule": "constant",
    "momentum": 0.9,
    "batch_size": 32,
    "max_iter": 100,
    "tol": 1e-4,
    "early_stopping": False,
    "validation_fraction": 0.1,
    "n_iter_no_change": 5,
    "epoch_loss": "full",
    "fit_intercept": True,
    "class_weight": None,
    "init": "zeros",
    "warm_start": False,
    "threshold": 0.5,
    "dtype": "float64",
    "random_state": None,
    "verbose": 0,
}


def validate(params: Mapping[str, Any]) -> None:
    """Check every hyperparameter in `params` (all of `DEFAULTS`' names); the only place that does."""
    _check_choice("penalty", params["penalty"], PENALTIES)
    _check_choice("solver", params["solver"], SOLVERS)
    _check_choice("update", params["update"], UPDATES)
    _check_choice("lr_schedule", params["lr_schedule"], LR_SCHEDULES)
    _check_choice("init", params["init"], INITS)
    _check_choice("dtype", params["dtype"], DTYPES)
    _check_choice("epoch_loss", params["epoch_loss"], EPOCH_LOSSES)
    _check_number("C", params["C"], Real, 0, np.inf, closed="neither")
    _check_number("l1_ratio", params["l1_ratio"], Real, 0, 1)
    if params["learning_rate"] == "auto":
        if params["solver"] in BATCH_SOLVERS or (params["solver"] in ("gd", "auto") and params["update"] == "adam"):
            raise LogitlabError(
                f"learning_rate='auto' is the full-batch step 1/L, not one for solver={params['solver']!r} with "
                f"update={params['update']!r}; give learning_rate a number"
            )
    else:
        _check_number("learning_rate", params["learning_rate"], Real, 0, np.inf, closed="neither")
    _check_number("momentum", params["momentum"], Real, 0, 1, closed="left")
    _check_number("batch_size", params["batch_size"], Integral, 1, np.inf)
    _check_number("max_iter", params["max_iter"], Integral, 1, np.inf)
    _check_number("tol", params["tol"], Real, 0, np.inf, closed="left")
    _check_number("validation_fraction", params["validation_fraction"], Real, 0, 1, closed="neither")
    _check_number("n_iter_no_change", params["n_iter_no_change"], Integral, 1, np.inf)
    _check_number("threshold", params["threshold"], Real, 0, 1)
    _check_number("verbose", params["verbose"], Integral, 0, np.inf)
    for name in ("early_stopping", "fit_intercept", "warm_start"):
        if not isinstance(params[name], bool | np.bool_):
            raise LogitlabError(f"{name} must be True or False; got {params[name]!r}")
    if not (
        params["class_weight"] is None
        or params["class_weight"] == "balanced"
        or isinstance(params["class_weight"], dict)
    ):
        raise LogitlabError(f"class_weight must be a dict, 'balanced' or None; got {params['class_weight']!r}")
    if params["epoch_loss"] == "running" and params["solver"] not in BATCH_SOLVERS:
        raise LogitlabError(
            f"epoch_loss='running' is for solver='minibatch' or 'sgd' (batch losses); got solver={params['solver']!r}"
        )
    if params["solver"] in SECOND_ORDER_SOLVERS and params["penalty"] in ("l1", "elasticnet"):
        raise LogitlabError(
            f"solver={params['solver']!r} does not support penalty={params['penalty']!r}: the L1 term is not "
            f"smooth; use solver='gd', 'minibatch' or 'sgd' (proximal steps) or penalty='l2'"
        )


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise LogitlabError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_number(name: str, value: Any, kind: type, low: float, high: float, closed: str = "both") -> None:
    """Raise unless `value` is a `kind` (bools excluded) in the interval; `closed` names the included ends."""
    is_number = isinstance(value, kind) and not isinstance(value, bool)
    if not is_number or np.isnan(float(value)):
        raise LogitlabError(f"{name} must be {'an integer' if kind is Integral else 'a real number'}; got {value!r}")
    number = float(value)
    above = number >= low if closed in ("both", "left") else number > low
    below = number <= high if closed in ("both", "right") else number < high
    if not (above and below):
        left, right = "[" if closed in ("both", "left") else "(", "]" if closed in ("both", "right") else ")"
        raise LogitlabError(f"{name} must be in {left}{low}, {high}{right}; got {value!r}")
