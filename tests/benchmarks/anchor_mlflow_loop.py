"""Anchor of the tracked sweep: the README's nine fits as a minimal hand-written MLflow loop, in one process.

What a user would write instead of `python -m logitlab.sweep -m data=circles model.learning_rate=0.01,0.1,1
features.degree=1,2,3`, kept honest: the same data (`conf/data/circles.yaml`'s make_circles, the pipeline's
stratified train/val/test split with `seed`, standard scaling fitted on train, polynomial features of the
scaled columns), the same estimator with the same parameters (`conf/model/gd.yaml` plus the swept learning
rate, `random_state=seed`, the validation split for its per-epoch val loss), and the same tracking: a parent
run, nine nested child runs with their params, final metrics and both loss curves as step metrics thinned to
`mlflow.history_points` points like the sweep's, in the store named by MLFLOW_TRACKING_URI. The curves go
in one `log_batch` per run (the fastest way MLflow offers): the anchor is as quick as a careful user's loop.

Run as ``python tests/benchmarks/anchor_mlflow_loop.py CONF_DIR OUT_JSON`` (process start to exit is the time
measured); OUT_JSON gets each fit's own seconds (timed in process) and validation accuracy, in the sweep's job order.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import yaml
from mlflow.entities import Metric
from sklearn.datasets import make_circles
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from logitlab import LogisticRegression

LEARNING_RATES = (0.01, 0.1, 1.0)
DEGREES = (1, 2, 3)


def conf(folder: Path, name: str) -> dict:
    return yaml.safe_load((folder / f"{name}.yaml").read_text())


def thinned(curve: list[float], points: int) -> list[tuple[int, float]]:
    """At most `points` evenly spaced (epoch, value) pairs, the first and last epochs among them."""
    epochs = np.arange(len(curve))
    if points and len(curve) > points:
        epochs = np.unique(np.linspace(0, len(curve) - 1, points).round().astype(int))
    return [(int(epoch), float(curve[epoch])) for epoch in epochs]


def main(conf_dir: Path, out: Path) -> None:
    seed = conf(conf_dir, "config")["seed"]
    data, split = conf(conf_dir, "data/circles"), conf(conf_dir, "preprocess/standard")
    model_params = conf(conf_dir, "model/gd")
    history_points = conf(conf_dir, "mlflow/local")["history_points"]
    X, y = make_circles(
        n_samples=data["n_samples"], noise=data["noise"], factor=data["factor"], random_state=data["random_state"]
    )
    X_rest, X_test, y_rest, y_test = train_test_split(X, y, test_size=split["test_size"], random_state=seed, stratify=y)
    X_train, X_val, y_train, y_val = train_test_split(
        X_rest, y_rest, test_size=split["val_size"] / (1 - split["test_size"]), random_state=seed, stratify=y_rest
    )
    scaler = StandardScaler().fit(X_train)
    scaled = {name: scaler.transform(part) for name, part in (("train", X_train), ("val", X_val), ("test", X_test))}
    labels = {"train": y_train, "val": y_val, "test": y_test}

    client = mlflow.MlflowClient()
    mlflow.set_experiment("circles")
    fit_seconds, val_accuracies = [], []
    with mlflow.start_run(run_name="hand-written sweep"):
        for learning_rate, degree in itertools.product(LEARNING_RATES, DEGREES):
            expand = PolynomialFeatures(degree, include_bias=False).fit(scaled["train"])
            features = {name: expand.transform(part) for name, part in scaled.items()}
            params = {**model_params, "learning_rate": learning_rate, "random_state": seed}
            with mlflow.start_run(run_name=f"lr={learning_rate} degree={degree}", nested=True) as run:
                mlflow.log_params({**{f"model.{k}": v for k, v in params.items()}, "features.degree": degree})
                model = LogisticRegression(**params)
                start = time.perf_counter()
                model.fit(features["train"], y_train, X_val=features["val"], y_val=y_val)
                fit_seconds.append(time.perf_counter() - start)
                metrics = {
                    f"{name}_accuracy": accuracy_score(labels[name], model.predict(features[name])) for name in labels
                }
                proba = model.predict_proba(features["test"])[:, 1]
                metrics |= {"test_roc_auc": roc_auc_score(y_test, proba), "test_log_loss": log_loss(y_test, proba)}
                mlflow.log_metrics(metrics)
                val_accuracies.append(metrics["val_accuracy"])
                now = int(time.time() * 1000)
                curves = {"train_loss": model.cost_history_, "val_loss": model.val_history_}
                points = [
                    Metric(key, value, now, epoch)
                    for key, curve in curves.items()
                    for epoch, value in thinned(list(curve), history_points)
                ]
                client.log_batch(run.info.run_id, metrics=points)
        mlflow.log_metric("best_val_accuracy", max(val_accuracies))
    out.write_text(json.dumps({"fit_seconds": fit_seconds, "val_accuracies": val_accuracies}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
