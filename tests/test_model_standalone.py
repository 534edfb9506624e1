"""A logged model stands on its own: in a fresh venv made from nothing but the model's requirements.txt, with
this repository nowhere on the path, it loads and scores raw rows as the pipeline does."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from logitlab.scoring import ScoringPipeline

from .conftest import REPO, logitlab, make_project, run, store_uri

UV = REPO / ".tools" / "bin" / "uv"
ROWS = pd.DataFrame({"x0": np.linspace(-1, 1, 7), "x1": np.linspace(1, -1, 7)})

SCORE = """
import importlib.util, json, sys
assert importlib.util.find_spec("logitlab") is None, "logitlab is importable without the model"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
model.predict(pd.read_parquet(sys.argv[2])).to_parquet(sys.argv[3])
"""


@pytest.mark.timeout(900)
def test_the_logged_model_loads_and_predicts_in_a_venv_of_its_own_requirements(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    logitlab(["sweep", "data=circles", "features.degree=2", "model.max_iter=300", "hydra.run.dir=outputs/job"], project)
    client = MlflowClient(store_uri(project))
    (tracked,) = client.search_runs([client.get_experiment_by_name("circles").experiment_id])
    model_dir = Path(
        client.get_logged_model(tracked.data.tags["logitlab.model_id"]).artifact_location.removeprefix("file://")
    )
    assert (model_dir / "code" / "logitlab" / "scoring.py").is_file(), "the model carries logitlab's code"

    venv = tmp_path / "venv"
    env = {"UV_COMPILE_BYTECODE": "0", "VIRTUAL_ENV": "", "PYTHONPATH": ""}
    run(
        [str(UV), "venv", "--quiet", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv)],
        tmp_path,
        env=env,
    )
    python = str(venv / "bin" / "python")
    run(
        [str(UV), "pip", "install", "--quiet", "--python", python, "-r", str(model_dir / "requirements.txt")],
        tmp_path,
        env=env,
    )

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ROWS.to_parquet(outside / "rows.parquet")
    run([python, "-I", "-c", SCORE, str(model_dir), "rows.parquet", "scored.parquet"], outside, env=env)
    served = pd.read_parquet(outside / "scored.parquet")
    expected = ScoringPipeline.load(project / "outputs" / "job" / "models").predict_frame(ROWS)
    np.testing.assert_allclose(served["probability"], expected["probability"], rtol=0, atol=1e-12)
    assert served["label"].astype(str).tolist() == expected["label"].tolist()
