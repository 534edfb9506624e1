"""A sweep's tracking done by the figure helper, for a sweep whose jobs run in the sweep's own process (the
`local` launcher) on a local SQLite store: the jobs never wait for MLflow.

Importing MLflow and opening the store cost the sweep process 1.6 s (2.5 s when the store is new), before its
first job, and each job's run ~30 ms more; on the machine's other core they overlap the jobs. The sweep's
process (`start`, a `JobRun` per job) hands the helper, in order (`finishing.hand_over`: one worker, so they
run in that order): the parent (`open_parent`); each job's run when the job starts (`job_started`: RUNNING,
with its params and start time, as a run made in line shows it), what the job left (`job_results`,
`job_pruned`) and how it ended (`job_ended`: its status, reason and end time); a job Hydra could not compose
(`job_not_composed`); and at the end the summary (`finish`) or, stopped, the parent and its running children
ended (`end_early`). What the helper keeps between calls (the parent, each job's run) lives in this module, in
the helper's process. The price: a store MLflow cannot open (a file that is not one, a lock held past the
wait) is found while the first jobs run; the jobs after that do not start, and the sweep ends with the store's
error in one line.

Tracking stays in line (`sweeps.job`, `sweeps.parent`) for a server store (an outage must stop the jobs, not
be found at the end), a resumed sweep (its first job needs the stopped sweep's finished jobs) and
`mlflow.child_artifacts: all` (each job's figures go to its run while the sweep runs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logitlab import config, finishing
from logitlab.errors import TrackingError
from logitlab.stage import Files, Stage

if TYPE_CHECKING:
    from logitlab.errors import TrialPruned
    from logitlab.tracking.results import RunRecord
    from logitlab.tracking.sweeps import Parent, SweepSummary

log = logging.getLogger(__name__)

# In the sweep's process: the helper's opening of the parent (`start`).
_opening: Future[Parent | None] | None = None
# In the helper:
_parent: Parent | None = None  # the sweep's, once opened (None: untracked, the store optional and away)
_runs: dict[int, str] = {}  # job number -> its run
_folders: dict[str, str] = {}  # run -> its job's folder (what `finishing.defer` keys a job's figures by)
_unlogged: dict[int, str] = {}  # job number -> why its results could not be logged


def relays(mlflow_cfg: config.MlflowConfig, resume: str | None) -> bool:
    """Whether a sweep whose jobs run in its own process hands its tracking to the helper."""
    from logitlab.tracking.store import tracking_uri

    return (
        mlflow_cfg.enabled
        and not resume
        and mlflow_cfg.child_artifacts == "best"
        and tracking_uri(mlflow_cfg, config.project_root()).startswith("sqlite:///")
    )


def start(
    mlflow_cfg: config.MlflowConfig, sweep_dir: Path, overrides: list[str], varied: list[str], numbered: bool
) -> None:
    """In the sweep's process: the helper opens the store and the parent run (`open_parent`) while the jobs start.
    A local store's folder is made here first, so that a path that cannot be one stops the sweep before its jobs."""
    from logitlab.tracking.store import make_folder, tracking_uri

    global _opening
    make_folder(tracking_uri(mlflow_cfg, config.project_root()))
    args = (mlflow_cfg, sweep_dir, overrides, varied, numbered)
    _opening = finishing.hand_over(open_parent, *args, label="the sweep's parent run")


def raise_if_not_opened() -> None:
    """In the sweep's process: a job does not start once the helper could not open the parent (the sweep then
    fails at its end with the same reason, `finish`'s caller)."""
    if _opening is not None and _opening.done() and (err := _opening.exception()) is not None:
        reason = config.one_line(str(err)) or type(err).__name__
        raise TrackingError(f"the sweep's MLflow parent run could not be opened: {reason}")


@dataclass(frozen=True)
class JobRun:
    """In the sweep's process: one job's run, made by the helper from what the job hands over."""

    num: int

    def start(self, overrides: list[str], job_dir: Path, params: Mapping[str, Any]) -> None:
        raise_if_not_opened()
        self._hand_over(job_started, overrides, str(job_dir.resolve()), params, _now_ms())

    def log_results(self, record: RunRecord, history_points: int, log_model: bool, tags: Mapping[str, str]) -> None:
        self._hand_over(job_results, record, history_points, log_model, tags)

    def log_pruned(self, pruned: TrialPruned, metric: str, history_points: int) -> None:
        self._hand_over(job_pruned, pruned, metric, history_points)

    def end(self, status: str, reason: str = "") -> None:
        self._hand_over(job_ended, status, reason, _now_ms())

    def not_composed(self, overrides: list[str], reason: str) -> None:
        """A job Hydra could not compose: a FAILED child with the reason."""
        self._hand_over(job_not_composed, overrides, reason)

    def _hand_over(self, function: Callable[..., None], *args: Any) -> None:
        finishing.hand_over(function, self.num, *args, label=f"the run of job {self.num}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def open_parent(
    mlflow_cfg: config.MlflowConfig, sweep_dir: Path, overrides: list[str], varied: list[str], numbered: bool
) -> Parent | None:
    """The store, the experiment and the sweep's parent run (`mlflow_parent.json` written)."""
    from logitlab.tracking import store, sweeps

    global _parent
    _parent = None
    _runs.clear()
    _folders.clear()
    _unlogged.clear()
    tracker = store.patiently(lambda: store.connect(mlflow_cfg))
    if tracker is None:
        return None
    _parent = sweeps.start_sweep(tracker, sweep_dir, overrides, varied, numbered)
    log.info("sweep parent run %s in experiment '%s' (%s)", _parent.run_id, _parent.experiment_name, _parent.uri)
    return _parent


