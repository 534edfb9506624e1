"""Metrics and curve data from a fitted model and the processed splits: the numbers DVC and MLflow show."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from logitlab.model import LogisticRegression
from logitlab.sources import TARGET

# Every metric `evaluate` returns: the names `sweep.metric` may take.
METRICS = (
    *(f"{split}_{name}" for split in ("train", "val", "test") for name in ("accuracy", "log_loss")),
    "val_roc_auc",
    "test_roc_auc",
    *(f"test_{name}" for name in ("precision", "recall", "f1", "tn", "fp", "fn", "tp")),
    "n_iter",
    "converged",
    "final_train_loss",
)
CURVE_POINTS = 10_000  # streamed data: curve points kept for the CSVs and figures


def split_xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    return frame.drop(columns=[TARGET]), frame[TARGET].to_numpy()


def evaluate(model: LogisticRegression, splits: dict[str, pd.DataFrame]) -> dict[str, float | int]:
    """Accuracy on every split; ranking, probability and confusion metrics on the test split."""
    result: dict[str, float | int] = {}
    for name, frame in splits.items():
        X, y = split_xy(frame)
        proba = model.predict_proba(X)[:, 1]
        predicted = (proba >= model.threshold).astype(np.int64)
        result[f"{name}_accuracy"] = float(skm.accuracy_score(y, predicted))
        result[f"{name}_log_loss"] = float(skm.log_loss(y, proba, labels=[0, 1]))
        if name == "train":
            continue
        _ranking_metrics(result, name, y, proba, predicted)
    return _finish(result, model)


def _ranking_metrics(
    result: dict[str, float | int], name: str, y: np.ndarray, proba: np.ndarray, predicted: np.ndarray
) -> None:
    result[f"{name}_roc_auc"] = float(skm.roc_auc_score(y, proba))
    if name == "test":
        tn, fp, fn, tp = skm.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
        result.update(
            test_precision=float(skm.precision_score(y, predicted, zero_division=0)),
            test_recall=float(skm.recall_score(y, predicted, zero_division=0)),
            test_f1=float(skm.f1_score(y, predicted, zero_division=0)),
            test_tn=int(tn),
            test_fp=int(fp),
            test_fn=int(fn),
            test_tp=int(tp),
        )


def _finish(result: dict[str, float | int], model: LogisticRegression) -> dict[str, float | int]:
    result["n_iter"] = int(model.n_iter_)
    result["converged"] = int(bool(model.converged_))
    result["final_train_loss"] = float(model.cost_history_[-1])
    return {key: round(value, 10) if isinstance(value, float) else value for key, value in result.items()}


def evaluate_chunks(
    model: LogisticRegression, splits: Mapping[str, Callable[[], Iterable[pd.DataFrame]]]
) -> tuple[dict[str, float | int], dict[str, pd.DataFrame]]:
    """`evaluate` and the test `curves` over splits scored chunk by chunk: accuracy and log loss are
    summed per chunk; the val/test labels and probabilities (one float per row) are kept for the ranking
    metrics and curves. The ROC/PR curves are thinned to at most `CURVE_POINTS` points."""
    result: dict[str, float | int] = {}
    test_curves: dict[str, pd.DataFrame] = {}
    for name, chunks in splits.items():
        n_rows, correct, loss_sum = 0, 0, 0.0
        labels, probas = [], []
        for frame in chunks():
            X, y = split_xy(frame)
            proba = model.predict_proba(X)[:, 1]
            n_rows += len(y)
            correct += int(((proba >= model.threshold) == y).sum())
            loss_sum += float(skm.log_loss(y, proba, labels=[0, 1], normalize=False))
            if name != "train":
                labels.append(y.astype(np.int64))
                probas.append(proba)
        result[f"{name}_accuracy"] = correct / n_rows
        result[f"{name}_log_loss"] = loss_sum / n_rows
        if name == "train":
            continue
        y, proba = np.concatenate(labels), np.concatenate(probas)
        del labels, probas
        predicted = (proba >= model.threshold).astype(np.int64)
        _ranking_metrics(result, name, y, proba, predicted)
        if name == "test":
            test_curves = _curves(y, proba, predicted)
            for curve in ("roc", "pr"):
                test_curves[curve] = evenly_spaced(test_curves[curve], CURVE_POINTS).reset_index(drop=True)
    return _finish(result, model), test_curves


def evenly_spaced(table: pd.DataFrame, points: int) -> pd.DataFrame:
    """At most `points` evenly spaced rows, the first and the last among them (0: all rows)."""
    if points == 0 or len(table) <= points:
        return table
    return table.iloc[np.unique(np.linspace(0, len(table) - 1, points).round().astype(np.intp))]


def curves(model: LogisticRegression, test: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """ROC, precision-recall and calibration curves and per-row confusion data of the test split."""
    X, y = split_xy(test)
    proba = model.predict_proba(X)[:, 1]
    return _curves(y, proba, (proba >= model.threshold).astype(np.int64))


def _curves(y: np.ndarray, proba: np.ndarray, predicted: np.ndarray) -> dict[str, pd.DataFrame]:
    fpr, tpr, _ = skm.roc_curve(y, proba)
    precision, recall, _ = skm.precision_recall_curve(y, proba)
    n_bins = int(np.clip(len(y) // 20, 2, 10))
    fraction, mean_predicted = calibration_curve(y, proba, n_bins=n_bins, strategy="quantile")
    return {
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "pr": pd.DataFrame({"recall": recall, "precision": precision}),
        "calibration": pd.DataFrame({"mean_predicted": mean_predicted, "fraction_positive": fraction}),
        "confusion": pd.DataFrame({"actual": y, "predicted": predicted}),
    }


def coefficients(model: LogisticRegression, names: list[str]) -> pd.DataFrame:
    coef = np.asarray(model.coef_, dtype=np.float64).ravel()
    table = pd.DataFrame({"feature": ["(intercept)", *names], "coefficient": [float(model.intercept_[0]), *coef]})
    return table


def summary(metrics: dict[str, Any]) -> str:
    keys = ("train_accuracy", "val_accuracy", "test_accuracy", "test_roc_auc", "test_log_loss")
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
