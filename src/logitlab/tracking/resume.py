"""Resuming a sweep that crashed or was interrupted: `sweep.resume=<parent run id>`, or `sweep.resume=last`.

The parent run is the sweep's record: its `hydra_overrides` say what the sweep was, its children which jobs
FINISHED. A resume checks that it is the same sweep and that the sweep's own process is gone, ends what the
crash left RUNNING as KILLED (and a FINISHED one whose figures never arrived as FAILED), and hands the jobs the
finished ones (`Parent.finished_jobs`) so that they are not run again; the rest run as children of the same
parent, whose summary then covers all of its jobs. A pruned child FINISHED without a result: its job runs again
(an Optuna search's new trial with its params may be pruned again, or not), and it stays one pruned trial.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from logitlab import config
from logitlab.errors import ConfigError
from logitlab.tracking import selection, sweeps
from logitlab.tracking.results import FIGURES_TAG, finite
from logitlab.tracking.store import Tracker

if TYPE_CHECKING:
    from mlflow.entities import Run

KEY = f"config key '{config.RESUME_KEY}'"
RECENT_SWEEPS = 200  # how far back `last` looks, newest first


def resume_sweep(
    tracker: Tracker,
    sweep_dir: Path,
    resume: str,
    overrides: list[str],
    metrics: tuple[str, ...],
    varied: list[str],
    numbered: bool = False,
) -> sweeps.Parent:
    """The stopped sweep's parent, reopened for this process and written to `sweep_dir` for the jobs (`varied`
    and `numbered` name its new children as `sweeps.start_sweep` does)."""
    run = _newest_unfinished(tracker, overrides) if resume == "last" else _named(tracker, resume)
    _check_same_sweep(run, overrides)
    _check_stopped(run)
    client = tracker.client()
    finished: dict[str, list[float | None]] = {}
    for child in sweeps.children(tracker, run.info.run_id):
        if child.info.status == "RUNNING":
            sweeps.end_run(client, child.info.run_id, "KILLED", "left RUNNING when its sweep stopped (sweep.resume)")
        elif child.info.status == "FINISHED" and child.data.tags.get(FIGURES_TAG) == "pending":
            sweeps.end_run(client, child.info.run_id, "FAILED", "its figures never arrived: its sweep stopped first")
        elif child.info.status == "FINISHED" and not selection.pruned(child):  # pruned: no result, so it runs again
            values = [child.data.metrics.get(metric) for metric in metrics]
            key = sweeps.job_key(child.data.tags.get("hydra_overrides", ""))
            finished[key] = [value if finite(value) else None for value in values]
    for tag, text in sweeps.launcher_tags().items():
        client.set_tag(run.info.run_id, tag, text)
    client.update_run(run.info.run_id, status="RUNNING")
    parent = sweeps.Parent(
        run.info.run_id,
        run.data.tags[sweeps.SWEEP_TAG],
        tracker.uri,
        tracker.experiment_id,
        tracker.experiment_name,
        varied,
        numbered,
        finished_jobs=finished,
    )
    parent.write(sweep_dir)
    return parent


def _named(tracker: Tracker, run_id: str) -> Run:
    from mlflow.exceptions import MlflowException

    try:
        run = tracker.client().get_run(run_id)
    except MlflowException:
        raise ConfigError(f"{KEY}: there is no run {run_id} in the tracking store {tracker.uri}") from None
    if run.data.tags.get("logitlab.entry") != "sweep parent":
        raise ConfigError(f"{KEY}: run {run_id} is not the parent run of a sweep")
    if run.info.experiment_id != tracker.experiment_id:
        raise ConfigError(
            f"{KEY}: sweep {run_id} is in another experiment (id {run.info.experiment_id}) than this sweep's "
            f"'{tracker.experiment_name}' (mlflow.experiment_name)"
        )
    if run.info.status == "FINISHED":
        raise ConfigError(f"{KEY}: sweep {run_id} FINISHED; there is nothing to resume")
    return run


def _newest_unfinished(tracker: Tracker, overrides: list[str]) -> Run:
    key = sweeps.job_key(overrides)
    parents = tracker.client().search_runs(
        [tracker.experiment_id],
        filter_string="tags.`logitlab.entry` = 'sweep parent'",
        order_by=["attributes.start_time DESC"],
        max_results=RECENT_SWEEPS,
    )
    for run in parents:
        if run.info.status != "FINISHED" and sweeps.job_key(run.data.tags.get("hydra_overrides", "")) == key:
            return run
    raise ConfigError(
        f"{KEY}=last: no unfinished sweep with the overrides '{' '.join(overrides) or '(defaults)'}' in "
        f"experiment '{tracker.experiment_name}'"
    )


def _check_same_sweep(run: Run, overrides: list[str]) -> None:
    there = set(sweeps.job_key(run.data.tags.get("hydra_overrides", "")).split())
    here = set(sweeps.job_key(overrides).split())
    if there != here:
        raise ConfigError(
            f"{KEY}: the overrides differ from those of sweep {run.info.run_id}: "
            f"only there: {' '.join(sorted(there - here)) or '-'}; only here: {' '.join(sorted(here - there)) or '-'}"
        )


def _check_stopped(run: Run) -> None:
    """A sweep whose launching process still runs on this machine is not resumed under its feet."""
    pid = run.data.tags.get(sweeps.PID_TAG, "")
    if run.info.status != "RUNNING" or run.data.tags.get(sweeps.HOST_TAG) != socket.gethostname():
        return
    if pid.isdigit() and _sweep_alive(int(pid)):
        raise ConfigError(f"{KEY}: sweep {run.info.run_id} is still running (pid {pid}); stop it or let it finish")


def _sweep_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")  # a reused pid is not the sweep's (Linux)
    return not cmdline.exists() or b"logitlab" in cmdline.read_bytes()
