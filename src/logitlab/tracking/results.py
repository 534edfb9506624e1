"""What a finished run logs: the model, final metrics, loss per epoch, tags and report files."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from logitlab import io, reports
from logitlab.tracking.store import tracker_client, unreachable

if TYPE_CHECKING:
    from logitlab.errors import TrialPruned

MODEL_ID_TAG = "logitlab.model_id"  # the logged model's id, which the registry takes as models:/<id>
# "pending" while a helper process draws the run's figures after the run ended, "attached" once they are in:
# a resumed sweep runs again a FINISHED job whose figures never arrived (its sweep died first).
FIGURES_TAG = "logitlab.figures"
HISTORIES = ("train_loss", "val_loss")  # per-epoch metrics (step = epoch)
# A child its search's pruner stopped (`sweeps.trials`): the epoch and the value it reported there.
PRUNED_STEP_TAG = "logitlab.pruned_at_epoch"
PRUNED_VALUE_TAG = "logitlab.pruned_value"


@dataclass(frozen=True)
class DatasetRecord:
    """What a run trained on, for `mlflow.log_input`: the data config's name, the content hash of the model's
    input tables, the raw rows' file and the rows in each split."""

    name: str
    digest: str  # feature-engineer's data_hash
    path: Path  # ingest's dataset.parquet
    rows: Mapping[str, int]  # train, val, test


@dataclass(frozen=True)
class RunRecord:
    """A finished run as files and numbers, whichever executor produced it (`evaluate.record` builds it)."""

    metrics: Mapping[str, float | int]
    history: pd.DataFrame  # epoch, train_loss, val_loss
    artifacts: list[Path]  # report files and folders, logged at the run's root under their own names
    model_dir: Path
    input_example: pd.DataFrame  # a few raw rows: the model's signature and example
    dataset: DatasetRecord
    tags: Mapping[str, str] = field(default_factory=dict)  # what the run is (task, classes, folds)


def log_results(
    run_id: str,
    record: RunRecord,
    history_points: int,
    log_model: bool = True,
    tags: Mapping[str, str] | None = None,
) -> None:
    """The pyfunc model, the dataset, then final metrics, per-epoch losses and tags in one `log_batch`, then the
    artifacts. The run need not be active: the helper logs a job's run after the job (`sweeps.relay`).

    The model goes first: logging a model copies the run's metrics onto it by reading back every metric's
    whole history, so with no metrics yet that is free, and the final metrics are linked to the model here
    (`model_id`) as MLflow would have done. `log_batch` splits the points into store calls of 1000.
    """
    from mlflow.entities import Metric, RunTag

    all_tags = {"data_hash": record.dataset.digest, **record.tags, **(tags or {})}
    model_id = None
    if log_model:
        model_id = all_tags[MODEL_ID_TAG] = log_pyfunc_model(run_id, record.model_dir, record.input_example)
    log_dataset(run_id, record.dataset, record.input_example)
    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, 0, model_id=model_id) for k, v in sorted(record.metrics.items()) if finite(v)]
    # A SQLite store spends ~65 us per point: a 5000-epoch gd job would spend most of its time writing its
    # curves, and MLflow's charts ask for 320 sampled points per curve anyway; every epoch is in the
    # cost_history.csv artifact.
    history = reports.evenly_spaced(record.history, history_points)
    for column in HISTORIES:
        for epoch, value in zip(history["epoch"].tolist(), history[column].tolist(), strict=True):
            if finite(value):
                points.append(Metric(column, float(value), now, int(epoch)))
    client = tracker_client()
    with _gc_paused():
        client.log_batch(run_id, metrics=points, tags=[RunTag(k, v) for k, v in sorted(all_tags.items())])
    log_artifacts(run_id, record.artifacts)


def log_pruned(run_id: str, pruned: TrialPruned, metric: str, history_points: int) -> None:
    """A pruned fit: its loss curves up to the epoch it stopped at, and tags saying where and at what value
    (optuna's state for it is PRUNED; the run is FINISHED, with no final metrics to rank it by)."""
    from mlflow.entities import Metric, RunTag

    epochs = range(1, len(pruned.cost_history) + 1)
    val_loss = pruned.val_history or [math.nan] * len(pruned.cost_history)
    curves = pd.DataFrame({"epoch": epochs, "train_loss": pruned.cost_history, "val_loss": val_loss})
    curves = reports.evenly_spaced(curves, history_points)
    now = int(time.time() * 1000)
    points = [
        Metric(column, float(value), now, int(epoch))
        for column in HISTORIES
        for epoch, value in zip(curves["epoch"].tolist(), curves[column].tolist(), strict=True)
        if finite(value)
    ]
    tags = {
        PRUNED_STEP_TAG: str(pruned.step),
        PRUNED_VALUE_TAG: f"{pruned.value:.6g}",
        "mlflow.note.content": f"pruned at epoch {pruned.step}: {metric} {pruned.value:.6g} there",
    }
    tracker_client().log_batch(run_id, metrics=points, tags=[RunTag(key, value) for key, value in tags.items()])


