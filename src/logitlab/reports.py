"""Metrics and curve data from a fitted model and the processed splits: the numbers DVC and MLflow show.

Binary and multiclass alike: accuracy and log loss on every split, ROC AUC on val and test (one-vs-rest,
macro-averaged over the classes a split holds, for K > 2), macro and weighted F1 and a per-class
precision/recall/F1 table on test; the binary counts (tp, fp, ...) for two classes only. Labels are the
class codes of the `target` column; `names` are the original labels in code order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from logitlab.config import CV_SCORES
from logitlab.sources import TARGET

if TYPE_CHECKING:  # scikit-learn's metrics are imported where the curves are drawn from them
    from logitlab.model import LogisticRegression

CURVE_POINTS = 10_000  # streamed data: curve points kept for the CSVs and figures


def split_xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    return frame.drop(columns=[TARGET]), frame[TARGET].to_numpy()


def probabilities(model: LogisticRegression, X: Any, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities by class code, whichever codes the model was fitted on (a column of
    zeros for a class it never saw)."""
    proba = model.predict_proba(X)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((proba.shape[0], n_classes), dtype=proba.dtype)
    full[:, model.classes_.astype(np.intp)] = proba
    return full


def predicted(model: LogisticRegression, proba: np.ndarray) -> np.ndarray:
    """Class codes: the binary threshold on the positive probability, else the most probable class."""
    if proba.shape[1] == 2:
        return (proba[:, 1] >= model.threshold).astype(np.int64)
    return proba.argmax(axis=1).astype(np.int64)


