"""Stage 4: fit the estimator on the training split (validation split for its val loss), save it with
the fitted preprocessing and feature steps so that raw rows can be scored.

Cross-validation (`preprocess.cv_folds`): the folds arrive already preprocessed and expanded, each by steps
fitted on its own training part (the shared stages did that once per data and config), so the k extra fits
here are the whole per-job cost of k-fold scores. The model saved is the one fitted on the training split,
which is then all of train+val. With `model.warm_start`, each of those fits starts from the nearest other C's
solution of the same data that this process has fitted (`warm_starts`: the regularisation path of a sweep).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd

from logitlab import config, io, reports, warm_starts
from logitlab.errors import ConfigError, TrialPruned
from logitlab.model import _params
from logitlab.model._lockstep import FoldsInLockstep, FoldStopped
from logitlab.model._monitor import EpochReporter, current_reporter, reporting
from logitlab.scoring import SAVED_IN, ScoringPipeline
from logitlab.sources import TARGET, class_names
from logitlab.stage import Files, Output, Stage
from logitlab.stages import feature_engineer, ingest, preprocess
from logitlab.transforms import PolynomialExpander, Preprocessor

if TYPE_CHECKING:  # the maths is imported where a fit needs it: `settings` validates without it
    from logitlab.model import LogisticRegression, ParquetChunks

CV_SCORES_FILE = "scores.json"
PORTABLE_BITS = 40  # of a float64's 52 fraction bits that the written model keeps (`portable`): 12 digits
ONE_THREAD_BYTES = 64 << 20  # a training split up to this size (as float64) is fitted on one BLAS thread

log = logging.getLogger(__name__)


def run(
    train: pd.DataFrame | ParquetChunks | FoldArrays,
    val: pd.DataFrame | ParquetChunks | None,
    params: dict[str, Any],
    path_key: str | None = None,
) -> LogisticRegression:
    """Fit on frames in memory, or on parquet files streamed row group by row group (labels in `target`), or on
    a fold's arrays (`FoldArrays`, its held-out part the validation set; `val` None). An empty validation split
    (cross-validation folded it into training) gives no validation loss.
    `path_key` (`warm_starts.problem_key`) names the problem on a regularisation path: the fit starts from
    its nearest solution and leaves its own."""
    with convergence_logged():
        model = _fitted(train, val, params, _warm_start(path_key, params))
    warm_starts.remember(path_key, model.C, model.coef_, model.intercept_)
    return model


def _warm_start(path_key: str | None, params: dict[str, Any]) -> dict[str, Any]:
    return warm_starts.nearest(path_key, params.get("C", _params.DEFAULTS["C"]))


def _fitted(
    train: pd.DataFrame | ParquetChunks | FoldArrays,
    val: pd.DataFrame | ParquetChunks | None,
    params: dict[str, Any],
    start: dict[str, Any],
) -> LogisticRegression:
    """Fitted on a split (its column names kept by the model), streamed chunks, or a fold's arrays (the held
    out part as its validation set)."""
    from logitlab.model import LogisticRegression, ParquetChunks

    model = LogisticRegression(**params)
    if isinstance(train, FoldArrays):
        model.fit(train.X, train.y, X_val=train.X_val, y_val=train.y_val, **start)
    elif isinstance(train, ParquetChunks):
        model.fit(train, X_val=val, **start)
    else:
        assert isinstance(val, pd.DataFrame)
        held_out = {} if val.empty else {"X_val": val.drop(columns=[TARGET]), "y_val": val[TARGET].to_numpy()}
        model.fit(train.drop(columns=[TARGET]), train[TARGET].to_numpy(), **held_out, **start)
    return model


@dataclasses.dataclass(frozen=True)
class FoldArrays:
    """A fold's features and labels, training and held-out parts, as read-only arrays. A fold's model is scored
    and dropped, so it is fitted without column names: scikit-learn's checks of a frame's columns cost ~4 ms a
    fit and a score, as much as a warm-started Newton fit of a 19,200 x 133 fold."""

    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray

    @classmethod
    def of(cls, fold: preprocess.Fold) -> FoldArrays:
        train, val = (_read_only(fold[part]) for part in ("train", "val"))
        return cls(*train, *val)


def _read_only(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    features, labels = frame.drop(columns=[TARGET]).to_numpy(), frame[TARGET].to_numpy()
    for array in (features, labels):
        array.flags.writeable = False  # a copy if pandas had to make one: kept across fits (`_indicators.kept`)
    return features, labels


@contextlib.contextmanager
def convergence_logged() -> Iterator[None]:
    """The estimator's ConvergenceWarning as a log line of the run, not a Python warning with its source line:
    the run's `converged` metric and tag, and the sweep's summary, record it too. Other warnings pass on."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        yield
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            log.warning("%s", warning.message)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def cross_validate(
    folds: list[FoldArrays],
    params: dict[str, Any],
    n_classes: int,
    path_keys: list[str | None] | None = None,
    pool: Executor | None = None,
) -> tuple[list[dict[str, float]], list[pd.DataFrame]]:
    """Each fold's model fitted on its training part (its held-out part gives the validation loss per epoch):
    the held-out scores (`config.CV_SCORES`) and the loss curves, fold by fold. `path_keys`: each fold's
    problem on a regularisation path (`run`). In a pruned search (a reporter set: `sweeps.trials`) the folds
    are fitted side by side and the trial gets their mean (`_in_lockstep`); otherwise on `pool`'s threads, or
    one after another. Each fit depends on its fold, start and seed only: the same models either way."""
    path_keys = path_keys or [None] * len(folds)
    reporter = current_reporter()
    if reporter is not None:
        return _in_lockstep(folds, params, n_classes, path_keys, reporter)
    starts = [_warm_start(path_key, params) for path_key in path_keys]

    def fit_fold(index: int) -> tuple[dict[str, float], LogisticRegression]:
        fold = folds[index]
        model = _fitted(fold, None, params, starts[index])
        return reports.fold_scores(model, fold.X_val, fold.y_val, n_classes), model

    with convergence_logged():
        fitted = list(pool.map(fit_fold, range(len(folds))) if pool else map(fit_fold, range(len(folds))))
    for (_, model), path_key in zip(fitted, path_keys, strict=True):
        warm_starts.remember(path_key, model.C, model.coef_, model.intercept_)
    return [scores for scores, _ in fitted], [cost_history(model) for _, model in fitted]


