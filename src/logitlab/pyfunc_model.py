"""The MLflow pyfunc model, defined from code (MLflow's models-from-code: no pickled Python object).

`mlflow.pyfunc.load_model(uri).predict(raw_rows)` returns, per row, the `label` (the original label value)
and `probability` (of the positive class) for two classes, or one `probability_<label>` per class for more;
the fitted steps and weights are JSON + npz artifacts.
"""

from __future__ import annotations

import functools
from importlib.metadata import version
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema

# What `predict` returns for every model: the positive class's probability and the original label value.
OUTPUT_SCHEMA = Schema([ColSpec(DataType.double, "probability"), ColSpec(DataType.string, "label")])


class LogitlabModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from logitlab.scoring import ScoringPipeline

        self.pipeline = ScoringPipeline.load(context.artifacts["pipeline"])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.pipeline.predict_frame(pd.DataFrame(model_input))


def signature(example: pd.DataFrame, probability_columns: list[str]) -> ModelSignature:
    """The raw columns of the data set in, the label and the probability columns out (`OUTPUT_SCHEMA` for two
    classes): no need to score the example to find out."""
    if probability_columns == ["probability"]:
        return ModelSignature(inputs=infer_signature(example).inputs, outputs=OUTPUT_SCHEMA)
    outputs = Schema([ColSpec(DataType.string, "label"), *(ColSpec(DataType.double, c) for c in probability_columns)])
    return ModelSignature(inputs=infer_signature(example).inputs, outputs=outputs)


def requirements() -> list[str]:
    """Pinned requirements of the serving environment (logitlab itself is installed from this repo)."""
    return list(_pinned_requirements())


@functools.cache
def _pinned_requirements() -> tuple[str, ...]:
    """Looked up once per process: a sweep logs a model per job."""
    return tuple(f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", "scikit-learn", "pyarrow"))


mlflow.models.set_model(LogitlabModel())
