"""One config, one result: bit-identical models and metrics across runs, across Hydra launchers and between a
sweep job and `dvc repro`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .conftest import logitlab, run

MODEL_FILES = ("model.npz", "model.json", "transforms.json")


def fingerprint(model_dir: Path, metrics: Path) -> dict[str, str]:
    files = {f"model/{name}": model_dir / name for name in MODEL_FILES} | {"metrics.json": metrics}
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}


def test_same_config_twice_gives_identical_model_and_metrics(project: Path) -> None:
    """Two single runs of one config (the second one from the memo cache): the same bytes."""
    prints = []
    for attempt in ("first", "second"):
        out = project / "outputs" / attempt
        logitlab(["sweep", f"hydra.run.dir={out}", "mlflow.enabled=false", "model.max_iter=200"], project)
        prints.append(fingerprint(out / "models", out / "reports" / "metrics.json"))
    assert prints[0] == prints[1]


@pytest.mark.slow
def test_launchers_and_dvc_repro_give_bit_identical_results(project: Path) -> None:
    """`dvc repro -f` twice gives the same dvc.lock; a basic-launcher job, the joblib-launcher job with the same
    overrides and `dvc repro` (default config) give the same model and metrics bytes."""
    run(["dvc", "repro"], project)
    lock = (project / "dvc.lock").read_text(encoding="utf-8")
    dvc_print = fingerprint(project / "models", project / "reports" / "metrics.json")
    run(["dvc", "repro", "-f"], project)
    assert (project / "dvc.lock").read_text(encoding="utf-8") == lock
    assert fingerprint(project / "models", project / "reports" / "metrics.json") == dvc_print

    sweeps = {}
    launchers = {
        "local": [],
        "basic": ["hydra/launcher=basic"],
        "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    }
    for launcher, extra in launchers.items():
        sweep_dir = project / "multirun" / launcher
        logitlab(
            [
                "sweep",
                "-m",
                *extra,
                f"hydra.sweep.dir={sweep_dir}",
                "mlflow.enabled=false",
                "model.learning_rate=auto,0.5",
            ],
            project,
        )
        sweeps[launcher] = {
            job: fingerprint(sweep_dir / job / "models", sweep_dir / job / "reports" / "metrics.json")
            for job in ("0", "1")
        }
    assert sweeps["local"] == sweeps["basic"] == sweeps["joblib"]
    assert sweeps["basic"]["0"] != sweeps["basic"]["1"]  # the learning rate mattered
    assert sweeps["basic"]["0"] == dvc_print  # learning_rate=auto is the default config
