"""A sweep in MLflow: one parent run made before the jobs start, one child run per job, a summary at the end.

The parent's id, store and experiment reach the jobs through a file in the sweep directory: a joblib/loky
worker or a submitit job reads it the same way, whatever process started it. Every job of a sweep is a child
run in the parent's experiment, a job that failed included (FAILED, with its reason).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from logitlab import config, io, sweep_report
from logitlab.tracking import registry, selection
from logitlab.tracking.lifecycle import git_tags, tracked_run
from logitlab.tracking.results import HISTORIES, finite
from logitlab.tracking.store import Tracker, attach

if TYPE_CHECKING:
    from mlflow.entities import Run

PARENT_FILE = "mlflow_parent.json"
SWEEP_TAG = "logitlab.sweep_id"


@dataclass(frozen=True)
class Parent:
    run_id: str
    sweep_id: str
    uri: str
    experiment_id: str
    experiment_name: str

    def tracker(self) -> Tracker:
        return attach(self.uri, self.experiment_id, self.experiment_name)


@dataclass(frozen=True)
class SweepSummary:
    parent_run_id: str
    finished: int
    failed: int
    best_run_id: str | None
    best_value: float | None


def start_sweep(tracker: Tracker, sweep_dir: Path, overrides: list[str]) -> Parent:
    """Create the sweep's parent run (not active in any process) and leave its id for the jobs."""
    sweep_id = hashlib.sha256(f"{sweep_dir.resolve()}{time.time_ns()}".encode()).hexdigest()[:12]
    tags = {
        **git_tags(),
        SWEEP_TAG: sweep_id,
        "logitlab.entry": "sweep parent",
        "hydra_overrides": " ".join(overrides) or "(defaults)",
    }
    run = tracker.client().create_run(tracker.experiment_id, tags=tags, run_name=f"sweep-{sweep_id}")
    parent = Parent(run.info.run_id, sweep_id, tracker.uri, tracker.experiment_id, tracker.experiment_name)
    io.write_json(sweep_dir / PARENT_FILE, asdict(parent))
    return parent


def read_parent(sweep_dir: Path) -> Parent | None:
    file = sweep_dir / PARENT_FILE
    return Parent(**io.read_json(file)) if file.is_file() else None


@contextlib.contextmanager
def job_run(
    parent: Parent | None, tracker: Tracker, job_num: int, overrides: list[str], params: Mapping[str, Any]
) -> Iterator[str]:
    """One job's run: a child of the sweep's parent, or a top-level run for a single run (no -m)."""
    tags = _job_tags(parent, job_num, overrides)
    with tracked_run(tracker, _run_name(overrides), tags, params, parent.run_id if parent else None) as run_id:
        yield run_id


def record_failed_job(parent: Parent, job_num: int, overrides: list[str], reason: str) -> None:
    """A job that never ran (Hydra could not compose its config): a FAILED child with the reason."""
    client = parent.tracker().client()
    tags = {
        **_job_tags(parent, job_num, overrides),
        "mlflow.parentRunId": parent.run_id,
        "error": reason[:5000],
        "mlflow.note.content": f"FAILED: {reason[:5000]}",
    }
    run = client.create_run(parent.experiment_id, tags=tags, run_name=_run_name(overrides))
    client.set_terminated(run.info.run_id, "FAILED")


def _job_tags(parent: Parent | None, job_num: int, overrides: list[str]) -> dict[str, str]:
    tags = {
        **git_tags(),
        "logitlab.entry": "sweep" if parent else "single run",
        "hydra_overrides": " ".join(overrides) or "(defaults)",
        "hydra_job_num": str(job_num),
    }
    if parent:
        tags[SWEEP_TAG] = parent.sweep_id
    return tags


def _run_name(overrides: list[str]) -> str:
    return ",".join(overrides)[:200] or "defaults"


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
            client.set_tag(run.info.run_id, "error", reason)
            client.set_terminated(run.info.run_id, status)
    client.set_tag(parent.run_id, "error", reason)
    client.set_terminated(parent.run_id, status)


def finish_sweep(parent: Parent, sweep: config.SweepConfig, register: bool, out_dir: Path) -> SweepSummary:
    """Give the parent the best child's params and metrics, the sweep table and a comparison plot;
    register the best model as `champion` when it beats the current one."""
    from mlflow.entities import Metric, Param

    tracker = parent.tracker()
    client = tracker.client()
    runs = children(tracker, parent.run_id)
    best = selection.best_run(runs, sweep)
    finished = sum(r.info.status == "FINISHED" for r in runs)
    failed = sum(r.info.status == "FAILED" for r in runs)
    table = sweep_report.table(runs, sweep)
    out_dir.mkdir(parents=True, exist_ok=True)
    io.write_csv(out_dir / "sweep_table.csv", table)
    io.write_text(out_dir / "sweep_table.html", sweep_report.to_html(table, sweep.metric))
    sweep_report.comparison_plot(table, sweep.metric, out_dir / "sweep_comparison.png")
    client.log_artifacts(parent.run_id, str(out_dir), artifact_path="sweep")
    now = int(time.time() * 1000)
    summary_metrics = [Metric("n_jobs", float(len(runs)), now, 0), Metric("n_failed", float(failed), now, 0)]
    params: list[Param] = []
    if best is not None:
        params = [Param(k, v) for k, v in sorted(best.data.params.items())]
        summary_metrics += [
            Metric(k, v, now, 0) for k, v in sorted(best.data.metrics.items()) if finite(v) and k not in HISTORIES
        ]
        client.set_tag(parent.run_id, "best_run_id", best.info.run_id)
        client.set_tag(parent.run_id, "best_overrides", best.data.tags.get("hydra_overrides", ""))
    client.log_batch(parent.run_id, metrics=summary_metrics, params=params)
    if best is not None and register:
        registry.promote_champion(tracker, best, sweep)
    client.set_terminated(parent.run_id, "FINISHED")
    return SweepSummary(
        parent.run_id,
        finished=finished,
        failed=failed,
        best_run_id=best.info.run_id if best else None,
        best_value=best.data.metrics[sweep.metric] if best else None,
    )
