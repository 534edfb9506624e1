"""Saving and loading: exact round trips, no pickle, and loud failures on damaged files."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from logitlab.errors import ModelFileError
from logitlab.model import LogisticRegression


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=200, n_features=4, random_state=1)
    return X, y


@pytest.fixture
def saved(tmp_path, data):
    model = LogisticRegression(solver="gd", max_iter=30, tol=0).fit(*data)
    model.save(tmp_path / "models" / "model")
    return model, tmp_path / "models" / "model"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_round_trip_keeps_predictions_dtype_names_and_labels(tmp_path, data, dtype):
    X, y = data
    labels = np.where(y == 1, "spam", "ham")
    frame = pd.DataFrame(X, columns=["w", "x", "y", "z"])
    model = LogisticRegression(dtype=dtype, class_weight={"ham": 2.0, "spam": 1.0}, threshold=0.4, random_state=3).fit(
        frame, labels, X_val=X[:50], y_val=labels[:50]
    )
    model.save(tmp_path / "model.npz")
    loaded = LogisticRegression.load(tmp_path / "model")
    assert loaded.get_params() == model.get_params()
    assert loaded.coef_.dtype == np.dtype(dtype) and np.array_equal(loaded.coef_, model.coef_)
    assert np.array_equal(loaded.intercept_, model.intercept_)
    assert list(loaded.feature_names_in_) == ["w", "x", "y", "z"]
    assert list(loaded.classes_) == ["ham", "spam"]
    assert np.array_equal(loaded.predict(frame), model.predict(frame))
    assert np.array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert loaded.cost_history_ == model.cost_history_ and loaded.val_history_ == model.val_history_
    assert (loaded.n_iter_, loaded.converged_) == (model.n_iter_, model.converged_)


def test_integer_labels_keep_their_dtype(tmp_path, data):
    X, y = data
    model = LogisticRegression().fit(X, (y * 5 + 2).astype(np.int32))
    model.save(tmp_path / "m.json")
    loaded = LogisticRegression.load(tmp_path / "m.npz")
    assert loaded.classes_.dtype == np.int32 and list(loaded.classes_) == [2, 7]


def test_files_are_npz_without_pickle_and_json_with_checksum(saved):
    _, base = saved
    with np.load(base.with_name("model.npz"), allow_pickle=False) as archive:
        assert sorted(archive.files) == ["coef", "intercept"]
    metadata = json.loads(base.with_name("model.json").read_text())
    assert metadata["format_version"] == 1 and len(metadata["npz_sha256"]) == 64
    assert not list(base.parent.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_missing_files_raise_model_file_error_naming_the_file(saved):
    _, base = saved
    with pytest.raises(ModelFileError, match=r"nowhere\.json is missing"):
        LogisticRegression.load(base.with_name("nowhere"))
    base.with_name("model.npz").unlink()
    with pytest.raises(ModelFileError, match=r"model\.npz is missing"):
        LogisticRegression.load(base)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_damaged_npz_is_rejected(saved, damage):
    _, base = saved
    npz = base.with_name("model.npz")
    content = npz.read_bytes()
    if damage == "truncate":
        npz.write_bytes(content[: len(content) // 2])
    else:
        npz.write_bytes(content[:100] + bytes([content[100] ^ 0xFF]) + content[101:])
    with pytest.raises(ModelFileError, match=r"model\.npz does not match the sha256"):
        LogisticRegression.load(base)


def test_tampered_arrays_with_a_forged_checksum_are_still_checked(saved, tmp_path):
    _, base = saved
    forged = tmp_path / "forged"
    LogisticRegression(solver="gd", max_iter=2, tol=0).fit(np.ones((4, 2)) * [[1], [-1], [2], [-2]], [1, 0, 1, 0]).save(
        forged
    )
    metadata = json.loads(base.with_name("model.json").read_text())
    metadata["npz_sha256"] = json.loads(forged.with_name("forged.json").read_text())["npz_sha256"]
    base.with_name("model.json").write_text(json.dumps(metadata))
    base.with_name("model.npz").write_bytes(forged.with_name("forged.npz").read_bytes())
    with pytest.raises(ModelFileError, match=r"model\.json is inconsistent"):
        LogisticRegression.load(base)


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: text[: len(text) // 2],
        lambda text: text.replace('"format_version": 1', '"format_version": 99'),
        lambda text: text.replace('"solver": "gd"', '"solver": "quantum"'),
        lambda text: text.replace('"classes": [', '"classes": [5, '),
        lambda text: "[]",
    ],
    ids=["truncated", "version", "bad_param", "three_classes", "not_a_model"],
)
def test_corrupt_json_is_rejected(saved, edit):
    _, base = saved
    json_path = base.with_name("model.json")
    json_path.write_text(edit(json_path.read_text()))
    with pytest.raises(ModelFileError, match=r"model\.json"):
        LogisticRegression.load(base)


def test_save_requires_a_fitted_model(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        LogisticRegression().save(tmp_path / "model")
