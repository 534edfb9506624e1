"""Anchor of the cross-validated C sweep: scikit-learn's `LogisticRegressionCV(Cs=10, cv=5)` in a pipeline.

From the raw CSV to the refit model, as a script (process start to exit is the time measured): the
numeric columns median-imputed and standardised, the text columns most-frequent-imputed and one-hot
encoded (a `ColumnTransformer`), fitted on the same train+val rows the sweep's refit model sees and scored
on the same test rows. The split is reproduced as the pipeline makes it (`stages/preprocess.split`): the
labels coded 1 for the positive label, `train_test_split(test_size, random_state=seed, stratify=labels)`.

Run as ``python tests/benchmarks/anchor_logreg_cv.py CSV TARGET POSITIVE MISSING TEST_SIZE SEED OUT_JSON``;
OUT_JSON gets the test accuracy, the chosen C and the test rows' labels (to check the split is the sweep's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def main(csv: Path, target: str, positive: str, missing: str, test_size: float, seed: int, out: Path) -> None:
    frame = pd.read_csv(csv, na_values=[missing])
    y = (frame.pop(target) == positive).astype(int).to_numpy()
    X_rest, X_test, y_rest, y_test = train_test_split(frame, y, test_size=test_size, random_state=seed, stratify=y)
    numeric = [name for name in frame.columns if pd.api.types.is_numeric_dtype(frame[name])]
    text = [name for name in frame.columns if name not in numeric]
    numeric_steps = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    text_steps = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
    columns = ColumnTransformer([("numeric", numeric_steps, numeric), ("text", text_steps, text)])
    model = make_pipeline(columns, LogisticRegressionCV(Cs=10, cv=5)).fit(X_rest, y_rest)
    result = {
        "test_accuracy": accuracy_score(y_test, model.predict(X_test)),
        "C": float(model[-1].C_[0]),
        "test_labels": y_test.tolist(),
    }
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    csv, target, positive, missing, test_size, seed, out = sys.argv[1:]
    main(Path(csv), target, positive, missing, float(test_size), int(seed), Path(out))
