"""One sweep job: the pipeline (`executor.run_job`) inside the job's MLflow run, and a failure of any kind
recorded as a result rather than lost.

The run opens before the config is validated, so a job with an invalid value is a FAILED child run with
its reason like a job that diverged (lightning-hydra-template's task wrapper, with MLflow as the record).
Each job also leaves `job.json` (status, metric or error) in its directory: an untracked sweep counts its
failures from those. A job returns its value for each objective (`sweep.metric`): a number, or a tuple of them
for several objectives (what the Optuna sweeper tells its study).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logitlab import config, finishing, io
from logitlab.cli import raise_if_interrupted
from logitlab.errors import ConfigError, TrackingError, TrackingLostError, TrialPruned
from logitlab.stage import Files, Stage
from logitlab.tracking import sweeps
from logitlab.tracking.store import interrupted

if TYPE_CHECKING:
    from logitlab.sweeps.executor import JobConfig, JobResult
    from logitlab.sweeps.relay import JobRun

log = logging.getLogger(__name__)

STATUS_FILE = "job.json"
# What a job returns: its sweep metric, or one value per objective (several: `sweep.metric` a list).
JobValue = float | tuple[float, ...]


@dataclass(frozen=True)
class Job:
    """What Hydra says of a job."""

    num: int
    overrides: list[str]
    job_dir: Path
    sweep_dir: Path | None  # None: a single run (no -m)


def run(params: Mapping[str, Any], job: Job) -> JobValue:
    """The job's sweep metric (a tuple, one per objective, for several). A failure is recorded (run FAILED,
    job.json) and raised again. A job its search's pruner stopped (`sweeps.trials`) returns NaN (it has no final
    metric; a pruned search has one objective) with job.json PRUNED."""
    try:
        values = _tracked(params, job)
        raise_if_interrupted()  # one Python dropped (an untracked job; a tracked one's run checked already)
    except TrialPruned as pruned:
        _write_status(job.job_dir, {"status": "PRUNED", "step": pruned.step, "value": pruned.value})
        return math.nan
    except BaseException as err:
        reason = config.one_line(str(err)) or type(err).__name__
        _write_status(job.job_dir, {"status": "FAILED", "error": reason})
        if isinstance(err, TrackingLostError) and job.sweep_dir is not None:
            sweeps.mark_tracking_lost(job.sweep_dir, job.num, reason)
        if not isinstance(err, KeyboardInterrupt) and interrupted(err):  # Ctrl-C inside an import (`interrupted`)
            raise KeyboardInterrupt(reason) from err
        raise
    _write_finished(job.job_dir, values)
    return as_return(values)


def _tracked(params: Mapping[str, Any], job: Job) -> tuple[float, ...]:
    """Inside the sweep parent's child run, a top-level run for a single run, or untracked. The config is
    validated once, into the `JobConfig` the job runs on: in a sweep inside the job's run (an invalid value is
    a FAILED child), in a single run before its run opens (it ends in one line)."""
    from logitlab.sweeps.executor import JobConfig  # the stages validate: the job's imports, not the start-up's

    if job.sweep_dir is not None:
        if finishing.tracking():  # the helper makes and ends the job's run (`sweeps.relay`)
            return _relayed(params, job)
        parent = sweeps.read_parent(job.sweep_dir)
        if parent is None:  # the sweep is untracked (mlflow=off, or its store was optional and down)
            job_config = JobConfig.of(params)
            objectives = _value(_body(job_config, job, None, None))
            if len(objectives) == 1:
                finishing.draw_ahead(str(job.job_dir.resolve()), objectives[0], job_config.sweep.direction)
            return objectives
        if lost := sweeps.tracking_lost(job.sweep_dir):
            raise TrackingError(f"not run: the tracking server stopped answering in job {lost['job']}")
        if (values := finished_before(parent, job.num, job.overrides)) is not None:
            return values
        tracker = parent.tracker()
        with sweeps.job_run(parent, tracker, job.num, job.overrides, _recorded(params)) as run_id:
            outcome = _body(JobConfig.of(params), job, tracker.uri, run_id)
        return _value(outcome)  # a pruned job's run ended FINISHED first: it did what it was asked
    job_config = JobConfig.of(params)
    if job_config.sweep.resume:
        raise ConfigError(f"config key '{config.RESUME_KEY}' resumes a sweep; add -m (and the sweep's overrides)")
    if not job_config.mlflow.enabled:  # mlflow is imported only when tracking is on
        return _value(_body(job_config, job, None, None))
    from logitlab.tracking import store

    connected = store.connect(job_config.mlflow)
    if connected is None:
        return _value(_body(job_config, job, None, None))
    with sweeps.job_run(None, connected, job.num, job.overrides, job_config.params) as run_id:
        return _value(_body(job_config, job, connected.uri, run_id))


def _relayed(params: Mapping[str, Any], job: Job) -> tuple[float, ...]:
    """A job whose run the helper makes from what the job hands over: its params when it starts, its results
    and how it ended (FINISHED, FAILED or KILLED, with the reason) when it ends."""
    from logitlab.sweeps import relay
    from logitlab.sweeps.executor import JobConfig

    run = relay.JobRun(job.num)
    run.start(job.overrides, job.job_dir, _recorded(params))
    try:
        outcome = _body(JobConfig.of(params), job, None, None, run)
    except BaseException as err:
        killed = isinstance(err, KeyboardInterrupt | SystemExit) or interrupted(err)
        reason = "interrupted" if killed else config.one_line(str(err)) or type(err).__name__
        with contextlib.suppress(Exception):  # a helper gone: the error raised is the job's own
            run.end("KILLED" if killed else "FAILED", reason)
        raise
    run.end("FINISHED")
    return _value(outcome)


def _value(outcome: tuple[float, ...] | TrialPruned) -> tuple[float, ...]:
    """The objectives' values, or the pruning raised for `run` to record."""
    if isinstance(outcome, TrialPruned):
        raise outcome
    return outcome


