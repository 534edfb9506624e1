"""Hydra callbacks: the sweep's MLflow parent run is made before the jobs start and finished after.

Hydra calls `on_multirun_start`/`on_multirun_end` in the launching process, whatever the launcher, so the
store, the experiment and the parent run exist before any (possibly parallel) job tries to use them. Hydra
turns an exception raised in a callback into a warning and carries on (the jobs would run untracked); so
these stop the sweep with one line before its first job, or record what went wrong after the jobs in
`sweeps.state` (the parent ends FAILED with the reason) for `sweep.main` to end the command with one line.
"""

from __future__ import annotations

import functools
import logging
import secrets
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from logitlab import cluster, finishing
from logitlab import config as settings
from logitlab.cli import debug, fail, remember_interrupts
from logitlab.errors import ConfigError, LogitlabError, TrackingError
from logitlab.sweeps import job as sweep_job
from logitlab.sweeps import relay
from logitlab.sweeps.state import STATE, Counted, SweepSections

if TYPE_CHECKING:
    from logitlab.tracking.sweeps import Parent, SweepSummary

log = logging.getLogger(__name__)

# Hydra turns an exception in any callback (ours, or one added with +hydra.callbacks) into this warning and
# carries on: a sweep would run on untracked, or end as if its summary were made. It is an error in every
# process that runs these callbacks (the sweep's, and each job's: joblib and submitit pickle the callbacks),
# whatever PYTHONWARNINGS says; `sweep.main` ends the command with it in one line.
CALLBACK_FAILED = r"Callback \w+\.\w+ raised "
# The Optuna sweeper's figures of its study, in the sweep folder (`logitlab_optuna_sweeper._study.FIGURES`)
STUDY_FIGURES = "optuna"
warnings.filterwarnings("error", message=CALLBACK_FAILED, category=UserWarning)


@functools.cache
def process_tag() -> str:
    """Six hex digits drawn once per process (`${logitlab.unique:}`): sweeps started in the same second, by a
    script or CI, never share a folder."""
    return secrets.token_hex(3)


def _inside_project(key: str, path: str) -> None:
    """logitlab writes only inside the project: refuse a run or sweep directory that resolves elsewhere."""
    try:
        settings.inside_project(key, path)
    except LogitlabError as err:  # raised in a callback, Hydra would only warn
        fail(str(err))


class TrackingCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # A single run (no -m) too: SIGTERM must end its MLflow run KILLED, as Ctrl-C does.
        remember_interrupts()
        _inside_project("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember_interrupts()
        _inside_project("hydra.sweep.dir", config.hydra.sweep.dir)
        STATE.clear()
        from logitlab.tracking import store

        try:  # a metric name no job could rank by, or no cluster to submit to, stops the sweep here
            sections = STATE.sections = SweepSections(
                sweep=settings.sweep_config(_section(config, "sweep")),
                mlflow=settings.mlflow_config(_section(config, "mlflow")),
            )
            launcher = str(config.hydra.launcher.get("_target_", ""))
            if cluster.is_slurm_launcher(launcher):
                cluster.use_slurm_config(settings.project_root())
            jobs_here = _runs_jobs_here(launcher)
            relayed = jobs_here and relay.relays(sections.mlflow, sections.sweep.resume)
            if jobs_here and not relayed:
                _prepare_helper(config, sections.mlflow)
            STATE.sweep_dir = Path(config.hydra.sweep.dir)
            _claim(STATE.sweep_dir)
            if relayed:  # the helper opens the store and the parent while the jobs start (`sweeps.relay`)
                _hand_over_parent(config, sections)
                return
            parent = store.patiently(lambda: _open_parent(config, sections))
        except LogitlabError as err:  # stop before any job runs
            finishing.stop()
            fail(str(err))
        except Exception as err:  # any other failure too: a tracked sweep never runs untracked
            finishing.stop()
            if debug():
                raise
            fail(f"sweep not started: its MLflow parent run could not be opened: {_reason(err)}")
        if parent is not None:
            STATE.parent = parent
            log.info("sweep parent run %s in experiment '%s' (%s)", parent.run_id, parent.experiment_name, parent.uri)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            _summarise(config)
        except Exception as err:  # the jobs' runs stay; the parent ends FAILED with the reason
            finishing.stop()
            STATE.summary_error = _reason(err)
            try:
                _end_parent_early("FAILED", f"sweep summary failed: {STATE.summary_error}")
            except Exception as end_err:  # left RUNNING: `sweep.resume` ends it
                log.error("sweep parent run not ended FAILED: %s", _reason(end_err))
            if debug():
                raise
        finally:
            finishing.close()


def _hand_over_parent(config: DictConfig, sections: SweepSections) -> None:
    """The parent run made by the helper, first, then the helper's drawing imports (`finishing.prepare`)."""
    overrides = settings.without_resume(config.hydra.overrides.task)
    relay.start(sections.mlflow, Path(config.hydra.sweep.dir), overrides, swept_keys(config), not _is_grid(config))
    finishing.prepare()
    if sections.mlflow.log_model:
        finishing.hand_over(relay.prepare_model_logging, label="the figure helper's start")


def _prepare_helper(config: DictConfig, mlflow_cfg: settings.MlflowConfig) -> None:
    """Start the figure helper; in a tracked sweep, first on the shared stages of the sweep's own config (the
    jobs' own where the sweep varies no upstream key; else perhaps no job's, and the jobs make theirs), which
    the first job would otherwise make after this process has spent ~2.6 s importing MLflow and opening the
    store."""
    if not mlflow_cfg.enabled:
        finishing.prepare()
        return
    task = OmegaConf.masked_copy(config, [str(key) for key in config if key != "hydra"])
    try:
        params = OmegaConf.to_container(task, resolve=True)
    except Exception:  # an interpolation the jobs' own config may resolve: they make their stages
        finishing.prepare()
        return
    finishing.prepare(_warm_shared, params)


def _warm_shared(params: dict[str, Any]) -> None:
    """In the helper (sent by name: this process need not import the stages before its first job)."""
    from logitlab.sweeps.executor import warm_shared

    warm_shared(params)


def _runs_jobs_here(launcher_target: str) -> bool:
    """Whether the launcher runs the jobs in this process (ours: `runs_jobs_here`), so that the figure helper
    can start with the sweep."""
    try:
        launcher = get_class(launcher_target)
    except Exception:  # not importable: Hydra names it in its own error when it instantiates the launcher
        return False
    return bool(getattr(launcher, "runs_jobs_here", False))


SWEEP_LOCK = ".sweep.lock"
# The lock on its sweep folder this process holds while its sweep runs (released when the process ends).
_claimed: list[Any] = []


def _claim(sweep_dir: Path) -> None:
    """One running sweep per folder: a second sweep given the folder of one still running (the same
    `hydra.sweep.dir`) stops here, before it could overwrite the jobs' hand-over or mix their folders."""
    from filelock import FileLock, Timeout

    sweep_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(sweep_dir / SWEEP_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"config key 'hydra.sweep.dir': {sweep_dir} is in use by another sweep that is still running; give "
            "each sweep its own folder (the default one is)"
        ) from None
    _claimed.append(lock)


def _reason(err: BaseException) -> str:
    return settings.one_line(str(err)) or type(err).__name__


def _open_parent(config: DictConfig, sections: SweepSections) -> Parent | None:
    """The sweep's parent run: a new one, or with `sweep.resume` the stopped sweep's; None when untracked."""
    cfg, sweep_cfg = sections.mlflow, sections.sweep
    untracked = f"config key '{settings.RESUME_KEY}': resuming needs the stopped sweep's tracking store, and"
    if not cfg.enabled:
        if sweep_cfg.resume:
            raise ConfigError(f"{untracked} tracking is off (mlflow.enabled=false)")
        return None
    from logitlab.tracking import store, sweeps

    tracker = store.connect(cfg)
    if tracker is None:
        if sweep_cfg.resume:
            raise ConfigError(f"{untracked} it is unreachable")
        return None
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    overrides = settings.without_resume(config.hydra.overrides.task)
    varied, numbered = swept_keys(config), not _is_grid(config)
    if not sweep_cfg.resume:
        return sweeps.start_sweep(tracker, sweep_dir, overrides, varied, numbered)
    from logitlab.tracking import resume

    parent = resume.resume_sweep(tracker, sweep_dir, sweep_cfg.resume, overrides, sweep_cfg.metrics, varied, numbered)
    log.info("resuming sweep %s: %d of its jobs FINISHED already", parent.run_id, len(parent.finished_jobs))
    _continue_study(config.hydra.get("sweeper", {}))
    return parent


def _continue_study(sweeper: DictConfig) -> None:
    """A resumed Optuna sweep goes on with its persistent study (`hydra.sweeper.storage`, `study_name`): the
    trials its stop left RUNNING are marked FAIL, and the sweeper's new trials join the ones that ended."""
    if "n_trials" not in sweeper:  # not an Optuna sweep
        return
    if not sweeper.get("storage"):
        log.warning("hydra.sweeper.storage is null: the stopped sweep's Optuna study was in its memory only")
        return
    import optuna
    from optuna.trial import TrialState

    try:
        study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage)
    except KeyError:  # the stopped sweep never created it
        return
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
    log.info("Optuna study '%s': %d trials, %d left RUNNING now FAIL", study.study_name, len(study.trials), len(stale))


