"""A sweep's progress bar (`hydra.callbacks.progress`): finished jobs on an interactive terminal."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def sweep_size(cfg: DictConfig) -> int | None:
    """Number of jobs: Optuna's n_trials, else the product of the sweep overrides' lengths."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = cfg.hydra.get("sweeper", {})
    if "n_trials" in sweeper:
        return int(sweeper.n_trials)
    try:
        overrides = OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.task))
        return math.prod(len(list(o.sweep_string_iterator())) if o.is_sweep_override() else 1 for o in overrides)
    except Exception:  # an exotic sweep (ranges with floats...): a bar without a total still helps
        return None


class ProgressCallback(Callback):
    """A bar of finished jobs on an interactive terminal, quiet in CI and in logs.

    Sequential launchers run jobs in this process, so `on_job_end` sees them all; parallel launchers have
    their own progress output (`hydra.launcher.verbose` for joblib).
    """

    def __init__(self) -> None:
        self.bar: Any = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if sys.stderr.isatty() and not os.environ.get("CI"):
            from tqdm import tqdm

            self.bar = tqdm(total=sweep_size(config), desc="sweep", unit="job", dynamic_ncols=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