def prepare_model_logging() -> None:
    """What the best child's model needs first in a process, done while the jobs run rather than at the end:
    the pyfunc flavour's imports, and MLflow's check of the model's requirements against the environment, whose
    first call maps every installed distribution to its modules (~0.2 s here) and keeps the map."""
    from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

    from logitlab import pyfunc_model

    warn_dependency_requirement_mismatches(pyfunc_model.requirements())


def job_started(num: int, overrides: list[str], folder: str, params: Mapping[str, Any], start_ms: int) -> None:
    """The job's run, RUNNING from the job's start, with its params and config (as `lifecycle.tracked_run`)."""
    if _parent is None:
        return
    from mlflow.tracking.context.registry import resolve_tags

    from logitlab.tracking import lifecycle, sweeps

    # The context tags `mlflow.start_run` adds (source, user, git), as a run made in line has them: the helper
    # runs the sweep's own command line (multiprocessing's spawn copies `sys.argv`).
    tags = resolve_tags({**sweeps.job_tags(_parent, num, overrides), "mlflow.parentRunId": _parent.run_id})
    name = sweeps.run_name(_parent, num, overrides)
    run = _parent.tracker().client().create_run(_parent.experiment_id, start_ms, tags, name)
    _runs[num] = run_id = run.info.run_id
    _folders[run_id] = folder
    lifecycle.log_params(run_id, params)


def job_results(num: int, record: RunRecord, history_points: int, log_model: bool, tags: Mapping[str, str]) -> None:
    """What a finished job left (`results.log_results`); a failure here ends its run FAILED (`job_ended`)."""
    if (run_id := _runs.get(num)) is None:
        return
    from logitlab.tracking import results

    try:
        results.log_results(run_id, record, history_points, log_model=log_model, tags=tags)
    except Exception as err:
        _unlogged[num] = f"its results could not be logged: {config.one_line(str(err)) or type(err).__name__}"
        raise


def job_pruned(num: int, pruned: TrialPruned, metric: str, history_points: int) -> None:
    if (run_id := _runs.get(num)) is not None:
        from logitlab.tracking import results

        results.log_pruned(run_id, pruned, metric, history_points)


def job_ended(num: int, status: str, reason: str, end_ms: int) -> None:
    """The job's run ended as the job did, at the job's end (a FAILED or KILLED one with its reason)."""
    if _parent is None or (run_id := _runs.get(num)) is None:
        return
    from logitlab.tracking import sweeps

    if status == "FINISHED" and num in _unlogged:
        status, reason = "FAILED", _unlogged[num]
    client = _parent.tracker().client()
    if status == "FINISHED":
        client.set_terminated(run_id, status, end_ms)
        log.info("job %d: MLflow run %s FINISHED", num, run_id)
    else:
        sweeps.end_run(client, run_id, status, reason, end_ms)
        log.info("job %d: MLflow run %s ended %s: %s", num, run_id, status, reason)


def job_not_composed(num: int, overrides: list[str], reason: str) -> None:
    if _parent is not None:
        from logitlab.tracking import sweeps

        sweeps.record_failed_job(_parent, num, overrides, reason)


def end_early(status: str, reason: str) -> None:
    """Stopped: the parent and any child still RUNNING end `status` (one quick attempt, as in line)."""
    global _parent
    parent, _parent = _parent, None
    if parent is None:
        return
    from logitlab.tracking import store, sweeps

    with store.one_attempt():
        sweeps.end_sweep_early(parent, status, reason)
    log.warning("sweep %s: parent run %s and its running jobs ended %s", reason, parent.run_id, status)


def finish(
    sweep: config.SweepConfig,
    mlflow_cfg: config.MlflowConfig,
    sweep_dir: Path,
    search_metrics: Mapping[str, float],
    deferred: Mapping[str, tuple[Stage, Files]],
    study_dir: Path,
) -> SweepSummary | None:
    """The sweep's end, as `sweeps.parent` makes it in line: the best child's figures (from its job's own files,
    drawn in a forked copy of the helper while the helper logs the model) and model, the summary, the parent
    ended FINISHED; or, if that fails, FAILED with the reason. None when the sweep was untracked."""
    global _parent
    parent = _parent
    if parent is None:
        return None
    from logitlab import runs
    from logitlab.sweeps import summary
    from logitlab.tracking import sweeps

    try:
        for run_id, folder in _folders.items():  # the best's figures from its job's files (`finishing.defer`)
            if folder in deferred:
                finishing.defer(run_id, *deferred[folder])
        runs.complete_best(parent, sweep, mlflow_cfg.log_model)
        children = sweeps.summary_runs(parent)
        out_dir = sweep_dir / "summary"
        summary.write(children, sweep, out_dir)
        model_name = mlflow_cfg.registered_model_name if mlflow_cfg.register else None
        finished = sweeps.finish_sweep(parent, children, sweep, model_name, out_dir, search_metrics, study_dir)
    except Exception as err:
        _parent = None
        reason = f"sweep summary failed: {config.one_line(str(err)) or type(err).__name__}"
        try:
            sweeps.end_sweep_early(parent, "FAILED", reason)
        except Exception as end_err:  # left RUNNING: `sweep.resume` ends it
            log.error("sweep parent run not ended FAILED: %s", config.one_line(str(end_err)))
        raise
    _parent = None
    return finished
