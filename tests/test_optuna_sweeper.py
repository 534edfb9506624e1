"""The project's Optuna sweeper without a sweep: Hydra's sweep syntax as optuna distributions, its config
checks, trials of an interrupted batch told FAILED, a resumed study searching on. (tests/test_sweep.py runs it
for real.)"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.logitlab_optuna_sweeper._study import Settings, optimize, search_space
from hydra_plugins.logitlab_optuna_sweeper.config import CmaEsSamplerConfig, RandomSamplerConfig, TPESamplerConfig

from .conftest import logitlab


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("a=choice(l2, l1)", CategoricalDistribution(["l2", "l1"])),
        ("a=choice(1, 2, 3)", CategoricalDistribution([1, 2, 3])),
        ("a=range(1, 10, 3)", IntDistribution(1, 7, step=3)),  # Hydra's range excludes its stop
        ("a=range(0.0, 1.0, 0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
        ("a=interval(0.1, 2.0)", FloatDistribution(0.1, 2.0)),
        ("a=interval(1, 8)", FloatDistribution(1.0, 8.0)),  # Hydra's intervals are of floats
        ("a=tag(log, interval(0.001, 1.0))", FloatDistribution(0.001, 1.0, log=True)),
    ],
)
def test_sweep_syntax_becomes_the_optuna_distribution(override: str, expected: object) -> None:
    space, fixed = search_space([override])
    assert space == {"a": expected} and fixed == {}


def test_plain_values_are_fixed_and_the_command_line_wins() -> None:
    space, fixed = search_space(["a=choice(1, 2)", "b=3", "a=0.5", "b=interval(0, 1)"])
    assert fixed == {"a": "0.5"} and space == {"b": FloatDistribution(0.0, 1.0)}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"direction": "up"}, "hydra.sweeper.direction: expected minimize or maximize, got 'up'"),
        ({"n_trials": 0}, "hydra.sweeper.n_trials: expected an integer >= 1, got 0"),
        ({"sampler": "tpe"}, "hydra.sweeper.sampler: expected an optuna sampler, got str"),
    ],
)
def test_a_bad_setting_names_its_key(keys: dict[str, object], message: str) -> None:
    values = {"sampler": optuna.samplers.RandomSampler(seed=0), "direction": "maximize", "n_trials": 2, **keys}
    with pytest.raises(HydraException) as raised:
        Settings.checked(values["sampler"], values["direction"], None, "s", values["n_trials"], 1, None)
    assert str(raised.value) == message


class InterruptedLauncher:
    """Ctrl-C while the second batch runs: its first job raises KeyboardInterrupt while the other one runs."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.interrupted: list[int] = []

    def launch(self, job_overrides: list[tuple[str, ...]], initial_job_idx: int) -> list[JobReturn]:
        if initial_job_idx == 2:
            assert self.running.wait(timeout=30)
            raise KeyboardInterrupt
        if initial_job_idx == 3:
            try:
                self.running.set()
                for _ in range(600):  # a job's launcher waits for it in a Python loop (joblib, submitit)
                    time.sleep(0.05)
            except KeyboardInterrupt:
                self.interrupted.append(initial_job_idx)
                raise
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=0.5) for o in job_overrides]


def test_trials_of_an_interrupted_batch_end_failed_not_running(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = Settings.checked(
        optuna.samplers.RandomSampler(seed=0), "maximize", storage, "s", 6, 2, None, asynchronous=False
    )
    launcher = InterruptedLauncher()
    with pytest.raises(KeyboardInterrupt):
        optimize(settings, ["x=interval(0, 1)"], launcher, str(tmp_path))
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2
    assert launcher.interrupted == [3]  # the batch's other job was interrupted too, not left running


class CompletingLauncher:
    """A launcher whose jobs all complete at once, with the same value."""

    def launch(self, job_overrides: list[tuple[str, ...]], initial_job_idx: int) -> list[JobReturn]:
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=0.5) for o in job_overrides]


def trial_params(storage: str, study_name: str = "s") -> list[tuple[object, ...]]:
    return [tuple(t.params.values()) for t in optuna.load_study(study_name=study_name, storage=storage).trials]