# The held-out score a fold that ended stands for in the fold mean, by what the trial reports per epoch.
FINAL_SCORE = {"loss": "log_loss", "accuracy": "accuracy"}

FoldOutcome: TypeAlias = "tuple[dict[str, float], LogisticRegression] | BaseException | None"


def _in_lockstep(
    folds: list[FoldArrays],
    params: dict[str, Any],
    n_classes: int,
    path_keys: list[str | None],
    reporter: EpochReporter,
) -> tuple[list[dict[str, float]], list[pd.DataFrame]]:
    """The folds fitted at once, a thread each, the trial getting their mean every `reporter.every` epochs
    (`model._lockstep`). A pruned trial is one `TrialPruned` for the job, with the folds' mean curves up to
    its epoch; a fold's error stops the others and is raised. Each fit depends on its fold and seed only, so
    the results are the sequential path's; warm starts are read and kept here, in fold order, and the
    ConvergenceWarnings caught once around all threads (`warnings.catch_warnings` is process-wide)."""
    lockstep = FoldsInLockstep(reporter, len(folds))
    starts = [_warm_start(path_key, params) for path_key in path_keys]
    outcomes: list[FoldOutcome] = [None] * len(folds)

    def fit_fold(index: int) -> None:
        fold, final = folds[index], None
        try:
            with reporting(lockstep.reporter(index)):
                model = _fitted(fold, None, params, starts[index])
            scores = reports.fold_scores(model, fold.X_val, fold.y_val, n_classes)
            outcomes[index], final = (scores, model), scores[FINAL_SCORE[reporter.score]]
        except BaseException as err:  # raised by the calling thread, once every fold ended
            outcomes[index] = err
        failed = isinstance(outcomes[index], BaseException) and not isinstance(
            outcomes[index], TrialPruned | FoldStopped
        )
        try:
            lockstep.leave(index, final, failed)
        except BaseException as err:  # the trial's report, made as this fold left, failed
            outcomes[index] = err

    threads = [
        threading.Thread(target=fit_fold, args=(index,), name=f"cv-fold-{index}", daemon=True)
        for index in range(len(folds))
    ]
    with convergence_logged():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stopped = TrialPruned | FoldStopped
    if errors := [err for err in outcomes if isinstance(err, BaseException) and not isinstance(err, stopped)]:
        raise errors[0]
    if lockstep.pruned is not None:
        step, mean = lockstep.pruned
        raise TrialPruned(step, mean, *_mean_curves(outcomes, step))
    fitted = [outcome for outcome in outcomes if isinstance(outcome, tuple)]  # every fold, here
    for (_, model), path_key in zip(fitted, path_keys, strict=True):
        warm_starts.remember(path_key, model.C, model.coef_, model.intercept_)
    return [scores for scores, _ in fitted], [cost_history(model) for _, model in fitted]


