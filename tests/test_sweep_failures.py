"""A tracked sweep is tracked or stops, and nothing after its jobs leaves its parent RUNNING. The failures are
real: a callback that raises (tests/failing_callback.py), a store another process holds locked, a summary
folder that cannot be written, a model name the registry refuses; nothing of MLflow or Hydra is mocked."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from logitlab.sweeps import summary

from .conftest import BASE_ENV, logitlab, store_uri
from .failing_callback import HOOKS

TINY = ["model.max_iter=20", "model.tol=0", "model.C=0.1,1"]


def runs(project: Path) -> list:
    client = MlflowClient(store_uri(project))
    experiment = client.get_experiment_by_name("synthetic")
    return [] if experiment is None else client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)


def parents_and_children(project: Path) -> tuple[list, list]:
    found = runs(project)
    return (
        [r for r in found if r.data.tags.get("logitlab.entry") == "sweep parent"],
        [r for r in found if "mlflow.parentRunId" in r.data.tags],
    )


def the_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """Exit 2 and one `error:` line: no traceback, and no warning Hydra made of a callback's exception."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    for noise in ("Traceback", "UserWarning", "warnings.warn"):
        assert noise not in output, output[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    return errors[0]


def test_the_comparison_plot_copes_with_any_mix_of_value_types(tmp_path: Path) -> None:
    """Jobs of different data sets share no params: a missing one is NaN next to strings (pandas' astype(str)
    keeps it a float), which sorting the labels could not compare."""
    frame = pd.DataFrame(
        {
            "status": ["FINISHED"] * 4,
            "data.noise": ["0.1", None, float("nan"), "0.2"],
            "model.penalty": ["l2", "none", None, 3.0],
            "val_accuracy": [0.8, 0.7, 0.9, 0.6],
        }
    )
    summary.comparison_plot(frame, "val_accuracy", tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.parametrize("hook", HOOKS)
def test_a_failing_callback_stops_the_command_in_one_line_and_leaves_nothing_running(project: Path, hook: str) -> None:
    inject = [
        "+hydra.callbacks.inject._target_=tests.failing_callback.FailingCallback",
        f"+hydra.callbacks.inject.hook={hook}",
    ]
    multirun = hook != "on_run_start"
    args = ["-m", *TINY] if multirun else ["model.max_iter=20"]
    sweep_dir = project / "multirun" / "inject"
    done = logitlab(
        ["sweep", *args, f"hydra.sweep.dir={sweep_dir}", *inject],
        project,
        check=False,
        env={"PYTHONPATH": str(project)},
    )
    assert f"injected failure in {hook}" in the_error_line(done)
    assert "RUNNING" not in {r.info.status for r in runs(project)}
    parents, children = parents_and_children(project)
    if not multirun:
        assert runs(project) == [], "the single run started"
        return
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    assert f"injected failure in {hook}" in parents[0].data.tags["error"]
    if hook in ("on_multirun_start", "on_job_start"):
        assert children == [] and not list(sweep_dir.glob("*/job.json")), "a job ran"
    else:  # the jobs that ran keep their results
        assert children and {c.info.status for c in children} == {"FINISHED"}


@pytest.mark.slow
@pytest.mark.parametrize("failing", ["summary", "plot", "registry"])
def test_a_failure_after_the_jobs_ends_the_parent_failed_with_its_reason(project: Path, failing: str) -> None:
    sweep_dir = project / "multirun" / "after"
    extra = []
    if failing == "summary":  # a file where the summary folder goes
        sweep_dir.mkdir(parents=True)
        (sweep_dir / "summary").write_text("not a folder")
    elif failing == "plot":  # a folder where the plot goes
        (sweep_dir / "summary" / "sweep_comparison.png").mkdir(parents=True)
    else:  # the registry refuses the name (MLflow: no '/' or ':')
        extra = ["mlflow.registered_model_name=team:synthetic"]
    done = logitlab(["sweep", "-m", *TINY, f"hydra.sweep.dir={sweep_dir}", *extra], project, check=False)
    error = the_error_line(done)
    assert error.startswith("error: sweep summary failed:"), error
    parents, children = parents_and_children(project)
    assert len(parents) == 1 and parents[0].info.status == "FAILED"
    reason = parents[0].data.tags["error"]
    assert reason.startswith("sweep summary failed:") and "\n" not in reason, reason
    assert parents[0].data.tags["mlflow.note.content"] == f"FAILED: {reason}"
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}, "the jobs' results stay"


def start_sweep(project: Path, sweep_dir: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "logitlab.sweep", "-m", *TINY, f"hydra.sweep.dir={sweep_dir}", *extra],
            cwd=project,
            env=BASE_ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while text not in log.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    assert text in log.read_text(), log.read_text()[-3000:]


@pytest.mark.slow
def test_a_busy_store_is_waited_for_and_one_locked_past_the_wait_stops_the_sweep(project: Path) -> None:
    """Another process holds the SQLite store with an exclusive lock (as a long write or a reading script
    does): while it is held the sweep waits, and is tracked once it is let go; held past the sweep's wait,
    the sweep stops with one line. Tracked in line (`mlflow.child_artifacts=all`) no job runs; tracked by the
    figure helper (`sweeps.relay`, the default on a local store) the jobs start meanwhile, and their results
    stay in their folders only."""
    MlflowClient(store_uri(project)).search_experiments()  # the store exists, with MLflow's tables
    cases = ((True, "busy", []), (False, "locked", ["mlflow.child_artifacts=all"]), (False, "locked-relayed", []))
    for released, name, extra in cases:
        sweep_dir, log = project / "multirun" / name, project.parent / f"{name}.log"
        holder = sqlite3.connect(project / "mlflow.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        proc = start_sweep(project, sweep_dir, log, *extra)
        try:
            if released:
                wait_for_line(log, "tracking store busy", proc)
                holder.execute("COMMIT")
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
            holder.close()
        output = log.read_text()
        if released:
            assert proc.returncode == 0, output[-3000:]
            parents, children = parents_and_children(project)
            assert [p.info.status for p in parents] == ["FINISHED"]
            assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}
        else:
            done = subprocess.CompletedProcess(proc.args, proc.returncode, "", output)
            assert "database is locked" in the_error_line(done)
            if extra:
                assert not list(sweep_dir.glob("*/job.json")), "a job ran untracked"
            assert len(parents_and_children(project)[0]) == 1, "a second parent was made"
    assert "RUNNING" not in {r.info.status for r in runs(project)}
