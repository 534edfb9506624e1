"""Raw rows in, probabilities out: the fitted preprocessing, feature expansion and model as one unit.

Saved as a directory of JSON + npz (no pickle): `model.npz`/`model.json` (the estimator's own format) and
`transforms.json`. The evaluate stage, the sweep and the MLflow pyfunc model all score through this.

What a scored row looks like: two classes, `probability` (of the positive class) and `label`; more classes,
`label` and one `probability_<label>` per class, in the schema's class order.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from logitlab import io
from logitlab.errors import ModelFileError
from logitlab.sources import class_names
from logitlab.transforms import PolynomialExpander, Preprocessor

if TYPE_CHECKING:
    from logitlab.model import LogisticRegression

MODEL_STEM = "model"
TRANSFORMS = "transforms.json"
MANIFEST = "manifest.json"
SAVED_IN = "models"  # the folder the train stage saves the pipeline in (its declared output), in the project or a job
FILES = (f"{MODEL_STEM}.npz", f"{MODEL_STEM}.json", TRANSFORMS)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _no_model_here(folder: Path) -> str:
    """Where saved pipelines are, for a folder that holds none: `dvc repro` saves one in the project's
    `models/`, each sweep job in its own `<job>/models/`; a near miss is named."""
    near = [path for path in (folder / SAVED_IN, folder.parent / SAVED_IN) if (path / MANIFEST).is_file()]
    where = f"did you mean '{near[0]}'? " if near else ""
    return (
        f"'{folder}' holds no saved model (no {MANIFEST}); {where}`dvc repro` saves it in {SAVED_IN}/ of the "
        f"project, a sweep job in {SAVED_IN}/ of its job folder (multirun/<date>/<time>-<id>/<job>/{SAVED_IN})"
    )


def probability_columns(labels: dict[str, Any]) -> list[str]:
    """The probability columns of `predict_frame` for a label description (binary or multiclass)."""
    names = class_names(labels)
    return ["probability"] if len(names) == 2 else [f"probability_{name}" for name in names]


def saved_labels(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The label description of a saved pipeline, without loading the model."""
    return dict(io.read_json(Path(directory) / TRANSFORMS)["labels"])


@dataclass
class ScoringPipeline:
    preprocessor: Preprocessor
    expander: PolynomialExpander
    model: LogisticRegression
    labels: dict[str, Any]

    @property
    def input_columns(self) -> list[str]:
        return list(self.preprocessor.input_columns)

    def features(self, raw: pd.DataFrame) -> pd.DataFrame:
        return self.expander.transform(self.preprocessor.transform(raw))

    def predict_proba(self, raw: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for each raw row (two classes; see `class_probabilities`)."""
        return self.model.predict_proba(self.features(raw))[:, 1]

    def class_probabilities(self, raw: pd.DataFrame) -> np.ndarray:
        """(n_rows, n_classes) probabilities, columns in the order of the labels' classes."""
        return self.model.predict_proba(self.features(raw))

    def predict_frame(self, raw: pd.DataFrame) -> pd.DataFrame:
        """The predicted `label` (the original label value) and the probabilities (`probability_columns`)."""
        names = class_names(self.labels)
        if len(names) == 2:
            proba = self.predict_proba(raw)
            positive = proba >= self.model.threshold
            return pd.DataFrame({"probability": proba, "label": np.where(positive, names[1], names[0])})
        proba = np.zeros((len(raw), len(names)))
        proba[:, self.model.classes_.astype(np.intp)] = self.class_probabilities(raw)  # by class code
        frame = pd.DataFrame({"label": np.asarray(names, dtype=object)[proba.argmax(axis=1)]})
        for code, column in enumerate(probability_columns(self.labels)):
            frame[column] = proba[:, code]
        return frame

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Each file is written atomically; the manifest, written last, is the commit point that ties the
        files of one save together (a kill between two files leaves a mismatch that `load` refuses)."""
        folder = Path(directory)
        self.model.save(folder / MODEL_STEM)
        io.write_json(
            folder / TRANSFORMS,
            {
                "preprocessor": self.preprocessor.to_dict(),
                "expander": self.expander.to_dict(),
                "labels": self.labels,
            },
        )
        io.write_json(folder / MANIFEST, {name: _sha256(folder / name) for name in FILES})

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ScoringPipeline:
        folder = Path(directory)
        if not (folder / MANIFEST).is_file():
            raise ModelFileError(_no_model_here(folder))
        manifest = io.read_json(folder / MANIFEST)
        for name in FILES:
            if not (folder / name).is_file() or manifest.get(name) != _sha256(folder / name):
                raise ModelFileError(
                    f"'{folder / name}' does not match '{folder / MANIFEST}': the model directory was partly "
                    "written or modified; rerun what trained it (`dvc repro`, or the sweep job) to rebuild it"
                )
        from logitlab.model import LogisticRegression

        model = LogisticRegression.load(folder / MODEL_STEM)
        try:
            state = io.read_json(folder / TRANSFORMS)
            return cls(
                Preprocessor.from_dict(state["preprocessor"]),
                PolynomialExpander.from_dict(state["expander"]),
                model,
                state["labels"],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ModelFileError(f"'{folder / TRANSFORMS}' is not a valid transforms file ({err})") from None
