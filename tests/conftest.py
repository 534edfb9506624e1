"""Shared fixtures: a throw-away copy of the project (git + DVC), and helpers to run its commands for real."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SONAR = SHARED_DATA / "sonar.csv"
BIN = Path(sys.executable).parent

# Telemetry off, and no tracking server inherited from the developer's shell.
BASE_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "DVC_", "LOGITLAB_"))},
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@localhost",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@localhost",
}


def pytest_configure(config: pytest.Config) -> None:
    """A suite started with SIGINT ignored (a background job of a shell without job control, `(make test &)`)
    would pass that on to every sweep it starts, and a Python started so never raises KeyboardInterrupt: the
    interrupt tests would then test how the suite was launched. Each process (xdist workers too) takes Python's
    own handler, which its children get back as SIG_DFL, as from a terminal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [line for line in listed.stdout.splitlines() if (REPO / line).is_file()]


def make_project(dest: Path) -> Path:
    """Copy the repository's files (no outputs, no stores) into `dest` and commit them in a new git repo."""
    for name in tracked_files():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "copy"], dest)
    return dest


def run(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, cwd=cwd, env={**BASE_ENV, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
        )
    return done


def make(project: Path, target: str, timeout: float = 600) -> str:
    """`make <target>` in a project copy, on this repository's venv and uv (the copy has neither); its output."""
    venv, uv = REPO / ".venv", REPO / ".tools" / "bin" / "uv"
    args = ["make", "--no-print-directory", "-o", f"{venv}/.synced", f"VENV={venv}", f"UV={uv}", target]
    done = run(args, project, timeout=timeout)
    return done.stdout + done.stderr


def logitlab(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """`python -m logitlab.<args[0]> args[1:]` in the venv."""
    return run([sys.executable, "-m", f"logitlab.{args[0]}", *args[1:]], cwd, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A fresh copy of the project in a temporary git repository."""
    yield make_project(tmp_path / "project")


@pytest.fixture(scope="module")
def module_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project copy shared by a module's tests (for expensive set-ups such as a sweep)."""
    return make_project(tmp_path_factory.mktemp("shared") / "project")


def store_uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


@pytest.fixture
def sonar() -> Path:
    if not SONAR.is_file():
        message = f"test data {SONAR} is missing (the shared/ folder must sit beside the repository)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has it: never let a missing file pass as a skip there
        pytest.skip(message)
    return SONAR
