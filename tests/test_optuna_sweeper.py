"""The project's Optuna sweeper without a sweep: Hydra's sweep syntax as optuna distributions, its config
checks, and trials of an interrupted batch told FAILED. (tests/test_sweep.py runs it for real.)"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hydra_plugins.logitlab_optuna_sweeper._study import Settings, optimize, search_space

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
    """A launcher whose second batch is interrupted (Ctrl-C while its jobs run)."""

    def __init__(self) -> None:
        self.batches = 0

    def launch(self, job_overrides: list[tuple[str, ...]], initial_job_idx: int) -> list[JobReturn]:
        self.batches += 1
        if self.batches == 2:
            raise KeyboardInterrupt
        return [JobReturn(overrides=list(o), status=JobStatus.COMPLETED, _return_value=0.5) for o in job_overrides]


def test_trials_of_an_interrupted_batch_end_failed_not_running(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    settings = Settings.checked(optuna.samplers.RandomSampler(seed=0), "maximize", storage, "s", 6, 2, None)
    with pytest.raises(KeyboardInterrupt):
        optimize(settings, ["x=interval(0, 1)"], InterruptedLauncher(), str(tmp_path))
    states = [t.state for t in optuna.load_study(study_name="s", storage=storage).trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] * 2


def sweep_line(project: Path, *overrides: str) -> str:
    """The one `error:` line a sweep that is refused prints (exit 2, no traceback)."""
    done = logitlab(["sweep", "-m", "hparams_search=lr_penalty", "mlflow=off", *overrides], project, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return line


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
