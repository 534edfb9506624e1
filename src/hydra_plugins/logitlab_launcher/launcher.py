"""The default sweep launcher: Hydra's basic launcher (jobs one after another in this process), made cheap
per job and unable to lose a job.

- **Config once per group choice.** Hydra composes every job from conf/ (~0.12 s a job here), twice with
  the basic sweeper (it composes each job before launching, to check it composes). Jobs that differ only
  in plain values (`model.C=0.1,1,10`) share one composition per set of group choices (`data=`, `model=`,
  `+`/`~`/`hydra.` overrides): a copy of it with the values applied as Hydra applies them (~8 ms). The
  launcher gives the sweep's Hydra context a config loader that composes this way, so the sweeper's check
  is cheap too, and the launcher takes the composition the check made rather than a new one;
  tests/test_pipeline.py proves the result equals Hydra's own composition.
- **A job's config copied once.** `_run_job` is Hydra's `run_job` with one copy of the config where Hydra
  makes four (~15 ms of its ~23 ms a job): the same `.hydra/` files, logging, callbacks and outcome.
- **A job that cannot be composed** when it is launched (an Optuna trial) is a failed job, recorded FAILED
  like any other. (The basic sweeper's check ends a grid sweep with such a job before any job runs.)
- **Figures off the job's path.** The jobs run here, so finishing work (figures) goes to a helper process
  (`logitlab.finishing`), started with the sweep, while the next job fits; the sweep waits for it before its
  summary.
- **What the first job left, frozen.** Python's full collections walk every object the process holds (~190,000
  once scikit-learn, pandas and Hydra are in, 60-85 ms a walk); after the first job they are frozen
  (`_freeze_once`).
- **Regularisation paths in order.** Jobs that differ only in `model.C` run in increasing C, so that with
  `model.warm_start` each starts from its neighbour's solution (`logitlab.warm_starts`); their numbers, folders
  and the order of their results stay Hydra's.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import version
from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_loader import ConfigLoader
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    _flush_loggers,
    _save_config,
    configure_log,
    env_override,
    filter_overrides,
    setup_globals,
)
from hydra.errors import HydraException
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)

PENALTY_STRENGTH_KEY = "model.C"  # the key of a regularisation path (`path_order`)
MAX_CHECKED = 256  # compositions the sweeper's check made, kept for the launcher (~130 KiB each)
_frozen = False  # `_freeze_once` froze this process's objects


class CachingLoader:
    """A sweep's config loader: Hydra's, with `load_sweep_config` composing once per set of structural
    overrides and applying plain values to a copy. Everything else is Hydra's own."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.bases: dict[tuple[int, tuple[str, ...]], DictConfig] = {}
        # what the sweeper's check composed, until the launcher takes it (`take_sweep_config`)
        self.checked: OrderedDict[tuple[int, tuple[str, ...]], DictConfig] = OrderedDict()
        self.parser = OverridesParser.create()
        # each override string parsed once (ANTLR: ~0.2 ms each, a job's ten twice): Hydra only reads them
        self.parsed: dict[str, tuple[Override, bool]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        for line in sweep_overrides:
            if line not in self.parsed:
                (override,) = self.parser.parse_overrides([line])
                self.parsed[line] = (override, self._is_plain_value(override))
        parsed = [self.parsed[line] for line in sweep_overrides]  # (override, whether a plain value)
        values = [o for o, plain in parsed if plain]
        structural = tuple(str(o.input_line) for o, plain in parsed if not plain)
        key = (id(master_config), structural)
        if key not in self.bases:
            self.bases[key] = self.loader.load_sweep_config(master_config, list(structural))
        cfg = copy.deepcopy(self.bases[key])
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        app = [o for o, _ in parsed if not o.is_hydra_override()]
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.task = [str(o.input_line) for o in app]
            cfg.hydra.job.override_dirname = _overrides_dirname(app, cfg)
        self.checked[(id(master_config), tuple(sweep_overrides))] = cfg
        while len(self.checked) > MAX_CHECKED:
            self.checked.popitem(last=False)
        return cfg

    def take_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The launcher's composition of a job: the one the basic sweeper's check made for the same overrides
        just before (it composes every job of a batch, to fail early, and drops the result), else a new one;
        either way handed out once more only."""
        key = (id(master_config), tuple(sweep_overrides))
        if key not in self.checked:
            self.load_sweep_config(master_config, sweep_overrides)
        return self.checked.pop(key)

    def _is_plain_value(self, override: Override) -> bool:
        """`key=value` on a key that is not a config group: applying it cannot change which configs compose."""
        if override.type != OverrideType.CHANGE or override.package is not None or override.is_hydra_override():
            return False
        return not self.loader.repository.group_exists(override.key_or_group)  # type: ignore[attr-defined]


class Launcher(BasicLauncher):
    runs_jobs_here = True  # the sweep's callback starts the figure helper early for such a launcher

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """The sweep's Hydra context (shared with the sweeper) gets the caching config loader."""
        if not isinstance(hydra_context.config_loader, CachingLoader):
            hydra_context.config_loader = CachingLoader(hydra_context.config_loader)  # type: ignore[assignment]
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        from logitlab import finishing
        from logitlab.tracking import sweeps

        parent = sweeps.read_parent(sweep_dir)
        finishing.start(parent.uri if parent is not None else None)
        log.info(f"Launching {len(job_overrides)} jobs locally")
        runs: dict[int, JobReturn] = {}
        for position in path_order(job_overrides):
            idx, overrides = initial_job_idx + position, job_overrides[position]
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            loader = self.hydra_context.config_loader
            assert isinstance(loader, CachingLoader)
            try:
                sweep_config = loader.take_sweep_config(self.config, list(overrides))
            except (HydraException, OmegaConfBaseException, ValueError) as err:
                runs[position] = _not_composed(sweep_dir, idx, list(overrides), err)
                continue
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            runs[position] = _run_job(self.hydra_context, self.task_function, sweep_config)
            _freeze_once()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [runs[position] for position in range(len(job_overrides))]


def _run_job(hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> JobReturn:
    """Hydra's `run_job` (`hydra.core.utils`, 1.3) for a job of this process, with one copy of the config where
    Hydra makes four, ~15 ms of its ~23 ms a job: the Hydra node is copied once (`HydraConfig.set_config`, then
    the job's folder set in that copy too, where Hydra set it again), kept as the job's (Hydra copied it once
    more), and the task gets a copy of the application's keys (Hydra copied the whole config, Hydra node
    included, to delete it). The same `.hydra/` files, logging, callbacks, working folder and outcome."""
    callbacks = hydra_context.callbacks
    old_cwd = os.getcwd()
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    hydra_config.set_config(config)
    output_dir = os.path.abspath(
        os.path.join(
            str(OmegaConf.select(config, "hydra.sweep.dir")), str(OmegaConf.select(config, "hydra.sweep.subdir"))
        )
    )
    job_hydra = hydra_config.cfg
    assert isinstance(job_hydra, DictConfig)
    for runtime in (config.hydra.runtime, job_hydra.hydra.runtime):
        with read_write(runtime), open_dict(runtime):
            runtime.output_dir = output_dir
    chdir = False
    try:
        ret = JobReturn()
        task_cfg = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
        OmegaConf.set_struct(task_cfg, OmegaConf.is_struct(config))
        OmegaConf.set_readonly(task_cfg, OmegaConf.is_readonly(config))
        ret.cfg = task_cfg
        ret.hydra_cfg = job_hydra
        overrides = OmegaConf.to_container(config.hydra.overrides.task)
        assert isinstance(overrides, list)
        ret.overrides = overrides
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        chdir = job_hydra.hydra.job.chdir
        if chdir is None:  # as Hydra decides it (its warning is for version_base < 1.2; the sweep's is None)
            chdir = not version.base_at_least("1.2")
        if chdir:
            os.chdir(output_dir)
        ret.working_dir = os.getcwd()
        configure_log(config.hydra.job_logging, config.hydra.verbose)
        if config.hydra.output_subdir is not None:
            hydra_output = Path(output_dir) / str(config.hydra.output_subdir)
            _save_config(task_cfg, "config.yaml", hydra_output)
            _save_config(job_hydra, "hydra.yaml", hydra_output)
            _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        with env_override(job_hydra.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        hydra_config.cfg = previous
        if chdir:
            os.chdir(old_cwd)


def _freeze_once() -> None:
    """After this process's first job: what it holds then (the modules the job imported, Hydra's and the
    sweep's state, the shared stages' frames kept for the later jobs) out of the cyclic collector's sight
    (`gc.freeze`), so that a full collection walks only what later jobs make. Measured in a 10-job CV sweep:
    full collections 0.24-0.30 s -> 0.07-0.09 s. Once per process: an object frozen that later becomes part of
    an unreachable cycle stays in memory, which is bounded by what the first job left alive."""
    global _frozen
    if not _frozen:  # a flag: gc.get_freeze_count() walks the frozen objects (~10 ms)
        _frozen = True
        gc.freeze()


def path_order(job_overrides: Sequence[Sequence[str]]) -> list[int]:
    """The positions of the jobs in the order to run them: jobs whose overrides differ only in the penalty
    strength together, where the first of them is, in increasing strength value (a value that is not a number
    stays where it is)."""
    first_of_group: dict[tuple[str, ...], int] = {}
    keys = []
    for position, overrides in enumerate(job_overrides):
        prefix = f"{PENALTY_STRENGTH_KEY}="
        rest = tuple(override for override in overrides if not override.startswith(prefix))
        value = next((override[len(prefix) :] for override in overrides if override.startswith(prefix)), None)
        try:
            strength = float(value) if value is not None else 0.0
        except ValueError:
            strength = 0.0
        keys.append((first_of_group.setdefault(rest, position), strength, position))
    return sorted(range(len(job_overrides)), key=keys.__getitem__)


def _overrides_dirname(overrides: list[Override], cfg: DictConfig) -> str:
    settings = cfg.hydra.job.config.override_dirname
    return str(
        get_overrides_dirname(
            overrides=overrides,
            kv_sep=settings.kv_sep,
            item_sep=settings.item_sep,
            exclude_keys=list(settings.exclude_keys),
        )
    )


def _not_composed(sweep_dir: Path, idx: int, overrides: list[str], err: Exception) -> JobReturn:
    """A job Hydra cannot compose: recorded as a failed job, and NaN to the sweeper like every failed job."""
    from logitlab.cli import hydra_message
    from logitlab.sweeps import job as sweep_job

    reason = hydra_message(err)
    log.error("job %s failed: %s", idx, reason)
    sweep_job.record_failure(sweep_dir, idx, overrides, reason)
    result = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=math.nan)
    result.cfg = OmegaConf.create({})
    return result
