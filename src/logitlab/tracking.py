"""Every MLflow call of the project lives here.

mlflow is imported inside functions only, so `mlflow.enabled=false` never imports it. The store and the
experiment are created under a file lock before any run starts: parallel first-time creation of a SQLite
store crashes, and a parallel `set_experiment` of a new name silently logs to the Default experiment.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import logging
import math
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from logitlab import config, io, reports
from logitlab.cli import raise_interrupt
from logitlab.errors import TrackingError

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

    from logitlab.pipeline import JobResult

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent.json"
SWEEP_TAG = "logitlab.sweep_id"
MODEL_ID_TAG = "logitlab.model_id"  # the logged model's id, which the registry takes as models:/<id>
HISTORIES = ("train_loss", "val_loss")  # per-epoch metrics (step = epoch)


@dataclass(frozen=True)
class Tracker:
    """A reachable tracking store with the experiment in place."""

    uri: str
    experiment_id: str
    experiment_name: str

    def client(self) -> MlflowClient:
        return _client(self.uri)


# ------------------------------------------------------------------------------------------ the store
def tracking_uri(cfg: config.MlflowConfig, root: Path) -> str:
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    if cfg.tracking_uri:
        return cfg.tracking_uri
    return f"sqlite:///{root / 'mlflow.db'}"


def _artifact_location(uri: str, root: Path, experiment_name: str) -> str | None:
    """Local stores keep artifacts in <root>/mlartifacts (absolute: DVC queue workers share it);
    a server chooses its own."""
    if uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri:
        return (root / "mlartifacts" / experiment_name).as_uri()
    return None


def _check_reachable(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5) as response:
            if response.status == 200:
                return
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason})") from None
    raise TrackingError(f"MLflow tracking server {uri} did not answer /health with 200")


@contextlib.contextmanager
def _store_lock(root: Path) -> Iterator[None]:
    from filelock import FileLock

    lock_dir = root / ".cache"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_dir / "mlflow-store.lock", timeout=120):
        yield


# Trackers this process has connected: every job of a sequential sweep reuses the callback's connection.
_connected: dict[tuple[str, str, Path], Tracker] = {}


def connect(cfg: config.MlflowConfig, root: Path | None = None) -> Tracker | None:
    """Point MLflow at the store and make sure the experiment exists (once per process and store).

    An unreachable store is an error naming the URI, or with `mlflow.required=false` a warning and None
    (training goes on untracked).
    """
    root = root or config.project_root()
    uri = tracking_uri(cfg, root)
    try:
        return _connect_once(uri, cfg.experiment_name, root)
    except TrackingError as err:
        if cfg.required:
            raise
        log.warning("%s; tracking is off for this run (mlflow.required=false)", err)
        return None


def _connect_once(uri: str, experiment_name: str, root: Path) -> Tracker:
    """`_connect` once per process and store; later jobs only check that a server still answers."""
    key = (uri, experiment_name, root)
    tracker = _connected.get(key)
    if tracker is None or not _store_exists(uri):
        tracker = _connected[key] = _connect(uri, experiment_name, root)
    else:
        import mlflow

        _check_reachable(uri)
        mlflow.set_tracking_uri(uri)
    return tracker


def _store_exists(uri: str) -> bool:
    """A local SQLite store deleted since it was connected must be created again; others are assumed to stay."""
    return not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).is_file()


def _connect(uri: str, experiment_name: str, root: Path) -> Tracker:
    import mlflow
    from mlflow.exceptions import MlflowException

    # Quiet, lean model logging: requirements are pinned explicitly, no progress bars in logs.
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for chatty in ("mlflow.utils.uv_utils", "mlflow.pyfunc", "mlflow.models.model", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "no pip in this venv": uv has none
    _check_reachable(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        with _store_lock(root):
            client = mlflow.tracking.MlflowClient(uri)
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                experiment_id = client.create_experiment(
                    experiment_name,
                    artifact_location=_artifact_location(uri, root, experiment_name),
                    # MLflow 3's UI then opens the experiment on its training runs, not the GenAI view.
                    tags={"mlflow.experimentKind": "custom_model_development"},
                )
            elif experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
                experiment_id = experiment.experiment_id
            else:
                experiment_id = experiment.experiment_id
    except MlflowException as err:
        raise TrackingError(f"MLflow tracking store {uri}: {' '.join(str(err).split())[:300]}") from None
    return Tracker(uri, experiment_id, experiment_name)


# ------------------------------------------------------------------------------------------- one run
def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"model": {"C": 1}}` -> `{"model.C": "1"}`: the keys users type on the command line."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return flat


def git_tags(cwd: Path | None = None) -> dict[str, str]:
    return dict(_git_state(cwd))


@functools.cache
def _git_state(cwd: Path | None) -> tuple[tuple[str, str], ...]:
    """Commit and dirtiness, asked of git once per process: a sweep's jobs share them."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return ()
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return (("git_commit", commit), ("git_dirty", str(dirty).lower()))


