"""Finishing work (a stage's `finish`: the figures) in a helper process while a sequential sweep fits on.

A sweep whose jobs run in the launching process (the default `local` launcher) leaves the machine's second
core idle; drawing a job's figures there, and attaching them to its MLflow run, takes them off the job's
path. The sweep waits for the helper (`drain`) before it writes its summary, so every child has its figures
by the time the sweep ends. Elsewhere (parallel launchers, `dvc repro`) finishing runs in line. A tracked
sweep's children draw figures only with `mlflow.child_artifacts: all`; by default only the best child gets
them, at the sweep's end (`runs.complete_best`), and an untracked sweep draws every job's here.
"""

from __future__ import annotations

import atexit
import gc
import logging
import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from logitlab.stage import Files

log = logging.getLogger(__name__)

FINISH_TIMEOUT_S = 600  # per job, while the sweep waits at its end

_pool: ProcessPoolExecutor | None = None
_pending: list[tuple[Future[None], str]] = []
_active = False


def start() -> None:
    """Jobs run in this process from now on: finish them in the helper (started at the first job)."""
    global _active
    _active = True


def active() -> bool:
    return _active


def submit(stage: str, files: Files, uri: str | None, run_id: str | None, label: str) -> None:
    """Run `stage`'s finish on `files` in the helper, then log its outputs to the run (when tracked)."""
    global _pool
    if run_id is not None:
        from logitlab.tracking.results import expect_late_artifacts

        expect_late_artifacts(run_id)
    if _pool is None:
        context = multiprocessing.get_context("spawn")
        _pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_quick_exit)
    # The helper starts in the first submit. Ctrl-C reaches the whole process group: the sweep handles it
    # (`stop`), and the helper, started with SIGINT blocked (a mask survives exec), finishes the figure it is
    # drawing and exits instead of printing a traceback, even when the signal lands while it boots. Here the
    # signal only waits until the mask is restored.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        _pending.append((_pool.submit(_finish, stage, files, uri, run_id), label))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def drain() -> int:
    """Wait for every submitted job; the number that failed (each logged with its reason)."""
    failed = 0
    while _pending:
        future, label = _pending.pop(0)
        try:
            future.result(timeout=FINISH_TIMEOUT_S)
        except (Exception, FutureTimeout) as err:  # a bug in drawing: the job's metrics and model still count
            failed += 1
            log.error("figures of %s failed: %s", label, " ".join(str(err).split()) or type(err).__name__)
    return failed


def close() -> None:
    """The sweep is done with the helper (drained): let it exit, and wait, which is quick (`_quick_exit`)."""
    global _pool, _active
    _active = False
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def _quick_exit() -> None:
    """In the helper: at its exit, skip the interpreter's final collections over every object of matplotlib
    and mlflow (0.5-1 s, which the sweep waited for); atexit handlers and closing files still happen."""
    atexit.register(gc.freeze)


def stop() -> None:
    """Interrupted: drop what has not started, end the helper."""
    global _pool, _active
    _active = False
    _pending.clear()
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def _finish(stage_name: str, files: Files, uri: str | None, run_id: str | None) -> None:
    from logitlab.pipeline import STAGES

    stage = next(stage for stage in STAGES if stage.name == stage_name)
    assert stage.finish is not None
    stage.finish(files)
    if uri is None or run_id is None:
        return
    from logitlab.tracking.results import attach_late_artifacts
    from logitlab.tracking.store import point_at

    point_at(uri)
    attach_late_artifacts(run_id, [files.outputs[name] for name, out in stage.outputs.items() if out.by_finish])