def finished_before(parent: sweeps.Parent, num: int, overrides: list[str]) -> tuple[float, ...] | None:
    """A resumed sweep's job that FINISHED before the sweep stopped: its objectives' values (NaN where it had
    none), not run again; None for a job to run."""
    key = sweeps.job_key(config.without_resume(overrides))
    if key not in parent.finished_jobs:
        return None
    log.info("job %s FINISHED before the sweep stopped; not run again (sweep.resume)", num)
    return tuple(math.nan if value is None else value for value in parent.finished_jobs[key])


def as_return(values: tuple[float, ...]) -> JobValue:
    """What a job hands Hydra: the number for one objective, the tuple for several."""
    return values[0] if len(values) == 1 else values


def record_finished_before(sweep_dir: Path, num: int, values: tuple[float, ...]) -> None:
    """The job.json of a job `finished_before` answered without running it (a launcher that skips it)."""
    _write_finished(sweep_dir / str(num), values)


def _recorded(params: Mapping[str, Any]) -> dict[str, Any]:
    """The params a job's run records: `sweep.resume` says how the sweep was run, not what the job is, so a
    resumed job's run looks like its siblings'."""
    sweep = {key: value for key, value in config.section(params, "sweep").items() if key != "resume"}
    return {**params, "sweep": sweep}


def _body(
    job_config: JobConfig, job: Job, uri: str | None, run_id: str | None, relayed: JobRun | None = None
) -> tuple[float, ...] | TrialPruned:
    """The job's value for each objective, or how its search's pruner stopped it (returned, so that its run ends
    FINISHED). What the run logs goes to run `run_id`, or, `relayed`, to the helper that makes the run."""
    from logitlab.sweeps import executor, trials

    metric = job_config.sweep.metric
    for objective in job_config.sweep.metrics:
        _check_metric(objective, job_config.preprocess, job)
    mlflow_cfg = job_config.mlflow
    # A sweep's job: figures (and the model, tracked) for the best only (`mlflow.child_artifacts`), made later
    light = job.sweep_dir is not None and mlflow_cfg.child_artifacts == "best"
    deferred = finishing.active()
    finish = _later(run_id, job) if light else _in_helper(uri, run_id, job) if deferred else executor.run_now
    try:
        with trials.reporting_to_trial(job.sweep_dir, job.num):
            result = executor.run_job(job_config, job.job_dir, finish=finish)
        job_metrics = {**result.metrics, **_job_only_metrics(result)}
    except TrialPruned as pruned:
        if relayed is not None:
            relayed.log_pruned(pruned, metric, mlflow_cfg.history_points)
        elif run_id is not None:
            from logitlab.tracking import results

            results.log_pruned(run_id, pruned, metric, mlflow_cfg.history_points)
        return pruned
    if run_id is not None or relayed is not None:
        from logitlab import runs
        from logitlab.tracking import results

        record = executor.record(result)
        record = dataclasses.replace(record, metrics={**record.metrics, **_job_only_metrics(result)})
        if deferred or light:  # the helper attaches them once drawn, or they are drawn for the best child only
            late = set(executor.finish_outputs(result))
            record = dataclasses.replace(record, artifacts=[path for path in record.artifacts if path not in late])
        if job.sweep_dir is not None:  # what `logitlab.runs` makes figures and the model from, later
            later = runs.later_inputs(result.files["evaluate"], record.input_example, job.job_dir / "later")
            record = dataclasses.replace(record, artifacts=[*record.artifacts, *later])
        tags = {"upstream_cache": json.dumps(result.cache, sort_keys=True)}
        log_model = mlflow_cfg.log_model and not light
        if relayed is not None:
            relayed.log_results(record, mlflow_cfg.history_points, log_model, tags)
        else:
            assert run_id is not None
            results.log_results(run_id, record, mlflow_cfg.history_points, log_model=log_model, tags=tags)
    missing = [objective for objective in job_config.sweep.metrics if objective not in job_metrics]
    if missing and job.sweep_dir is not None:  # a binary-only metric of multiclass data, or one it cannot give
        raise ConfigError(
            f"config key 'sweep.metric': '{missing[0]}' is not computed for this data "
            f"({'multiclass' if 'test_f1' not in result.metrics else 'binary'}); "
            f"it has: {', '.join(sorted(job_metrics))}"
        )
    # a single run ranks nothing: a metric it lacks is NaN
    return tuple(float(job_metrics.get(objective, math.nan)) for objective in job_config.sweep.metrics)


