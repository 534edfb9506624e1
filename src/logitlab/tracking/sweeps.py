"""A sweep in MLflow: one parent run made before the jobs start, one child run per job, a summary at the end.

The parent's id, store and experiment reach the jobs through a file in the sweep directory: a joblib/loky
worker or a submitit job reads it the same way, whatever process started it. Every job of a sweep is a child
run in the parent's experiment, a job that failed included (FAILED, with its reason). A job is known by its
overrides (`job_key`): that is how a resumed sweep (`tracking.resume`) tells which jobs already FINISHED.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logitlab import config, io
from logitlab.tracking import selection
from logitlab.tracking.lifecycle import git_tags, tracked_run
from logitlab.tracking.store import Tracker, attach, run_url

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PARENT_FILE = "mlflow_parent.json"
LOST_FILE = "tracking_lost.json"  # written by the job whose tracking server stopped answering
SWEEP_TAG = "logitlab.sweep_id"
SLURM_JOB_TAG = "slurm.job_id"
# Where the sweep's launching process runs: a resume refuses a sweep whose process is still alive.
HOST_TAG, PID_TAG = "logitlab.host", "logitlab.pid"
CHAMPION_RULE_TAG = "logitlab.champion_rule"  # the parent's: which rule chose its best child (`sweep.champion`)
RUN_NAME_CHARS = 40  # what the MLflow UI's runs table shows of a name
SHORT_KEYS = {"learning_rate": "lr"}  # run names only; the params keep the full keys
SHORT_VALUE_CHARS = 8  # longer numbers are rounded in run names


@dataclass(frozen=True)
class Parent:
    run_id: str
    sweep_id: str
    uri: str
    experiment_id: str
    experiment_name: str
    varied: list[str] = field(default_factory=list)  # the keys the sweep varies: they name its children
    numbered: bool = False  # children's names end with the job number (a search may repeat a combination)
    # A resumed sweep's jobs that already FINISHED under this parent: job key -> their objectives' values.
    finished_jobs: dict[str, list[float | None]] = field(default_factory=dict)

    def tracker(self) -> Tracker:
        return attach(self.uri, self.experiment_id, self.experiment_name)

    def write(self, sweep_dir: Path) -> None:
        io.write_json(sweep_dir / PARENT_FILE, asdict(self))


@dataclass(frozen=True)
class SweepSummary:
    parent_run_id: str
    finished: int
    failed: int
    best_run_id: str | None
    best_value: float | None
    best_metrics: dict[str, float] = field(default_factory=dict)


def start_sweep(
    tracker: Tracker, sweep_dir: Path, overrides: list[str], varied: list[str], numbered: bool = False
) -> Parent:
    """Create the sweep's parent run (not active in any process) and leave its id, and what names its children,
    for the jobs."""
    sweep_id = hashlib.sha256(f"{sweep_dir.resolve()}{time.time_ns()}".encode()).hexdigest()[:12]
    tags = {
        **git_tags(),
        **launcher_tags(),
        SWEEP_TAG: sweep_id,
        "logitlab.entry": "sweep parent",
        "hydra_overrides": " ".join(overrides) or "(defaults)",
    }
    run = tracker.client().create_run(tracker.experiment_id, tags=tags, run_name=f"sweep-{sweep_id}")
    parent = Parent(
        run.info.run_id, sweep_id, tracker.uri, tracker.experiment_id, tracker.experiment_name, varied, numbered
    )
    parent.write(sweep_dir)
    return parent


def launcher_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def read_parent(sweep_dir: Path) -> Parent | None:
    file = sweep_dir / PARENT_FILE
    return Parent(**io.read_json(file)) if file.is_file() else None


@contextlib.contextmanager
def job_run(
    parent: Parent | None, tracker: Tracker, job_num: int, overrides: list[str], params: Mapping[str, Any]
) -> Iterator[str]:
    """One job's run: a child of the sweep's parent, or a top-level run for a single run (no -m)."""
    tags = job_tags(parent, job_num, overrides)
    name = run_name(parent, job_num, overrides)
    with tracked_run(tracker, name, tags, params, parent.run_id if parent else None) as run_id:
        yield run_id
    url = run_url(tracker, run_id)
    log.info("job %d: MLflow run %s FINISHED%s", job_num, run_id, f" ({url})" if url else "")


def record_failed_job(
    parent: Parent, job_num: int, overrides: list[str], reason: str, tags: Mapping[str, str] | None = None
) -> None:
    """A job that never opened its run (Hydra could not compose its config, SLURM ended it before it
    started): a FAILED child with the reason."""
    client = parent.tracker().client()
    all_tags = {
        **job_tags(parent, job_num, overrides),
        "mlflow.parentRunId": parent.run_id,
        **_failure_tags("FAILED", reason),
        **(tags or {}),
    }
    run = client.create_run(parent.experiment_id, tags=all_tags, run_name=run_name(parent, job_num, overrides))
    client.set_terminated(run.info.run_id, "FAILED")


def end_lost_job(parent: Parent, job_num: int, overrides: list[str], reason: str, slurm_job_id: str) -> None:
    """A SLURM job that ended without a result: its run, left RUNNING, ends FAILED with SLURM's reason; a job
    that never opened one gets a FAILED child."""
    tracker = parent.tracker()
    client = tracker.client()
    runs = [run for run in children(tracker, parent.run_id) if run.data.tags.get(SLURM_JOB_TAG) == slurm_job_id]
    if not runs:
        record_failed_job(parent, job_num, overrides, reason, {SLURM_JOB_TAG: slurm_job_id})
    for run in runs:
        if run.info.status == "RUNNING":
            end_run(client, run.info.run_id, "FAILED", reason)


def attach_job_logs(parent: Parent, logs: Mapping[str, list[Path]]) -> None:
    """Each SLURM job's log files, under `slurm/` of the run that job tagged with its id (the newest, should
    a reset cluster have given an id twice)."""
    tracker = parent.tracker()
    client = tracker.client()
    newest = {}
    for run in sorted(children(tracker, parent.run_id), key=lambda run: run.info.start_time):
        if job_id := run.data.tags.get(SLURM_JOB_TAG):
            newest[job_id] = run.info.run_id
    for job_id, paths in logs.items():
        for path in paths:
            if job_id in newest and path.is_file():
                client.log_artifact(newest[job_id], str(path), artifact_path="slurm")


def job_tags(parent: Parent | None, job_num: int, overrides: list[str]) -> dict[str, str]:
    tags = {
        **git_tags(),
        "logitlab.entry": "sweep" if parent else "single run",
        "hydra_overrides": " ".join(overrides) or "(defaults)",
        "hydra_job_num": str(job_num),
    }
    if parent:
        tags[SWEEP_TAG] = parent.sweep_id
    if job_id := slurm_job_id():
        tags[SLURM_JOB_TAG] = job_id
    return tags


def slurm_job_id() -> str | None:
    """The SLURM job this process runs in, named as squeue, sacct and submitit name it (`<array>_<task>`)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def job_key(overrides: str | list[str]) -> str:
    """A job's identity across a sweep and its resumes: its overrides (a list, or a `hydra_overrides` tag),
    in any order."""
    words = overrides.split() if isinstance(overrides, str) else " ".join(overrides).split()
    return " ".join(sorted(word for word in words if word != "(defaults)"))