def _mean_curves(outcomes: list[FoldOutcome], step: int) -> tuple[list[float], list[float]]:
    """The train and validation loss per epoch up to `step`, averaged over the folds; a fold that ended
    before `step` counts with its last epoch's losses, as it counts in the reported mean with its end."""
    curves = []
    for outcome in outcomes:
        if isinstance(outcome, TrialPruned):
            train_loss, val_loss = outcome.cost_history, outcome.val_history
        else:
            assert isinstance(outcome, tuple)
            train_loss, val_loss = list(outcome[1].cost_history_), list(outcome[1].val_history_)
        curves.append([_held_to(train_loss, step), _held_to(val_loss, step)])
    train_mean, val_mean = np.mean(np.array(curves, dtype=np.float64), axis=0)
    return train_mean.tolist(), val_mean.tolist()


def _held_to(values: list[float], step: int) -> list[float]:
    return values[:step] + [values[-1]] * (step - len(values))


def cost_history(model: LogisticRegression) -> pd.DataFrame:
    """Train and validation loss per epoch (epochs count from 1)."""
    train_loss = list(model.cost_history_)
    val_loss = list(model.val_history_) or [float("nan")] * len(train_loss)
    return pd.DataFrame({"epoch": range(1, len(train_loss) + 1), "train_loss": train_loss, "val_loss": val_loss})


