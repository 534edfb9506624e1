"""What a light sweep child left out, added later: `python -m logitlab.runs figures|model <run id>`, or
`python -m logitlab.runs figures <job folder>` for a job of an untracked sweep.

A sweep's children log what people compare (params, metrics, loss curves, report tables, the dataset) and
what it takes to make the rest later: the fitted scoring pipeline (`weights/`: model.npz + json, no pickle)
and two small samples (`samples/`: raw rows for the model's signature, test rows for the decision boundary).
The figures and the pyfunc model go to the children people open (`mlflow.child_artifacts: best`: the best
child, and the parent); this module draws any other child's figures from its curve tables, or logs its model
from its weights, onto that run, from any process, as often as asked (a run that has them is left alone).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from logitlab import config, io
from logitlab.cli import run_guarded, setup_logging
from logitlab.errors import ConfigError, LogitlabError, TrackingError
from logitlab.stage import Files
from logitlab.stages import evaluate, train
from logitlab.tracking import results, selection, sweeps
from logitlab.tracking.store import one_attempt, point_at, tracker_client, tracking_uri, unreachable

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run

log = logging.getLogger(__name__)

USAGE = "usage: python -m logitlab.runs figures|model <run id>, or figures <job folder of an untracked sweep>"
WEIGHTS = "weights"  # the fitted scoring pipeline's files (train's models/)
SAMPLES = "samples"
INPUT_EXAMPLE = "input_example.parquet"  # a few raw rows: the logged model's signature and example
TEST_POINTS = "test_points.parquet"  # the test split's preprocessed rows when there are two raw features, else none
# What `draw_figures` reads, by its name in evaluate's declaration, and where a run logged it.
LOGGED_TABLES = {
    "cost_history": train.STAGE.output("cost_history").name,
    "metrics": evaluate.STAGE.output("metrics").name,
    "curves": evaluate.STAGE.output("curves").name,
    "coefficients": evaluate.STAGE.output("coefficients").name,
}
FIGURES = evaluate.STAGE.output("figures").name
# In an untracked sweep's job folder: where evaluate read and wrote, so that its figures can be drawn later.
FIGURE_INPUTS = "figure_inputs.json"


# ------------------------------------------------------------------------------------- what a child logs
def later_inputs(files: Files, input_example: pd.DataFrame, out: Path) -> list[Path]:
    """Write the folders a light child logs so that its figures and model can be made later: `weights/` (the
    model folder, hard-linked) and `samples/` (`input_example`: the first rows of the dataset)."""
    weights, samples = out / WEIGHTS, out / SAMPLES
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(files.inputs["model"], weights, copy_function=io.link_or_copy)
    key = (io.file_version(files.inputs["dataset"]), io.file_version(files.inputs["interim_test"]))
    made = _samples_made.get(key)
    if made is not None and made.is_dir():
        shutil.copytree(made, samples, copy_function=io.link_or_copy)
        return [weights, samples]
    samples.mkdir(parents=True)
    io.write_parquet(samples / INPUT_EXAMPLE, input_example.reset_index(drop=True))
    points = next(io.read_row_groups(files.inputs["interim_test"]))
    io.write_parquet(samples / TEST_POINTS, points if points.shape[1] == 3 else points.head(0))
    _samples_made[key] = samples
    return [weights, samples]


# The samples folder written in this process for the versions of a dataset and its test split: a sweep's jobs
# that share them link its files (~30 ms a job of reading the test split and writing two parquet files).
_samples_made: dict[tuple[io.FileVersion, io.FileVersion], Path] = {}


# --------------------------------------------------------------------------------- adding to a run later
def has_figures(run_id: str) -> bool:
    return bool(tracker_client().list_artifacts(run_id, FIGURES))


def add_figures(run_id: str) -> bool:
    """Draw the run's figures from its logged tables and attach them; False if it had them already."""
    if has_figures(run_id):
        return False
    _draw_figures(run_id)
    return True