def _complete_best_job(sweep_dir: Path, best: dict[str, Any] | None, mlflow_cfg: settings.MlflowConfig) -> None:
    """An untracked sweep's best job gets the figures its light jobs left out (`mlflow.child_artifacts: best`);
    one it cannot draw is a warning: the sweep's results stand."""
    if best is None or mlflow_cfg.child_artifacts != "best":
        finishing.settle_ahead(None)
        return
    from logitlab import runs

    try:
        runs.complete_best_job(sweep_dir / best["job"])
    except LogitlabError as err:
        log.warning("the best job's figures: %s", err)


def _summarise(config: DictConfig) -> None:
    """Wait for the helper's figures, give the best child what it lacks (figures, model) and the parent the same,
    then end the parent with the summary (tracked) or count the jobs' files. The helper draws the best child's
    figures and the summary's plots meanwhile, when it runs (`finishing`)."""
    assert STATE.sections is not None  # on_multirun_start validated them, or stopped the sweep
    sweep_cfg, mlflow_cfg = STATE.sections.sweep, STATE.sections.mlflow
    sweep_dir = Path(config.hydra.sweep.dir)
    jobs = sweep_job.outcomes(sweep_dir)
    untracked = sweep_job.best_of(jobs, sweep_cfg.direction)
    ended = _relayed_summary(sweep_cfg, mlflow_cfg, sweep_dir) if finishing.tracking() else None
    if ended is not None:
        finishing.drain()  # what failed of the jobs' tracking, logged
        finishing.close()
    elif STATE.parent is None:  # untracked: the best job's figures, then nothing more for the helper
        _complete_best_job(sweep_dir, untracked, mlflow_cfg)
        finishing.drain()
        finishing.close()
    else:
        finishing.drain()
    failures = [job.get("error", "") for job in jobs if job["status"] not in ("FINISHED", "PRUNED")]
    pruned = sum(job["status"] == "PRUNED" for job in jobs)
    finished = len(jobs) - len(failures) - pruned
    counted = STATE.counted = Counted(finished, len(failures), next(iter(failures), ""), pruned)
    best, best_metrics = "none", dict[str, Any]()
    if untracked:
        best = f"{untracked['metric']:.4f} (job {untracked['job']} in {config.hydra.sweep.dir})"
        best_metrics = sweep_job.job_metrics(sweep_dir / untracked["job"])
    from logitlab.tracking import sweeps

    if (lost := sweeps.tracking_lost(sweep_dir)) and (parent := STATE.parent):
        STATE.lost = (
            f"sweep: {lost['error']} in job {lost['job']}; {counted.finished} jobs finished, {counted.failed} "
            f"failed or did not start; once it answers again, go on with the same overrides and "
            f"sweep.resume={parent.run_id}"
        )
        _end_parent_early("FAILED", "the tracking server stopped answering")
        return
    if parent := STATE.parent:  # left open until it FINISHED: a failure ends it FAILED
        from logitlab import runs as later_runs
        from logitlab.sweeps import summary  # pandas: the summary's own import (matplotlib is the plots')

        later_runs.complete_best(parent, sweep_cfg, mlflow_cfg.log_model)  # before the registry takes its model
        runs = sweeps.summary_runs(parent)
        out_dir = sweep_dir / "summary"
        summary.write(runs, sweep_cfg, out_dir)
        finishing.drain(raise_failure=True)  # the summary's plots, before the parent logs them
        finishing.close()
        finished = sweeps.finish_sweep(
            parent,
            runs,
            sweep_cfg,
            model_name=mlflow_cfg.registered_model_name if mlflow_cfg.register else None,
            out_dir=out_dir,
            search_metrics={"busy_fraction": STATE.workers.busy_fraction} if STATE.workers else {},
            study_dir=sweep_dir / STUDY_FIGURES,
        )
        STATE.parent = None
        ended = finished
    if ended is not None and ended.best_value is not None:
        best = f"{ended.best_value:.4f} (run {ended.best_run_id}); parent run {ended.parent_run_id}"
        best_metrics = ended.best_metrics
    log.info(
        "sweep finished: %d jobs finished, %s%d failed; best %s = %s",
        counted.finished,
        f"{counted.pruned} pruned ({counted.pruned / len(jobs):.0%}), " if counted.pruned else "",
        counted.failed,
        f"by {sweep_cfg.champion} of {', '.join(sweep_cfg.metrics)}: {sweep_cfg.metric}"
        if sweep_cfg.several
        else sweep_cfg.metric,
        best,
    )
    if workers := STATE.workers:
        log.info(
            "search: %d trial%s in flight at a time, busy %.0f%% of its %.1f s (busy_fraction %.3f)",
            workers.slots,
            "s" if workers.slots > 1 else "",
            100 * workers.busy_fraction,
            workers.wall_s,
            workers.busy_fraction,
        )
    # model.tol=0 runs exactly max_iter epochs: nothing to converge to
    if best_metrics.get("converged") == 0 and _section(config, "model").get("tol", 0) > 0:
        log.warning(
            "the best job did not converge in its %d epochs: raise model.max_iter (or its learning rate) before "
            "trusting its %s",
            best_metrics["n_iter"],
            sweep_cfg.metric,
        )