@contextlib.contextmanager
def tracked_run(
    tracker: Tracker,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, Any],
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """A run that always ends: FINISHED, FAILED (with the error as a tag) or KILLED on interrupt.

    Params and the resolved config are logged first, so a failed run still shows what it was.
    """
    import mlflow

    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = mlflow.start_run(experiment_id=tracker.experiment_id, run_name=run_name, tags=all_tags)
    previous_sigterm = _sigterm_interrupts()
    try:
        _log_params(run.info.run_id, params)
        yield run.info.run_id
        if previous_sigterm is not None and _sigterms_received:
            raise KeyboardInterrupt("SIGTERM")  # raised once already, but swallowed (see `_interrupt_run`)
    except (KeyboardInterrupt, SystemExit):
        _end(run.info.run_id, "KILLED", "interrupted")
        raise
    except BaseException as err:
        _end(run.info.run_id, "FAILED", " ".join(str(err).split()) or type(err).__name__)
        raise
    else:
        mlflow.end_run("FINISHED")
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


def _log_params(run_id: str, params: Mapping[str, Any]) -> None:
    import yaml
    from mlflow.entities import Param

    client = tracker_client()
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in sorted(flatten(params).items())])
    client.log_text(run_id, yaml.safe_dump(dict(params), sort_keys=False), "config.yaml")


def tracker_client() -> MlflowClient:
    """A client on the URI `connect` set."""
    import mlflow

    return _client(mlflow.get_tracking_uri())


@functools.cache
def _client(uri: str) -> MlflowClient:
    """One client per store and process: building one costs more than many of its calls."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _sigterm_interrupts() -> Any:
    """While a run is open, SIGTERM (a cancelled CI job, `kill`, a scheduler) raises KeyboardInterrupt as Ctrl-C
    does, so the run ends KILLED instead of staying RUNNING. Only where no handler is set (the sweep sets its
    own); returns the handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        return None
    _sigterms_received.clear()
    return signal.signal(signal.SIGTERM, _interrupt_run)


# SIGTERMs that reached `_interrupt_run` while the run `tracked_run` opened was open.
_sigterms_received: list[int] = []


def _interrupt_run(signum: int, frame: object) -> None:
    """`raise_interrupt`, remembered: Python drops an exception raised while a weakref callback or `__del__` runs
    (MLflow's artifact repositories let go of their thread pools that way), so `tracked_run` checks again before
    it ends the run FINISHED."""
    _sigterms_received.append(signum)
    raise_interrupt(signum, frame)


def _end(run_id: str, status: str, reason: str) -> None:
    import mlflow

    with contextlib.suppress(Exception):
        mlflow.set_tag("error", reason[:5000])
        mlflow.set_tag("mlflow.note.content", f"{status}: {reason[:5000]}")
    with contextlib.suppress(Exception):
        mlflow.end_run(status)
    if mlflow.active_run() is not None:  # the store refused: leave no run open in this process
        mlflow.end_run(status)
    log.info("MLflow run %s ended %s: %s", run_id, status, reason)


def log_results(
    run_id: str,
    metrics: Mapping[str, float | int],
    history: pd.DataFrame,
    artifacts_dir: Path,
    model_dir: Path | None,
    input_example: pd.DataFrame,
    history_points: int,
    tags: Mapping[str, str] | None = None,
) -> None:
    """The pyfunc model, then final metrics, per-epoch losses and tags in one `log_batch`, then the artifacts.

    The model goes first: logging a model copies the run's metrics onto it by reading back every metric's
    whole history, so with no metrics yet that is free, and the final metrics are linked to the model here
    (`model_id`) as MLflow would have done. `log_batch` splits the points into store calls of 1000.
    """
    from mlflow.entities import Metric, RunTag

    all_tags = dict(tags or {})
    model_id = None
    if model_dir is not None:
        model_id = all_tags[MODEL_ID_TAG] = log_model(model_dir, input_example)
    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, 0, model_id=model_id) for k, v in sorted(metrics.items()) if _finite(v)]
    # A SQLite store spends ~65 us per point: a 5000-epoch gd job would spend most of its time writing its
    # curves, and MLflow's charts ask for 320 sampled points per curve anyway; every epoch is in the
    # cost_history.csv artifact.
    history = reports.evenly_spaced(history, history_points)
    for column in HISTORIES:
        for epoch, value in zip(history["epoch"].tolist(), history[column].tolist(), strict=True):
            if _finite(value):
                points.append(Metric(column, float(value), now, int(epoch)))
    client = tracker_client()
    with _gc_paused():
        client.log_batch(run_id, metrics=points, tags=[RunTag(k, v) for k, v in sorted(all_tags.items())])
    client.log_artifacts(run_id, str(artifacts_dir))


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


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def log_model(model_dir: Path, input_example: pd.DataFrame) -> str:
    """The scoring pipeline as an MLflow pyfunc model named `model`, defined from code (no pickle); its id.

    Everything MLflow would otherwise work out per model is given: the signature, the pinned requirements,
    and no code paths (logitlab is installed in the serving environment).
    """
    import mlflow

    from logitlab import pyfunc_model

    example = input_example.reset_index(drop=True)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=pyfunc_model.__file__,
        artifacts={"pipeline": str(model_dir)},
        signature=pyfunc_model.signature(example),
        input_example=example,
        pip_requirements=pyfunc_model.requirements(),
        code_paths=None,
        infer_code_paths=False,
    )
    return str(info.model_id)