def latest_attempts(runs: list[Run]) -> list[Run]:
    """The runs a sweep's summary counts: every FINISHED one, and a KILLED or FAILED one only if its job was
    not run again later (by `sweep.resume`)."""
    last_start: dict[str, int] = {}
    for run in runs:
        key = job_key(run.data.tags.get("hydra_overrides", ""))
        last_start[key] = max(last_start.get(key, 0), run.info.start_time)
    return [
        run
        for run in runs
        if run.info.status == "FINISHED"
        or run.info.start_time == last_start[job_key(run.data.tags.get("hydra_overrides", ""))]
    ]


def mark_tracking_lost(sweep_dir: Path, job_num: int, reason: str) -> None:
    """The tracking server stopped answering in this job, past MLflow's retries: the sweep's other jobs
    would only wait out the same outage, so they do not start (`tracking_lost`)."""
    io.write_json(sweep_dir / LOST_FILE, {"job": job_num, "error": reason})


def tracking_lost(sweep_dir: Path) -> dict[str, Any] | None:
    file = sweep_dir / LOST_FILE
    return dict(io.read_json(file)) if file.is_file() else None


def run_name(parent: Parent | None, job_num: int, overrides: list[str]) -> str:
    """A child by the values its sweep varies (`lr=0.1 degree=2`), a single run by all its overrides; short
    enough for the runs table. The full overrides are the run's `hydra_overrides` tag."""
    values = dict(_key_value(override) for override in overrides)
    keys = [key for key in parent.varied if key in values] if parent else list(values)
    labels = _short_keys(keys)
    name = " ".join(f"{labels[key]}={_short_value(values[key])}" for key in keys) or "defaults"
    number = f" #{job_num}" if parent and parent.numbered else ""  # kept whole: it tells repeats apart
    room = RUN_NAME_CHARS - len(number)
    return (name if len(name) <= room else name[: room - 1] + "…") + number


