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
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from logitlab.stage import Files, Stage

log = logging.getLogger(__name__)

FINISH_TIMEOUT_S = 600  # per job, while the sweep waits at its end

_pool: ProcessPoolExecutor | None = None
_pending: list[tuple[Future[None], str]] = []
_active = False
_deferred: dict[str, tuple[Stage, Files]] = {}  # run id or job folder -> the stage and files of a light job's finish


def prepare(ahead: Callable[..., None] | None = None, *args: Any) -> None:
    """The sweep's jobs will run in this process: start the helper now, so that it imports what it draws with
    while the sweep starts up (on the machine's other core), after `ahead(*args)` if given: work the first
    job will need, done while this process opens the tracking store (a module-level function that reports
    no failure: the job reports its own)."""
    if _pool is None:
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
        if uri is not None:
            _submit(_open_store, uri, label="the figure helper's start")


def active() -> bool:
    return _active


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
    _submit(_finish, stage.finish, files, stage.finished(files), uri, run_id, processes, label=label)


def defer(key: str, stage: Stage, files: Files) -> None:
    """A light job's finish, not run: kept under its run id (tracked) or job folder, so that `finish_deferred`
    can run it from the job's own files if the job turns out to be the best."""
    _deferred[key] = (stage, files)


def finish_deferred(key: str, uri: str | None, label: str) -> Files | None:
    """Submit the finish `defer` kept for `key` (with a tracking `uri`, a run id: its outputs attached to the
    run once made); its files, or None if this process ran no such job (the figures are then made from what
    the run logged, or the job folder holds)."""
    if not _active or key not in _deferred:
        return None
    stage, files = _deferred[key]
    # Not `pending`: a light child is finished without its figures, so a sweep stopped now keeps it, and the
    # resumed sweep's end gives its best what it lacks. Untracked, this process only waits for these figures:
    # the helper draws them on both cores (tracked, this process logs the best model meanwhile).
    run_id = key if uri is not None else None
    submit(stage, files, uri, run_id, label, pending=False, processes=1 if uri is not None else 2)
    return files


def call(function: Callable[..., None], *args: Any, label: str) -> None:
    """`function(*args)` in the helper while one runs (a module-level function: it is sent by name), else now."""
    if _active:
        _submit(function, *args, label=label)
    else:
        function(*args)


def _submit(function: Callable[..., None], *args: Any, label: str) -> None:
    global _pool
    if _pool is None:
        context = multiprocessing.get_context("spawn")
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_quick_exit)
    # The helper starts in the first submit. Ctrl-C reaches the whole process group: the sweep handles it
    # (`stop`), and the helper, started with SIGINT blocked (a mask survives exec), finishes the figure it is
    # drawing and exits instead of printing a traceback, even when the signal lands while it boots. Here the
    # signal only waits until the mask is restored.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        _pending.append((_pool.submit(function, *args), label))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def drain(raise_failure: bool = False) -> int:
    """Wait for every submitted job; the number that failed (each logged with its reason), or, with
    `raise_failure`, the first failure raised once all are done: work the caller cannot do without (the
    summary's plots: the sweep's summary fails as if it had drawn them itself)."""
    failures: list[BaseException] = []
    while _pending:
        future, label = _pending.pop(0)
        try:
            future.result(timeout=FINISH_TIMEOUT_S)
        except (Exception, FutureTimeout) as err:  # a bug in drawing: the job's metrics and model still count
            failures.append(err)
            if not raise_failure:
                log.error("figures of %s failed: %s", label, " ".join(str(err).split()) or type(err).__name__)
    if failures and raise_failure:
        raise failures[0]
    return len(failures)


def close() -> None:
    """The sweep is done with the helper (drained): let it exit, and wait, which is quick (`_quick_exit`)."""
    global _pool, _active
    _active = False
    _deferred.clear()
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def _quick_exit() -> None:
    """In the helper: at its exit, skip the interpreter's final collections over every object of matplotlib
    and mlflow (0.5-1 s, which the sweep waited for); atexit handlers and closing files still happen."""
    atexit.register(gc.freeze)


def stop() -> None:
    """Interrupted, or stopped before its jobs: drop what has not started and end the helper, waiting for it
    here rather than at the interpreter's exit (which waits anyway, and whose own wake-up of a pool shut down
    without waiting races the pool's closing: EBADF, a traceback after the one-line error). Before the jobs
    the helper has only been importing, or making the first job's shared stages (`prepare`): it is
    terminated (a cache entry it was writing stays a temporary folder, never renamed into place, and removed
    when the entry is next made); after, it finishes the figure it is drawing."""
    global _pool, _active
    jobs_started, _active = _active, False
    _pending.clear()
    _deferred.clear()
    if _pool is None:
        return
    if not jobs_started:
        for process in list(_pool._processes.values()):  # 3.14 has terminate_workers()
            process.terminate()
    _pool.shutdown(wait=True, cancel_futures=True)
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
    if uri is None or run_id is None:
        return
    from logitlab.tracking.results import attach_late_artifacts
    from logitlab.tracking.store import point_at

    point_at(uri)
    attach_late_artifacts(run_id, outputs)
