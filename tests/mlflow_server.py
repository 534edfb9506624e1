"""Start and stop the project's real MLflow tracking server (PostgreSQL + basic auth) for tests.

It drives ``scripts/server.sh`` exactly as ``make server`` does, but points all of its state
(``LOGITLAB_SERVER_DIR``: PostgreSQL cluster, artifacts, credentials, logs) into a fresh
temporary directory and picks free loopback ports, so it never touches the developer's own
``.server/`` and several servers can run side by side.

Typical use in a fixture::

    from mlflow_server import mlflow_server

    @pytest.fixture(scope="session")
    def tracking_server():
        with mlflow_server() as srv:
            yield srv        # srv.uri, srv.username, srv.password, srv.client_env()

    def test_sweep(tracking_server, monkeypatch):
        for key, value in tracking_server.client_env().items():
            monkeypatch.setenv(key, value)
        ...

Requires PostgreSQL server binaries (``scripts/server.sh install``; ``start`` installs them
itself when it may run apt-get) and, when run as root, the ``postgres`` OS user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
SERVER_SH = PROJECT_DIR / "scripts" / "server.sh"

# Environment variables that would leak the developer's settings into the test server.
_SCRUBBED_ENV = (
    "LOGITLAB_SERVER_DIR",
    "LOGITLAB_SERVER_ADMIN_USER",
    "LOGITLAB_SERVER_ADMIN_PASSWORD",
    "PG_PORT",
    "MLFLOW_HOST",
    "MLFLOW_PORT",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_AUTH_CONFIG_PATH",
    "MLFLOW_BACKEND_STORE_URI",
)


class ServerStartError(RuntimeError):
    """``scripts/server.sh start`` failed; the message carries its output and log tail."""


def free_port(exclude: set[int] | None = None) -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    exclude = exclude or set()
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port
    raise RuntimeError("no free port found on 127.0.0.1")


def read_credentials(path: Path) -> dict[str, str]:
    """Parse ``credentials.env`` (KEY=VALUE lines, '#' comments) without a shell."""
    creds: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        creds[key.strip()] = value
    return creds


@dataclass
class MlflowServer:
    """A running server started by :func:`start_server`."""

    uri: str
    username: str
    password: str
    state_dir: Path
    pg_port: int
    mlflow_port: int
    env: dict[str, str] = field(repr=False)
    cleanup_dir: Path | None = field(default=None, repr=False)  # removed by stop()
    _stopped: bool = field(default=False, repr=False)

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "mlflow.log"

    def client_env(self) -> dict[str, str]:
        """The variables a client process needs to log to this server as the admin."""
        return {
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": self.username,
            "MLFLOW_TRACKING_PASSWORD": self.password,
        }

    def run_script(
        self, command: str, *, extra_env: Mapping[str, str] | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/server.sh COMMAND`` against this server's state dir."""
        env = dict(self.env)
        env.update(extra_env or {})
        return subprocess.run(
            ["bash", str(SERVER_SH), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def kill_tracking(self) -> None:
        """SIGKILL the MLflow server and its workers, as a crash would; PostgreSQL keeps running."""
        pid = int((self.state_dir / "mlflow.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        _wait_for(lambda: not _answers(self.mlflow_port), 30, "the killed MLflow server to stop answering")

    def stop_postgres(self) -> None:
        """Stop the server's PostgreSQL (fast shutdown: open connections are cut), MLflow keeps running."""
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # as scripts/server.sh runs it
        pg_ctl = self._pg_bin() / "pg_ctl"
        done = subprocess.run(
            [*as_owner, str(pg_ctl), "-D", str(self.state_dir / "postgres" / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {done.stderr.strip()}")

    def _pg_bin(self) -> Path:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not versions:
            raise RuntimeError("no pg_ctl under /usr/lib/postgresql")
        return versions[-1].parent

    def start(self) -> None:
        """`scripts/server.sh start` again: it starts whichever of PostgreSQL and MLflow is down."""
        done = self.run_script("start")
        if done.returncode != 0:
            raise ServerStartError(f"scripts/server.sh start failed:\n{done.stdout}\n{done.stderr}")

    def stop(self) -> None:
        """Stop MLflow and PostgreSQL; remove the temporary state dir if we created it."""
        if self._stopped:
            return
        self._stopped = True
        try:
            result = self.run_script("stop", timeout=120)
            if result.returncode != 0:
                raise RuntimeError(f"scripts/server.sh stop failed: {result.stderr.strip()}")
        finally:
            if self.cleanup_dir is not None:
                shutil.rmtree(self.cleanup_dir, ignore_errors=True)


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start_server(
    state_dir: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    start_timeout: int = 120,
    attempts: int = 2,
) -> MlflowServer:
    """Start a fresh server and wait until it is healthy.

    state_dir: where ``.server`` state goes. Default: a new ``/tmp/logitlab-mlflow-*`` dir
    (mode 0711, so the ``postgres`` OS user can traverse it; pytest's own tmp dirs are
    0700 and are not usable for that when running as root), removed again by ``stop``.
    env: extra environment for ``server.sh`` (e.g. ``LOGITLAB_SERVER_ADMIN_PASSWORD``).
    """
    owns_dir = state_dir is None
    if state_dir is None:
        state_dir = Path(tempfile.mkdtemp(prefix="logitlab-mlflow-")) / "server"
        state_dir.parent.chmod(0o711)
    state_dir = Path(state_dir).resolve()

    base_env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    base_env.update(
        {
            "DO_NOT_TRACK": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DVC_NO_ANALYTICS": "1",
            "LOGITLAB_SERVER_DIR": str(state_dir),
            "MLFLOW_HOST": "127.0.0.1",
            "LOGITLAB_SERVER_START_TIMEOUT": str(start_timeout),
        }
    )
    base_env.update(env or {})

    last = None
    for _attempt in range(attempts):  # a port picked as free may be taken meanwhile
        pg_port = free_port()
        mlflow_port = free_port({pg_port})
        run_env = dict(base_env, PG_PORT=str(pg_port), MLFLOW_PORT=str(mlflow_port))
        last = subprocess.run(
            ["bash", str(SERVER_SH), "start"],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=start_timeout + 180,
            check=False,
        )
        if last.returncode == 0:
            break
        if "already in use" not in last.stderr:
            break
    assert last is not None
    if last.returncode != 0:
        # leave nothing running behind a failed start
        subprocess.run(
            ["bash", str(SERVER_SH), "stop"], env=run_env, capture_output=True, text=True, timeout=120, check=False
        )
        message = (
            f"scripts/server.sh start failed (exit {last.returncode})\n"
            f"--- stdout\n{last.stdout}\n--- stderr\n{last.stderr}\n"
            f"--- {state_dir / 'mlflow.log'} (tail)\n{_log_tail(state_dir / 'mlflow.log')}"
        )
        if owns_dir:
            shutil.rmtree(state_dir.parent, ignore_errors=True)
        raise ServerStartError(message)

    creds = read_credentials(state_dir / "credentials.env")
    username = run_env.get("LOGITLAB_SERVER_ADMIN_USER") or creds["LOGITLAB_SERVER_ADMIN_USER"]
    password = run_env.get("LOGITLAB_SERVER_ADMIN_PASSWORD") or creds["LOGITLAB_SERVER_ADMIN_PASSWORD"]
    server = MlflowServer(
        uri=f"http://127.0.0.1:{mlflow_port}",
        username=username,
        password=password,
        state_dir=state_dir,
        pg_port=pg_port,
        mlflow_port=mlflow_port,
        env=run_env,
        cleanup_dir=state_dir.parent if owns_dir else None,
    )
    atexit.register(_atexit_stop, server)  # safety net if the caller never stops it
    return server


def _atexit_stop(server: MlflowServer) -> None:
    with contextlib.suppress(Exception):
        server.stop()


def stop_server(server: MlflowServer) -> None:
    """Stop the server; remove its temporary state if :func:`start_server` created it."""
    server.stop()


@contextlib.contextmanager
def mlflow_server(state_dir: Path | None = None, **kwargs) -> Iterator[MlflowServer]:
    """Context manager: start a server, yield it, always stop it."""
    server = start_server(state_dir, **kwargs)
    try:
        yield server
    finally:
        stop_server(server)
