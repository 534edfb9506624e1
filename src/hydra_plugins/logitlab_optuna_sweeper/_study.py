"""The study: Hydra sweep overrides become optuna distributions, trials are asked for, launched as Hydra jobs
and told back; a job that failed (it raised, or returned NaN) is told as a failed trial. With `n_jobs` > 1 and
a launcher that runs jobs elsewhere (joblib, submitit, SLURM), `n_jobs` trials are in flight, each its own
`launch` call in a thread of its own; a slot that frees gets the next trial at once (`asynchronous`), so a
cheap trial never waits for an expensive one to end.

Several objectives (`sweep.metric` and `hydra.sweeper.direction` lists): the study has one direction per
objective, each job returns a tuple of values, and the results file holds the best trials (the Pareto front).
After the trials, the study's figures (`write_figures`: optimisation history, parameter importances, parallel
coordinates, one of each per objective) go to `<sweep dir>/optuna/`, which the sweep's parent run logs.

Only optuna's public API: `create_study(load_if_exists=True)`, `Study.ask(fixed_distributions)`, `Study.tell`.
A study in an RDB storage is loaded when it exists, so the same command run again resumes it: the sampler
sees every earlier trial, and `n_trials` more run, from a seed of their own (`resumed_sampler`). Trials asked
for but not told when the command is interrupted are told FAILED, so no trial of ours stays RUNNING in the
storage.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import optuna
from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override, RangeSweep, Transformer
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalChoiceType,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from logitlab.sweeps.state import STATE, WorkerTime

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"  # in the sweep directory, as hydra-optuna-sweeper writes it
FIGURES = "optuna"  # the study's figures, in the sweep directory (`logitlab.sweeps.parent.STUDY_FIGURES`)
DIRECTIONS = ("minimize", "maximize")


# The scores a fit can report per epoch (`model._monitor.EpochReporter`), by the sweep metric they stand for,
# and the direction that metric is optimised in (optuna compares intermediate values in the study's direction).
# A cross-validated fit reports the mean over its folds, fitted side by side (`stages.train.cross_validate`).
PER_EPOCH_SCORES = {
    "val_log_loss": ("loss", "minimize"),
    "val_accuracy": ("accuracy", "maximize"),
    "cv_log_loss_mean": ("loss", "minimize"),
    "cv_accuracy_mean": ("accuracy", "maximize"),
}


@dataclass(frozen=True)
class Settings:
    sampler: optuna.samplers.BaseSampler
    directions: tuple[str, ...]  # one per objective
    storage: str | None
    study_name: str | None
    n_trials: int
    n_jobs: int
    params: dict[str, str]
    pruner: optuna.pruners.BasePruner
    report_every: int
    asynchronous: bool = True

    @property
    def pruning(self) -> bool:
        return not isinstance(self.pruner, optuna.pruners.NopPruner)

    @classmethod
    def checked(
        cls,
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
    ) -> Settings:
        """The sweeper's config, or a HydraException naming the key that is wrong."""
        if isinstance(direction, ListConfig):
            direction = OmegaConf.to_container(direction, resolve=True)
        given = direction if isinstance(direction, list | tuple) else [direction]
        directions = tuple(str(getattr(one, "name", one)).lower() for one in given)
        if not directions or any(one not in DIRECTIONS for one in directions):
            raise HydraException(f"hydra.sweeper.direction: expected minimize or maximize, got {direction!r}")
        if not isinstance(sampler, optuna.samplers.BaseSampler):
            raise HydraException(f"hydra.sweeper.sampler: expected an optuna sampler, got {type(sampler).__name__}")
        pruner = optuna.pruners.NopPruner() if pruner is None else pruner
        if not isinstance(pruner, optuna.pruners.BasePruner):
            raise HydraException(f"hydra.sweeper.pruner: expected an optuna pruner, got {type(pruner).__name__}")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs), ("report_every", report_every)):
            if not isinstance(value, int) or value < 1:
                raise HydraException(f"hydra.sweeper.{key}: expected an integer >= 1, got {value!r}")
        if not isinstance(asynchronous, bool):
            raise HydraException(f"hydra.sweeper.asynchronous: expected true or false, got {asynchronous!r}")
        flat = OmegaConf.to_container(params, resolve=True) if params is not None else {}
        assert isinstance(flat, dict)
        space = {str(k): str(v) for k, v in flat.items()}
        return cls(
            sampler, directions, storage, study_name, n_trials, n_jobs, space, pruner, report_every, asynchronous
        )

    def per_epoch_score(self, metric: Any, streamed: bool = False) -> str:
        """What a trial reports per epoch for the sweep metric, or a HydraException saying why it cannot. A
        `streamed` fit (`data.chunk_rows`) computes its validation loss per epoch, not its accuracy: a pruner
        on the accuracy would never hear from it."""
        if not isinstance(metric, str):  # several objectives (a list)
            raise HydraException(
                "hydra.sweeper.pruner: optuna does not prune a study with several objectives (sweep.metric is a "
                "list); set hydra/sweeper/pruner=none"
            )
        if metric not in PER_EPOCH_SCORES:
            # a cross-validated search's per-epoch scores are fold means; its other scores are not per epoch
            per_epoch = (
                "cv_accuracy_mean or cv_log_loss_mean" if metric.startswith("cv_") else "val_accuracy or val_log_loss"
            )
            raise HydraException(
                f"hydra.sweeper.pruner: a pruner compares a score every trial reports per epoch; sweep.metric="
                f"{metric} is computed once per fit; use sweep.metric={per_epoch}, or pruner=none"
            )
        score, direction = PER_EPOCH_SCORES[metric]
        if (direction,) != self.directions:
            raise HydraException(
                f"hydra.sweeper.direction: {', '.join(self.directions)} for sweep.metric={metric}, which a pruner "
                f"compares as {'an' if score == 'accuracy' else 'a'} {score} ({direction}); "
                f"set sweep.direction={direction}"
            )
        if streamed and score == "accuracy":
            raise HydraException(
                f"hydra.sweeper.pruner: a streamed fit (data.chunk_rows) reports its validation loss per epoch, not "
                f"its accuracy; use sweep.metric=val_log_loss sweep.direction=minimize, or pruner=none (got "
                f"sweep.metric={metric})"
            )
        return score

    def with_shared_storage(self, sweep_dir: str, launcher: Any) -> Settings:
        """A pruned search's study in a storage every job's process reaches: the trial's reports go there and
        the pruner reads the other trials' from there. None (in memory) becomes optuna's journal file in the
        sweep's folder (`logitlab.sweeps.trials.JOURNAL`), which local, joblib and SLURM jobs of the project's
        cluster all reach."""
        from logitlab.sweeps.trials import JOURNAL

        if not self.pruning or self.storage is not None:
            return self
        storage = f"{JOURNAL}{(Path(sweep_dir) / 'optuna.journal').resolve()}"
        where = "on the cluster's nodes only if they share it; else set hydra.sweeper.storage to a server URL"
        shared = where if "slurm" in type(launcher).__module__ else "by every job's process"
        log.info("pruning: the study is kept in %s, reached %s", storage, shared)
        return dataclasses.replace(self, storage=storage)