def run_study(sampler_config: DictConfig, storage: str, sweep_dir: Path, space: Sequence[str]) -> None:
    """Three trials, the sampler instantiated from its config as Hydra does."""
    settings = Settings.checked(instantiate(sampler_config), "maximize", storage, "s", 3, 1, None)
    optimize(settings, space, CompletingLauncher(), str(sweep_dir), sampler_config)


@pytest.mark.parametrize("sampler", [TPESamplerConfig, RandomSamplerConfig, CmaEsSamplerConfig])
def test_a_resumed_study_searches_on_reproducibly_with_every_sampler(sampler: type, tmp_path: Path) -> None:
    """Seeded samplers start with random trials: resumed, the study gets new ones, the same ones every time."""
    config = OmegaConf.structured(sampler(seed=7))
    if "n_startup_trials" in config:
        config.n_startup_trials = 10  # all six trials in the start-up phase, as for the sweep's TPE
    db, again = tmp_path / "optuna.db", tmp_path / "again.db"
    space = ["x=interval(0, 1)", "k=choice(1, 2, 3)"]
    run_study(config, f"sqlite:///{db}", tmp_path, space)
    shutil.copy(db, again)
    run_study(config, f"sqlite:///{db}", tmp_path, space)
    run_study(config, f"sqlite:///{again}", tmp_path, space)
    first, resumed = trial_params(f"sqlite:///{db}")[:3], trial_params(f"sqlite:///{db}")[3:]
    assert len(resumed) == 3 and not set(first) & set(resumed), (first, resumed)
    assert trial_params(f"sqlite:///{again}") == first + resumed


def sweep_line(project: Path, *overrides: str) -> str:
    """The one `error:` line a sweep that is refused prints (exit 2, no traceback)."""
    done = logitlab(["sweep", "-m", "hparams_search=lr_penalty", "mlflow=off", *overrides], project, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return line


def test_an_unknown_sweep_metric_is_refused_before_any_trial(project: Path) -> None:
    storage = project / "optuna.db"
    line = sweep_line(project, "sweep.metric=val_f2", f"hydra.sweeper.storage=sqlite:///{storage}")
    assert line.startswith("error: config key 'sweep.metric': 'val_f2' is not a metric; choose one of")
    assert not storage.exists() and not list(project.glob("multirun/*/*/*/job.json"))


def test_a_storage_that_cannot_be_opened_or_a_changed_search_space_is_one_line(project: Path) -> None:
    missing = f"sqlite:///{project / 'no' / 'such' / 'optuna.db'}"
    assert sweep_line(project, f"hydra.sweeper.storage={missing}").startswith(
        f"error: hydra.sweeper.storage: cannot open '{missing}'"
    )
    storage = f"sqlite:///{project / 'optuna.db'}"
    common = [f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=1", "model.max_iter=20"]
    logitlab(["sweep", "-m", "hparams_search=lr_penalty", "mlflow=off", *common], project)
    line = sweep_line(project, *common, "model.C=choice(0.1,1)")  # was log-uniform in this study
    assert line == (
        "error: hydra.sweeper.params.model.C: study 'lr_penalty' searched it as FloatDistribution before, "
        "now as CategoricalDistribution; set another hydra.sweeper.study_name for a new search space"
    )


def test_the_same_search_command_run_again_searches_on_reproducibly(project: Path) -> None:
    """As a user resumes a study: the same command twice, fewer trials than TPE's 10 random start-up ones. The
    second run's trials are new points, and the same second run from the same first one proposes them again."""
    db, again = project / "optuna.db", project / "again.db"
    command = ["sweep", "-m", "hparams_search=lr_penalty", "hydra.sweeper.n_trials=3", "mlflow=off"]
    command += ["data=circles", "model.max_iter=20"]
    logitlab([*command, f"hydra.sweeper.storage=sqlite:///{db}"], project)
    shutil.copy(db, again)
    for storage in (db, again):
        logitlab([*command, f"hydra.sweeper.storage=sqlite:///{storage}"], project)
    params = trial_params(f"sqlite:///{db}", "lr_penalty")
    assert len(params) == 6 and not set(params[:3]) & set(params[3:]), params
    assert trial_params(f"sqlite:///{again}", "lr_penalty") == params
