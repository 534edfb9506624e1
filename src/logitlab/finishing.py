"""Finishing work (a stage's `finish`: the figures) in a helper process while a sequential sweep fits on.

A sweep whose jobs run in the launching process (the default `local` launcher) leaves the machine's second
core idle; drawing a job's figures there, and attaching them to its MLflow run, takes them off the job's
path. The sweep waits for the helper (`drain`) before it writes its summary, so every child has its figures
by the time the sweep ends. Elsewhere (parallel launchers, `dvc repro`) finishing runs in line. A sweep's
jobs draw figures only with `mlflow.child_artifacts: all`; by default only the best job gets them, at the
sweep's end (`runs.complete_best`, `runs.complete_best_job` when untracked).

The helper starts with the sweep (`prepare`) and imports what it will draw with while the sweep starts up, so
that at the sweep's end the best child's figures (`defer`, then `finish_deferred`, from the job's own files)
and the summary's plots (`call`) are drawn there while this process logs the best model: the sweep process
never imports matplotlib, and what a user waits for after the last job is the longer of the two.

A tracked sweep on a local SQLite store also hands its tracking to the helper (`hand_over`, `sweeps.relay`): the
parent run, each job's child run and the summary are made there, in the order handed over, so the jobs never
wait for MLflow's import and the store (1.6-2.5 s).
"""

from __future__ import annotations

import atexit
import gc
import logging
import math
import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from logitlab.errors import TrackingError
from logitlab.stage import Files, Stage

log = logging.getLogger(__name__)

FINISH_TIMEOUT_S = 600  # per job, while the sweep waits at its end

_pool: ProcessPoolExecutor | None = None
_pending: list[tuple[Future[Any], str]] = []  # what the helper was given, with what to call it in an error
_active = False
_handed_over = False  # this sweep's tracking runs in the helper (`hand_over`)
_drawing_prepared = False
_is_helper = False  # this process is the helper (`_in_helper`)
# In the helper: finishes a forked copy draws (`_draw_behind`): its pid, the stage, files, store, run, label.
_behind: list[tuple[int, Stage, Files, str | None, str | None, str]] = []
_deferred: dict[str, tuple[Stage, Files]] = {}  # run id or job folder -> the stage and files of a light job's finish


@dataclass
class _Ahead:
    """An untracked sweep's best job so far, drawn while the jobs run (`draw_ahead`)."""

    best: float | None = None  # its metric
    wanted: str | None = None  # its job folder, to draw
    drawn: str | None = None  # the job folder whose figures the helper drew or is drawing
    drawing: Future[Any] | None = None


_ahead = _Ahead()


def prepare(ahead: Callable[..., None] | None = None, *args: Any) -> None:
    """The sweep's jobs will run in this process: start the helper now, so that it imports what it draws with
    while the sweep starts up (on the machine's other core), after `ahead(*args)` if given: work the first
    job will need, done while this process opens the tracking store (a module-level function that reports
    no failure: the job reports its own)."""
    global _drawing_prepared
    if not _drawing_prepared:
        _drawing_prepared = True
        if ahead is not None:
            _submit(ahead, *args, label="the first job's shared stages")
        _submit(_import_drawing, label="the figure helper's start")


def start(uri: str | None) -> None:
    """Jobs run in this process from now on: finish them in the helper (`prepare`d, or started now), which
    opens the sweep's tracking store `uri` (None: untracked) before it is needed."""
    global _active
    if not _active:
        _active = True
        prepare()
        if uri is not None and not _handed_over:
            _submit(_open_store, uri, label="the figure helper's start")


def active() -> bool:
    return _active


def hand_over(function: Callable[..., Any], *args: Any, label: str) -> Future[Any]:
    """Tracking work of this sweep (`sweeps.relay`), done in the helper after everything handed over before it;
    from the first call on, `tracking()` is true, and the helper is waited for, not terminated, when the sweep
    stops (`stop`), so that every run it was given ends."""
    global _handed_over
    _handed_over = True
    try:
        return _submit(function, *args, label=label)
    except BrokenProcessPool as err:
        raise TrackingError(f"the helper process that tracks this sweep stopped ({err})") from None


def tracking() -> bool:
    """Whether the helper does this sweep's tracking (`hand_over`)."""
    return _handed_over


def deferred() -> dict[str, tuple[Stage, Files]]:
    """The finishes `defer` kept, by run id or job folder."""
    return dict(_deferred)


def submit(
    stage: Stage,
    files: Files,
    uri: str | None,
    run_id: str | None,
    label: str,
    pending: bool = True,
    processes: int = 1,
) -> None:
    """Run `stage`'s finish on `files` in the helper (drawing on `processes` processes: `plots.drawn_on`), then
    log its outputs to the run (when tracked), which is tagged `pending` until then (a resumed sweep runs a
    FINISHED job whose figures never came again)."""
    if run_id is not None and pending:
        from logitlab.tracking.results import expect_late_artifacts

        expect_late_artifacts(run_id)
    _submit(_finish, stage.finish, files, stage.finished(files), uri, run_id, processes, label=f"figures of {label}")