def _draw_figures(run_id: str) -> None:
    with tempfile.TemporaryDirectory(prefix="logitlab-figures-") as tmp:
        local = _download(run_id, [*LOGGED_TABLES.values(), WEIGHTS, SAMPLES], Path(tmp))
        files = Files(
            inputs={
                "model": local / WEIGHTS,
                "cost_history": local / LOGGED_TABLES["cost_history"],
                "interim_test": local / SAMPLES / TEST_POINTS,
            },
            outputs={**{name: local / logged for name, logged in LOGGED_TABLES.items()}, "figures": local / FIGURES},
        )
        evaluate.draw_figures(files)
        results.attach_late_artifacts(run_id, [files.outputs["figures"]])


def add_model(run_id: str) -> bool:
    """Log the run's pyfunc model from its logged weights and sample rows; False if it had one already."""
    if results.MODEL_ID_TAG in tracker_client().get_run(run_id).data.tags:
        return False
    with tempfile.TemporaryDirectory(prefix="logitlab-model-") as tmp:
        local = _download(run_id, [WEIGHTS, SAMPLES], Path(tmp))
        results.add_model(run_id, local / WEIGHTS, io.read_parquet(local / SAMPLES / INPUT_EXAMPLE))
    return True


def _download(run_id: str, names: Sequence[str], dest: Path) -> Path:
    client = tracker_client()
    logged = {artifact.path for artifact in client.list_artifacts(run_id)}
    missing = [name for name in names if name not in logged]
    if missing:
        raise ConfigError(
            f"run {run_id} has no {missing[0]} artifact: it was not logged by a logitlab sweep job or run "
            "of this version"
        )
    for name in names:
        client.download_artifacts(run_id, name, str(dest))
    return dest


# ------------------------------------------------------------------------------- an untracked sweep's jobs
def keep_figure_inputs(job_dir: Path, files: Files) -> None:
    """Name in the job's folder the files its figures are drawn from (paths in the project relative to it, so
    that the project can move): the job's own tables and the shared stages' cached test split."""
    root = config.project_root()

    def named(paths: Mapping[str, Path]) -> dict[str, str]:
        return {
            name: str(path.relative_to(root) if path.is_relative_to(root) else path) for name, path in paths.items()
        }

    io.write_json(job_dir / FIGURE_INPUTS, {"inputs": named(files.inputs), "outputs": named(files.outputs)})


def add_job_figures(job_dir: Path) -> bool:
    """Draw an untracked sweep job's figures into its folder; False if it had them already."""
    files = _job_files(job_dir)
    if any(files.outputs["figures"].glob("*.png")):
        return False
    read = [files.inputs[name] for name in ("model", "cost_history", "interim_test")]
    read += [files.outputs[name] for name in LOGGED_TABLES if name in files.outputs]
    if gone := [path for path in read if not path.exists()]:
        raise ConfigError(
            f"job folder {job_dir}: {gone[0]} is gone (an upstream cache cleared?); run the job again to draw "
            "its figures"
        )
    evaluate.draw_figures(files)
    return True


def complete_best_job(job_dir: Path) -> None:
    """An untracked sweep's best job gets its figures: drawn by the figure helper from the files the job kept
    (`finishing.defer`) when it ran in this process, else here."""
    from logitlab import finishing

    if finishing.finish_deferred(str(job_dir.resolve()), None, "the best job") is None:
        add_job_figures(job_dir)


def _job_files(job_dir: Path) -> Files:
    path = job_dir / FIGURE_INPUTS
    if not path.is_file():
        raise ConfigError(
            f"job folder {job_dir}: no {FIGURE_INPUTS}; expected the folder of a job of an untracked sweep "
            "(multirun/<date>/<time>/<job number>)"
        )
    named = io.read_json(path)
    root = config.project_root()
    return Files(
        inputs={name: root / value for name, value in named["inputs"].items()},
        outputs={name: root / value for name, value in named["outputs"].items()},
    )