# ------------------------------------------------------------------------------------ DVC repro runs
def log_repro(
    params: Mapping[str, Any],
    cfg: config.MlflowConfig,
    metrics: Mapping[str, float | int],
    history: pd.DataFrame,
    reports_dir: Path,
    model_dir: Path,
    input_example: pd.DataFrame,
    data_version: str,
) -> None:
    """One MLflow run per `dvc repro` that reached the evaluate stage."""
    tracker = connect(cfg)
    if tracker is None:
        return
    tags = {
        **git_tags(),
        **dvc_stage_tags(Path("dvc.lock")),
        "logitlab.entry": "dvc repro",
        "data_hash": data_version,
    }
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = exp
    name = os.environ.get("DVC_EXP_NAME") or "dvc-repro"
    with tracked_run(tracker, name, tags, params) as run_id:
        log_results(
            run_id,
            metrics,
            history,
            reports_dir,
            model_dir if cfg.log_model else None,
            input_example,
            cfg.history_points,
        )
        log.info("tracked as MLflow run %s in experiment '%s' (%s)", run_id, tracker.experiment_name, tracker.uri)


def dvc_stage_tags(lock_file: Path) -> dict[str, str]:
    """A short hash of each stage's outputs as recorded in dvc.lock (the stages that already ran)."""
    import yaml

    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    tags = {}
    for stage, entry in (lock.get("stages") or {}).items():
        digests = sorted(out.get("md5", "") for out in entry.get("outs", []))
        tags[f"dvc.stage.{stage}"] = hashlib.sha256("".join(digests).encode()).hexdigest()[:16]
    return tags


# ------------------------------------------------------------------------------------------- sweeps
def job_run(tracker: Tracker, params: Mapping[str, Any], result_fn: Callable[[str], JobResult]) -> JobResult:
    """Run one sweep job inside a child run of the sweep's parent (or a top-level run for a single run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    parent = read_parent(Path(hydra_cfg.sweep.dir)) if hydra_cfg.mode == RunMode.MULTIRUN else None
    overrides = " ".join(hydra_cfg.overrides.task)
    tags = {
        **git_tags(),
        "logitlab.entry": "sweep" if parent else "single run",
        "hydra_overrides": overrides or "(defaults)",
        "hydra_job_num": str(hydra_cfg.job.num) if parent else "0",
    }
    if parent:
        tags[SWEEP_TAG] = parent["sweep_id"]
    name = overrides.replace(" ", ",")[:200] or "defaults"
    with tracked_run(tracker, name, tags, params, parent["run_id"] if parent else None) as run_id:
        result: JobResult = result_fn(run_id)
        return result


@dataclass(frozen=True)
class SweepSummary:
    parent_run_id: str
    finished: int
    failed: int
    best_run_id: str | None
    best_value: float | None


def start_sweep(tracker: Tracker, sweep_dir: Path, overrides: list[str]) -> str:
    """Create the sweep's parent run (not active in any process) and leave its id for the jobs."""
    client = tracker.client()
    sweep_id = hashlib.sha256(f"{sweep_dir.resolve()}{time.time_ns()}".encode()).hexdigest()[:12]
    tags = {
        **git_tags(),
        SWEEP_TAG: sweep_id,
        "logitlab.entry": "sweep parent",
        "hydra_overrides": " ".join(overrides) or "(defaults)",
        "mlflow.runName": f"sweep-{sweep_id}",
    }
    run = client.create_run(tracker.experiment_id, tags=tags, run_name=f"sweep-{sweep_id}")
    io.write_json(sweep_dir / PARENT_FILE, {"run_id": run.info.run_id, "sweep_id": sweep_id, "uri": tracker.uri})
    return run.info.run_id


