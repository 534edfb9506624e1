"""Runs that always end: FINISHED, FAILED with the reason, or KILLED on SIGINT/SIGTERM, never left RUNNING."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from logitlab.cli import raise_if_interrupted, remember_interrupts
from logitlab.config import one_line
from logitlab.errors import TrackingError, TrackingLostError
from logitlab.tracking.store import Tracker, interrupted, one_attempt, outage, tracker_client, unreachable

log = logging.getLogger(__name__)


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
    try:
        run = mlflow.start_run(experiment_id=tracker.experiment_id, run_name=run_name, tags=all_tags)
    except Exception as err:
        if unreachable(err):
            raise _lost(tracker, "when the run was to start", err) from err
        raise
    previous = _interrupts_remembered()
    try:
        log_params(run.info.run_id, params)
        yield run.info.run_id
        raise_if_interrupted()  # raised once already, but dropped by Python (see `cli.raise_interrupt`)
    except BaseException as err:
        if isinstance(err, SystemExit) or interrupted(err):
            with one_attempt():  # an interrupted command exits promptly, whatever the server does
                _end(run.info.run_id, "KILLED", "interrupted")
            if isinstance(err, KeyboardInterrupt | SystemExit):
                raise
            raise KeyboardInterrupt(str(err)) from err  # an interrupt another error carried goes on as one
        ended = _end(run.info.run_id, "FAILED", _one_line(err))
        if unreachable(err):  # one line, not a traceback: an outage is not a bug
            raise _lost(tracker, f"during run {run.info.run_id}", err, back=ended) from err
        raise
    else:
        try:
            mlflow.end_run("FINISHED")
        except Exception as err:
            if unreachable(err):
                raise _lost(tracker, f"at the end of run {run.info.run_id}", err) from err
            raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def log_params(run_id: str, params: Mapping[str, Any]) -> None:
    import yaml
    from mlflow.entities import Param

    client = tracker_client()
    client.log_batch(run_id, params=[Param(k, v[:6000]) for k, v in sorted(flatten(params).items())])
    client.log_text(run_id, yaml.safe_dump(dict(params), sort_keys=False), "config.yaml")


def _interrupts_remembered() -> dict[int, Any]:
    """While a run is open, SIGTERM (a cancelled CI job, `kill`, a scheduler) raises KeyboardInterrupt as Ctrl-C
    does, so the run ends KILLED instead of staying RUNNING, and both are remembered (`cli.raise_interrupt`).
    Only for a signal whose handler is Python's own (a sweep sets ours for the whole sweep; an ignored SIGINT,
    as in a background job, stays ignored); returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    ours: dict[int, Any] = {
        signum: default for signum, default in defaults.items() if signal.getsignal(signum) == default
    }
    if ours:
        remember_interrupts(tuple(ours))
    return ours


def _end(run_id: str, status: str, reason: str) -> bool:
    """End the run with its reason; False when the store could not be reached (after MLflow's retries: the
    server may come back meanwhile). `mlflow.end_run` forgets the run in this process either way."""
    import mlflow
    from mlflow.entities import RunTag

    tags = [RunTag("error", reason[:5000]), RunTag("mlflow.note.content", f"{status}: {reason[:5000]}")]
    try:
        tracker_client().log_batch(run_id, tags=tags)
    except Exception as err:
        if unreachable(err):  # one retry window waited out is enough: forget the run here, once, quickly
            with one_attempt(), contextlib.suppress(Exception):
                mlflow.end_run(status)
            log.warning("MLflow run %s could not be ended %s: the tracking store did not answer", run_id, status)
            return False
        log.warning("MLflow run %s: its reason could not be recorded: %s", run_id, _one_line(err))
    try:
        mlflow.end_run(status)
    except Exception as err:
        log.warning("MLflow run %s could not be ended %s: %s", run_id, status, _one_line(err))
        return not unreachable(err)
    log.info("MLflow run %s ended %s: %s", run_id, status, reason)
    return True


def _lost(tracker: Tracker, when: str, err: BaseException, back: bool = False) -> TrackingError:
    """TrackingLostError while the server is away; a plain TrackingError once it answered again (the run ended)."""
    message = f"MLflow tracking server {tracker.uri} stopped answering {when} ({outage(err)})"
    return TrackingError(f"{message} (it answered again: the run ended FAILED)") if back else TrackingLostError(message)


def _one_line(err: BaseException) -> str:
    return one_line(str(err)) or type(err).__name__
