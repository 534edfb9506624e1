"""The sweeper's config, registered under Hydra's config store: the keys of hydra-optuna-sweeper.

`hydra/sweeper=logitlab_optuna`; samplers in `hydra/sweeper/sampler` (`tpe`, the default, `random`, `cmaes`).
`params` maps a config key to Hydra's sweep syntax: `choice(a, b)`, `range(start, stop, step)`,
`interval(low, high)`, `tag(log, interval(low, high))`; a plain value fixes the key for every trial.
Pruners in `hydra/sweeper/pruner` (`none`, the default, `median`, `percentile`, `successive_halving`,
`hyperband`) with optuna's own parameters; each trial's fit reports its validation score every
`report_every` epochs (`sweeps.job`), and stops when the pruner says so.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConfig:
    """optuna.samplers.TPESampler"""

    _target_: str = "optuna.samplers.TPESampler"
    seed: int | None = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False


@dataclass
class RandomSamplerConfig:
    """optuna.samplers.RandomSampler"""

    _target_: str = "optuna.samplers.RandomSampler"
    seed: int | None = None


@dataclass
class CmaEsSamplerConfig:
    """optuna.samplers.CmaEsSampler"""

    _target_: str = "optuna.samplers.CmaEsSampler"
    seed: int | None = None
    n_startup_trials: int = 1
    sigma0: float | None = None
    restart_strategy: str | None = None


@dataclass
class NopPrunerConfig:
    """optuna.pruners.NopPruner: every trial runs to its end"""

    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class MedianPrunerConfig:
    """optuna.pruners.MedianPruner"""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConfig:
    """optuna.pruners.PercentilePruner"""

    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConfig:
    """optuna.pruners.SuccessiveHalvingPruner"""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConfig:
    """optuna.pruners.HyperbandPruner"""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.logitlab_optuna_sweeper.sweeper.OptunaSweeper"
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])
    sampler: Any = MISSING
    pruner: Any = MISSING
    # a trial's fit reports its validation score to the pruner every this many epochs (a step is an epoch)
    report_every: int = 10
    # minimize or maximize the value each job returns; a list, one per objective, for several objectives (each
    # job returns a value per objective: `sweep.metric` a list)
    direction: Any = "minimize"
    # an RDB URL (e.g. sqlite:///optuna.db) keeps the study; the same study_name then resumes it
    storage: str | None = None
    study_name: str | None = None
    # trials this command runs (added to a resumed study's)
    n_trials: int = 20
    # trials in flight at once, each launched as a job of its own (a launcher that runs jobs in this process,
    # `local`, runs one at a time)
    n_jobs: int = 2
    # true: a trial that returns frees its slot and the next trial is asked for at once; false: trials are asked
    # for in batches of n_jobs, each batch waiting for its slowest (hydra-optuna-sweeper's way: the trials a seed
    # gives do not depend on which job ends first)
    asynchronous: bool = True
    params: dict[str, str] | None = None


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="logitlab_optuna", node=OptunaSweeperConf, provider="logitlab")
for _name, _node in (("tpe", TPESamplerConfig), ("random", RandomSamplerConfig), ("cmaes", CmaEsSamplerConfig)):
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="logitlab")
_PRUNERS = {
    "none": NopPrunerConfig,
    "median": MedianPrunerConfig,
    "percentile": PercentilePrunerConfig,
    "successive_halving": SuccessiveHalvingPrunerConfig,
    "hyperband": HyperbandPrunerConfig,
}
for _name, _pruner in _PRUNERS.items():
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_pruner, provider="logitlab")
