"""Cross-validation under a pruner (`stages.train.cross_validate` with a reporter set): the folds fitted side by
side report their mean every stride, stop together when told, leave with their final score when they end,
and a fold's error stops the others; the results are the sequential path's."""

from __future__ import annotations

import contextlib
import logging
import threading

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from logitlab import warm_starts
from logitlab.errors import DivergenceError, TrialPruned
from logitlab.model._lockstep import FoldsInLockstep
from logitlab.model._monitor import EpochReporter, reporting
from logitlab.sources import TARGET
from logitlab.stages import train

# lbfgs to tol=1e-4 ends the folds at 10, 9 and 11 epochs: with a report every 2 epochs, fold 1 has ended by
# the report at epoch 10, where it counts with its final held-out score.
PARAMS = {"solver": "lbfgs", "tol": 1e-4, "max_iter": 100, "random_state": 0}


def fold(seed: int, scale: float = 1.0) -> train.FoldArrays:
    X, y = make_classification(n_samples=200, n_features=5, random_state=seed)
    frame = pd.DataFrame(X * scale, columns=[f"x{i}" for i in range(5)]).assign(**{TARGET: y})
    return train.FoldArrays.of({"train": frame.iloc[:150], "val": frame.iloc[150:]})


FOLDS = [fold(0), fold(1), fold(2)]


def reporter(every: int, score: str, stop_at: int | None = None) -> tuple[EpochReporter, list[tuple[int, float]]]:
    """The trial's side, as a plain function: what it was told, and stop at `stop_at`."""
    reported: list[tuple[int, float]] = []

    def report(epoch: int, value: float) -> bool:
        reported.append((epoch, value))
        return epoch == stop_at

    return EpochReporter(every, score, report), reported


def fold_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("cv-fold-")]


def expected_mean(histories: list[pd.DataFrame], scores: list[dict[str, float]], epoch: int) -> float:
    """The fold mean of the held-out loss at `epoch`, a fold that ended before it counting with its final one."""
    values = [
        float(history["val_loss"].iloc[epoch - 1]) if len(history) >= epoch else fold_scores["log_loss"]
        for history, fold_scores in zip(histories, scores, strict=True)
    ]
    return sum(values) / len(values)


@pytest.mark.parametrize("score", ["loss", "accuracy"])
def test_folds_in_lockstep_fit_what_the_sequential_path_fits_and_report_the_fold_mean(score: str) -> None:
    sequential_scores, sequential_histories = train.cross_validate(FOLDS, PARAMS, 2)
    assert [len(history) for history in sequential_histories] == [10, 9, 11]
    outer, reported = reporter(2, score)
    with reporting(outer):
        scores, histories = train.cross_validate(FOLDS, PARAMS, 2)
    assert scores == sequential_scores  # bitwise: each fold's fit depends on its own data and seed only
    for history, sequential in zip(histories, sequential_histories, strict=True):
        pd.testing.assert_frame_equal(history, sequential, check_exact=True)
    # once per stride while any fold fits; none at 12 (every fold ended by epoch 11)
    assert [epoch for epoch, _ in reported] == [2, 4, 6, 8, 10]
    if score == "loss":
        for epoch, value in reported:
            assert value == pytest.approx(expected_mean(histories, scores, epoch), rel=1e-12, abs=0)
    else:
        assert all(0.5 < value <= 1 for _, value in reported)
    assert not fold_threads()  # every fold's thread ended


def test_a_pruned_cross_validation_stops_every_fold_at_the_same_epoch_with_the_mean_curves() -> None:
    scores, histories = train.cross_validate(FOLDS, PARAMS, 2)
    outer, reported = reporter(2, "loss", stop_at=6)
    with pytest.raises(TrialPruned) as raised, reporting(outer):
        train.cross_validate(FOLDS, PARAMS, 2)
    pruned = raised.value
    assert [epoch for epoch, _ in reported] == [2, 4, 6]  # no fold went on to report 8
    assert (pruned.step, pruned.value) == reported[-1]
    assert pruned.value == pytest.approx(expected_mean(histories, scores, 6), rel=1e-12, abs=0)
    # the job's curves: the folds' mean train and held-out loss per epoch up to where it stopped
    for column, curve in (("train_loss", pruned.cost_history), ("val_loss", pruned.val_history)):
        expected = np.mean([history[column].to_numpy()[:6] for history in histories], axis=0)
        np.testing.assert_allclose(curve, expected, rtol=1e-12)