def _relayed_summary(
    sweep_cfg: settings.SweepConfig, mlflow_cfg: settings.MlflowConfig, sweep_dir: Path
) -> SweepSummary | None:
    """The summary the helper makes of the sweep it tracked (`relay.finish`); None when it was untracked (its
    store optional and away)."""
    search_metrics = {"busy_fraction": STATE.workers.busy_fraction} if STATE.workers else {}
    args = (sweep_cfg, mlflow_cfg, sweep_dir, search_metrics, finishing.deferred(), sweep_dir / STUDY_FIGURES)
    try:
        summary: SweepSummary | None = finishing.hand_over(relay.finish, *args, label="the sweep's summary").result()
        relay.raise_if_not_opened()
    except (BrokenProcessPool, TrackingError) as err:  # the parent the helper made, if any, ends FAILED here
        from logitlab.tracking import sweeps

        STATE.parent = sweeps.read_parent(sweep_dir)
        if isinstance(err, BrokenProcessPool):
            raise TrackingError(f"the helper process that tracked this sweep stopped ({err})") from None
        raise
    return summary


def _section(cfg: DictConfig, name: str) -> Any:
    return OmegaConf.to_container(cfg[name], resolve=True)


def end_open_sweep(status: str, reason: str) -> None:
    """End the open sweep's parent and its RUNNING children: KILLED on SIGINT/SIGTERM, FAILED on an error
    that escaped the jobs. One quick attempt: a command on its way out does not wait out an outage (what it
    could not end, `sweep.resume` ends)."""
    stuck = finishing.tracking() and not _end_relayed(status, reason)
    finishing.stop(terminate=stuck)
    _end_parent_early(status, reason)


# How long a stopped sweep waits for the helper to end its runs (`relay.end_early`), after what it was
# handed before: a job's results, or the store being created (~2.5 s).
RELAY_END_WAIT_S = 20.0


def _end_relayed(status: str, reason: str) -> bool:
    """The helper ends the parent and its running children once it has done what it was handed (True); a helper
    that is gone or stuck (a store locked by another process) leaves it to this process (`_end_parent_early`,
    the parent read from the sweep folder), and is terminated rather than waited for."""
    from concurrent.futures import TimeoutError as FutureTimeout

    try:
        finishing.hand_over(relay.end_early, status, reason, label="the sweep's end").result(RELAY_END_WAIT_S)
    except (Exception, FutureTimeout) as err:
        log.warning("sweep %s: the helper did not end its runs (%s); ending them here", reason, _reason(err))
        if STATE.sweep_dir is not None:
            from logitlab.tracking import sweeps

            STATE.parent = sweeps.read_parent(STATE.sweep_dir)
        return False
    return True


def _end_parent_early(status: str, reason: str) -> None:
    parent, STATE.parent = STATE.parent, None
    if parent is None:
        return
    from logitlab.tracking import store, sweeps

    try:
        with store.one_attempt():
            sweeps.end_sweep_early(parent, status, reason)
    except Exception as err:
        if not store.unreachable(err):
            raise
        log.warning("sweep %s: parent run %s not ended %s: the store did not answer", reason, parent.run_id, status)
        return
    log.warning("sweep %s: parent run %s and its running jobs ended %s", reason, parent.run_id, status)


def swept_keys(cfg: DictConfig) -> list[str]:
    """The keys a sweep varies: its sweep overrides (`a=1,2`, `a=choice(...)`) and `hydra.sweeper.params`."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.task))
    keys = [str(o.key_or_group) for o in overrides if o.is_sweep_override()]
    keys += [str(key) for key in cfg.hydra.get("sweeper", {}).get("params") or {}]
    return list(dict.fromkeys(keys))


def _is_grid(cfg: DictConfig) -> bool:
    """Hydra's basic sweeper: every job a distinct combination (a search may try one twice)."""
    return str(cfg.hydra.get("sweeper", {}).get("_target_", "")).endswith(".BasicSweeper")
