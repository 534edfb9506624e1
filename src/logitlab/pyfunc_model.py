"""The MLflow pyfunc model, defined from code (MLflow's models-from-code: no pickled Python object).

`mlflow.pyfunc.load_model(uri).predict(raw_rows)` returns, per row, the `label` (the original label value)
and `probability` (of the positive class) for two classes, or one `probability_<label>` per class for more;
the fitted steps and weights are JSON + npz artifacts, and the logitlab package travels with the model
(`code/logitlab`), so it loads where only its requirements.txt is installed.
"""

from __future__ import annotations

import functools
import warnings
from importlib.metadata import version
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import AnyType

# What `predict` returns for every model: the positive class's probability and the original label value.
OUTPUT_SCHEMA = Schema([ColSpec(DataType.double, "probability"), ColSpec(DataType.string, "label")])
# The packages the scoring code imports (logitlab itself is logged with the model as code).
REQUIREMENTS = ("mlflow", "numpy", "pandas", "scikit-learn", "scipy", "pyarrow", "tqdm")


class BadInput(MlflowException):
    """Rows the model cannot score (a column missing): HTTP 400 whose message is one line, as raised.

    MLflow's scoring server puts the whole input frame in front of a predict error's message
    (`Failed to predict data '<frame>'. Error: ...`); a message that names the column is what a client needs,
    so this one keeps the message it was raised with."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=BAD_REQUEST)

    @property
    def message(self) -> str:
        return self._one_line

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_one_line"):
            self._one_line = " ".join(str(value).split())


class LogitlabModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from logitlab.scoring import ScoringPipeline

        self.pipeline = ScoringPipeline.load(context.artifacts["pipeline"])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        rows = pd.DataFrame(model_input)
        missing = [column for column in self.pipeline.input_columns if column not in rows.columns]
        if missing:
            raise BadInput(
                f"column '{missing[0]}' is missing from the request; the model takes the columns "
                f"{', '.join(self.pipeline.input_columns)}"
            )
        return self.pipeline.predict_frame(rows)


NUMERIC_TYPES = (DataType.integer, DataType.long, DataType.float, DataType.double)


def example_schema(example: pd.DataFrame) -> Schema:
    """The columns of a few raw rows as MLflow infers them, without its hint that an integer column cannot
    hold a missing value (printed for every CSV with integer columns; `signature` accepts any numeric value)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
        return infer_signature(example).inputs


def signature(example: pd.DataFrame, probability_columns: list[str]) -> ModelSignature:
    """The raw columns of the data set in, the label and the probability columns out (`OUTPUT_SCHEMA` for two
    classes): no need to score the example to find out.

    The columns are optional to MLflow's schema check, so that a missing one reaches `predict`, which names it
    in one line (MLflow's own check answers with the schema and the whole request). The numeric ones take any
    value: MLflow holds a column to the type of the example's values, so an integer column refused a missing
    value (which the model imputes) and a float column refused integers; `predict` converts each numeric
    column itself and names one that does not convert."""
    inputs = Schema(
        [
            ColSpec(AnyType() if spec.type in NUMERIC_TYPES else spec.type, spec.name, required=False)
            for spec in example_schema(example)
        ]
    )
    if probability_columns == ["probability"]:
        return ModelSignature(inputs=inputs, outputs=OUTPUT_SCHEMA)
    outputs = Schema([ColSpec(DataType.string, "label"), *(ColSpec(DataType.double, c) for c in probability_columns)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def requirements() -> list[str]:
    """Pinned requirements of the serving environment; logitlab's code is logged with the model."""
    return list(_pinned_requirements())


@functools.cache
def _pinned_requirements() -> tuple[str, ...]:
    """Looked up once per process: a sweep logs a model per job."""
    return tuple(f"{name}=={version(name)}" for name in REQUIREMENTS)


mlflow.models.set_model(LogitlabModel())
