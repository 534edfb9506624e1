"""`LogisticRegression`: a from-scratch logistic regression (binary, or multinomial for K > 2 classes) with
scikit-learn's objective."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from numbers import Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted, check_X_y, validate_data

from logitlab.errors import LogitlabError
from logitlab.model import _chunked, _params, _persistence
from logitlab.model._chunked import ChunkedProblem, class_codes
from logitlab.model._loss import BinaryLogisticLoss, LogisticLoss, MultinomialLoss, expit
from logitlab.model._monitor import EarlyStopping, TrainingMonitor
from logitlab.model._params import DEFAULTS, FIRST_ORDER_SOLVERS
from logitlab.model._solvers import (
    UPDATE_RULES,
    Problem,
    gradient_descent,
    lbfgs,
    lipschitz_step,
    newton,
    newton_cg,
    stochastic_gradient_descent,
)

logger = logging.getLogger("logitlab.model")

# solver="auto" (`choose_solver`): the dense Hessian (n P^2 flops in BLAS-3, P^3 for its Cholesky) up to this many
# parameters P: 3-7 Newton steps whatever the conditioning, where L-BFGS needed hundreds of iterations on one-hot
# data (at the price of 2x L-BFGS's time at P = 100 on well-conditioned data; 5-10x at P = 600, hence the
# bound); beyond it, Hessian-vector products when the L2 term's curvature 1 / (C n) is below WEAK_L2 (a badly
# conditioned problem), else L-BFGS.
NEWTON_MAX_PARAMS = 500
WEAK_L2 = 1e-4
RANDOM_INIT_SCALE = 0.01


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, each row shifted by its maximum first: no overflow, rows sum to 1."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    with np.errstate(under="ignore"):
        np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _encoded_labels(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(y, return_inverse=True)``; for integer labels in a narrow range by counting, not sorting:
    2.5 ms to 0.07 ms for 19,200 labels, paid by each of a 10-C, 5-fold sweep's 60 fits."""
    if y.dtype.kind in "iu" and y.size:
        low = y.min()
        span = int(y.max()) - int(low) + 1
        if span <= max(y.size, 1024):
            shifted = (y - low).astype(np.intp, copy=False)
            present = np.bincount(shifted, minlength=span) > 0
            return (np.flatnonzero(present) + low).astype(y.dtype), (np.cumsum(present) - 1)[shifted]
    return np.unique(y, return_inverse=True)


def _validated(estimator: BaseEstimator, X: Any, y: Any = None, *, reset: bool, dtype: np.dtype) -> Any:
    """`validate_data` (X, or X and y when y is given): a frame of float columns is checked by its names and count
    (`skip_check_array`), then as its array. scikit-learn checks a frame's columns one by one, ~3.5 ms at 117
    columns, where the values' checks on the array take ~0.1 ms: a cross-validated sweep job fits one frame and
    scores two. Other frames (text, nullable or sparse columns) take scikit-learn's own path."""
    pandas = sys.modules.get("pandas")  # not imported: X is no frame
    frame = pandas is not None and isinstance(X, pandas.DataFrame)
    if not frame or not all(isinstance(kind, np.dtype) and kind.kind == "f" for kind in X.dtypes):
        return (
            validate_data(estimator, X, reset=reset, dtype=dtype)
            if y is None
            else validate_data(estimator, X, y, reset=reset, dtype=dtype)
        )
    validate_data(estimator, X, reset=reset, skip_check_array=True)
    values = X.to_numpy()
    if y is None:
        return check_array(values, dtype=dtype, estimator=estimator, input_name="X")
    return check_X_y(values, y, dtype=dtype, estimator=estimator)


def _blas_ready(X: np.ndarray) -> np.ndarray:
    """X as is when C- or F-contiguous, else a C-contiguous copy (once per fit): a strided view (rows of a
    larger frame, say) sends every block product down numpy's non-BLAS loop, measured 10x slower per pass."""
    return X if X.flags.c_contiguous or X.flags.f_contiguous else np.ascontiguousarray(X)