# ------------------------------------------------------------------------------------------ search space
def search_space(overrides: Sequence[str]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """Sweep overrides as optuna distributions, and plain overrides as values every trial gets. A later
    override of a key replaces an earlier one (the command line replaces `hydra.sweeper.params`)."""
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.get_value_element_as_str()
    return space, fixed


def distribution(override: Override) -> BaseDistribution:
    """`choice` -> categorical; `range` -> int or float with its step (shuffled: categorical);
    `interval` -> float, on a log scale when tagged `log`."""
    value = override.value()
    if override.is_choice_sweep() or (isinstance(value, RangeSweep) and value.shuffle):
        choices = cast(list[CategoricalChoiceType], list(override.sweep_iterator(Transformer.encode)))
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, step, count = value.start, value.step, len(list(override.sweep_iterator()))
        if start is None or count == 0 or step <= 0:
            raise HydraException(f"{override.input_line}: a range must have values in increasing order")
        if isinstance(start, int) and isinstance(step, int):
            return IntDistribution(start, start + step * (count - 1), step=step)
        return FloatDistribution(float(start), float(start + step * (count - 1)), step=float(step))
    if isinstance(value, IntervalSweep):  # Hydra's intervals are of floats (use range for integers)
        assert value.start is not None and value.end is not None
        return FloatDistribution(float(value.start), float(value.end), log="log" in value.tags)
    raise HydraException(f"{override.input_line}: the optuna sweeper takes choice, range or interval sweeps")


# -------------------------------------------------------------------------------------------- pruning
@dataclass(frozen=True)
class Pruning:
    """What a pruned search's jobs report (`Settings.per_epoch_score`) and the pruner that judges it
    (`hydra.sweeper.pruner`, which each job builds again: the study's pruner does not travel with its storage)."""

    score: str
    pruner: dict[str, Any]


def hand_over(
    sweep_dir: Path, job_num: int, settings: Settings, study_name: str, trial: optuna.Trial, pruning: Pruning
) -> None:
    """Job `job_num` learns its trial (`logitlab.sweeps.trials`): a job in another process (joblib, SLURM)
    reaches the study through its storage (`Settings.with_shared_storage`)."""
    from logitlab.sweeps import trials

    trials.hand_over(
        sweep_dir,
        job_num,
        {
            "storage": settings.storage,
            "study_name": study_name,
            "trial_id": trial._trial_id,
            "trial_number": trial.number,
            "report_every": settings.report_every,
            "score": pruning.score,
            "pruner": pruning.pruner,
        },
    )


# ---------------------------------------------------------------------------------------------- study
def optimize(
    settings: Settings,
    arguments: Sequence[str],
    launcher: Any,
    sweep_dir: str,
    sampler_config: DictConfig | None = None,
    pruning: Pruning | None = None,
    objectives: Sequence[str] = (),
) -> None:
    """Run `settings.n_trials` trials; `sampler_config` (`hydra.sweeper.sampler`) rebuilds a resumed study's
    sampler with a seed of its own; with `pruning`, each job learns its trial (`hand_over`). `objectives` names
    each objective (`sweep.metric`) in the study's figures."""
    params = [f"{key}={value}" for key, value in settings.params.items()]
    space, fixed = search_space([*params, *arguments])
    study = _study(settings, settings.sampler)
    earlier = len(study.trials)
    _check_resumable(study, space)
    if earlier:
        study = _study(settings, resumed_sampler(settings.sampler, sampler_config, earlier))
    log.info(
        "Optuna study '%s' (%s, %s, %s): %s; %d trials to run",
        study.study_name,
        settings.storage or "in memory",
        type(study.sampler).__name__,
        ", ".join(settings.directions),
        f"resumed with {earlier} earlier trials" if earlier else "new",
        settings.n_trials,
    )
    slots = 1 if isinstance(launcher, BasicLauncher) else settings.n_jobs  # it runs jobs here, one at a time

    def before_launch(job_idx: int, trial: optuna.Trial) -> None:
        if pruning is not None:
            hand_over(Path(sweep_dir), job_idx, settings, study.study_name, trial, pruning)

    workers = _run_trials(study, space, fixed, launcher, settings, slots, before_launch)
    STATE.workers = workers
    _write_results(study, Path(sweep_dir) / RESULTS_FILE)
    names = list(objectives) if len(objectives) == len(settings.directions) else []
    write_figures(
        study, Path(sweep_dir) / FIGURES, names or [f"objective {i}" for i in range(len(settings.directions))]
    )


# How long an interrupted search waits for its in-flight launches to stop (each launcher's own clean-up: joblib
# ends its workers, the SLURM launcher cancels its jobs) before it lets them go.
STOP_WAIT_S = 30.0


@dataclass(frozen=True)
class _Launched:
    """A trial's launch that returned: the job's return (or what the launch raised) and how long it took."""

    job_idx: int
    outcome: JobReturn | BaseException
    seconds: float


def _run_trials(
    study: optuna.Study,
    space: dict[str, BaseDistribution],
    fixed: Mapping[str, str],
    launcher: Any,
    settings: Settings,
    slots: int,
    before_launch: Callable[[int, optuna.Trial], None],
) -> WorkerTime:
    """Keep `slots` trials in flight, each launched as a job of its own (`launcher.launch` with one job, from a
    thread of its own when slots > 1); a trial is told as soon as its job returns. Asynchronous, its slot is
    given the next trial at once; batched (`asynchronous: false`, hydra-optuna-sweeper's way), the next `slots`
    trials are asked once the whole batch has returned. `before_launch` hands a job its trial. Interrupted,
    every trial in flight is told FAILED and its launch interrupted, so that the launcher cleans up as it would
    in the sweep's own thread."""
    returned: queue.Queue[_Launched] = queue.Queue()
    in_flight: dict[int, optuna.Trial] = {}  # by job number
    threads: dict[int, threading.Thread] = {}
    asked, busy_s = 0, 0.0
    started = time.monotonic()
    try:
        while asked < settings.n_trials or in_flight:
            refill = settings.asynchronous or not in_flight  # batched: once the whole batch has returned
            while refill and asked < settings.n_trials and len(in_flight) < slots:
                in_flight[asked] = trial = study.ask(space)
                before_launch(asked, trial)
                _launch(launcher, _trial_overrides(trial, fixed), asked, returned, threads if slots > 1 else None)
                asked += 1
            done = _next_returned(returned)
            trial = in_flight.pop(done.job_idx)
            threads.pop(done.job_idx, None)
            busy_s += done.seconds
            if isinstance(done.outcome, BaseException):  # interrupted in the launch, or the launcher failed
                study.tell(trial, state=TrialState.FAIL)
                raise done.outcome
            _tell(study, trial, done.outcome)
    except BaseException:  # no trial of ours stays RUNNING, no launch of ours runs on
        for trial in in_flight.values():
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        _stop(list(threads.values()))
        raise
    return WorkerTime(slots=slots, busy_s=busy_s, wall_s=time.monotonic() - started)


# How often the sweep's thread wakes while it waits for a trial: a blocking `Queue.get` holds off an interrupt
# that comes as no OS signal (`_thread.interrupt_main`, from another thread) until a trial returns.
WAKE_S = 0.2


def _next_returned(returned: queue.Queue[_Launched]) -> _Launched:
    """The next launch to return, waited for in short slices so that an interrupt is raised here at once."""
    while True:  # as long as the launches in flight, which their launchers bound
        try:
            return returned.get(timeout=WAKE_S)
        except queue.Empty:
            continue


def _trial_overrides(trial: optuna.Trial, fixed: Mapping[str, str]) -> tuple[str, ...]:
    """The Hydra overrides of a trial's job: its sampled values, then the values every trial gets."""
    return tuple(f"{key}={value}" for key, value in {**trial.params, **fixed}.items())


def _launch(
    launcher: Any,
    overrides: tuple[str, ...],
    job_idx: int,
    returned: queue.Queue[_Launched],
    threads: dict[int, threading.Thread] | None,
) -> None:
    """Launch one trial's job: in this thread when `threads` is None (one slot: the launcher may run the job
    here), else in a thread of its own, entered in `threads` before it starts. Its return, or what the launch
    raised, goes to `returned`."""

    def launch() -> None:
        start = time.monotonic()
        try:
            outcome: JobReturn | BaseException = launcher.launch([overrides], initial_job_idx=job_idx)[0]
        except BaseException as err:  # handed to the sweep's thread, which raises it
            outcome = err
        returned.put(_Launched(job_idx, outcome, time.monotonic() - start))

    if threads is None:
        launch()
        return
    threads[job_idx] = threading.Thread(target=launch, name=f"trial-job-{job_idx}", daemon=True)
    threads[job_idx].start()


def _stop(threads: Sequence[threading.Thread]) -> None:
    """Interrupt the launches still running (a KeyboardInterrupt raised in each thread, as Ctrl-C raises it in the
    sweep's), and wait for their launchers' clean-up, for at most STOP_WAIT_S."""
    import ctypes

    for thread in threads:
        if thread.ident is not None and thread.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
            )
    deadline = time.monotonic() + STOP_WAIT_S
    for thread in threads:
        if thread.ident is not None:  # started
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    if any(thread.is_alive() for thread in threads):
        log.warning("%d trial launches did not stop within %.0f s", sum(t.is_alive() for t in threads), STOP_WAIT_S)


