"""The Hydra side of the sweeper: Hydra instantiates it from `hydra.sweeper`; the study lives in `_study`."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
        pruner: Any = None,
        report_every: int = 10,
        asynchronous: bool = True,
    ) -> None:
        from hydra_plugins.logitlab_optuna_sweeper._study import Settings

        self.settings = Settings.checked(
            sampler, direction, storage, study_name, n_trials, n_jobs, params, pruner, report_every, asynchronous
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
        settings, pruning = self.settings, None
        if settings.pruning:  # refused before any job when the sweep metric cannot be reported per epoch
            metric = self.config.sweep.metric  # several objectives: a list
            streamed = self.config.get("data", {}).get("chunk_rows") is not None
            score = settings.per_epoch_score(
                metric if isinstance(metric, str) else OmegaConf.to_container(metric), streamed
            )
            pruner = OmegaConf.to_container(self.config.hydra.sweeper.pruner, resolve=True)
            assert isinstance(pruner, dict)
            pruning = _study.Pruning(score, {str(key): value for key, value in pruner.items()})
            settings = settings.with_shared_storage(sweep_dir, self.launcher)
        metric = self.config.sweep.metric if "sweep" in self.config else None  # several objectives: a list
        objectives = [str(m) for m in metric] if isinstance(metric, ListConfig) else [str(metric)] if metric else []
        sampler = self.config.hydra.sweeper.sampler
        _study.optimize(settings, arguments, self.launcher, sweep_dir, sampler, pruning, objectives)