def _key_value(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Each key by its last part (`model.learning_rate` -> `lr`), or whole where two would read the same."""
    last = {key: SHORT_KEYS.get(key.rsplit(".", 1)[-1], key.rsplit(".", 1)[-1]) for key in keys}
    return {key: short if list(last.values()).count(short) == 1 else key for key, short in last.items()}


def _short_value(value: str) -> str:
    """As typed when short (a grid's values stay distinct); a long number, such as an Optuna trial's
    0.011756010900231853, to three significant digits."""
    if len(value) <= SHORT_VALUE_CHARS:
        return value
    try:
        return f"{float(value):.3g}"
    except ValueError:
        return value


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


def end_sweep_early(parent: Parent, status: str, reason: str) -> None:
    """End the parent and any child still RUNNING (a worker killed mid-job) with `status`."""
    tracker = parent.tracker()
    client = tracker.client()
    for run in children(tracker, parent.run_id):
        if run.info.status == "RUNNING":
            end_run(client, run.info.run_id, status, reason)
    end_run(client, parent.run_id, status, reason)


def end_run(client: MlflowClient, run_id: str, status: str, reason: str, end_ms: int | None = None) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in _failure_tags(status, reason).items()])
    client.set_terminated(run_id, status, end_ms)


def _failure_tags(status: str, reason: str) -> dict[str, str]:
    return {"error": reason[:5000], "mlflow.note.content": f"{status}: {reason[:5000]}"}


def summary_runs(parent: Parent) -> list[Run]:
    """The runs a sweep's summary counts (`latest_attempts` of its children), any child its job left RUNNING
    (an outage took its end) ended FAILED first."""
    tracker = parent.tracker()
    client = tracker.client()
    runs = children(tracker, parent.run_id)
    left_running = [run.info.run_id for run in runs if run.info.status == "RUNNING"]
    for run_id in left_running:  # every job has returned: its run lost its end to an outage
        end_run(client, run_id, "FAILED", "its job returned without ending this run: the tracking server was away")
    if left_running:
        runs = children(tracker, parent.run_id)
    return latest_attempts(runs)


def finish_sweep(
    parent: Parent,
    runs: list[Run],
    sweep: config.SweepConfig,
    model_name: str | None,
    out_dir: Path,
    search_metrics: Mapping[str, float],
    study_dir: Path | None = None,
) -> SweepSummary:
    """End the parent FINISHED with the best of `runs` (its params and metrics; the champion rule it was chosen
    by, `sweep.champion`, as the tag `logitlab.champion_rule`), the search's own metrics (`busy_fraction`), the
    summary files in `out_dir` (under `sweep/`) and the Optuna study's figures in `study_dir` (under `optuna/`,
    when it exists); register the best model as `model_name`'s `champion` when it beats the current one (None:
    no registry)."""
    from mlflow.entities import Metric, Param

    from logitlab.tracking import registry
    from logitlab.tracking.results import HISTORIES, finite

    tracker = parent.tracker()
    client = tracker.client()
    best = selection.best_run(runs, sweep)
    pruned = sum(selection.pruned(r) for r in runs)  # FINISHED runs too, but with no result
    finished = sum(r.info.status == "FINISHED" for r in runs) - pruned
    failed = sum(r.info.status == "FAILED" for r in runs)
    client.log_artifacts(parent.run_id, str(out_dir), artifact_path="sweep")
    if study_dir is not None and study_dir.is_dir():
        client.log_artifacts(parent.run_id, str(study_dir), artifact_path="optuna")
    client.set_tag(parent.run_id, CHAMPION_RULE_TAG, sweep.champion if sweep.several else "first")
    client.set_tag(
        parent.run_id,
        "sweep_objectives",
        " ".join(f"{m}:{d}" for m, d in zip(sweep.metrics, sweep.directions, strict=True)),
    )
    now = int(time.time() * 1000)
    counts = (("n_jobs", len(runs)), ("n_failed", failed), ("n_pruned", pruned))
    summary_metrics = [Metric(name, float(count), now, 0) for name, count in counts]
    summary_metrics += [Metric(key, value, now, 0) for key, value in search_metrics.items()]
    params: list[Param] = []
    if best is not None:
        params = [Param(k, v) for k, v in sorted(best.data.params.items())]
        summary_metrics += [
            Metric(k, v, now, 0) for k, v in sorted(best.data.metrics.items()) if finite(v) and k not in HISTORIES
        ]
        client.set_tag(parent.run_id, "best_run_id", best.info.run_id)
        client.set_tag(parent.run_id, "best_overrides", best.data.tags.get("hydra_overrides", ""))
    client.log_batch(parent.run_id, metrics=summary_metrics, params=params)
    if best is not None and model_name is not None:
        registry.promote_champion(tracker, best, sweep, model_name)
    client.set_terminated(parent.run_id, "FINISHED")
    return SweepSummary(
        parent.run_id,
        finished=finished,
        failed=failed,
        best_run_id=best.info.run_id if best else None,
        best_value=best.data.metrics[sweep.metric] if best else None,
        best_metrics=dict(best.data.metrics) if best else {},
    )
