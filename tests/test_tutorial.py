"""docs/tutorial.md stays true: its commands run in a copy of the repository, in the tutorial's order, and every
number it quotes is compared with what they printed or left behind."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import REPO, logitlab, make, make_project, run, store_uri

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TUTORIAL = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
SWEEP = ["sweep", "-m", "data=circles", "model.learning_rate=0.01,0.1,1", "features.degree=1,2,3"]  # make sweep


def section(number: int) -> str:
    start = TUTORIAL.index(f"\n## {number}. ")
    end = TUTORIAL.find("\n## ", start + 1)
    return TUTORIAL[start:end]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Sections 1 to 5 as a reader runs them; what each printed."""
    project = make_project(tmp_path_factory.mktemp("tutorial") / "project")
    printed = {"repro": make(project, "repro")}
    run(["dvc", "exp", "run", "-S", "features.degree=2"], project)
    printed["exps"] = make(project, "exps")
    logitlab([*SWEEP, "mlflow.child_artifacts=all"], project)  # every job's figures, as the figures script runs it
    logitlab(["sweep", "-m", "hparams_search=lr_penalty", "hydra.sweeper.n_trials=10"], project)
    return {"project": project, "printed": printed}


def jobs(project: Path) -> pd.DataFrame:
    from logitlab.analysis import compare

    runs = compare("circles", tracking_uri=store_uri(project))
    parent = runs.loc[runs.parent_run_id.isna(), "run_id"].iloc[-1]
    return compare("circles", tracking_uri=store_uri(project), parent_run_id=parent)


def test_1_the_repro_summary(walked: dict[str, Any]) -> None:
    (quoted,) = re.findall(r"^train_accuracy=.*$", section(1), re.M)
    (printed,) = re.findall(r"train_accuracy=.*$", walked["printed"]["repro"], re.M)
    assert printed == quoted


def test_3_the_experiments_table(walked: dict[str, Any]) -> None:
    """Every cell but the experiment's name and creation time (they differ on each run)."""

    def rows(table: str) -> list[list[str]]:
        lines = [line for line in table.splitlines() if line.startswith("|") and not line.startswith("|--")]
        return [[cell.strip() for cell in line.strip("|").split("|")][2:] for line in lines]

    (quoted,) = [block for block in blocks(section(3), "text") if "| Experiment" in block]
    printed = walked["printed"]["exps"]
    assert rows(quoted) == rows(printed[printed.index("| Experiment") :])


def test_4_the_sweeps_epochs(walked: dict[str, Any]) -> None:
    table = jobs(walked["project"]).set_index(["params.features.degree", "params.model.learning_rate"])
    quoted = re.search(
        r"`learning_rate=1` after (\d+) epochs, 0\.1 after (\d+), 0\.01 after (\d+)", " ".join(section(4).split())
    )
    assert quoted, "section 4 lost its epochs per learning rate"
    for rate, epochs in zip((1.0, 0.1, 0.01), quoted.groups(), strict=True):
        assert table.loc[(3, rate), "metrics.n_iter"] == int(epochs), rate
    assert (table.xs(3)["metrics.converged"] == 1).all(), "every rate converges"
    assert (table.xs(3)["metrics.val_accuracy"] == 1.0).all(), "all three classify the validation set perfectly"


def test_5_optunas_best_trial(walked: dict[str, Any]) -> None:
    quoted = yaml.safe_load(next(b for b in blocks(section(5), "yaml") if b.startswith("name: optuna")))
    (results,) = walked["project"].glob("multirun/*/*/optimization_results.yaml")
    assert quoted == yaml.safe_load(results.read_text())


def test_7_what_the_champion_answers(walked: dict[str, Any]) -> None:
    """The served model is the registered champion's pyfunc model (tests/test_serving.py: to the last bit)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    request = json.loads(re.search(r"-d '(\{.*\})'", section(7)).group(1))["dataframe_split"]  # type: ignore[union-attr]
    answer = json.loads(next(b for b in blocks(section(7), "json") if b.startswith('{"predictions"')))
    mlflow.set_tracking_uri(store_uri(walked["project"]))
    model = mlflow.pyfunc.load_model("models:/logitlab-circles@champion")
    predicted = model.predict(pd.DataFrame(request["data"], columns=request["columns"]))
    quoted = pd.DataFrame(answer["predictions"])
    digits = re.findall(r'"probability": ([0-9.]+)', next(b for b in blocks(section(7), "json") if "predictions" in b))
    decimals = [len(text.partition(".")[2]) for text in digits]  # the precision each is quoted at
    assert [f"{p:.{d}f}" for p, d in zip(predicted["probability"], decimals, strict=True)] == digits
    assert predicted["label"].tolist() == quoted["label"].tolist()
    (refusal,) = re.findall(r'"message": "([^"]+)"', section(7))
    with pytest.raises(MlflowException) as raised:
        model.predict(pd.DataFrame({"x0": [1.0]}))
    assert raised.value.message == refusal


def test_the_pictures_are_what_the_script_draws_from_the_sweep(walked: dict[str, Any], tmp_path: Path) -> None:
    """scripts/make_tutorial_figures.py, given this run of the `make sweep` grid, draws docs/images/tutorial-*.png
    pixel for pixel."""
    from PIL import Image

    project = walked["project"]
    parents = project.glob("multirun/*/*/mlflow_parent.json")
    (grid,) = [p.parent for p in parents if json.loads(p.read_text())["experiment_name"] == "circles"]
    script = REPO / "scripts" / "make_tutorial_figures.py"
    run([sys.executable, str(script), "--sweep-dir", str(grid), "--out", str(tmp_path)], project)
    drawn = sorted(tmp_path.glob("tutorial-*.png"))
    assert [p.name for p in drawn] == sorted(p.name for p in (REPO / "docs" / "images").glob("tutorial-*.png"))
    for picture in drawn:
        ours = np.asarray(Image.open(picture).convert("RGBA"))
        committed = np.asarray(Image.open(REPO / "docs" / "images" / picture.name).convert("RGBA"))
        assert ours.shape == committed.shape, picture.name
        differing = int((ours != committed).any(axis=-1).sum())
        assert differing == 0, f"{picture.name}: {differing} pixels differ; run scripts/make_tutorial_figures.py"


def test_8_the_notebook_numbers(walked: dict[str, Any]) -> None:
    from logitlab.analysis import load_run

    table = jobs(walked["project"])
    pivot = table.pivot_table(
        index="params.features.degree", columns="params.model.learning_rate", values="metrics.val_accuracy"
    )
    quoted = next(b for b in blocks(section(8), "text") if b.startswith("params.model.learning_rate"))
    values = [[float(v) for v in line.split()[1:]] for line in quoted.splitlines()[2:]]
    assert values == pivot.round(3).to_numpy().tolist()
    best = table.sort_values(["metrics.val_accuracy", "metrics.val_log_loss"], ascending=[False, True]).iloc[0]
    job = load_run(best.run_id, tracking_uri=store_uri(walked["project"]))
    assert f"run_name='{job.run_name}'" in section(8)
    assert f"history=<{len(job.history)} epochs>" in section(8)
    learning_rate, loss = re.search(r"# \((\S+), (0\.\d+)…\)", section(8)).groups()  # type: ignore[union-attr]
    assert job.params["model.learning_rate"] == float(learning_rate)
    assert f"{job.metrics['val_log_loss']:.6f}".startswith(loss)