def resumed_sampler(
    sampler: optuna.samplers.BaseSampler, sampler_config: DictConfig | None, earlier: int
) -> optuna.samplers.BaseSampler:
    """The sampler for a study resumed with `earlier` trials. Started again from its configured seed, a seeded
    sampler (tpe, random, cmaes: each starts with random trials) would propose the study's first trials once
    more; rebuilt from its config with a seed drawn from (seed, earlier), it searches on, and the same commands
    give the same trials. An unseeded sampler draws fresh entropy anyway and is kept."""
    seed = sampler_config.get("seed") if sampler_config is not None else None
    if seed is None:
        return sampler
    import numpy as np
    from hydra.utils import instantiate

    resumed_seed = int(np.random.SeedSequence([int(seed), earlier]).generate_state(1)[0])
    resumed = instantiate(sampler_config, seed=resumed_seed)
    assert isinstance(resumed, optuna.samplers.BaseSampler)
    return resumed


def _study(settings: Settings, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """The study, created or loaded; a storage that cannot be opened is a HydraException naming it."""
    from sqlalchemy.exc import SQLAlchemyError

    from logitlab.sweeps import trials

    try:
        return optuna.create_study(
            study_name=settings.study_name,
            storage=trials.storage(settings.storage),
            sampler=sampler,
            pruner=settings.pruner,
            directions=[optuna.study.StudyDirection[direction.upper()] for direction in settings.directions],
            load_if_exists=True,
        )
    except (SQLAlchemyError, ValueError) as err:
        reason = " ".join(str(err).split("\n")[0].split())
        raise HydraException(f"hydra.sweeper.storage: cannot open {settings.storage!r}: {reason}") from None


def _check_resumable(study: optuna.Study, space: Mapping[str, BaseDistribution]) -> None:
    """A resumed study must search each key as its earlier trials did (optuna refuses a change mid-ask)."""
    from optuna.distributions import check_distribution_compatibility

    for trial in study.get_trials(deepcopy=False):
        for key, earlier in trial.distributions.items():
            if key not in space:
                continue
            try:
                check_distribution_compatibility(earlier, space[key])
            except ValueError:
                raise HydraException(
                    f"hydra.sweeper.params.{key}: study '{study.study_name}' searched it as "
                    f"{type(earlier).__name__} before, now as {type(space[key]).__name__}; "
                    "set another hydra.sweeper.study_name for a new search space"
                ) from None


def _tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> None:
    """The job's value (one per objective: a tuple for several); a job its pruner stopped (it returns NaN, its
    trial says where it stopped) is a pruned trial; a job that raised or returned something other than a finite
    number per objective is a failed trial."""
    try:
        values = _values(ret.return_value, len(study.directions))
    except Exception as err:  # the job's own exception, re-raised by JobReturn
        log.warning("trial %d failed: %s", trial.number, " ".join(str(err).split()) or type(err).__name__)
        study.tell(trial, state=TrialState.FAIL)
        return
    from logitlab.sweeps.trials import PRUNED_AT

    finite = all(math.isfinite(value) for value in values)
    if not finite and (pruned_at := _stored(study, trial).user_attrs.get(PRUNED_AT)) is not None:
        log.info("trial %d pruned at epoch %d (reported %.6g)", trial.number, pruned_at[0], pruned_at[1])
        study.tell(trial, state=TrialState.PRUNED)
        return
    if not finite:
        log.warning("trial %d failed: the job returned %s", trial.number, values[0] if len(values) == 1 else values)
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, values[0] if len(values) == 1 else values)