def read_parent(sweep_dir: Path) -> dict[str, str] | None:
    file = sweep_dir / PARENT_FILE
    if not file.is_file():
        return None
    parent: dict[str, str] = json.loads(file.read_text(encoding="utf-8"))
    return parent


def children(tracker: Tracker, parent_run_id: str) -> list[Run]:
    client = tracker.client()
    runs: list[Run] = []
    token = None
    for _ in range(1000):  # bounded paging
        page = client.search_runs(
            [tracker.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
            max_results=1000,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            break
    return runs


def end_sweep_early(tracker: Tracker, parent_run_id: str, status: str, reason: str) -> None:
    """End the parent and any child still RUNNING (a worker killed mid-job) with `status`."""
    client = tracker.client()
    for run in children(tracker, parent_run_id):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "error", reason)
            client.set_terminated(run.info.run_id, status)
    client.set_tag(parent_run_id, "error", reason)
    client.set_terminated(parent_run_id, status)


def finish_sweep(
    tracker: Tracker, parent_run_id: str, sweep: config.SweepConfig, register: bool, out_dir: Path
) -> SweepSummary:
    """Give the parent the best child's params and metrics, the sweep table and a comparison plot;
    register the best model as `champion` when it beats the current one."""
    from mlflow.entities import Metric, Param

    from logitlab import sweep_report

    client = tracker.client()
    runs = children(tracker, parent_run_id)
    table = sweep_report.table(runs)
    finished = [r for r in runs if r.info.status == "FINISHED" and sweep.metric in r.data.metrics]
    failed = sum(r.info.status == "FAILED" for r in runs)
    sign = 1 if sweep.direction == "maximize" else -1
    # Ties (common for accuracy) go to the better-calibrated model, then to the earlier job.
    best = max(
        finished,
        key=lambda r: (
            sign * r.data.metrics[sweep.metric],
            -r.data.metrics.get("val_log_loss", math.inf),
            -r.info.start_time,
        ),
        default=None,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    io.write_csv(out_dir / "sweep_table.csv", table)
    io.write_text(out_dir / "sweep_table.html", sweep_report.to_html(table, sweep.metric))
    sweep_report.comparison_plot(table, sweep.metric, out_dir / "sweep_comparison.png")
    client.log_artifacts(parent_run_id, str(out_dir), artifact_path="sweep")
    now = int(time.time() * 1000)
    summary_metrics = [
        Metric("n_jobs", float(len(runs)), now, 0),
        Metric("n_failed", float(failed), now, 0),
    ]
    params: list[Param] = []
    if best is not None:
        params = [Param(k, v) for k, v in sorted(best.data.params.items())]
        summary_metrics += [
            Metric(k, v, now, 0) for k, v in sorted(best.data.metrics.items()) if _finite(v) and k not in HISTORIES
        ]
        client.set_tag(parent_run_id, "best_run_id", best.info.run_id)
        client.set_tag(parent_run_id, "best_overrides", best.data.tags.get("hydra_overrides", ""))
    client.log_batch(parent_run_id, metrics=summary_metrics, params=params)
    if best is not None and register:
        promote_champion(tracker, best, sweep)
    client.set_terminated(parent_run_id, "FINISHED")
    return SweepSummary(
        parent_run_id,
        finished=len(finished),
        failed=failed,
        best_run_id=best.info.run_id if best else None,
        best_value=best.data.metrics[sweep.metric] if best else None,
    )


def promote_champion(tracker: Tracker, best: Run, sweep: config.SweepConfig) -> None:
    """Register the best child's model; move the `champion` alias only if it beats the current champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = tracker.client()
    name = tracker.experiment_name
    value = best.data.metrics[sweep.metric]
    try:
        current = client.get_model_version_by_alias(name, "champion")
        champion_value = client.get_run(current.run_id).data.metrics.get(sweep.metric) if current.run_id else None
    except MlflowException:
        champion_value = None
    better = champion_value is None or (
        value > champion_value if sweep.direction == "maximize" else value < champion_value
    )
    if not better:
        log.info("champion kept: %s=%.4f is not better than %.4f", sweep.metric, value, champion_value)
        return
    model_id = best.data.tags.get(MODEL_ID_TAG)
    if model_id is None:
        log.info("best run %s has no logged model (mlflow.log_model=false): nothing to register", best.info.run_id)
        return
    version = mlflow.register_model(f"models:/{model_id}", name)
    client.set_registered_model_alias(name, "champion", version.version)
    client.set_model_version_tag(name, version.version, sweep.metric, str(value))
    log.info("registered %s version %s as champion (%s=%.4f)", name, version.version, sweep.metric, value)
