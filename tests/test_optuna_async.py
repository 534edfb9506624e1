"""Asynchronous parallel trials: with `hydra.sweeper.n_jobs` > 1, a trial that returns frees its slot and the next
trial is asked for at once; the workers' busy fraction is measured and recorded; an interrupt tells every trial
in flight FAILED and interrupts its launch. Real Optuna storage (SQLite) throughout; the last test runs a real
search on the joblib and submitit_local launchers (tests/test_slurm.py runs one on SLURM)."""

from __future__ import annotations

import _thread
import json
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from hydra_plugins.logitlab_optuna_sweeper._study import Settings, optimize
from logitlab.sweeps.state import STATE

from .conftest import logitlab, store_uri

SLOW_JOB_S = 4.0  # job 0's time; every other job takes FAST_JOB_S
FAST_JOB_S = 0.1
N_TRIALS = 8  # jobs 1-7 take 0.7 s in the other slot: time enough (on a busy machine too) to ask and tell 7 trials


class TimedLauncher:
    """A launcher that runs each job in its caller's thread for a time set by its number, and records when each
    job started and ended (seconds since the launcher was made)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()
        self.spans: dict[int, tuple[float, float]] = {}

    def launch(self, job_overrides: list[tuple[str, ...]], initial_job_idx: int) -> list[JobReturn]:
        assert len(job_overrides) == 1, "each trial is a launch of its own"
        start = time.monotonic() - self.origin
        time.sleep(SLOW_JOB_S if initial_job_idx == 0 else FAST_JOB_S)
        self.spans[initial_job_idx] = (start, time.monotonic() - self.origin)
        value = float(job_overrides[0][0].split("=")[1])
        return [JobReturn(overrides=list(job_overrides[0]), status=JobStatus.COMPLETED, _return_value=value)]


def search(tmp_path: Path, asynchronous: bool, launcher: object, n_trials: int = N_TRIALS) -> optuna.Study:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sampler = optuna.samplers.RandomSampler(seed=0)
    settings = Settings.checked(sampler, "maximize", storage, "s", n_trials, 2, None, asynchronous=asynchronous)
    optimize(settings, ["x=interval(0, 1)"], launcher, str(tmp_path))
    return optuna.load_study(study_name="s", storage=storage)


def check_busy_fraction(spans: dict[int, tuple[float, float]]) -> None:
    """The recorded busy fraction is the jobs' time over two slots times the search's, as the jobs saw them (the
    search's own time adds its asks and tells)."""
    jobs_s = sum(end - start for start, end in spans.values())
    seen = jobs_s / (2 * (max(end for _, end in spans.values()) - min(start for start, _ in spans.values())))
    assert STATE.workers is not None and STATE.workers.slots == 2
    assert STATE.workers.busy_s >= jobs_s and abs(STATE.workers.busy_fraction - seen) < 0.1, (STATE.workers, seen)


def test_a_trial_that_returns_frees_its_slot_for_the_next_at_once(tmp_path: Path) -> None:
    """Job 0 is 40 times slower than the others: asynchronous, the other slot runs every other job meanwhile."""
    launcher = TimedLauncher()
    study = search(tmp_path, asynchronous=True, launcher=launcher)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * N_TRIALS
    assert sorted(launcher.spans) == list(range(N_TRIALS))  # job numbers unique, one per trial
    slow_end = launcher.spans[0][1]
    assert all(launcher.spans[job][0] < slow_end for job in range(1, N_TRIALS)), launcher.spans
    assert [t.value for t in study.trials] == [t.params["x"] for t in study.trials]  # each trial told its own job
    check_busy_fraction(launcher.spans)


def test_batched_trials_wait_for_the_slowest_of_their_batch(tmp_path: Path) -> None:
    """`asynchronous: false`: jobs 2 and on start once job 0, the slow one of the first batch, has returned."""
    launcher = TimedLauncher()
    study = search(tmp_path, asynchronous=False, launcher=launcher)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * N_TRIALS
    slow_end = launcher.spans[0][1]
    assert all(launcher.spans[job][0] >= slow_end for job in range(2, N_TRIALS)), launcher.spans
    check_busy_fraction(launcher.spans)


class InterruptedLauncher:
    """Two jobs that run until interrupted; Ctrl-C reaches the sweep's thread once both are running."""

    def __init__(self) -> None:
        self.running = threading.Barrier(2, timeout=30)
        self.interrupted: list[int] = []

    def launch(self, job_overrides: list[tuple[str, ...]], initial_job_idx: int) -> list[JobReturn]:
        self.running.wait()
        if initial_job_idx == 1:
            _thread.interrupt_main()  # as SIGINT, or SIGTERM through the sweep's handler
        try:
            for _ in range(600):  # a launcher waits for its job in a Python loop (joblib, submitit)
                time.sleep(0.05)
        except KeyboardInterrupt:
            self.interrupted.append(initial_job_idx)
            raise
        raise AssertionError("not interrupted")


def test_an_interrupt_ends_every_trial_in_flight_failed_and_interrupts_its_launch(tmp_path: Path) -> None:
    # Python's own SIGINT handler, as a sweep's process has: `interrupt_main` does nothing under SIG_DFL, which
    # an in-process command of an earlier test on this worker may have left (`cli.exit_interrupted`)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        interrupted_search(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def interrupted_search(tmp_path: Path) -> None:
    launcher = InterruptedLauncher()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, asynchronous=True, launcher=launcher)
    assert time.monotonic() - started < 20
    states = [t.state for t in optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}").trials]
    assert states == [TrialState.FAIL] * 2
    assert sorted(launcher.interrupted) == [0, 1]  # each launch got the interrupt, as the sweep's thread would


LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"],
}


def search_in_flight(project: Path, launcher: list[str], env: dict[str, str] | None = None) -> list[Run]:
    """A real search with two trials in flight, four trials in a SQLite study, tracked in a SQLite store: every
    trial COMPLETE, every child FINISHED, job numbers and folders unique, the busy fraction recorded. Its
    children."""
    storage = f"sqlite:///{project / 'optuna.db'}"
    search = ["hparams_search=lr_penalty", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4"]
    done = logitlab(
        ["sweep", "-m", *search, *launcher, f"hydra.sweeper.storage={storage}", "model.max_iter=200"], project, env=env
    )
    study = optuna.load_study(study_name="lr_penalty", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    client = MlflowClient(store_uri(project))
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(r.data.tags["hydra_job_num"]) for r in children) == [0, 1, 2, 3]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert 0 < parent.data.metrics["busy_fraction"] <= 1
    assert "search: 2 trials in flight at a time, busy" in done.stderr + done.stdout
    sweep_dirs = {p.parent.parent for p in project.glob("multirun/*/*/*/job.json")}
    assert len(sweep_dirs) == 1 and sorted(p.name for p in next(iter(sweep_dirs)).glob("[0-9]*")) == list("0123")
    return children


@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_search_keeps_two_trials_in_flight_and_records_how_busy(launcher: str, project: Path) -> None:
    search_in_flight(project, LAUNCHERS[launcher])


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupted_search_on_joblib_leaves_no_trial_or_run_running(project: Path, how: str) -> None:
    """Ctrl-C (SIGINT to the process group) or SIGTERM (to the sweep's process only: its threads' launches are
    interrupted by the sweeper) while two trials run: the command exits promptly without a traceback, the two
    trials are FAIL in the stored study, their runs and the parent KILLED."""
    from .test_faults import SLOW_JOB, interrupt_and_check_exit, runs_in_store, start, wait_for

    storage = f"sqlite:///{project / 'optuna.db'}"
    sweep_dir = project / "multirun" / "interrupted"
    search = [
        "hparams_search=lr_penalty",
        "hydra/launcher=joblib",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
    ]
    log = project.parent / "search.log"
    proc = start(
        project, ["-m", *search, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep_dir}", *SLOW_JOB], log
    )
    parent_file = sweep_dir / "mlflow_parent.json"
    wait_for(lambda: parent_file.is_file() or proc.poll() is not None, 120, "the search's parent run")
    assert proc.poll() is None, log.read_text()
    parent = json.loads(parent_file.read_text())["run_id"]

    def children() -> list[tuple[str, str, str | None]]:
        return [run for run in runs_in_store(project) if run[2] == parent]

    wait_for(lambda: sum(r[1] == "RUNNING" for r in children()) >= 2 or proc.poll() is not None, 120, "two trials")
    assert proc.poll() is None, log.read_text()
    interrupt_and_check_exit(proc, how, log, f"search on joblib, {how}")
    statuses = {run_id: status for run_id, status, _ in runs_in_store(project)}
    assert statuses[parent] == "KILLED"
    assert {status for _, status, _ in children()} == {"KILLED"}, children()
    study = optuna.load_study(study_name="lr_penalty", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 2