def choose_solver(penalty: str | None, l2_strength: float, n_params: int) -> str:
    """The solver `solver="auto"` fits with, from the penalty, the L2 term's curvature (``1 / (C n)``: the
    penalty scaled as in the objective) and the number of parameters P (features and intercept, times K for
    K > 2 classes). scikit-learn picks L-BFGS always; here second-order steps where they are cheap or where
    L-BFGS needs many iterations (a weak penalty leaves the problem badly conditioned)."""
    if penalty in ("l1", "elasticnet"):
        return "gd"  # the only full-batch solver with proximal steps
    if n_params <= NEWTON_MAX_PARAMS:
        return "newton"
    if penalty is None or l2_strength < WEAK_L2:
        return "newton-cg"
    return "lbfgs"


class LogisticRegression(ClassifierMixin, BaseEstimator):
    """Logistic regression minimising scikit-learn's objective with the solver of your choice.

    Objective: ``sum_i s_i log-loss_i / sum_i s_i + penalty(w) / (C * sum_i s_i)`` with ``s`` the sample
    weights times the class weights (all ones by default), penalty ``||w||^2 / 2`` (l2), ``||w||_1`` (l1) or
    ``(1 - l1_ratio) ||w||^2 / 2 + l1_ratio ||w||_1`` (elasticnet); the intercept is not penalised.

    Two classes: the binary log-loss, ``coef_`` of shape (1, n_features) and ``intercept_`` (1,). K > 2
    classes: the multinomial (softmax) cross-entropy with the same penalty on all K weight vectors (scikit-learn's
    multinomial objective at the same C), ``coef_`` (K, n_features), ``intercept_`` (K,). The multinomial
    parameters are defined up to a common shift of the K rows; the solvers keep the shift of their start
    (zero from ``init="zeros"``), so compare decision functions centred per row. Every solver, update rule,
    penalty, weighting, dtype and data source works for both.

    Parameters
    ----------
    penalty : {None, "l2", "l1", "elasticnet"}, default="l2"
    C : float > 0, default=1.0
        Inverse regularisation strength.
    l1_ratio : float in [0, 1], default=0.5
        Elastic-net mixing; used only with ``penalty="elasticnet"``.
    solver : {"gd", "minibatch", "sgd", "newton", "newton-cg", "lbfgs", "auto"}, default="lbfgs"
        "newton" solves with the dense Hessian (D x D, cheapest for narrow data); "newton-cg" is a trust-region
        Newton with conjugate gradients on Hessian-vector products (no D x D matrix: wide data). The
        second-order solvers support only None and "l2" penalties. "auto" picks one per fit from the problem
        (`choose_solver`): "gd" (proximal, with `update` and `learning_rate` as given) for "l1"/"elasticnet",
        else "newton" up to 500 parameters, else "newton-cg" when the penalty is weak, else "lbfgs"; the choice
        is the fitted ``solver_``.
    update : {"plain", "momentum", "nesterov", "adam", "accelerated"}, default="plain"
        Update rule of the first-order solvers. Adam uses betas (0.9, 0.999) and epsilon 1e-8. "accelerated"
        is FISTA with adaptive restart: O(sqrt(condition number)) epochs instead of O(condition number).
    learning_rate : float > 0 or "auto", default=0.1
        The step size of the first-order solvers, used as given. "auto" (solver "gd", not with Adam) takes
        ``1 / L``, L the Lipschitz constant of the gradient from a few power iterations on X: a step that
        converges without tuning (with "accelerated", fast too).
    lr_schedule : {"constant", "inverse_scaling", "step", "cosine"}, default="constant"
        Per epoch: lr / sqrt(1 + epoch); halving every max_iter // 10 epochs; cosine annealing to 0.
    momentum : float in [0, 1), default=0.9
        For ``update="momentum"`` and ``"nesterov"``.
    batch_size : int >= 1, default=32
        For ``solver="minibatch"``; "sgd" always uses 1.
    max_iter : int >= 1, default=100
        Epochs (iterations for "newton" and "lbfgs").
    tol : float >= 0, default=1e-4
        Stop when the max-norm of the gradient (of the minimum-norm subgradient with L1) is below it;
        0 runs exactly ``max_iter`` epochs (newton-cg ends sooner where no step lowers the objective as a float
        can tell: a gradient near sqrt(machine epsilon)). Also the improvement early stopping asks for.
    early_stopping : bool, default=False
        Stop when the validation loss has not improved by ``tol`` for ``n_iter_no_change`` epochs and keep
        the best parameters. Validates on ``fit(X_val=, y_val=)`` or on a stratified hold-out.
    validation_fraction : float in (0, 1), default=0.1
    n_iter_no_change : int >= 1, default=5
        Patience of early stopping, and of the running-loss rule (``epoch_loss="running"``).
    epoch_loss : {"full", "running"}, default="full"
        What "minibatch" and "sgd" record and stop on after each epoch. "full": the objective and gradient on
        all the data, one more pass per epoch; stops when the gradient's max-norm is below `tol`. "running":
        the mean of the batch losses met during the epoch (scikit-learn's SGD), no extra pass; stops when it
        has not improved by `tol` for `n_iter_no_change` epochs.
    fit_intercept : bool, default=True
    class_weight : dict, "balanced" or None, default=None
    init : {"zeros", "random"}, default="zeros"
        "random" draws weights from N(0, 0.01^2) with ``random_state``.
    warm_start : bool, default=False
    threshold : float in [0, 1], default=0.5
        Two classes: ``predict`` returns ``classes_[1]`` where ``predict_proba(X)[:, 1] >= threshold``. K > 2
        classes predict the most probable class (the threshold is not used).
    dtype : {"float64", "float32"}, default="float64"
        Precision of all computations.
    random_state : int, RandomState or None, default=None
        Seeds init, the hold-out split and the shuffling; a fixed int gives bit-identical fits.
    verbose : int >= 0, default=0
        > 0 logs progress (logger "logitlab.model") and shows a tqdm bar on an interactive stderr outside CI.
    """

    def __init__(
        self,
        penalty: str | None = DEFAULTS["penalty"],
        *,
        C: float = DEFAULTS["C"],
        l1_ratio: float = DEFAULTS["l1_ratio"],
        solver: str = DEFAULTS["solver"],
        update: str = DEFAULTS["update"],
        learning_rate: float | str = DEFAULTS["learning_rate"],
        lr_schedule: str = DEFAULTS["lr_schedule"],
        momentum: float = DEFAULTS["momentum"],
        batch_size: int = DEFAULTS["batch_size"],
        max_iter: int = DEFAULTS["max_iter"],
        tol: float = DEFAULTS["tol"],
        early_stopping: bool = DEFAULTS["early_stopping"],
        validation_fraction: float = DEFAULTS["validation_fraction"],
        n_iter_no_change: int = DEFAULTS["n_iter_no_change"],
        epoch_loss: str = DEFAULTS["epoch_loss"],
        fit_intercept: bool = DEFAULTS["fit_intercept"],
        class_weight: dict | str | None = DEFAULTS["class_weight"],
        init: str = DEFAULTS["init"],
        warm_start: bool = DEFAULTS["warm_start"],
        threshold: float = DEFAULTS["threshold"],
        dtype: str = DEFAULTS["dtype"],
        random_state: int | np.random.RandomState | None = DEFAULTS["random_state"],
        verbose: int = DEFAULTS["verbose"],
    ) -> None:
        self.penalty = penalty
        self.C = C
        self.l1_ratio = l1_ratio
        self.solver = solver
        self.update = update
        self.learning_rate = learning_rate
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.epoch_loss = epoch_loss
        self.fit_intercept = fit_intercept
        self.class_weight = class_weight
        self.init = init
        self.warm_start = warm_start
        self.threshold = threshold
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def validate_params(self) -> None:
        """Validate every hyperparameter (`_params.validate`, also what the config layer checks `model.*` with
        before any data is loaded or scikit-learn imported)."""
        _params.validate(self.get_params(deep=False))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        return tags

    def fit(
        self,
        X: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        X_val: Any = None,
        y_val: Any = None,
        coef_init: Any = None,
        intercept_init: Any = None,
    ) -> LogisticRegression:
        """Fit on (X, y); validation data, if given, fills `val_history_` (and drives early stopping).

        `coef_init` (shaped as ``coef_``) and `intercept_init` (as ``intercept_``; zeros if not given) start the
        solver there instead of at `init`, as scikit-learn's SGDClassifier: a regularisation path starts each C
        from its neighbour's solution. They take precedence over `warm_start`.

        X may also be data that is not in memory: a `ParquetChunks` file (labels from its target column, no
        y), streamed one row group at a time, or a Dask array with Dask or numpy labels y, whose gradients
        are computed on the active Dask scheduler. X_val may then be either kind too, or arrays.
        """
        self.validate_params()
        dtype = np.dtype(self.dtype)
        previous = self._warm_start_coef()
        if _chunked.is_chunked(X):
            chunked, validation = self._chunked_problem(X, y, sample_weight, X_val, y_val, dtype)
            rng = check_random_state(self.random_state)
            coef = self._initial_coef(previous, chunked.n_features, dtype, rng, coef_init, intercept_init)
            self._run(chunked, coef, validation, rng, chunked.blocks.n_samples)
            return self
        if y is None:
            raise LogitlabError(
                "LogisticRegression requires y to be passed, but the target y is None "
                "(only a ParquetChunks X carries its labels)"
            )
        X, y = _validated(self, X, y, reset=True, dtype=dtype)
        X = _blas_ready(X)
        check_classification_targets(y)  # a 1-d y (validate_data) that passes is binary or multiclass
        classes, y_encoded = _encoded_labels(y)
        if classes.size < 2:
            raise LogitlabError(
                f"y has 1 class ({classes[0]!r}); LogisticRegression needs samples of at least two classes"
            )
        self.classes_ = classes
        y_encoded = y_encoded.astype(dtype)
        sample_weight = self._combined_weights(X, y, y_encoded, sample_weight, dtype)
        rng = check_random_state(self.random_state)
        coef = self._initial_coef(previous, X.shape[1], dtype, rng, coef_init, intercept_init)
        X, y_encoded, sample_weight, validation = self._validation_split(
            X, y_encoded, sample_weight, X_val, y_val, dtype, rng
        )
        problem = self._problem(X, y_encoded, sample_weight)
        self._run(problem, coef, validation, rng, X.shape[0])
        return self

    def _run(self, problem: Problem, coef: np.ndarray, validation: Any, rng, n_samples: int) -> None:
        """Solve, keep the early-stopping best, set the fitted state and warn when not converged."""
        self.solver_ = (
            choose_solver(self.penalty, problem.loss.l2_strength, problem.loss.n_params(problem.n_features))
            if self.solver == "auto"
            else self.solver
        )
        monitor = self._monitor(validation)
        if self.verbose > 0:
            logger.info(
                "fitting %s (solver %s) on %d samples x %d features", self, self.solver_, n_samples, problem.n_features
            )
        try:
            with np.errstate(all="ignore"):
                coef = self._solve(problem, coef, monitor, rng)
        finally:
            monitor.close()
        if monitor.early_stopping is not None and monitor.early_stopping.best_coef is not None:
            coef = monitor.early_stopping.best_coef  # as scikit-learn's MLP: keep the best validation epoch
        self._set_fitted(coef, problem, monitor)
        if not monitor.converged and not monitor.stopped_early and self.tol > 0:
            if self._running_loss():
                unmet = f"the running loss still improved by more than tol={self.tol:g}"
            else:
                unmet = f"optimality {monitor.optimality:.3g} > tol={self.tol:g}"
            warnings.warn(
                f"LogisticRegression(solver={self.solver_!r}) did not converge after {monitor.n_iter} epochs "
                f"(max_iter={self.max_iter}): {unmet}; increase max_iter"
                + (" or tune learning_rate" if self.solver_ in FIRST_ORDER_SOLVERS else "")
                + ", or scale the data",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _chunked_problem(self, X, y, sample_weight, X_val, y_val, dtype) -> tuple[ChunkedProblem, Any]:
        """The problem over row blocks (parquet row groups or Dask blocks) and the validation problem, with
        the fitted input description (`classes_`, `n_features_in_`, `feature_names_in_`) set as
        `validate_data` does for arrays."""
        if sample_weight is not None:
            raise LogitlabError("sample_weight is not supported for ParquetChunks or Dask X; use class_weight")
        if self.early_stopping and X_val is None:
            raise LogitlabError("early_stopping on ParquetChunks or Dask X needs X_val (no hold-out is cut from it)")
        blocks = _chunked.blocks_of(X, y, "X")
        classes, counts = blocks.labels()
        if classes.size < 2:
            raise LogitlabError(
                f"y has {classes.size} class {classes.tolist()}; LogisticRegression needs samples of at least two"
            )
        self.classes_ = classes
        self.n_features_in_ = blocks.n_features
        names = _chunked.feature_names(X)
        if names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        per_class = self._per_class_weights(counts)
        total = float(counts @ per_class)
        loss, l1_strength = self._loss(total)
        problem = ChunkedProblem(loss, blocks, classes, (per_class / total).astype(dtype), l1_strength)
        if (X_val is None) != (y_val is None) and not isinstance(X_val, _chunked.ParquetChunks):
            raise LogitlabError("X_val and y_val must be passed together")
        if X_val is None:
            return problem, None
        val_blocks = _chunked.blocks_of(X_val, y_val, "X_val")
        if val_blocks.n_features != blocks.n_features:
            raise LogitlabError(f"X_val has {val_blocks.n_features} features but X has {blocks.n_features}")
        unknown = np.setdiff1d(val_blocks.labels()[0], classes)
        if unknown.size:
            raise LogitlabError(f"y_val has labels not seen in y: {unknown[:5].tolist()}")
        uniform = np.full(classes.size, 1.0 / val_blocks.n_samples, dtype=dtype)
        return problem, ChunkedProblem(self._loss(1.0, unpenalised=True)[0], val_blocks, classes, uniform)

    def _per_class_weights(self, counts: np.ndarray) -> np.ndarray:
        """class_weight as scikit-learn's compute_class_weight gives it, from the class counts alone."""
        if self.class_weight == "balanced":
            per_class = counts.sum() / (counts.size * counts)
        elif isinstance(self.class_weight, dict):
            unknown = set(self.class_weight) - set(self.classes_.tolist())
            if unknown:
                raise LogitlabError(f"class_weight has labels not in y: {sorted(unknown, key=str)[:5]}")
            per_class = np.array([float(self.class_weight.get(label, 1.0)) for label in self.classes_.tolist()])
        else:
            per_class = np.ones(counts.size)
        for label, weight in zip(self.classes_.tolist(), per_class, strict=True):
            if not weight > 0:
                raise LogitlabError(
                    f"every sample of class {label!r} has zero weight (class_weight); every class needs weight"
                )
        return per_class

    def _warm_start_coef(self) -> np.ndarray | None:
        if not (self.warm_start and hasattr(self, "coef_")):
            return None
        return self._loss_for(self.classes_.size).flat(self.coef_, self.intercept_)

    def _combined_weights(self, X, y, y_encoded, sample_weight, dtype) -> np.ndarray:
        """Sample weights times class weights, as scikit-learn combines them; both classes need weight."""
        sample_weight = _check_sample_weight(sample_weight, X, dtype=dtype, ensure_non_negative=True)
        if self.class_weight is not None:
            per_class = compute_class_weight(self.class_weight, classes=self.classes_, y=y, sample_weight=sample_weight)
            sample_weight = sample_weight * per_class[y_encoded.astype(np.intp)].astype(dtype)
        totals = np.bincount(y_encoded.astype(np.intp), weights=sample_weight, minlength=self.classes_.size)
        for label, total in zip(self.classes_.tolist(), totals, strict=True):
            if not total > 0:
                raise LogitlabError(
                    f"every sample of class {label!r} has zero weight (sample_weight x class_weight); "
                    "every class needs positive weight"
                )
        return sample_weight

    def _initial_coef(
        self, previous, n_features: int, dtype: np.dtype, rng, coef_init: Any = None, intercept_init: Any = None
    ) -> np.ndarray:
        loss = self._loss_for(self.classes_.size)
        n_params = loss.n_params(n_features)
        if coef_init is not None:
            return self._given_start(loss, n_features, coef_init, intercept_init).astype(dtype)
        if previous is not None:
            if previous.size != n_params:
                raise LogitlabError(
                    f"warm_start: the previous fit has {previous.size} parameters but X with "
                    f"fit_intercept={self.fit_intercept} and {self.classes_.size} classes needs {n_params}; "
                    "refit with warm_start=False"
                )
            return previous.astype(dtype)
        if self.init == "random":
            coef = np.zeros(n_params, dtype=dtype)
            n_weights = loss.n_weights(n_features)
            coef[:n_weights] = rng.normal(0.0, RANDOM_INIT_SCALE, size=n_weights)
            return coef
        return np.zeros(n_params, dtype=dtype)

    def _given_start(self, loss: LogisticLoss, n_features: int, coef_init: Any, intercept_init: Any) -> np.ndarray:
        """The flat start vector of `coef_init` and `intercept_init`, refused in one line unless shaped as the
        fitted ``coef_`` and ``intercept_`` of this X and these classes would be."""
        rows = 1 if self.classes_.size == 2 else self.classes_.size
        coef_init = np.asarray(coef_init, dtype=np.float64)
        intercept_init = np.zeros(rows) if intercept_init is None else np.asarray(intercept_init, dtype=np.float64)
        if coef_init.shape != (rows, n_features) or intercept_init.shape != (rows,):
            raise LogitlabError(
                f"coef_init must have shape {(rows, n_features)} and intercept_init {(rows,)} for "
                f"{self.classes_.size} classes and {n_features} features; got {coef_init.shape} and "
                f"{intercept_init.shape}"
            )
        if not (np.isfinite(coef_init).all() and np.isfinite(intercept_init).all()):
            raise LogitlabError("coef_init and intercept_init must be finite")
        return loss.flat(coef_init, intercept_init)  # without an intercept, intercept_init is not used

    def _validation_split(self, X, y, sample_weight, X_val, y_val, dtype, rng):
        """Return the training part and the validation set (X_val, y_val) or None."""
        if (X_val is None) != (y_val is None):
            raise LogitlabError("X_val and y_val must be passed together")
        if X_val is not None:
            X_val = _blas_ready(check_array(X_val, dtype=dtype, input_name="X_val"))
            if X_val.shape[1] != X.shape[1]:
                raise LogitlabError(f"X_val has {X_val.shape[1]} features but X has {X.shape[1]}")
            y_val = np.asarray(y_val).ravel()
            if y_val.shape[0] != X_val.shape[0]:
                raise LogitlabError(f"X_val has {X_val.shape[0]} samples but y_val has {y_val.shape[0]}")
            unknown = np.setdiff1d(y_val, self.classes_)
            if unknown.size:
                raise LogitlabError(f"y_val has labels not seen in y: {unknown[:5].tolist()}")
            return X, y, sample_weight, (X_val, class_codes(y_val, self.classes_, dtype))
        if not self.early_stopping:
            return X, y, sample_weight, None
        try:
            train, val = train_test_split(
                np.arange(X.shape[0]), test_size=self.validation_fraction, stratify=y, random_state=rng
            )
        except ValueError as exc:
            raise LogitlabError(
                f"early_stopping cannot hold out validation_fraction={self.validation_fraction} of "
                f"{X.shape[0]} samples stratified by class: {exc}"
            ) from exc
        return X[train], y[train], sample_weight[train], (X[val], y[val])

    def _problem(self, X, y, sample_weight) -> Problem:
        """Normalise the weights to sum to 1 and scale the penalty by 1 / (C * sum(weights)), as sklearn."""
        total = float(sample_weight.sum())
        loss, l1_strength = self._loss(total)
        return Problem(loss, X, y, sample_weight / sample_weight.dtype.type(total), l1_strength)

    def _loss(self, total: float, unpenalised: bool = False) -> tuple[LogisticLoss, float]:
        """The smooth loss for the fitted classes and the L1 strength, for a total sample weight `total`."""
        strength = 0.0 if self.penalty is None or unpenalised else 1.0 / (self.C * total)
        l1_share = {None: 0.0, "l2": 0.0, "l1": 1.0, "elasticnet": self.l1_ratio}[self.penalty]
        return self._loss_for(self.classes_.size, (1 - l1_share) * strength), l1_share * strength

    def _loss_for(self, n_classes: int, l2_strength: float = 0.0) -> LogisticLoss:
        """The binary log-loss for two classes, the multinomial cross-entropy for more."""
        if n_classes == 2:
            return BinaryLogisticLoss(self.fit_intercept, l2_strength=l2_strength)
        return MultinomialLoss(n_classes, self.fit_intercept, l2_strength=l2_strength)

    def _running_loss(self) -> bool:
        return self.epoch_loss == "running" and self.solver in _params.BATCH_SOLVERS

    def _monitor(self, validation) -> TrainingMonitor:
        if self.solver_ in FIRST_ORDER_SOLVERS and isinstance(self.learning_rate, Real):
            hint = (
                f"learning_rate={self.learning_rate:g} is too large; try a smaller one, "
                f"e.g. {float(self.learning_rate) / 10:g}"
            )
        elif self.solver_ in FIRST_ORDER_SOLVERS:
            hint = "learning_rate='auto' (1/L) met non-finite values; check X for extreme values or scale it"
        else:
            hint = f"solver={self.solver_!r} met non-finite values; check X for extreme values or scale it"
        validation_loss = validation_accuracy = None
        if isinstance(validation, ChunkedProblem):
            validation_loss = validation.loss_value
        elif validation is not None:
            X_val, y_val = validation
            unpenalised = self._loss_for(self.classes_.size)
            uniform = np.full(X_val.shape[0], 1.0 / X_val.shape[0], dtype=X_val.dtype)

            def validation_loss(coef: np.ndarray) -> float:
                return unpenalised.loss(coef, X_val, y_val, uniform)

            def validation_accuracy(coef: np.ndarray) -> float:
                raw = unpenalised.raw_prediction(coef, X_val)
                predicted = raw.argmax(axis=1) if raw.ndim == 2 else (raw > 0)
                return float(np.mean(predicted == y_val))

        stopping = EarlyStopping(self.n_iter_no_change, self.tol) if self.early_stopping else None
        stall = EarlyStopping(self.n_iter_no_change, self.tol) if self._running_loss() and self.tol > 0 else None
        return TrainingMonitor(
            self.max_iter, self.tol, hint, validation_loss, validation_accuracy, stopping, self.verbose, stall
        )

    def _solve(self, problem: Problem, coef: np.ndarray, monitor: TrainingMonitor, rng) -> np.ndarray:
        if self.solver_ == "newton":
            return newton(problem, coef, monitor)
        if self.solver_ == "newton-cg":
            return newton_cg(problem, coef, monitor)
        if self.solver_ == "lbfgs":
            return lbfgs(problem, coef, monitor)
        rule = UPDATE_RULES[self.update](self.momentum)
        if isinstance(self.learning_rate, Real):
            step = float(self.learning_rate)
        else:  # "auto", which validate_params allows for gd only
            step = lipschitz_step(problem)
            if self.verbose > 0:
                logger.info("learning_rate='auto': step 1/L = %.4g", step)
        if self.solver_ == "gd":
            return gradient_descent(problem, coef, monitor, rule, step, self.lr_schedule)
        batch_size = 1 if self.solver == "sgd" else self.batch_size
        return stochastic_gradient_descent(
            problem, coef, monitor, rule, step, self.lr_schedule, batch_size, rng, self._running_loss()
        )

    def _set_fitted(self, coef: np.ndarray, problem: Problem, monitor: TrainingMonitor) -> None:
        self.coef_, self.intercept_ = problem.loss.fitted_arrays(coef, problem.n_features)
        self.n_iter_ = monitor.n_iter
        self.converged_ = monitor.converged
        self.cost_history_ = [float(value) for value in monitor.cost_history]
        self.val_history_ = [float(value) for value in monitor.val_history]

    def decision_function(self, X: Any) -> np.ndarray:
        """Raw scores ``X @ coef_.T + intercept_``: shape (n_samples,) for two classes, (n_samples, K) for more."""
        check_is_fitted(self)
        X = _validated(self, X, reset=False, dtype=self.coef_.dtype)
        if self.coef_.shape[0] == 1:
            return X @ self.coef_[0] + self.intercept_[0]
        return X @ self.coef_.T + self.intercept_

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probability of each class of ``classes_``, shape (n_samples, n_classes); rows sum to 1."""
        score = self.decision_function(X)
        if score.ndim == 2:
            return _softmax(score)
        return np.column_stack([expit(-score), expit(score)])

    def predict(self, X: Any) -> np.ndarray:
        """Two classes: ``classes_[1]`` where its probability is at least `threshold`, else ``classes_[0]``.
        More: the most probable class."""
        proba = self.predict_proba(X)
        if proba.shape[1] > 2:
            return self.classes_[proba.argmax(axis=1)]
        positive = proba[:, 1] >= self.threshold
        return self.classes_[positive.astype(np.intp)]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (params, classes, histories, checksum)."""
        check_is_fitted(self)
        _persistence.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LogisticRegression:
        """Read a model written by `save`; raise `ModelFileError` if a file is missing or not intact."""
        return _persistence.load(cls, path)