def _job_only_metrics(result: JobResult) -> dict[str, float]:
    """`config.JOB_METRICS`: the train stage's wall time (its fit, the folds' with cross-validation)."""
    return {"fit_time_s": round(result.seconds.get("train", math.nan), 6)}


def _check_metric(metric: str, preprocess: config.PreprocessConfig, job: Job) -> None:
    """Refuse, before any work, a sweep metric that the run's mode does not compute."""
    if metric in config.CV_METRICS and preprocess.cv_folds is None:
        raise ConfigError(
            f"config key 'sweep.metric': '{metric}' is a cross-validation score; set preprocess.cv_folds (e.g. 5)"
        )
    if metric.startswith("val_") and preprocess.cv_folds is not None and job.sweep_dir is not None:
        raise ConfigError(
            f"config key 'sweep.metric': '{metric}' is not computed with preprocess.cv_folds set (the validation "
            f"split joins training); rank by the cross-validation score, e.g. sweep.metric=cv_accuracy_mean"
        )


def _in_helper(uri: str | None, run_id: str | None, job: Job) -> Callable[[Stage, Files], None]:
    def submit(stage: Stage, files: Files) -> None:
        finishing.submit(stage, files, uri, run_id, f"job {job.num}")

    return submit


def _later(run_id: str | None, job: Job) -> Callable[[Stage, Files], None]:
    """A light job's figures: drawn for the best job at the sweep's end (from this job's files by the helper
    when the job ran in the sweep's process: `finishing.defer`), for any other by `logitlab.runs` (from what
    its run logged, or, untracked, from the files its folder names)."""

    def keep(stage: Stage, files: Files) -> None:
        if run_id is None:
            from logitlab import runs

            runs.keep_figure_inputs(job.job_dir, files)
        if finishing.active():
            finishing.defer(run_id or str(job.job_dir.resolve()), stage, files)

    return keep


def _write_finished(job_dir: Path, values: tuple[float, ...]) -> None:
    """`metric` is the first objective's value (None if not finite); `values` every objective's, when several."""
    finite = [value if math.isfinite(value) else None for value in values]
    status: dict[str, Any] = {"status": "FINISHED", "metric": finite[0]}
    if len(values) > 1:
        status["values"] = finite
    _write_status(job_dir, status)


def _write_status(job_dir: Path, status: dict[str, Any]) -> None:
    io.write_json(job_dir / STATUS_FILE, status)


def record_failure(sweep_dir: Path, num: int, overrides: list[str], reason: str) -> None:
    """A job that failed before it could run (Hydra could not compose its config): a FAILED child run when
    the sweep is tracked, and its job.json."""
    _write_status(sweep_dir / str(num), {"status": "FAILED", "error": reason})
    if finishing.tracking():
        from logitlab.sweeps import relay

        relay.JobRun(num).not_composed(config.without_resume(overrides), reason)
        return
    parent = sweeps.read_parent(sweep_dir)
    if parent is not None:
        sweeps.record_failed_job(parent, num, config.without_resume(overrides), reason)


def record_lost(sweep_dir: Path, num: int, overrides: list[str], reason: str, slurm_job_id: str) -> None:
    """A SLURM job that ended without a result (time limit, scancel, a dead node): its job.json, and its run
    ended FAILED (or a FAILED child made for it) when the sweep is tracked and its server answers."""
    _write_status(sweep_dir / str(num), {"status": "FAILED", "error": reason})
    parent = sweeps.read_parent(sweep_dir)
    if parent is not None and not sweeps.tracking_lost(sweep_dir):
        sweeps.end_lost_job(parent, num, config.without_resume(overrides), reason, slurm_job_id)


def outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job's status in a sweep directory, with its job folder's name as `job`."""
    return [{**io.read_json(path), "job": path.parent.name} for path in sorted(sweep_dir.glob(f"*/{STATUS_FILE}"))]


def job_metrics(job_dir: Path) -> dict[str, Any]:
    """A job's `reports/metrics.json` (evaluate's, in the job's folder); {} for a job that did not get there."""
    from logitlab.stages import evaluate

    path = job_dir / evaluate.STAGE.outputs["metrics"].path
    return dict(io.read_json(path)) if path.is_file() else {}


def best_of(jobs: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    """The finished job with the best metric (an untracked sweep's best, from its job folders)."""
    scored = [job for job in jobs if job["status"] == "FINISHED" and math.isfinite(job.get("metric", math.nan))]
    if not scored:
        return None
    return (max if direction == "maximize" else min)(scored, key=lambda job: job["metric"])