def model_params(raw: Any, seed: int) -> dict[str, Any]:
    """The estimator's keyword arguments: the `model` section plus `random_state` from `seed`.

    The estimator owns its parameter checks (`model._params`, which imports no scikit-learn: a bad value is
    refused before the job imports the maths); here they run early and their message gets the `model.` prefix.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'model': expected a mapping of estimator parameters, got {raw!r}")
    allowed = set(_params.DEFAULTS) - {"random_state"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"config key 'model.{unknown[0]}' is unknown; model takes: {', '.join(sorted(allowed))}")
    params = {**raw, "random_state": seed}
    every = {**_params.DEFAULTS, **params}
    try:
        _params.validate(every)
    except ValueError as err:
        raise ConfigError(f"config key 'model.{_param_named_in(str(err), params)}': {err}") from None
    _check_path(every)
    return params


def _check_path(params: Mapping[str, Any]) -> None:
    """`warm_start` (a regularisation path across jobs, `warm_starts`) only where the start cannot change the
    result beyond the tolerance: a full-batch fit run until its gradient is below tol, with no early stop."""
    if not params["warm_start"]:
        return
    tol, early_stopping, solver = params["tol"], params["early_stopping"], params["solver"]
    if tol == 0 or early_stopping or solver in _params.BATCH_SOLVERS:
        raise ConfigError(
            f"config key 'model.warm_start': starting from another C's solution gives the same model only for a "
            f"fit run to convergence; needs model.tol > 0, model.early_stopping false and a full-batch solver "
            f"(got tol={tol}, early_stopping={early_stopping}, solver={solver!r})"
        )


def _param_named_in(message: str, params: dict[str, Any]) -> str:
    named = [p for p in params if f"'{p}'" in message or message.startswith(f"{p} ") or f" {p}=" in message]
    return max(named, key=len) if named else "?"


def settings(params: Mapping[str, Any]) -> dict[str, Any]:
    return model_params(params["model"], config.seed_value(params["seed"]))


def _read_folds(folder: Path) -> list[FoldArrays]:
    """The folds, read once per process for the jobs of a sweep that share them (a folder of the shared
    stages' cache never changes): reading 5 folds cost 0.9-2 s per job of a 10-C sweep on a 30k-row CSV, a
    third of the job. Only the last folder is kept, named by its path and its folds file (a folder written
    again is a new file)."""
    return _read_folds_of(folder.resolve(), io.file_version(folder / preprocess.FOLDS_FILE))


@functools.lru_cache(maxsize=1)
def _read_folds_of(folder: Path, version: io.FileVersion) -> list[FoldArrays]:
    return [FoldArrays.of(fold) for fold in preprocess.read_folds(folder)]


def _model_input(path: Path) -> pd.DataFrame | ParquetChunks:
    """A file of one row group in memory (kept for the next job of a sweep: `io.read_parquet_kept`); a streamed
    file (several) as chunks the solvers read in turn."""
    from logitlab.model import ParquetChunks

    return ParquetChunks(path, TARGET) if io.row_groups(path) > 1 else io.read_parquet_kept(path)


def portable(model: LogisticRegression) -> None:
    """Round the fitted numbers the stage writes (parameters, loss curves) to `PORTABLE_BITS`: BLAS kernels and
    numpy's SIMD loops differ by CPU (AVX2 against AVX-512) in the last bit of a fit, and dvc.lock records the
    model's bytes, so a fresh clone's `make repro` would rewrite the lock on another CPU. Each value is rounded
    in binary (exact on every machine); a one-bit difference still lands on either side of a rounding boundary
    for about one value in 4000. The reports are written at 10 digits for the same reason (`io.write_csv`)."""
    model.coef_, model.intercept_ = _rounded(model.coef_), _rounded(model.intercept_)
    model.cost_history_ = _rounded(np.asarray(model.cost_history_, dtype=np.float64)).tolist()
    model.val_history_ = _rounded(np.asarray(model.val_history_, dtype=np.float64)).tolist()


def _rounded(values: np.ndarray) -> np.ndarray:
    fraction, exponent = np.frexp(values)  # values = fraction * 2**exponent, 0.5 <= |fraction| < 1: exact
    scale = float(2**PORTABLE_BITS)
    return np.ldexp(np.round(fraction * scale) / scale, exponent).astype(values.dtype)


def execute(params: dict[str, Any], files: Files) -> None:
    labels = io.read_json(files.inputs["schema"])["labels"]
    train = _model_input(files.inputs["train"])
    with _blas_threads(train):
        model = _fit_all(params, files, train, labels)
    portable(model)
    pipeline = ScoringPipeline(
        Preprocessor.from_dict(io.read_json(files.inputs["preprocessor"])),
        PolynomialExpander.from_dict(io.read_json(files.inputs["features"])),
        model,
        labels,
    )
    pipeline.save(files.outputs["model"])
    io.write_csv(files.outputs["cost_history"], cost_history(model))


def _blas_threads(train: pd.DataFrame | ParquetChunks) -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread for the fits of a training split of up to `ONE_THREAD_BYTES`, whoever runs the stage. In
    a sweep the machine's other core is busy with the figure helper or another fit (`_fit_threads`), and
    OpenBLAS's second thread waits for it on every call: a tracked 10-C cross-validated sweep of a 30k-row CSV
    took 8.6 s with two threads and 7.0 s with one on a 2-core AMD EPYC, while on an idle machine one thread
    costs a Newton fit of 24,000 x 133 7 % (68 to 73 ms). By size alone, never by who runs the fits: OpenBLAS
    sums ``X.T @ r`` in an order that depends on its thread count, and a sweep's job must write `dvc repro`'s
    model, bit for bit. Larger splits, and streamed ones, keep the process's threads: there the second core's
    share of a pass is worth its wait."""
    if _small(train):
        from logitlab.model._loss import single_threaded_blas

        return single_threaded_blas()
    return contextlib.nullcontext()


def _small(train: pd.DataFrame | ParquetChunks) -> bool:
    return isinstance(train, pd.DataFrame) and train.shape[0] * train.shape[1] * 8 <= ONE_THREAD_BYTES


def _fit_threads(train: pd.DataFrame | ParquetChunks, folds: list[FoldArrays]) -> int:
    """Two threads for a cross-validated job's fits where each runs on one BLAS thread (`_blas_threads`): numpy
    and scipy let go of the GIL in a fit's passes and Hessians, so two fits share the machine's two cores. One
    elsewhere: a large split's BLAS calls use the cores already."""
    return min(2, len(os.sched_getaffinity(0))) if folds and _small(train) else 1


def _fit_all(
    params: dict[str, Any], files: Files, train: pd.DataFrame | ParquetChunks, labels: dict[str, Any]
) -> LogisticRegression:
    """The folds' models (their scores and curves written to the `cv` folder) and the model on `train`, on
    the machine's two cores where the fits are small (`_fit_threads`): the refit first, beside the folds."""
    path_key = warm_starts.problem_key(files.inputs["train"], params)
    refit = functools.partial(_fitted, train, _model_input(files.inputs["val"]), params, _warm_start(path_key, params))
    folds = _read_folds(files.inputs["folds"])
    threads = _fit_threads(train, folds)
    with convergence_logged(), ThreadPoolExecutor(threads) if threads > 1 else contextlib.nullcontext() as pool:
        model_fitted = pool.submit(refit) if pool is not None else None
        with io.replaced_folder(files.outputs["cv"]) as cv:
            fold_keys = [
                warm_starts.problem_key(preprocess.fold_file(files.inputs["folds"], index, "train"), params)
                for index in range(len(folds))
            ]
            scores, histories = cross_validate(folds, params, len(class_names(labels)), fold_keys, pool)
            for index, history in enumerate(histories):
                io.write_csv(cv / f"fold-{index}-cost_history.csv", history)
            io.write_json(cv / CV_SCORES_FILE, {"folds": scores, **(reports.cv_summary(scores) if scores else {})})
        model = model_fitted.result() if model_fitted is not None else refit()
    warm_starts.remember(path_key, model.C, model.coef_, model.intercept_)
    return model


STAGE = Stage(
    name="train",
    params=("model", "seed"),
    inputs={
        "train": feature_engineer.STAGE.output("train"),
        "val": feature_engineer.STAGE.output("val"),
        "features": feature_engineer.STAGE.output("state"),
        "preprocessor": preprocess.STAGE.output("state"),
        "schema": ingest.STAGE.output("schema"),
        "folds": feature_engineer.STAGE.output("folds"),
    },
    outputs={
        "model": Output(Path(SAVED_IN)),
        "cost_history": Output(Path("reports/cost_history.csv"), cache=False),  # the plot "Loss per epoch"
        # scores.json (the held-out scores, none without cv_folds) and each fold's fold-<i>-cost_history.csv
        "cv": Output(Path("reports/cv")),
    },
    sources=("src/logitlab/stages/train.py", "src/logitlab/model", "src/logitlab/reports.py"),
    settings=settings,
    run=execute,
)

if __name__ == "__main__":
    from logitlab import dvc_stage

    dvc_stage.main(STAGE)
