"""A sweep killed with SIGKILL (the node died, the job hit its wall time) goes on with `sweep.resume`.

Real sweeps, really killed: the whole process group gets SIGKILL while a job runs, which leaves the parent
and that job's run RUNNING. The resume must end those, skip what FINISHED, run the rest under the same parent
and end it as if it had never stopped; an Optuna sweep continues its persistent study.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from .conftest import logitlab, make_project, store_uri
from .test_faults import runs_in_store, start, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

RATES = ["0.05", "0.1", "0.15", "0.2", "0.25", "0.3"]
# Jobs of a few seconds each, so that the kill lands in the middle of one, after the figure helper caught up.
# Every child gets its figures from the helper (`mlflow.child_artifacts=all`): what a resume does with a job
# whose figures never arrived is part of what is tested.
SLOW = ["model.max_iter=3000", "model.tol=0", "data.n_samples=10000", "mlflow.child_artifacts=all"]
GRID = [f"model.learning_rate={','.join(RATES)}", *SLOW]


TRIALS = 8


@dataclass(frozen=True)
class Crashed:
    project: Path
    parent: str
    finished: set[str]  # children FINISHED before the kill


def kill_after(proc: subprocess.Popen[bytes], project: Path, finished: int, log: Path) -> str:
    """SIGKILL the sweep's process group once `finished` children FINISHED while another one RUNS; the
    parent's run id."""

    def children() -> list[tuple[str, str, str | None]]:
        return [row for row in runs_in_store(project) if row[2] is not None]

    def ready() -> bool:
        statuses = [status for _, status, _ in children()]
        return proc.poll() is not None or (statuses.count("FINISHED") >= finished and "RUNNING" in statuses)

    wait_for(ready, 300, f"{finished} finished jobs and a running one")
    assert proc.poll() is None, log.read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    (parent,) = {p for _, _, p in children()}
    assert parent is not None
    return parent


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Crashed:
    """A grid sweep of 6 jobs SIGKILLed in the middle; a resume tried while it still ran is refused."""
    project = make_project(tmp_path_factory.mktemp("resume") / "project")
    log = project.parent / "crashed.log"
    proc = start(project, ["-m", *GRID], log)
    try:
        wait_for(lambda: any(row[2] for row in runs_in_store(project)) or proc.poll() is not None, 120, "a job")
        parent = next(row[2] for row in runs_in_store(project) if row[2])
        # The sweep held (SIGSTOP) while the resume is tried: alive, as a running sweep is, however long the
        # resume's own start takes on a busy machine (35 s in one CI run, when the six jobs took 30 s).
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            refused = logitlab(["sweep", "-m", *GRID, f"sweep.resume={parent}"], project, check=False)
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
        assert f"sweep {parent} is still running (pid {proc.pid})" in one_error_line(refused)
        kill_after(proc, project, 2, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    rows = runs_in_store(project)
    assert {status for run_id, status, _ in rows if run_id == parent} == {"RUNNING"}  # what SIGKILL leaves
    assert "RUNNING" in {status for _, status, p in rows if p == parent}
    return Crashed(project, parent, {run_id for run_id, status, p in rows if p == parent and status == "FINISHED"})


def test_a_resume_with_other_overrides_is_refused_naming_the_difference(crashed: Crashed) -> None:
    other = [*GRID[1:], "model.learning_rate=0.05,0.1"]
    done = logitlab(["sweep", "-m", *other, f"sweep.resume={crashed.parent}"], crashed.project, check=False)
    line = one_error_line(done)
    assert f"the overrides differ from those of sweep {crashed.parent}" in line, line
    assert f"only there: model.learning_rate={','.join(RATES)}; only here: model.learning_rate=0.05,0.1" in line


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("nope", "config key 'sweep.resume': expected a sweep's parent run id (32 hex digits) or 'last', got 'nope'"),
        ("0" * 31 + "a", f"config key 'sweep.resume': there is no run {'0' * 31}a in the tracking store"),
    ],
)
def test_a_resume_of_what_is_not_a_sweep_is_refused_in_one_line(crashed: Crashed, value: str, expected: str) -> None:
    done = logitlab(["sweep", "-m", *GRID, f"sweep.resume={value}"], crashed.project, check=False)
    assert expected in one_error_line(done)