def defer(key: str, stage: Stage, files: Files) -> None:
    """A light job's finish, not run: kept under its run id (tracked) or job folder, so that `finish_deferred`
    can run it from the job's own files if the job turns out to be the best."""
    _deferred[key] = (stage, files)


def draw_ahead(key: str, metric: float, direction: str) -> None:
    """An untracked sweep's light job (`defer`) ended with `metric`. The best job so far, once a later job has
    not beaten it, gets its figures from the helper now rather than at the sweep's end, where the sweep only
    waits for them (0.45 s of a 10-job CV sweep's 5 s). Not as soon as it is the best: a path of Cs improves
    job after job up to its best, and each drawing (~0.5 s of a core) was taken from the fits on the machine's
    other core; drawn at the first job that does not beat it, the best of a 10-C CV sweep is drawn once, not
    three times (5.0 -> 4.7 s). One drawing at a time: a job that becomes the best meanwhile is drawn at a
    later job's end or the sweep's (`finish_deferred`), which also removes the figures of a job that is no
    longer the best."""
    if not _active or _handed_over or key not in _deferred or not math.isfinite(metric):
        return
    best = _ahead.best
    if best is None or (metric > best if direction == "maximize" else metric < best):
        _ahead.best, _ahead.wanted = metric, key
        return
    wanted = _ahead.wanted
    if wanted is not None and wanted != _ahead.drawn and (_ahead.drawing is None or _ahead.drawing.done()):
        _ahead.drawing = _draw_instead(wanted, f"figures of job {Path(wanted).name} (the best so far)")


def _draw_instead(key: str | None, label: str) -> Future[Any] | None:
    """The figures of job folder `key` (None: none) in the helper, after it removed those it drew ahead for
    another; what it was given before runs first."""
    if _ahead.drawn not in (None, key):
        stage, files = _deferred[_ahead.drawn]
        _submit(_remove, stage.finished(files), label=f"removing the figures of {Path(_ahead.drawn).name}")
    _ahead.drawn = key
    if key is None:
        return None
    stage, files = _deferred[key]
    return _submit(_finish, stage.finish, files, stage.finished(files), None, None, 1, label=label)


def settle_ahead(best: str | None) -> bool:
    """The sweep's best job folder is `best` (None: it has none): whether its figures were drawn ahead (drawn,
    or being drawn); the figures drawn ahead for another job are removed."""
    if _ahead.drawn == best:
        return best is not None
    if _ahead.drawn is not None:
        _draw_instead(None, "")
    return False


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def finish_deferred(key: str, uri: str | None, label: str) -> Files | None:
    """Submit the finish `defer` kept for `key` (with a tracking `uri`, a run id: its outputs attached to the
    run once made); its files, or None if this process ran no such job (the figures are then made from what
    the run logged, or the job folder holds)."""
    if settle_ahead(key):
        return _deferred[key][1]  # drawn, or being drawn: `drain` waits for it
    if not (_active or _is_helper) or key not in _deferred:
        return None
    stage, files = _deferred[key]
    run_id = key if uri is not None else None
    if _is_helper:  # the helper's own sweep end (`sweeps.relay`): a forked copy draws, this process logs meanwhile
        _draw_behind(stage, files, uri, run_id, label)
        return files
    # Not `pending`: a light child is finished without its figures, so a sweep stopped now keeps it, and the
    # resumed sweep's end gives its best what it lacks. Untracked, this process only waits for these figures:
    # the helper draws them on both cores (tracked, this process logs the best model meanwhile).
    submit(stage, files, uri, run_id, label, pending=False, processes=1 if uri is not None else 2)
    return files


def _draw_behind(stage: Stage, files: Files, uri: str | None, run_id: str | None, label: str) -> None:
    """`stage`'s finish in a forked copy of this process (which has matplotlib and the model imported), attached
    to the run by `drain` once the copy is done; a copy that failed is drawn again there, raising its error."""
    assert stage.finish is not None
    child = os.fork()
    if child == 0:  # the copy: the figures, then gone without running this process's exit handlers
        drawn = False
        try:
            stage.finish(files)
            drawn = True
        finally:
            os._exit(0 if drawn else 1)
    _behind.append((child, stage, files, uri, run_id, f"figures of {label}"))


def call(function: Callable[..., None], *args: Any, label: str) -> None:
    """`function(*args)` in the helper while one runs (a module-level function: it is sent by name), else now."""
    if _active:
        _submit(function, *args, label=label)
    else:
        function(*args)


