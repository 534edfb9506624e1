"""Notebook helpers: tracked runs as pandas objects.

    from logitlab.analysis import compare, load_run

    table = compare("circles")                          # every run of the experiment, one row each
    jobs = compare("circles", parent_run_id=parent_id)  # only the jobs of one sweep
    run = load_run(jobs.run_id[0])
    run.params["model.learning_rate"], run.metrics["val_accuracy"]
    run.history.plot(x="epoch", y=["train_loss", "val_loss"])

The store is the one the pipeline logs to (MLFLOW_TRACKING_URI, else `mlflow.tracking_uri` of the
project's config, else sqlite:///<project root>/mlflow.db) unless `tracking_uri` is given. mlflow is
imported inside the functions only. Parameter values that all read as numbers come back as numbers.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pandas as pd

from logitlab.errors import TrackingError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

__all__ = ["RunData", "compare", "default_tracking_uri", "load_run"]

HISTORY_METRICS = ("train_loss", "val_loss")  # logged per epoch (thinned), with the epoch as the step
HISTORY_ARTIFACT = "cost_history.csv"  # every epoch
PARENT_TAG = "mlflow.parentRunId"
NAME_TAG = "mlflow.runName"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


@dataclass
class RunData:
    """One tracked run. Also readable as a mapping: `run["metrics"]`, `dict(run)`."""

    run_id: str
    run_name: str
    status: str
    experiment_id: str
    parent_run_id: str | None
    start_time: pd.Timestamp | None
    end_time: pd.Timestamp | None
    params: pd.Series  # flattened config keys, e.g. `model.learning_rate`
    metrics: pd.Series  # the final value of every metric
    history: pd.DataFrame  # epoch, train_loss, val_loss (one row per epoch)
    tags: pd.Series
    artifact_uri: str = ""

    KEYS: ClassVar[tuple[str, ...]] = (
        "run_id",
        "run_name",
        "status",
        "experiment_id",
        "parent_run_id",
        "start_time",
        "end_time",
        "params",
        "metrics",
        "history",
        "tags",
        "artifact_uri",
    )

    def __repr__(self) -> str:
        return (
            f"RunData(run_id={self.run_id!r}, run_name={self.run_name!r}, status={self.status!r}, "
            f"parent_run_id={self.parent_run_id!r}, params=<{len(self.params)}>, metrics=<{len(self.metrics)}>, "
            f"history=<{len(self.history)} epochs>, tags=<{len(self.tags)}>)"
        )

    def __getitem__(self, key: str) -> Any:
        if key not in self.KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)

    def keys(self) -> tuple[str, ...]:
        return self.KEYS


# ------------------------------------------------------------------------------------------- the store
def default_tracking_uri(root: Path | None = None) -> str:
    """The store the pipeline logs to, resolved by `logitlab.tracking.store.tracking_uri`."""
    from logitlab import config
    from logitlab.tracking import store

    root = root or config.project_root()
    return store.tracking_uri(_mlflow_config(root), root)


def _mlflow_config(root: Path) -> Any:
    """The project's `mlflow` config section: params.yaml (what `dvc repro` uses), else conf/ composed."""
    from logitlab import config
    from logitlab.errors import LogitlabError

    try:
        params_file = root / "params.yaml"
        params = config.load_params(params_file) if params_file.is_file() else config.compose()
        return config.mlflow_config(config.section(params, "mlflow"))
    except LogitlabError:
        return config.MlflowConfig()  # the defaults: MLFLOW_TRACKING_URI, else <root>/mlflow.db


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingError(f"no MLflow tracking store at {uri}; run `make repro` or `make sweep` first")
    return MlflowClient(uri)