@pytest.mark.timeout(60)
def test_a_fold_that_diverges_stops_the_others_and_its_error_is_raised() -> None:
    # the third fold's features at 1000 times the scale: the fixed step makes it diverge at epoch 2
    folds = [fold(0), fold(1), fold(2, scale=1000.0)]
    params = {"solver": "gd", "learning_rate": 0.5, "tol": 0, "max_iter": 60, "random_state": 0}
    outer, reported = reporter(1, "loss")
    with pytest.raises(DivergenceError, match="training diverged at epoch 2"), reporting(outer):
        train.cross_validate(folds, params, 2)
    assert [epoch for epoch, _ in reported] == [1]  # epoch 2 never had all its folds
    assert not fold_threads()


def test_a_failing_trial_report_is_the_jobs_error() -> None:
    def report(epoch: int, value: float) -> bool:
        raise OSError("the study's storage is gone")

    with pytest.raises(OSError, match="storage is gone"), reporting(EpochReporter(2, "loss", report)):
        train.cross_validate(FOLDS, PARAMS, 2)
    assert not fold_threads()


def test_warm_starts_are_read_and_kept_per_fold_as_on_the_sequential_path() -> None:
    keys: list[str | None] = [f"fold-{index}" for index in range(len(FOLDS))]

    def path(pruned: bool) -> tuple[list[dict[str, float]], list[int]]:
        """A regularisation path of two Cs: the second fit of each fold starts from the first's solution."""
        warm_starts.forget()
        with reporting(reporter(2, "loss")[0]) if pruned else contextlib.nullcontext():
            for C in (1.0, 2.0):
                scores, histories = train.cross_validate(FOLDS, {**PARAMS, "C": C, "warm_start": True}, 2, keys)
        return scores, [len(history) for history in histories]

    try:
        sequential = path(pruned=False)
        assert path(pruned=True) == sequential
        assert sum(sequential[1]) < 30  # warm: fewer epochs than the 10 + 9 + 11 of the cold fits
    finally:
        warm_starts.forget()


def test_the_lockstep_waits_for_every_fold_still_fitting_and_counts_an_ended_one_with_its_final_value() -> None:
    told: list[tuple[int, float]] = []
    lockstep = FoldsInLockstep(EpochReporter(5, "loss", lambda epoch, value: told.append((epoch, value)) or False), 2)
    answers: list[bool] = []
    waiting = threading.Thread(target=lambda: answers.append(lockstep.reporter(0).report(5, 1.0)))
    waiting.start()
    waiting.join(timeout=0.2)
    assert waiting.is_alive() and told == []  # fold 1 has neither reported epoch 5 nor ended
    lockstep.leave(1, final_value=3.0)  # it ended (converged) before epoch 5
    waiting.join(timeout=10)
    assert not waiting.is_alive() and answers == [False] and told == [(5, 2.0)]
    assert lockstep.reporter(0).report(10, 0.5) is False and told[-1] == (10, 1.75)


def test_each_folds_convergence_warning_is_a_log_line_as_on_the_sequential_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    params = {**PARAMS, "max_iter": 5}  # too few epochs: every fold stops unconverged
    with caplog.at_level(logging.WARNING, logger="logitlab.stages.train"):
        train.cross_validate(FOLDS, params, 2)
        sequential = sorted(record.getMessage() for record in caplog.records)
        caplog.clear()
        with reporting(reporter(2, "loss")[0]):
            train.cross_validate(FOLDS, params, 2)
    assert len(sequential) == 3 and all("did not converge after 5 epochs" in line for line in sequential)
    assert sorted(record.getMessage() for record in caplog.records) == sequential