def _values(returned: Any, objectives: int) -> list[float]:
    """A job's return as one number per objective; a failed job of several objectives returns one NaN."""
    values = [float(v) for v in returned] if isinstance(returned, list | tuple) else [float(returned)]
    if len(values) == 1 and objectives > 1 and math.isnan(values[0]):
        return values * objectives
    if len(values) != objectives:
        raise ValueError(f"the job returned {len(values)} values for {objectives} objectives")
    return values


def _stored(study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
    """The trial as its storage holds it now (an `optuna.Trial` keeps what it was when asked for): what a job
    in another process recorded in it."""
    (stored,) = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number == trial.number]
    return stored


def _write_results(study: optuna.Study, path: Path) -> None:
    """hydra-optuna-sweeper's results file: the best trial over the whole study (a resumed one included); with
    several objectives, the best trials (the Pareto front: `solutions`, each with its params and values)."""
    from logitlab import io

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    results: Mapping[str, Any] = {"name": "optuna", "best_params": None, "best_value": None}
    if completed and len(study.directions) > 1:
        front = [{"number": t.number, "params": t.params, "values": t.values} for t in study.best_trials]
        results = {"name": "optuna", "solutions": front}
        log.info("Pareto front: %d of %d completed trials", len(front), len(completed))
    elif completed:
        best = study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
        log.info("Best parameters: %s; best value: %s", best.params, best.value)
    else:
        log.warning("no trial of study '%s' completed", study.study_name)
    io.write_text(path, OmegaConf.to_yaml(OmegaConf.create(dict(results))))


