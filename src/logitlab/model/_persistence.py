"""Save and load a fitted `LogisticRegression` without pickle.

A model is two files beside each other: ``<base>.npz`` holds the arrays (read with ``allow_pickle=False``;
``coef`` is (1, n_features) for two classes, (K, n_features) for K > 2, as scikit-learn's)
and ``<base>.json`` the parameters, classes, feature names, histories, a format version and the sha256 of
the npz bytes, so a truncated, corrupt or swapped array file is detected before it is parsed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from logitlab.errors import LogitlabError, ModelFileError
from logitlab.io import write_bytes, write_json

if TYPE_CHECKING:
    from logitlab.model.estimator import LogisticRegression

FORMAT = "logitlab.LogisticRegression"
FORMAT_VERSION = 1
SUFFIXES = (".npz", ".json")


def model_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``models/model``, ``models/model.npz`` and ``models/model.json`` all name the same pair of files."""
    base = Path(path)
    if base.suffix in SUFFIXES:
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def _to_python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _params_to_json(params: dict[str, Any]) -> dict[str, Any]:
    """JSON keeps dict keys as strings only, so class_weight becomes [label, weight] pairs."""
    params = dict(params)
    if isinstance(params["class_weight"], dict):
        params["class_weight"] = [[_to_python(k), _to_python(v)] for k, v in params["class_weight"].items()]
    if not isinstance(params["random_state"], int | None):  # a RandomState has no faithful JSON form
        params["random_state"] = None
    return {name: _to_python(value) for name, value in params.items()}


def _params_from_json(params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    if isinstance(params.get("class_weight"), list):
        params["class_weight"] = {label: weight for label, weight in params["class_weight"]}
    return params


def save(model: LogisticRegression, path: str | os.PathLike[str]) -> None:
    npz_path, json_path = model_paths(path)
    buffer = io.BytesIO()
    np.savez(buffer, coef=model.coef_, intercept=model.intercept_)
    npz_bytes = buffer.getvalue()
    feature_names = getattr(model, "feature_names_in_", None)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "npz_sha256": hashlib.sha256(npz_bytes).hexdigest(),
        "params": _params_to_json(model.get_params()),
        "classes": model.classes_.tolist(),
        "classes_dtype": model.classes_.dtype.str if model.classes_.dtype != object else "object",
        "feature_names_in": None if feature_names is None else feature_names.tolist(),
        "n_features_in": int(model.n_features_in_),
        "solver": model.solver_,  # the one fitted with: solver="auto" chooses per fit
        "n_iter": int(model.n_iter_),
        "converged": bool(model.converged_),
        "cost_history": list(model.cost_history_),
        "val_history": list(model.val_history_),
    }
    write_bytes(npz_path, npz_bytes)
    write_json(json_path, metadata)


def _read_metadata(json_path: Path) -> dict[str, Any]:
    try:
        metadata = json.loads(json_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"model file {json_path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model file {json_path} is not valid JSON (truncated or corrupt?): {exc}") from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"model file {json_path} is not a {FORMAT} model")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"model file {json_path} has format_version {metadata.get('format_version')!r}; "
            f"this version of logitlab reads {FORMAT_VERSION}"
        )
    return metadata


def _read_arrays(npz_path: Path, json_path: Path, expected_sha256: Any) -> dict[str, np.ndarray]:
    try:
        npz_bytes = npz_path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file {npz_path} is missing") from None
    if hashlib.sha256(npz_bytes).hexdigest() != expected_sha256:
        raise ModelFileError(
            f"model file {npz_path} does not match the sha256 recorded in {json_path}: "
            "it is truncated, corrupt or was modified"
        )
    try:
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as archive:
            return {name: archive[name] for name in ("coef", "intercept")}
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise ModelFileError(f"model file {npz_path} cannot be read as model arrays: {exc}") from exc


def load(cls: type[LogisticRegression], path: str | os.PathLike[str]) -> LogisticRegression:
    npz_path, json_path = model_paths(path)
    metadata = _read_metadata(json_path)
    arrays = _read_arrays(npz_path, json_path, metadata.get("npz_sha256"))
    try:
        model = cls(**_params_from_json(metadata["params"]))
        model.validate_params()
        coef, intercept = arrays["coef"], arrays["intercept"]
        n_features = int(metadata["n_features_in"])
        classes_dtype = metadata["classes_dtype"]
        classes = np.array(metadata["classes"], dtype=object if classes_dtype == "object" else classes_dtype)
        if classes.ndim != 1 or classes.size < 2:
            raise LogitlabError(f"expected two classes or more, found {metadata['classes']!r}")
        rows = 1 if classes.size == 2 else classes.size  # binary: one row, as scikit-learn's coef_
        if coef.shape != (rows, n_features) or intercept.shape != (rows,) or coef.dtype != np.dtype(model.dtype):
            raise LogitlabError(
                f"arrays of shape {coef.shape}, {intercept.shape} and dtype {coef.dtype} do not fit "
                f"{classes.size} classes, n_features_in={n_features} and dtype={model.dtype}"
            )
        model.coef_, model.intercept_, model.classes_ = coef, intercept, classes
        model.n_features_in_ = n_features
        if metadata["feature_names_in"] is not None:
            model.feature_names_in_ = np.array(metadata["feature_names_in"], dtype=object)
        model.solver_ = str(metadata.get("solver", model.solver))  # files from before solver="auto" lack it
        model.n_iter_ = int(metadata["n_iter"])
        model.converged_ = bool(metadata["converged"])
        model.cost_history_ = [float(value) for value in metadata["cost_history"]]
        model.val_history_ = [float(value) for value in metadata["val_history"]]
    except (LogitlabError, KeyError, TypeError) as exc:
        raise ModelFileError(f"model file {json_path} is inconsistent: {exc}") from exc
    return model
