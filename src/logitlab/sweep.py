"""`python -m logitlab.sweep [-m] key=value ...`: the pipeline as a Hydra app over conf/.

Each job runs the stage declarations in process (`sweeps.executor`, upstream results memoised) inside an
MLflow child run of the sweep's parent (`sweeps.job`). A failed job is recorded FAILED and reported to the
sweeper as NaN, so one bad learning rate does not end the sweep; a single run (no -m) with bad input ends
with one line and exit 2, and so does a sweep in which no job finished.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any, cast

import hydra
from hydra._internal.hydra import Hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from logitlab import config
from logitlab.cli import debug, exit_interrupted, fail, hydra_message
from logitlab.errors import LogitlabError
from logitlab.sweeps import job as sweep_job
from logitlab.sweeps import parent
from logitlab.sweeps.state import STATE, SweepState

log = logging.getLogger("logitlab.sweep")

# `${logitlab.unique:}` in conf/config.yaml's run and sweep folders. Cached like Hydra's `now`: Hydra copies a
# sweep's resolved values into each job's config, and joblib and submitit pickle them with it (and the
# resolver with Hydra's state), so every job sees the launching process's folder, whichever process runs it.
if not OmegaConf.has_resolver("logitlab.unique"):
    OmegaConf.register_new_resolver("logitlab.unique", parent.process_tag, use_cache=True)


def job(cfg: DictConfig) -> sweep_job.JobValue:
    """One job: the sweep metric on success, NaN when the job failed (its run and job.json say why)."""
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    info = sweep_job.Job(
        num=hydra_cfg.job.num if multirun else 0,
        overrides=config.without_resume(hydra_cfg.overrides.task),
        job_dir=Path(hydra_cfg.runtime.output_dir),
        sweep_dir=Path(hydra_cfg.sweep.dir) if multirun else None,
    )
    try:
        params = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as err:  # an interpolation that does not resolve
        if not multirun:
            raise
        sweep_job.record_failure(Path(hydra_cfg.sweep.dir), info.num, info.overrides, hydra_message(err))
        return math.nan
    try:
        return sweep_job.run(params, info)
    except LogitlabError as err:
        if not multirun:
            if debug():
                raise
            fail(str(err))  # exits here: Hydra would add its own "Error executing job" line
        log.error("job %s failed: %s", info.num, err)
    except Exception:
        if not multirun:
            raise
        log.exception("job %s failed", info.num)
    return math.nan


def _raised_by_hydra(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and f"{os.sep}hydra{os.sep}" in frames[-1].filename


app = hydra.main(version_base=None, config_path=str(config.project_root() / "conf"), config_name="config")(job)


def _small_pages_for_numpy() -> None:
    """numpy's arrays of 4 MiB and more without huge pages (`NUMPY_MADVISE_HUGEPAGE=0`, numpy's own switch, read
    when numpy is imported: after this, in this process and the figure helper; a value set by the user stands).
    A sweep's first job writes ~150 MB of new arrays (the folds' one-hot frames); on the 2-core AMD EPYC VM of
    docs/performance.md a huge page's first touch there cost more than its 512 small pages' (preprocess's system
    time 0.70 s -> 0.45 s), and the 10-C CV sweep took 4.30 s against 4.46 s (medians of six interleaved pairs).
    Passes over a fold stream through memory in order, where huge pages' fewer TLB misses gain little."""
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")


def _mode_known_from_the_command_line() -> None:
    """With -m the sweep is a multirun whatever `hydra.mode` says (Hydra warns and overrides a RUN), yet Hydra
    composes the whole config once only to read that key, then composes it again to run (hydra-ecosystem/hydra
    #3440): ~80 ms of a sweep's start. conf/ never sets `hydra.mode` (tests/test_config.py), so the answer,
    None, is given without composing."""
    if any(arg in ("-m", "--multirun") for arg in sys.argv[1:]):
        setattr(Hydra, "get_mode", lambda self, config_name, overrides: None)  # noqa: B010


def main() -> None:
    # Let Hydra's own errors (bad override, unknown group option) reach us, to be told in one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    _small_pages_for_numpy()
    _mode_known_from_the_command_line()
    try:
        app()
    except (LogitlabError, HydraException, OmegaConfBaseException) as err:
        parent.end_open_sweep("FAILED", "ended by an error outside the jobs")
        if debug():
            raise
        fail(hydra_message(err))
    except ValueError as err:  # Hydra's own command-line checks (e.g. --cfg with -m)
        parent.end_open_sweep("FAILED", "ended by an error outside the jobs")
        if debug() or not _raised_by_hydra(err):
            raise
        fail(str(err))
    except UserWarning as err:  # a callback failed (`parent.CALLBACK_FAILED`)
        parent.end_open_sweep("FAILED", f"ended by an error outside the jobs: {config.one_line(str(err))}")
        if debug() or not re.match(parent.CALLBACK_FAILED, str(err)):
            raise
        fail(str(err))
    except KeyboardInterrupt:
        parent.end_open_sweep("KILLED", "interrupted")
        if debug():
            raise
        exit_interrupted()
    finally:
        parent.end_open_sweep("FAILED", "ended by an error outside the jobs")
    _exit_on_outcome(STATE)


def _exit_on_outcome(state: SweepState) -> None:
    """A sweep that lost its tracking server, could not be summarised, or in which no job finished, is an error."""
    if state.lost:
        fail(state.lost)
    if state.summary_error:
        fail(f"sweep summary failed: {state.summary_error}")
    if state.counted and state.counted.finished == 0:
        counted = state.counted
        fail(f"sweep: none of its {counted.failed} jobs finished; the first failed with: {counted.first_error}")


if __name__ == "__main__":
    try:
        main()
    finally:
        # The interpreter's teardown then skips its final collections over every object of mlflow, matplotlib,
        # scikit-learn and pandas (0.5-1.5 s after the summary line); atexit handlers (logging's flush, MLflow's)
        # and closing files still run, and every run and output is complete by now.
        gc.freeze()
