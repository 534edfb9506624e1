"""Regularisation paths across a sweep's jobs (`model.warm_start`, `logitlab.warm_starts`): the nearest C's
solution as the start, results that do not depend on the order of the jobs, and the local launcher running a
grid's jobs in order of C under Hydra's numbers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hydra_plugins.logitlab_launcher.launcher import path_order
from logitlab import config, io, warm_starts
from logitlab.errors import ConfigError
from logitlab.scoring import ScoringPipeline
from logitlab.stages import train
from logitlab.sweeps import executor

from .conftest import REPO, logitlab

TOL = 1e-8
CS = (0.01, 1.0, 100.0)


@pytest.fixture(autouse=True)
def no_solutions_kept():
    warm_starts.forget()
    yield
    warm_starts.forget()


def test_nearest_is_the_nearest_c_on_a_log_scale(tmp_path: Path):
    data = tmp_path / "train.parquet"
    data.write_bytes(b"rows")
    params = {"C": 1.0, "solver": "auto", "tol": TOL, "warm_start": True}
    key = warm_starts.problem_key(data, params)
    assert key is not None and key == warm_starts.problem_key(data, {**params, "C": 7.0})
    assert key != warm_starts.problem_key(data, {**params, "tol": 1e-4})
    assert warm_starts.problem_key(data, {**params, "warm_start": False}) is None
    assert warm_starts.nearest(key, 1.0) == {}
    for C in (0.01, 1.0, 100.0):
        warm_starts.remember(key, C, np.full((1, 2), C), np.array([C]))
    assert warm_starts.nearest(key, 5.0)["coef_init"][0, 0] == 1.0
    assert warm_starts.nearest(key, 20.0)["coef_init"][0, 0] == 100.0
    assert warm_starts.nearest(key, 0.1)["intercept_init"][0] == 0.01  # as near as 1.0: the smaller C


def path_results(root: Path, order: tuple[float, ...], warm: bool) -> dict[float, dict[str, Any]]:
    """A cross-validated job per C in `order`, in this process (as the local launcher runs them): each job's
    refit coefficients and metrics by C."""
    warm_starts.forget()
    results = {}
    for C in order:
        overrides = ["mlflow=off", "data=breast_cancer", "model=auto", f"model.tol={TOL}", "preprocess.cv_folds=3"]
        params = config.compose([*overrides, f"model.C={C}", f"model.warm_start={warm}"], config_dir=REPO / "conf")
        job_dir = root / f"{order[0]}-{warm}-{C}"
        job = executor.run_job(executor.JobConfig.of(params), job_dir, root=root, finish=lambda finish, files: None)
        model = ScoringPipeline.load(job.files["train"].outputs["model"]).model
        assert model.solver_ == executor.record(job).tags["logitlab.solver"] == "newton"  # what auto chose
        scores = io.read_json(job.files["train"].outputs["cv"] / train.CV_SCORES_FILE)
        results[C] = {"coef": np.append(model.coef_, model.intercept_), "metrics": job.metrics, "cv": scores}
    return results


def test_a_path_gives_the_same_models_in_any_order_and_cold(tmp_path: Path):
    """Warm in increasing C, warm in decreasing C and cold: the same optimum to the solver's tolerance (two
    solutions whose gradients' max-norm is below tol are within 2 sqrt(P) tol C n of each other, 1 / (C n)
    being the L2 term's curvature), the same metrics; the warm paths took fewer Newton steps."""
    up = path_results(tmp_path, CS, warm=True)
    down = path_results(tmp_path, CS[::-1], warm=True)
    cold = path_results(tmp_path, CS, warm=False)
    n_rows = round(0.8 * 569)  # train+val, where the refit happens
    for C in CS:
        bound = 2 * np.sqrt(31) * TOL * C * n_rows
        for other in (down, cold):
            np.testing.assert_allclose(up[C]["coef"], other[C]["coef"], rtol=0, atol=bound)
            for name, value in up[C]["metrics"].items():
                if name != "n_iter":
                    assert other[C]["metrics"][name] == pytest.approx(value, abs=1e-6), (C, name)
            for fold, scores in enumerate(up[C]["cv"]["folds"]):
                assert other[C]["cv"]["folds"][fold] == pytest.approx(scores, abs=1e-6)
    steps = {name: sum(r[C]["metrics"]["n_iter"] for C in CS) for name, r in (("up", up), ("cold", cold))}
    assert steps["up"] < steps["cold"]


def test_warm_start_only_for_fits_run_to_a_tolerance():
    for bad in ({"tol": 0.0}, {"early_stopping": True}, {"solver": "minibatch", "learning_rate": 0.1}):
        raw = {"solver": "auto", "tol": 1e-6, "warm_start": True, **bad}
        with pytest.raises(ConfigError, match=r"^config key 'model.warm_start': .* needs model.tol > 0"):
            train.model_params(raw, 0)
    assert train.model_params({"solver": "auto", "warm_start": True}, 0)["warm_start"] is True


def test_path_order_runs_each_group_in_increasing_c():
    jobs = [
        ["features.degree=1", "model.C=10"],
        ["features.degree=2", "model.C=10"],
        ["features.degree=1", "model.C=0.1"],
        ["features.degree=2", "model.C=1e-3"],
        ["features.degree=1", "model.C=${oc.env:C}"],  # not a number: stays among its group as listed
    ]
    assert path_order(jobs) == [4, 2, 0, 3, 1]
    assert path_order([["model.learning_rate=1"], ["model.learning_rate=0.1"]]) == [0, 1]


@pytest.mark.slow  # a project copy and a sweep; test_path_order_runs_each_group_in_increasing_c is the fast check
def test_local_launcher_runs_a_path_in_order_of_c_under_hydras_numbers(project: Path):
    sweep_dir = project / "multirun" / "path"
    done = logitlab(
        ["sweep", "-m", f"hydra.sweep.dir={sweep_dir}", "mlflow=off", "model=auto", "model.C=10,0.01,1"], project
    )
    launched = re.findall(r"\t#(\d+) : ", done.stdout + done.stderr)
    assert launched == ["1", "2", "0"]
    for number, C in (("0", "10"), ("1", "0.01"), ("2", "1")):
        overrides = yaml.safe_load((sweep_dir / number / ".hydra" / "overrides.yaml").read_text())
        assert f"model.C={C}" in overrides
        assert io.read_json(sweep_dir / number / "job.json")["status"] == "FINISHED"


def test_a_sweeps_jobs_read_their_shared_folds_once(tmp_path: Path):
    import pandas as pd

    from logitlab.sources import TARGET
    from logitlab.stages import preprocess

    fold = {"train": pd.DataFrame({"x": [0.0, 1.0], TARGET: [0, 1]}), "val": pd.DataFrame({"x": [2.0], TARGET: [1]})}
    preprocess.write_folds(tmp_path / "folds", [fold])
    first = train._read_folds(tmp_path / "folds")
    assert train._read_folds(tmp_path / "folds") is first
    preprocess.write_folds(tmp_path / "folds", [fold, fold])  # a folder written again is read again
    assert len(train._read_folds(tmp_path / "folds")) == 2
