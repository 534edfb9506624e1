"""The edge between a user and the code: one clear line for a user's mistake, a traceback only for bugs."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from logitlab.errors import LogitlabError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def debug() -> bool:
    return os.environ.get("LOGITLAB_DEBUG", "") not in ("", "0", "false")


def fail(message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    raise SystemExit(code)


def hydra_message(err: BaseException) -> str:
    """Hydra's multi-line messages as one line, without OmegaConf's full_key/object_type trailer."""
    lines = [str(err), str(err.__cause__ or "")]
    kept = [line.strip() for text in lines for line in text.splitlines() if line.strip()]
    kept = [line for line in kept if not line.startswith(("full_key:", "object_type=", "reference_type="))]
    return " ".join(dict.fromkeys(kept)).split(" Config search path:")[0]


def setup_logging() -> None:
    """Plain `logging` for the stage commands (Hydra configures its own for sweeps)."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for noisy in ("alembic", "mlflow.store.db.utils", "urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# The signals `raise_interrupt` turned into KeyboardInterrupt since `remember_interrupts`.
_interrupts: list[str] = []


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler: SIGTERM ends the work as Ctrl-C does, so open runs end KILLED, not RUNNING. Remembered:
    Python drops an exception raised while a weakref callback or `__del__` runs (SQLAlchemy's and MLflow's
    clean-ups run that way, at any moment of a fit), so the work checks again where it ends
    (`raise_if_interrupted`)."""
    name = signal.Signals(signum).name
    _interrupts.append(name)
    raise KeyboardInterrupt(name)


def remember_interrupts(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """From now on these signals raise KeyboardInterrupt through `raise_interrupt`; earlier ones forgotten. One
    the process was started ignoring (SIGINT in a background job) stays ignored."""
    _interrupts.clear()
    sys.unraisablehook = _unraisable
    for signum in signals:
        if signal.getsignal(signum) != signal.SIG_IGN:
            signal.signal(signum, raise_interrupt)


def _unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """Python's report of an exception it dropped (`Exception ignored in ...` and a traceback), except for an
    interrupt `raise_interrupt` raised in a weakref callback or `__del__`: it is remembered and raised again
    where the work ends (`raise_if_interrupted`), and the command ends in one line."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _interrupts:
        return
    sys.__unraisablehook__(unraisable)


def raise_if_interrupted() -> None:
    """Raise again an interrupt that a signal raised where Python dropped it: the work it stopped must not end
    as if it had finished."""
    if _interrupts:
        raise KeyboardInterrupt(_interrupts[-1])


def exit_interrupted() -> NoReturn:
    """End an interrupted command once its work is cleaned up (runs ended KILLED).

    A further SIGINT/SIGTERM (dvc passes on the signal its process group got) now takes the default action:
    raised as KeyboardInterrupt during interpreter shutdown, it would stop the exit hook of a thread pool
    (MLflow's artifact uploads) and leave the process waiting forever on the pool's idle worker."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    fail("interrupted", EXIT_INTERRUPTED)


def run_guarded(entry: Callable[[], object]) -> None:
    """Run a command's body; a `LogitlabError` ends it with one line and exit 2 (traceback if LOGITLAB_DEBUG=1)."""
    try:
        entry()
    except LogitlabError as err:
        if debug():
            raise
        fail(str(err))
    except KeyboardInterrupt:
        if debug():
            raise
        exit_interrupted()