def write_figures(study: optuna.Study, folder: Path, objectives: Sequence[str]) -> None:
    """Optuna's matplotlib views of the study into `folder`: the optimisation history, the parameter importances
    (with at least two completed trials and more than one parameter) and the parallel coordinates, one of each
    per objective (`<view>.png`, or `<view>-<objective>.png` for several)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")  # before optuna's views import pyplot: files only, whatever the display
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as views

    from logitlab import plots  # matplotlib, on Agg: after the trials, never on the launch path

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        log.info("no study figures: no trial completed")
        return
    searched = {key for trial in completed for key in trial.params}
    several = len(objectives) > 1
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(objectives):

        def target(trial: optuna.trial.FrozenTrial, index: int = index) -> float:
            return float(trial.values[index])

        # optuna's importances of a target are those of low values: a maximised objective is negated for them
        sign = -1.0 if study.directions[index] == optuna.study.StudyDirection.MAXIMIZE else 1.0

        def lower_is_better(trial: optuna.trial.FrozenTrial, index: int = index, sign: float = sign) -> float:
            return sign * float(trial.values[index])

        given: dict[str, Any] = {"target": target if several else None, "target_name": name}
        drawn: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
            "history": (views.plot_optimization_history, given),
            "parallel_coordinates": (views.plot_parallel_coordinate, given),
        }
        if len(completed) >= 2 and len(searched) > 1:
            importance = {**given, "target": lower_is_better} if several else given
            drawn["importances"] = (views.plot_param_importances, importance)
        elif index == 0:
            log.info("no parameter importances: they need 2 completed trials of more than one parameter")
        for view, (draw, arguments) in drawn.items():
            # optuna's views switch matplotlib to its ggplot style for good: kept to these figures (the summary's
            # and the best job's, drawn later in this process, keep the project's)
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore", ExperimentalWarning)  # optuna's views are experimental
                # handled above (`lower_is_better`): optuna warns of it whenever a target is given
                warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes the importances")
                # a few trials that all fall in one quantile: the figure's equal bars already say so
                warnings.filterwarnings("ignore", message="Target and region quantiles select the same set of trials")
                try:
                    axes = draw(study, **arguments)
                except (ValueError, RuntimeError) as err:  # a view this study cannot give
                    log.info("no %s figure for %s: %s", view, name, " ".join(str(err).split()))
                    continue
            figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
            figure.tight_layout()  # optuna's views clip long parameter names such as features.degree
            plots.save(figure, folder / (f"{view}-{name}.png" if several else f"{view}.png"))
