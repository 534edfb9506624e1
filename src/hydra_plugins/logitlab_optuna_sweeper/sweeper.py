"""The Hydra side of the sweeper: Hydra instantiates it from `hydra.sweeper`; the study lives in `_study`."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: str,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
        asynchronous: bool = True,
    ) -> None:
        from hydra_plugins.logitlab_optuna_sweeper._study import Settings

        self.settings = Settings.checked(
            sampler, direction, storage, study_name, n_trials, n_jobs, params, asynchronous
        )
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> None:
        from hydra_plugins.logitlab_optuna_sweeper import _study

        assert self.config is not None and self.launcher is not None
        sweep_dir = str(self.config.hydra.sweep.dir)
        _study.optimize(self.settings, arguments, self.launcher, sweep_dir, self.config.hydra.sweeper.sampler)