def log_loss(y: np.ndarray, proba: np.ndarray, normalize: bool = True) -> float:
    """scikit-learn's log loss (probabilities clipped to [eps, 1 - eps]) without its input checks: those took
    most of a small split's scoring, once per split and fold of every sweep job."""
    eps = np.finfo(proba.dtype).eps
    if proba.shape[1] == 2:  # as scikit-learn builds it from the positive column: [1 - p, p]
        positive = proba[:, 1]
        of_label = np.where(y == 1, positive, 1 - positive)
    else:
        of_label = proba[np.arange(y.size), y.astype(np.intp)]
    losses = -np.log(np.clip(of_label, eps, 1 - eps))
    return float(losses.mean() if normalize else losses.sum())


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Binary: the AUC of the positive probability. More classes: one-vs-rest AUC per class, averaged over
    the classes that have rows in `y` (scikit-learn's macro "ovr" when all do); NaN if none can be scored."""
    if proba.shape[1] == 2:
        return _auc(y == 1, proba[:, 1])
    scores = [_auc(y == k, proba[:, k]) for k in range(proba.shape[1]) if 0 < np.count_nonzero(y == k) < y.size]
    return float(np.mean(scores)) if scores else float("nan")


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """The area under the ROC curve as the Mann-Whitney statistic (tied scores share their mean rank): the
    trapezoids of scikit-learn's `roc_auc_score`, counted instead of drawn. NaN when one class is absent."""
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    ranks = np.empty(score.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)  # 1-based mean rank of each tie group
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _counts(y: np.ndarray, chosen: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class code: hits (true positives), predicted and true counts."""
    hits = np.bincount(y[y == chosen].astype(np.intp), minlength=n_classes)
    return (
        hits,
        np.bincount(chosen.astype(np.intp), minlength=n_classes),
        np.bincount(y.astype(np.intp), minlength=n_classes),
    )


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    safe = np.where(denominator == 0, 1, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def evaluate(
    model: LogisticRegression, splits: Mapping[str, pd.DataFrame], names: list[str]
) -> tuple[dict[str, float | int], dict[str, pd.DataFrame]]:
    """Accuracy and log loss on every split (an empty one, the validation split under cross-validation, is
    skipped); ranking and per-class metrics on val and test; and the test split's tables (`_tables`), from the
    same probabilities."""
    result: dict[str, float | int] = {}
    test_tables: dict[str, pd.DataFrame] = {}
    for name, frame in splits.items():
        if frame.empty:
            continue
        X, y = split_xy(frame)
        proba = probabilities(model, X, len(names))
        chosen = predicted(model, proba)
        result[f"{name}_accuracy"] = float(np.mean(y == chosen))
        result[f"{name}_log_loss"] = log_loss(y, proba)
        if name != "train":
            _ranking_metrics(result, name, y, proba, chosen)
        if name == "test":
            test_tables = _tables(y, proba, chosen, names)
    return _finish(result, model), test_tables


def fold_scores(model: LogisticRegression, X: Any, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """`CV_SCORES` of a model fitted on a fold's training part, on its held-out part (X, y)."""
    proba = probabilities(model, X, n_classes)
    return {
        "accuracy": float(np.mean(y == predicted(model, proba))),
        "log_loss": log_loss(y, proba),
        "roc_auc": roc_auc(y, proba),
    }


def cv_summary(scores: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean and standard deviation (ddof 0, as scikit-learn's cv_results_) of each score over the folds."""
    summary = {}
    for score in CV_SCORES:
        values = np.array([fold[score] for fold in scores], dtype=np.float64)
        summary[f"cv_{score}_mean"] = round(float(values.mean()), 10)
        summary[f"cv_{score}_std"] = round(float(values.std()), 10)
    return summary


def _ranking_metrics(
    result: dict[str, float | int], name: str, y: np.ndarray, proba: np.ndarray, chosen: np.ndarray
) -> None:
    result[f"{name}_roc_auc"] = roc_auc(y, proba)
    if name != "test":
        return
    tp, predicted_count, true_count = _counts(y, chosen, proba.shape[1])
    present = predicted_count + true_count > 0  # scikit-learn's default labels: those in y or the predictions
    f1 = _ratio(2 * tp[present], predicted_count[present] + true_count[present])
    result["test_f1_macro"] = float(f1.mean())
    result["test_f1_weighted"] = float(np.average(f1, weights=true_count[present]))
    if proba.shape[1] == 2:
        tp1 = int(np.count_nonzero((y == 1) & (chosen == 1)))
        fp, fn = int(np.count_nonzero((y == 0) & (chosen == 1))), int(np.count_nonzero((y == 1) & (chosen == 0)))
        tn = y.size - tp1 - fp - fn
        result.update(
            test_precision=float(_ratio(np.array(tp1), np.array(tp1 + fp))),
            test_recall=float(_ratio(np.array(tp1), np.array(tp1 + fn))),
            test_f1=float(_ratio(np.array(2 * tp1), np.array(2 * tp1 + fp + fn))),
            test_tn=tn,
            test_fp=fp,
            test_fn=fn,
            test_tp=tp1,
        )


def _finish(result: dict[str, float | int], model: LogisticRegression) -> dict[str, float | int]:
    result["n_iter"] = int(model.n_iter_)
    result["converged"] = int(bool(model.converged_))
    result["final_train_loss"] = float(model.cost_history_[-1])
    # how sparse an L1 fit is: every class's weights, the intercepts not counted
    result["n_nonzero_coef"] = int(np.count_nonzero(model.coef_))
    # A score a split cannot give (ROC AUC of a split holding one class) is left out, not written as NaN.
    return {
        key: round(value, 10) if isinstance(value, float) else value
        for key, value in result.items()
        if not (isinstance(value, float) and np.isnan(value))
    }


def evaluate_chunks(
    model: LogisticRegression, splits: Mapping[str, Callable[[], Iterable[pd.DataFrame]]], names: list[str]
) -> tuple[dict[str, float | int], dict[str, pd.DataFrame]]:
    """`evaluate` over splits scored chunk by chunk: accuracy and log loss are
    summed per chunk; the val/test labels and probabilities (K floats per row) are kept for the ranking
    metrics and curves. The ROC/PR curves are thinned to at most `CURVE_POINTS` points."""
    result: dict[str, float | int] = {}
    test_tables: dict[str, pd.DataFrame] = {}
    n_classes = len(names)
    for name, chunks in splits.items():
        n_rows, correct, loss_sum = 0, 0, 0.0
        labels, probas = [], []
        for frame in chunks():
            X, y = split_xy(frame)
            proba = probabilities(model, X, n_classes)
            n_rows += len(y)
            correct += int((predicted(model, proba) == y).sum())
            loss_sum += log_loss(y, proba, normalize=False)
            if name != "train":
                labels.append(y.astype(np.int64))
                probas.append(proba)
        result[f"{name}_accuracy"] = correct / n_rows
        result[f"{name}_log_loss"] = loss_sum / n_rows
        if name == "train":
            continue
        y, proba = np.concatenate(labels), np.concatenate(probas)
        del labels, probas
        chosen = predicted(model, proba)
        _ranking_metrics(result, name, y, proba, chosen)
        if name == "test":
            test_tables = _tables(y, proba, chosen, names)
            for curve in ("roc", "pr", "roc_ovr"):
                if curve in test_tables:
                    test_tables[curve] = _thinned(test_tables[curve], CURVE_POINTS)
    return _finish(result, model), test_tables


def _thinned(table: pd.DataFrame, points: int) -> pd.DataFrame:
    if "class" not in table:
        return evenly_spaced(table, points).reset_index(drop=True)
    return pd.concat([evenly_spaced(part, points) for _, part in table.groupby("class", sort=False)], ignore_index=True)


def evenly_spaced(table: pd.DataFrame, points: int) -> pd.DataFrame:
    """At most `points` evenly spaced rows, the first and the last among them (0: all rows)."""
    if points == 0 or len(table) <= points:
        return table
    return table.iloc[np.unique(np.linspace(0, len(table) - 1, points).round().astype(np.intp))]


def _tables(y: np.ndarray, proba: np.ndarray, chosen: np.ndarray, names: list[str]) -> dict[str, pd.DataFrame]:
    """The test split's curve data for the plots (`roc`, `pr`, `calibration`, `confusion`; `roc_ovr` with more
    than two classes) and the `per_class` precision/recall/F1 table. Two classes: the curves of the positive
    probability. More: micro-averaged one-vs-rest ROC and PR curves (every (row, class) pair one score; one curve
    each for DVC's plots), each class's own ROC curve (`roc_ovr`, for the figure) and top-label calibration (the
    predicted class's probability against how often it is right). The confusion rows carry the label names."""
    from sklearn import metrics as skm

    if proba.shape[1] == 2:
        score, truth = proba[:, 1], y
    else:
        score, truth = proba.ravel(), (y[:, None] == np.arange(proba.shape[1])).ravel()
    fpr, tpr, _ = skm.roc_curve(truth, score)
    precision, recall, _ = skm.precision_recall_curve(truth, score)
    if proba.shape[1] == 2:
        confidence, hit = proba[:, 1], y
    else:
        confidence, hit = proba.max(axis=1), (chosen == y).astype(np.int64)
    n_bins = int(np.clip(len(y) // 20, 2, 10))
    fraction, mean_predicted = _calibration(hit, confidence, n_bins)
    label = np.asarray(names, dtype=object)
    out = {
        "roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
        "pr": pd.DataFrame({"recall": recall, "precision": precision}),
        "calibration": pd.DataFrame({"mean_predicted": mean_predicted, "fraction_positive": fraction}),
        "confusion": pd.DataFrame({"actual": label[y], "predicted": label[chosen]}),
        "per_class": per_class(y, chosen, names),
    }
    if proba.shape[1] > 2:
        out["roc_ovr"] = _roc_per_class(y, proba, names)
    return out


def _calibration(hit: np.ndarray, confidence: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's `calibration_curve(hit, confidence, n_bins, strategy="quantile")` for 0/1 `hit`, the same
    sums, without its checks (~1 ms a sweep job) or importing `sklearn.calibration` (~30 ms): the fraction of hits
    and the mean confidence in each non-empty bin of equally many rows."""
    if np.unique(hit).size < 2:  # every prediction right (or wrong): one point at the mean confidence
        return np.array([float(hit.mean())]), np.array([float(confidence.mean())])
    bins = np.percentile(confidence, np.linspace(0, 1, n_bins + 1) * 100)
    bin_of = np.searchsorted(bins[1:-1], confidence)
    confidence_sums = np.bincount(bin_of, weights=confidence, minlength=n_bins)
    hit_sums = np.bincount(bin_of, weights=hit == 1, minlength=n_bins)
    rows = np.bincount(bin_of, minlength=n_bins)
    filled = rows != 0
    return hit_sums[filled] / rows[filled], confidence_sums[filled] / rows[filled]


def _roc_per_class(y: np.ndarray, proba: np.ndarray, names: list[str]) -> pd.DataFrame:
    from sklearn import metrics as skm

    parts = []
    for k, name in enumerate(names):
        if 0 < np.count_nonzero(y == k) < y.size:
            fpr, tpr, _ = skm.roc_curve(y == k, proba[:, k])
            parts.append(pd.DataFrame({"class": name, "fpr": fpr, "tpr": tpr}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["class", "fpr", "tpr"])


def per_class(y: np.ndarray, chosen: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support of every class on the split (0 where a class has no rows): scikit-learn's
    `precision_recall_fscore_support(zero_division=0)` over every class code, the same divisions of the same
    counts, without its checks (~5 ms a sweep job)."""
    hits, predicted_count, true_count = _counts(y, chosen, len(names))
    return pd.DataFrame(
        {
            "class": names,
            "precision": _ratio(hits, predicted_count),
            "recall": _ratio(hits, true_count),
            "f1": _ratio(2 * hits, predicted_count + true_count),
            "support": true_count.astype(np.int64),
        }
    )


def per_class_metrics(table: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """The per-class table as DVC metrics: {class: {precision, recall, f1, support}}."""
    return {
        str(row["class"]): {
            "precision": round(float(row["precision"]), 10),
            "recall": round(float(row["recall"]), 10),
            "f1": round(float(row["f1"]), 10),
            "support": int(row["support"]),
        }
        for row in table.to_dict("records")
    }


def coefficients(model: LogisticRegression, names: list[str], classes: list[str]) -> pd.DataFrame:
    """The intercept and each feature's coefficient; with more than two classes one row per (feature, class)."""
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    features = ["(intercept)", *names]
    if coef.shape[0] == 1:
        return pd.DataFrame({"feature": features, "coefficient": [float(intercept[0]), *coef[0]]})
    values = np.column_stack([intercept, coef])  # (K, 1 + n_features)
    return pd.DataFrame(
        {
            "feature": np.tile(features, len(classes)),
            "class": np.repeat(classes, len(features)),
            "coefficient": values.ravel(),
        }
    )


def summary(metrics: dict[str, Any]) -> str:
    keys = ("train_accuracy", "val_accuracy", "test_accuracy", "test_roc_auc", "test_log_loss", "cv_accuracy_mean")
    return "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
