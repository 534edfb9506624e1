"""The tracking store: which one, reachable or not, and the experiment in place before any run starts.

The store and the experiment are created under a file lock: parallel first-time creation of a SQLite store
crashes, and a parallel `set_experiment` of a new name silently logs to the Default experiment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from logitlab import config, io
from logitlab.errors import TrackingError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Tracker:
    """A reachable tracking store with the experiment in place."""

    uri: str
    experiment_id: str
    experiment_name: str

    def client(self) -> MlflowClient:
        return _client(self.uri)


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


# /health's timeouts, one per attempt: a refused connection fails at once (nothing listens there), but a server
# that is up and busy (three sweeps starting together on two cores) can take more than 5 s to answer, and is
# not unreachable. ~1 min in all, well within what MLflow's own calls wait (MLFLOW_HTTP_REQUEST_TIMEOUT=120).
HEALTH_TIMEOUTS_S: tuple[float, ...] = (5, 15, 40)


def _check_reachable(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    for attempt, timeout_s in enumerate(HEALTH_TIMEOUTS_S, start=1):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as response:
                if response.status == 200:
                    return
                break
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError) and attempt < len(HEALTH_TIMEOUTS_S):
                log.info("MLflow tracking server %s: /health timed out after %s s, asking again", uri, timeout_s)
                continue
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


def make_folder(uri: str) -> None:
    """The folder of a local SQLite store: a path that cannot be one fails here, before MLflow is imported."""
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def _new_local_store(db: Path) -> None:
    """A new local SQLite store as a copy of an empty one (`_empty_store`), which MLflow opens as a store of its
    own: the schema at its head, and the Default experiment added on opening, with this store's artifact root and
    time. MLflow makes a new store by running each of its schema's migrations: 0.85 s every time (AMD EPYC), on
    the tracked sweep's critical path (the helper's); the copy takes ~1 ms. Without a usable empty store (a user
    cache that cannot be written), MLflow makes the store itself."""
    import shutil
    import sqlite3

    try:
        empty = _empty_store()
        with io.atomic_path(db) as tmp:
            shutil.copyfile(empty, tmp)
    except (OSError, sqlite3.Error) as err:
        log.debug("no empty MLflow store to copy (%s): MLflow makes %s", err, db)


def _empty_store() -> Path:
    """MLflow's empty store for its installed version, made once per user (`$XDG_CACHE_HOME/logitlab`): a store
    MLflow made, less the Default experiment (MLflow adds it to each copy it opens)."""
    import sqlite3

    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "logitlab"
    empty = folder / f"mlflow-{mlflow.__version__}-empty-store.db"
    if not empty.is_file():
        with io.atomic_path(empty) as tmp:
            SqlAlchemyStore(f"sqlite:///{tmp}", str(folder / "no-artifacts")).engine.dispose()
            with contextlib.closing(sqlite3.connect(tmp)) as made, made:
                made.execute("DELETE FROM experiments WHERE experiment_id = 0")
    return empty


def _connect(uri: str, experiment_name: str, root: Path) -> Tracker:
    import mlflow
    from mlflow.exceptions import MlflowException

    _quiet()
    _patient()
    _check_reachable(uri)
    make_folder(uri)
    mlflow.set_tracking_uri(uri)
    try:
        with _store_lock(root):
            if uri.startswith("sqlite:///") and not (db := Path(uri.removeprefix("sqlite:///"))).exists():
                _new_local_store(db)
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


def attach(uri: str, experiment_id: str, experiment_name: str) -> Tracker:
    """A store and experiment that someone already connected (a sweep's parent): point MLflow at them.

    No health check here: the sweep checked the store before its first job, and a job that starts while the
    server is briefly away must wait for it through MLflow's retries, not fail on the spot."""
    import mlflow

    _quiet()
    _patient()
    mlflow.set_tracking_uri(uri)
    return Tracker(uri, experiment_id, experiment_name)


def point_at(uri: str) -> None:
    """Point MLflow at a store, quiet and patient as a job is (the figure helper, `logitlab.runs`)."""
    import mlflow

    _quiet()
    _patient()
    mlflow.set_tracking_uri(uri)


def run_url(tracker: Tracker, run_id: str) -> str | None:
    """The run's page in the tracking server's UI; None for a local store (`make ui` serves it)."""
    if not tracker.uri.startswith(("http://", "https://")):
        return None
    return f"{tracker.uri.rstrip('/')}/#/experiments/{tracker.experiment_id}/runs/{run_id}"


def unreachable(err: BaseException) -> bool:
    """Did a tracking call fail because the server did not answer (refused, timed out, cut off in the middle
    of an answer, or kept answering 5xx while its database was away) even after MLflow's HTTP retries?"""
    return _no_answer(err) is not None


def outage(err: BaseException) -> str:
    """How the server failed to answer, in a few words: what the client saw, after how many retries."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES as RETRIES

    return f"{type(_no_answer(err)).__name__} after {RETRIES.name}={RETRIES.get()} retries"


def busy(err: BaseException) -> bool:
    """Did a local store refuse because another process held it (SQLite's `database is locked`)?"""
    return _cause(err, lambda seen: "database is locked" in str(seen)) is not None


# How long a sweep waits for a store that is busy (SQLite's `database is locked` while another process
# writes, or holds a long read) before it stops: each attempt also waits out SQLite's own 5 s busy timeout.
BUSY_STORE_WAIT_S = 30.0


def patiently(attempt: Callable[[], T]) -> T:
    """`attempt()`, tried again while the store is only busy (bounded in time, with backoff)."""
    deadline = time.monotonic() + BUSY_STORE_WAIT_S
    delay = 0.5
    while True:
        try:
            return attempt()
        except Exception as err:
            if not busy(err) or time.monotonic() + delay > deadline:
                raise
            log.warning("tracking store busy (%s); trying again in %.1f s", config.one_line(str(err))[:200], delay)
            time.sleep(delay)
            delay = min(2 * delay, 8.0)


def interrupted(err: BaseException) -> bool:
    """Was `err` an interrupt? Ctrl-C or SIGTERM (`cli.raise_interrupt`) that lands inside an extension module's
    import or a C call can come back as another error raised from it (pybind11's `ImportError: initialization
    failed` while scikit-learn imports scipy)."""
    return _cause(err, lambda seen: isinstance(seen, KeyboardInterrupt)) is not None


def _no_answer(err: BaseException) -> BaseException | None:
    # ChunkedEncodingError: "Connection broken: IncompleteRead", the server gone while it sent a body
    from requests.exceptions import ChunkedEncodingError, ConnectionError, RetryError, Timeout

    return _cause(err, lambda seen: isinstance(seen, ConnectionError | RetryError | Timeout | ChunkedEncodingError))


def _cause(err: BaseException, matches: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception in `err`'s chain that `matches`: itself, then what it was raised from or while
    handling (MLflow wraps the requests or SQLite error it met, and logitlab may wrap MLflow's)."""
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None or matches(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def one_attempt(timeout_s: int = 10) -> Iterator[None]:
    """MLflow calls without retries and with a short timeout: clean-up on the way out must not wait out an
    outage (what it could not end, `sweep.resume` ends later)."""
    knobs = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    saved = {key: os.environ.get(key) for key in knobs}
    os.environ.update(knobs)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# MLflow's HTTP retries per call, unless the environment sets them. Its default 7 give a call ~4 min, and its
# waits double (up to 120 s): a call caught by two restarts in a row of a busy server sleeps through the
# minute the server is back between them, and the second outage exhausts it. 10 (MLflow's limit) give ~10 min.
RETRIES = "10"


def _patient() -> None:
    """Every process that talks to the store (the sweep's, its jobs', the figures helper) rides out outages of
    minutes; `store.one_attempt` still makes a way out quick."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", RETRIES)


def _quiet() -> None:
    """Quiet, lean model logging: requirements are pinned explicitly, no progress bars in logs."""
    os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints "View run ... / View experiment ..." at every run's end on an HTTP store: two lines a job
    # (and one more request); the job logs one line with the run's URL instead (`run_url`).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for chatty in ("mlflow.utils.uv_utils", "mlflow.pyfunc", "mlflow.models.model", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "no pip in this venv": uv has none


def tracker_client() -> MlflowClient:
    """A client on the URI `connect` set."""
    import mlflow

    return _client(mlflow.get_tracking_uri())


@functools.cache
def _client(uri: str) -> MlflowClient:
    """One client per store and process: building one costs more than many of its calls."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)
