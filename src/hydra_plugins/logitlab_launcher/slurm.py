"""The SLURM launcher (`hydra/launcher=slurm`): hydra-submitit-launcher's, with every job accounted for.

- **A job SLURM ended without a result** (its time limit, `scancel`, a node that died) is a failed job like
  any other: its run ends FAILED with SLURM's state as the reason (a FAILED child is made for it if it never
  opened one) and the sweeper gets NaN. hydra-submitit-launcher would raise and end the whole sweep.
- **Each job's SLURM log** (submitit's stdout and stderr files) is attached to its run under `slurm/` once the
  job has ended, so the run holds the whole log, the scheduler's last lines included. The job tags its run
  `slurm.job_id` itself (`logitlab.tracking.sweeps`), which is how the two are matched.
- **Ctrl-C or SIGTERM** of the sweep cancels its SLURM jobs: nothing keeps running on the cluster for a sweep
  that has ended.
- **A resumed sweep** (`sweep.resume`) does not submit the jobs that FINISHED before it stopped.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# Keys of the launcher's config that configure the executor rather than each job's sbatch options.
EXECUTOR_KEYS = ("submitit_folder", "max_num_timeout")


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=self.params["submitit_folder"],
            slurm_max_num_timeout=self.params["max_num_timeout"],
        )
        shared = set(OmegaConf.structured(BaseQueueConf).keys())  # the rest are sbatch options: slurm_<key>
        executor.update_parameters(
            **{
                key if key in shared else f"slurm_{key}": value
                for key, value in self.params.items()
                if key not in EXECUTOR_KEYS
            }
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        nums = range(initial_job_idx, initial_job_idx + len(job_overrides))
        returns = dict(_finished_before(sweep_dir, dict(zip(nums, map(list, job_overrides), strict=True))))
        todo = {num: list(o) for num, o in zip(nums, job_overrides, strict=True) if num not in returns}
        for num, overrides in todo.items():
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        jobs = (
            executor.map_array(
                self,
                list(todo.values()),
                ["hydra.sweep.dir"] * len(todo),
                list(todo),
                [f"job_id_for_{num}" for num in todo],
                [Singleton.get_state()] * len(todo),
            )
            if todo
            else []
        )
        log.info(f"Submitted {len(jobs)} SLURM jobs: {', '.join(job.job_id for job in jobs)}")
        try:
            for job, (num, overrides) in zip(jobs, todo.items(), strict=True):
                returns[num] = _outcome(job, num, overrides, sweep_dir)
        except BaseException:  # Ctrl-C, SIGTERM: nothing may run on for a sweep that ended
            for job in jobs:
                if not job.done():
                    job.cancel(check=False)
            raise
        _attach_logs(sweep_dir, jobs)
        return [returns[num] for num in nums]


def _finished_before(sweep_dir: Path, jobs: dict[int, list[str]]) -> Iterator[tuple[int, JobReturn]]:
    """A resumed sweep's jobs that FINISHED before it stopped: answered here, not submitted again."""
    from logitlab.sweeps import job as sweep_job
    from logitlab.tracking import sweeps

    parent = sweeps.read_parent(sweep_dir)
    for num, overrides in jobs.items():
        if parent is not None and (values := sweep_job.finished_before(parent, num, overrides)) is not None:
            sweep_job.record_finished_before(sweep_dir, num, values)
            yield num, _returned(overrides, sweep_job.as_return(values))


def _returned(overrides: list[str], value: float | tuple[float, ...]) -> JobReturn:
    """A job's return for the sweeper, for a job this launcher answered itself."""
    result = JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=value)
    result.cfg = OmegaConf.create({})
    return result


def _outcome(job: Any, num: int, overrides: list[str], sweep_dir: Path) -> JobReturn:
    """The job's return, or, for a job SLURM ended without one, a failed job recorded with SLURM's reason."""
    from submitit.core.utils import UncompletedJobError

    try:
        return job.results()[0]
    except UncompletedJobError as err:
        from logitlab.sweeps import job as sweep_job

        reason = f"SLURM job {job.job_id} ended {job.state} without a result: {_last_line(err)}"
        log.error("job %s failed: %s", num, reason)
        sweep_job.record_lost(sweep_dir, num, overrides, reason, job.job_id)
        return _returned(overrides, math.nan)


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and set(line.strip()) != {"-"}]
    return lines[-1] if lines else type(err).__name__


def _attach_logs(sweep_dir: Path, jobs: list[Any]) -> None:
    from logitlab.tracking import sweeps

    parent = sweeps.read_parent(sweep_dir)
    if parent is not None:
        sweeps.attach_job_logs(parent, {job.job_id: [job.paths.stdout, job.paths.stderr] for job in jobs})