# ---------------------------------------------------------------------------------------------- runs
def load_run(run_id: str, tracking_uri: str | None = None) -> RunData:
    """A run's params, final metrics, per-epoch loss history and tags."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise TrackingError(f"MLflow run '{run_id}': {' '.join(str(err).split())[:300]}") from None
    history = _history(client, run)
    tags = run.data.tags
    return RunData(
        run_id=run.info.run_id,
        run_name=run.info.run_name or tags.get(NAME_TAG, ""),
        status=run.info.status,
        experiment_id=run.info.experiment_id,
        parent_run_id=tags.get(PARENT_TAG),
        start_time=_time(run.info.start_time),
        end_time=_time(run.info.end_time),
        params=_params_series(run.data.params),
        metrics=pd.Series(dict(sorted(run.data.metrics.items())), dtype="float64", name="metrics"),
        history=history,
        tags=pd.Series(dict(sorted(tags.items())), dtype="object", name="tags"),
        artifact_uri=run.info.artifact_uri or "",
    )


def _history(client: MlflowClient, run: Run) -> pd.DataFrame:
    """The loss curves from the metric store (full precision); when they were thinned to
    `mlflow.history_points`, every epoch from the run's cost_history.csv artifact instead."""
    from mlflow.exceptions import MlflowException

    history = _metric_history(client, run)
    if len(history) >= run.data.metrics.get("n_iter", 0):
        return history
    with tempfile.TemporaryDirectory(prefix="logitlab-history-") as tmp, _no_progress_bars():
        try:
            local = client.download_artifacts(run.info.run_id, HISTORY_ARTIFACT, tmp)
            return pd.read_csv(local)[["epoch", *HISTORY_METRICS]]
        except (MlflowException, OSError, KeyError, ValueError):
            return history


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow draws a download progress bar per artifact unless told not to: noise in a notebook cell."""
    with _environment_kept(PROGRESS_BAR_ENV):
        os.environ[PROGRESS_BAR_ENV] = "false"
        yield


def _metric_history(client: MlflowClient, run: Run) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {}
    for key in HISTORY_METRICS:
        if key not in run.data.metrics:
            continue
        points = client.get_metric_history(run.info.run_id, key)
        # a re-logged step keeps its latest value; step 0 is no epoch but a summary value (a sweep parent
        # copies its best job's final metrics at step 0)
        by_step = {p.step: p.value for p in sorted(points, key=lambda p: (p.step, p.timestamp)) if p.step >= 1}
        if not by_step:
            continue
        columns[key] = pd.Series(by_step, dtype="float64")
    if not columns:
        return pd.DataFrame(
            {"epoch": pd.Series(dtype="int64"), **{k: pd.Series(dtype="float64") for k in HISTORY_METRICS}}
        )
    frame = pd.DataFrame(columns).sort_index()
    for key in HISTORY_METRICS:
        if key not in frame:
            frame[key] = math.nan
    frame.index = frame.index.astype("int64")
    return frame.rename_axis("epoch").reset_index()[["epoch", *HISTORY_METRICS]]


def compare(
    experiment: str,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    tags: bool = False,
) -> pd.DataFrame:
    """One row per run of `experiment` (a name or an id), oldest first: run_id, run_name, status,
    parent_run_id, start_time, end_time, then `params.*` and `metrics.*` (final values) columns, and
    `tags.*` with `tags=True`. With `parent_run_id`, only the child runs of that sweep.

    The rows are `mlflow.search_runs`'s (it pages through the store); the columns are put in that order and
    numeric params become numbers."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        found = client.get_experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            found = client.get_experiment(experiment)
    except MlflowException:
        found = None
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise TrackingError(
            f"no MLflow experiment '{experiment}' in {client.tracking_uri}; experiments: {', '.join(names)}"
        )
    with _tracking_uri(client.tracking_uri):
        runs = mlflow.search_runs(
            [found.experiment_id],
            filter_string=f"tags.{PARENT_TAG} = '{parent_run_id}'" if parent_run_id else "",
            order_by=["attributes.start_time ASC"],
            output_format="pandas",
        )
    assert isinstance(runs, pd.DataFrame)
    return _table(runs, tags)


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """`mlflow.search_runs` reads the process's tracking URI: point it at `uri` meanwhile, then put back both it
    and MLFLOW_TRACKING_URI (MLflow copies the URI it is set to into the environment)."""
    import mlflow

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    with _environment_kept(TRACKING_URI_ENV):
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(cast(str, previous))  # None: unset again, as it was


@contextlib.contextmanager
def _environment_kept(name: str) -> Iterator[None]:
    """The environment variable `name` as it was before, whatever happens to it meanwhile."""
    before = os.environ.get(name)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _table(runs: pd.DataFrame, with_tags: bool) -> pd.DataFrame:
    fixed = ["run_id", "run_name", "status", "parent_run_id", "start_time", "end_time"]
    if runs.empty:
        return pd.DataFrame(columns=fixed)
    table = runs.rename(columns={f"tags.{NAME_TAG}": "run_name", f"tags.{PARENT_TAG}": "parent_run_id"})
    for column in ("run_name", "parent_run_id"):
        if column not in table:
            table[column] = None
    prefixes = ("params.", "metrics.", "tags.") if with_tags else ("params.", "metrics.")
    rest = sorted(
        (c for c in table.columns if c.startswith(prefixes)),
        key=lambda c: ({"params": 0, "metrics": 1, "tags": 2}[c.split(".", 1)[0]], c),
    )
    table = table[fixed + rest].copy()
    for column in rest:
        if column.startswith("params."):
            table[column] = _numeric_if_possible(table[column])
    table["parent_run_id"] = table["parent_run_id"].where(table["parent_run_id"].notna(), None)
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------------------------- values
def _time(millis: int | None) -> pd.Timestamp | None:
    if not millis:
        return None
    return pd.Timestamp(datetime.fromtimestamp(millis / 1000, tz=UTC))


def _number(text: str) -> Any:
    """'0.1' -> 0.1, '3' -> 3; anything else (incl. 'True', 'None', 'nan') stays as logged."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) and text.strip().lower() not in ("nan", "inf", "-inf") else text


def _params_series(params: Mapping[str, str]) -> pd.Series:
    return pd.Series({k: _number(v) for k, v in sorted(params.items())}, dtype="object", name="params")


def _numeric_if_possible(column: pd.Series) -> pd.Series:
    """A params column becomes numeric when every logged value reads as a number."""
    values = column.dropna()
    parsed = [_number(v) if isinstance(v, str) else v for v in values]
    if not parsed or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in parsed):
        return column
    numeric = pd.to_numeric(column, errors="coerce")
    if all(isinstance(v, int) for v in parsed) and not numeric.isna().any():
        return numeric.astype("int64")
    return numeric.astype("float64")