def _submit(function: Callable[..., Any], *args: Any, label: str) -> Future[Any]:
    global _pool
    if _pool is None:
        context = multiprocessing.get_context("spawn")
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_in_helper)
    # The helper starts in the first submit. Ctrl-C reaches the whole process group: the sweep handles it
    # (`stop`), and the helper, started with SIGINT blocked (a mask survives exec), finishes the figure it is
    # drawing and exits instead of printing a traceback, even when the signal lands while it boots. Here the
    # signal only waits until the mask is restored.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        future = _pool.submit(function, *args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    _pending.append((future, label))
    return future


def drain(raise_failure: bool = False) -> int:
    """Wait for every submitted job; the number that failed (each logged with its reason), or, with
    `raise_failure`, the first failure raised once all are done: work the caller cannot do without (the
    summary's plots: the sweep's summary fails as if it had drawn them itself)."""
    failures: list[BaseException] = []
    while _behind:
        child, stage, files, uri, run_id, label = _behind.pop(0)
        _, status = os.waitpid(child, 0)
        try:
            if status != 0 and stage.finish is not None:
                stage.finish(files)
            _attach(stage.finished(files), uri, run_id)
        except Exception as err:
            failures.append(err)
            if not raise_failure:
                log.error("%s failed: %s", label, " ".join(str(err).split()) or type(err).__name__)
    while _pending:
        future, label = _pending.pop(0)
        try:
            future.result(timeout=FINISH_TIMEOUT_S)
        except (Exception, FutureTimeout) as err:  # a bug in drawing: the job's metrics and model still count
            failures.append(err)
            if not raise_failure:
                log.error("%s failed: %s", label, " ".join(str(err).split()) or type(err).__name__)
    if failures and raise_failure:
        raise failures[0]
    return len(failures)


def close() -> None:
    """The sweep is done with the helper (drained): let it exit, and wait, which is quick (`_in_helper`)."""
    global _pool
    _forget()
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def _forget() -> None:
    global _active, _handed_over, _drawing_prepared, _ahead
    _active = _handed_over = _drawing_prepared = False
    _deferred.clear()
    _ahead = _Ahead()


def _in_helper() -> None:
    """The helper's start: at its exit, skip the interpreter's final collections over every object of
    matplotlib and mlflow (0.5-1 s, which the sweep waited for; atexit handlers and closing files still
    happen); what it logs (the runs it makes, `sweeps.relay`) printed as the sweep's own lines are."""
    global _is_helper
    _is_helper = True
    atexit.register(gc.freeze)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger("logitlab").addHandler(handler)
    logging.getLogger("logitlab").setLevel(logging.INFO)


def stop(terminate: bool = False) -> None:
    """Interrupted, or stopped before its jobs: drop what has not started and end the helper, waiting for it
    here rather than at the interpreter's exit (which waits anyway, and whose own wake-up of a pool shut down
    without waiting races the pool's closing: EBADF, a traceback after the one-line error). Before the jobs
    the helper has only been importing, or making the first job's shared stages (`prepare`): it is
    terminated (a cache entry it was writing stays a temporary folder, never renamed into place, and removed
    when the entry is next made); after, it finishes the figure it is drawing. A helper that does the sweep's
    tracking (`hand_over`) does all it was handed first, so that the runs it was given end, unless `terminate`
    (it did not answer in time: the sweep process ends those runs itself)."""
    global _pool
    jobs_started, tracking = _active, _handed_over
    _pending.clear()
    _forget()
    if _pool is None:
        return
    if terminate or not (jobs_started or tracking):
        for process in list(_pool._processes.values()):  # 3.14 has terminate_workers()
            process.terminate()
    _pool.shutdown(wait=True, cancel_futures=terminate or not tracking)
    _pool = None


def _import_drawing() -> None:
    """In the helper: the imports of drawing (matplotlib, the model): ~1.5 s that would otherwise delay the
    best child's figures at the sweep's end."""
    import logitlab.model.estimator
    import logitlab.plots  # noqa: F401


def _open_store(uri: str) -> None:
    """In the helper: mlflow imported and a client on the sweep's store (its schema checked): ~1 s more. Only
    once the sweep has made the store: two processes creating one SQLite store at once can crash."""
    from logitlab.tracking.store import point_at, tracker_client

    point_at(uri)
    tracker_client()


def _finish(
    finish: Callable[[Files], None],
    files: Files,
    outputs: list[Path],
    uri: str | None,
    run_id: str | None,
    processes: int,
) -> None:
    from logitlab import plots  # imported already (`_import_drawing`)

    with plots.drawn_on(processes):
        finish(files)
    _attach(outputs, uri, run_id)


def _attach(outputs: list[Path], uri: str | None, run_id: str | None) -> None:
    if uri is None or run_id is None:
        return
    from logitlab.tracking.results import attach_late_artifacts
    from logitlab.tracking.store import point_at

    point_at(uri)
    attach_late_artifacts(run_id, outputs)
