"""The MLflow pyfunc model, defined from code (MLflow's models-from-code: no pickled Python object).

`mlflow.pyfunc.load_model(uri).predict(raw_rows)` returns `probability` (of the positive class) and
`label` (the original label value) per row; the fitted steps and weights are JSON + npz artifacts.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext


class LogitlabModel(PythonModel):
    def load_context(self, context: PythonModelContext) -> None:
        from logitlab.scoring import ScoringPipeline

        self.pipeline = ScoringPipeline.load(context.artifacts["pipeline"])

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.pipeline.predict_frame(pd.DataFrame(model_input))


def requirements() -> list[str]:
    """Pinned requirements of the serving environment (logitlab itself is installed from this repo)."""
    return [f"{name}=={version(name)}" for name in ("mlflow", "numpy", "pandas", "scikit-learn", "pyarrow")]


mlflow.models.set_model(LogitlabModel())