# ----------------------------------------------------------------------------------- a sweep's best child
def complete_best(parent: sweeps.Parent, sweep: config.SweepConfig, log_model: bool) -> Run | None:
    """Give the sweep's best child its figures and model where it lacks them (its job drew none, or ran in
    another process), and the parent the same figures and a link to that model; the best child's run.

    A best child whose job ran in this process gets its figures from the job's own files, drawn by the figure
    helper while this process logs the model (`finishing.finish_deferred`); any other from what it logged."""
    from mlflow.entities import LoggedModelOutput

    from logitlab import finishing

    tracker = parent.tracker()
    best = selection.best_run(sweeps.latest_attempts(sweeps.children(tracker, parent.run_id)), sweep)
    if best is None:
        return None
    run_id = best.info.run_id
    had_figures = has_figures(run_id)
    drawn = None if had_figures else finishing.finish_deferred(run_id, tracker.uri, "the best job")
    try:
        if not had_figures and drawn is None:
            _draw_figures(run_id)
        if log_model:
            add_model(run_id)
    except LogitlabError as err:  # a child logged by an older logitlab (a resumed sweep): the summary goes on
        log.warning("best run %s: %s", run_id, err)
        return best
    client = tracker.client()
    if drawn is not None:
        if finishing.drain():  # the helper could not draw them (logged): the parent goes without
            return best
        client.log_artifacts(parent.run_id, str(drawn.outputs["figures"]), FIGURES)
    else:
        with tempfile.TemporaryDirectory(prefix="logitlab-best-") as tmp:
            client.log_artifacts(parent.run_id, client.download_artifacts(run_id, FIGURES, tmp), FIGURES)
    if model_id := client.get_run(run_id).data.tags.get(results.MODEL_ID_TAG):
        client.log_outputs(parent.run_id, [LoggedModelOutput(model_id, step=0)])
        client.set_tag(parent.run_id, results.MODEL_ID_TAG, model_id)
    return best


# --------------------------------------------------------------------------------------------- the command
def main(argv: Sequence[str] | None = None) -> None:
    setup_logging()
    run_guarded(lambda: _command(list(sys.argv[1:] if argv is None else argv)))


def _command(args: list[str]) -> None:
    if len(args) != 2 or args[0] not in ("figures", "model"):
        raise ConfigError(f"{USAGE} (got: {' '.join(args) or 'nothing'})")
    what, run_id = args
    if what == "figures" and Path(run_id).is_dir():
        added = add_job_figures(Path(run_id).resolve())
        log.info("job folder %s: figures %s", run_id, "added" if added else "were there already, nothing added")
        return
    if not config.RUN_ID.fullmatch(run_id):
        raise ConfigError(f"run id '{run_id}': expected an MLflow run id (32 hex digits)")
    uri = _store_uri()
    point_at(uri)
    _find_run(uri, run_id)
    added = add_figures(run_id) if what == "figures" else add_model(run_id)
    log.info("run %s: %s %s", run_id, what, "added" if added else "were there already, nothing added")


def _store_uri() -> str:
    """The store `make ui` shows: MLFLOW_TRACKING_URI, else params.yaml's `mlflow.tracking_uri`, else the
    project's mlflow.db."""
    root = config.project_root()
    params = root / "params.yaml"
    section = config.load_params(params).get("mlflow", {}) if params.is_file() else {}
    uri = tracking_uri(config.mlflow_config(section), root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingError(f"MLflow tracking store {uri}: no such file; run a sweep first, or set MLFLOW_TRACKING_URI")
    return uri


def _find_run(uri: str, run_id: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        with one_attempt():
            tracker_client().get_run(run_id)
    except MlflowException as err:
        if unreachable(err):
            raise TrackingError(f"MLflow tracking store {uri} is unreachable") from None
        raise ConfigError(f"run id '{run_id}': no such run in the tracking store {uri}") from None
    except Exception as err:
        if unreachable(err):
            raise TrackingError(f"MLflow tracking store {uri} is unreachable") from None
        raise


if __name__ == "__main__":
    main()