def test_resume_runs_each_unfinished_job_once_under_the_same_parent(crashed: Crashed) -> None:
    done = logitlab(["sweep", "-m", *GRID, "sweep.resume=last"], crashed.project)
    assert f"sweep finished: {len(RATES)} jobs finished, 0 failed" in done.stdout + done.stderr
    client = MlflowClient(store_uri(crashed.project))
    parent = client.get_run(crashed.parent)
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_jobs"] == len(RATES)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{crashed.parent}'"
    )
    by_status = {
        status: [c for c in children if c.info.status == status] for status in ("FINISHED", "KILLED", "FAILED")
    }
    finished = by_status["FINISHED"]
    assert sorted(float(c.data.params["model.learning_rate"]) for c in finished) == [float(r) for r in RATES]
    # The job killed mid-run ends KILLED. A job that FINISHED while the figure helper still drew its figures
    # ends FAILED and runs again; one that FINISHED with its figures does not run again.
    assert len(by_status["KILLED"]) == 1 and "sweep.resume" in by_status["KILLED"][0].data.tags["error"]
    redone = {c.info.run_id for c in by_status["FAILED"]}
    assert all("figures never arrived" in c.data.tags["error"] for c in by_status["FAILED"])
    assert redone <= crashed.finished
    assert crashed.finished - redone <= {c.info.run_id for c in finished}, "a job that had FINISHED ran again"
    assert len(children) == len(RATES) + 1 + len(redone)
    assert "RUNNING" not in {status for _, status, _ in runs_in_store(crashed.project)}
    assert "sweep.resume" not in {key for c in finished for key in c.data.params}
    assert all(c.data.tags["logitlab.figures"] == "attached" for c in finished)
    assert {c.data.tags["hydra_overrides"] for c in finished} == {
        " ".join([f"model.learning_rate={r}", *SLOW]) for r in RATES
    }
    table = pd.read_csv(client.download_artifacts(crashed.parent, "sweep/sweep_table.csv"))
    assert len(table) == len(RATES) and set(table["status"]) == {"FINISHED"}


def test_a_resumed_optuna_sweep_continues_its_study(tmp_path: Path) -> None:
    """Jobs in a joblib worker (figures drawn in the job, not by a helper), so what FINISHED is complete."""
    project = make_project(tmp_path / "project")
    storage = f"sqlite:///{project / 'optuna.db'}"
    search = ["hparams_search=lr_penalty", f"hydra.sweeper.storage={storage}", *SLOW]
    search += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"]
    log = project.parent / "optuna.log"
    proc = start(project, ["-m", *search, f"hydra.sweeper.n_trials={TRIALS}"], log)
    try:
        parent = kill_after(proc, project, 2, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    study = optuna.load_study(study_name="lr_penalty", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) >= 2 and any(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)

    left = TRIALS - len(complete)  # the trials the stopped sweep did not finish
    done = logitlab(["sweep", "-m", *search, f"hydra.sweeper.n_trials={left}", "sweep.resume=last"], project)
    study = optuna.load_study(study_name="lr_penalty", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == TRIALS and states.count("FAIL") == 1 and "RUNNING" not in states, states
    before = {t.number: t.value for t in complete}
    assert {t.number: t.value for t in study.trials if t.number in before} == before  # the same study, continued
    client = MlflowClient(store_uri(project))
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(c.info.status for c in children) == ["FINISHED"] * len(finished) + ["KILLED"]
    # Each set of params ran once: the resumed study searches on from a seed of its own, so its new trials are
    # new points (no replay of its first random trials to answer from their FINISHED runs).
    assert len({c.data.tags["hydra_overrides"] for c in finished}) == len(finished)
    distinct = {tuple(sorted(t.params.items())) for t in study.trials if t.state.name == "COMPLETE"}
    assert len(distinct) == len(finished) == TRIALS
    assert "not run again (sweep.resume)" not in done.stdout + done.stderr
    assert client.get_run(parent).info.status == "FINISHED"
    best = max(c.data.metrics["val_accuracy"] for c in finished)
    assert study.best_value == pytest.approx(best)
    assert "RUNNING" not in {status for _, status, _ in runs_in_store(project)}