def expect_late_artifacts(run_id: str) -> None:
    """Before the helper gets them: the run's figures will come after the run ended."""
    tracker_client().set_tag(run_id, FIGURES_TAG, "pending")


def attach_late_artifacts(run_id: str, paths: list[Path]) -> None:
    """What a helper made after the run ended (its figures), then the tag that says they arrived. A server
    still away after MLflow's retries gets a second retry window, as a run's end does (`lifecycle`)."""
    for attempt in range(2):
        try:
            log_artifacts(run_id, paths)
            break
        except Exception as err:
            if attempt or not unreachable(err):
                raise
    tracker_client().set_tag(run_id, FIGURES_TAG, "attached")


def log_dataset(run_id: str, dataset: DatasetRecord, example: pd.DataFrame) -> None:
    """The run's input as MLflow shows it in the runs table's Dataset column: `<name> (<digest>)`, its raw
    columns as the schema and the split sizes as the profile.

    MLflow inserts a dataset new to the experiment without a lock, so parallel jobs (joblib, SLURM) logging it
    at once collide on its unique key; the losers try once more, when MLflow finds the winner's row and links
    it (SQLite: `UNIQUE constraint failed`, PostgreSQL behind a server: `... violates unique constraint`)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource  # type: ignore[attr-defined]  # made at import
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from logitlab.pyfunc_model import example_schema

    class SplitDataset(MetaDataset):
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": sum(dataset.rows.values()), **{f"{k}_rows": v for k, v in dataset.rows.items()}}

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self.profile)}

    source = LocalArtifactDatasetSource(str(dataset.path))
    logged = SplitDataset(source, name=dataset.name, digest=dataset.digest, schema=example_schema(example))
    # what `mlflow.log_input(logged, "training")` logs, to `run_id` rather than the active run
    training = DatasetInput(logged._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])
    for attempt in range(2):
        try:
            tracker_client().log_inputs(run_id, datasets=[training])
            return
        except MlflowException as err:
            if attempt or "unique constraint" not in str(err).lower():
                raise


def log_artifacts(run_id: str, paths: list[Path]) -> None:
    """Files at the run's root, folders as folders of the same name: in one call, from a temporary folder of
    hard links. Each MLflow call reads the run back for its artifact location, and a single file is staged
    before it is moved in: a job's eleven calls took ~7 ms, the one call ~2 ms."""
    present = [path for path in paths if path.exists()]
    if not present:
        return
    with tempfile.TemporaryDirectory(prefix="logitlab-artifacts-") as tmp:
        for path in present:
            if path.is_dir():
                shutil.copytree(path, Path(tmp) / path.name, copy_function=io.link_or_copy, dirs_exist_ok=True)
            else:
                io.link_or_copy(str(path), str(Path(tmp) / path.name))
        tracker_client().log_artifacts(run_id, tmp)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A local store turns each point into short-lived ORM objects; the cyclic collector's passes over the whole
    heap (pandas, matplotlib, mlflow loaded) then cost a quarter of the logging. Refcounting still frees them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def add_model(run_id: str, model_dir: Path, input_example: pd.DataFrame) -> str:
    """The pyfunc model logged onto a run that has its metrics already (ended or not), and the tag that names it."""
    model_id = log_pyfunc_model(run_id, model_dir, input_example)
    tracker_client().set_tag(run_id, MODEL_ID_TAG, model_id)
    return model_id


def log_pyfunc_model(run_id: str, model_dir: Path, input_example: pd.DataFrame) -> str:
    """The scoring pipeline as an MLflow pyfunc model named `model` of run `run_id`, defined from code (no pickle);
    its id. The run need not be active: a model can be added to a finished run later (`logitlab.runs model`).

    The logitlab package goes with it (`code_paths`: ~0.4 MB, `__pycache__` left out by MLflow), so it loads
    where only its requirements.txt is installed. Everything MLflow would otherwise work out per model is
    given: the signature and the pinned requirements.
    """
    import mlflow
    from mlflow.models import Model

    import logitlab
    from logitlab import pyfunc_model, scoring

    example = input_example.reset_index(drop=True)
    outputs = scoring.probability_columns(scoring.saved_labels(model_dir))
    if (active := mlflow.active_run()) is None or active.info.run_id != run_id:
        # MLflow files a model under the active experiment (Default when none is set), not its run's
        mlflow.set_experiment(experiment_id=tracker_client().get_run(run_id).info.experiment_id)
    info = Model.log(
        artifact_path=None,  # `name` instead (MLflow 3), as `mlflow.pyfunc.log_model` passes it
        run_id=run_id,
        flavor=mlflow.pyfunc,
        name="model",
        python_model=pyfunc_model.__file__,
        artifacts={"pipeline": str(model_dir)},
        signature=pyfunc_model.signature(example, outputs),
        input_example=example,
        pip_requirements=pyfunc_model.requirements(),
        code_paths=[str(Path(logitlab.__file__).parent)],
        infer_code_paths=False,
    )
    return str(info.model_id)
