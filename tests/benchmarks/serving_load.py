"""Serving load benchmark: `make serve`'s server under one client and under eight, with one worker and with the
default (one per core), plus what an over-limit body and a big invalid body are answered.

Run as ``python -m tests.benchmarks.serving_load [--seconds S] [--max-requests N]`` (or `make bench-serve`).
It copies the project into a temporary git repository (`tests.conftest.make_project`), runs a 4-job sweep on
`circles` there to register a champion, then starts `scripts/serve.sh` on a free 127.0.0.1 port, once with
WORKERS=1 and once with the default, and drives it from this process: each client is a thread holding one
keep-alive connection, posting the same 20-row request (each phase bounded by a request count and a time).
Nothing leaves 127.0.0.1; the servers are stopped (their process group) whatever happens. Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import BASE_ENV, make_project, run

NAME = "logitlab-circles"
SWEEP = ["-m", "data=circles", "model.learning_rate=0.1,1", "features.degree=1,2"]
ROWS = 20  # rows per scoring request
START_TIMEOUT_S = 120
CLIENTS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_body(rows: int = ROWS) -> bytes:
    rng = np.random.default_rng(0)
    data = rng.uniform(-1.0, 1.0, size=(rows, 2)).tolist()
    return json.dumps({"dataframe_split": {"columns": ["x0", "x1"], "data": data}}).encode()


@contextlib.contextmanager
def serving(project: Path, log: Path, **env: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`scripts/serve.sh` on a free port until the block ends; its process group is stopped on the way out."""
    port = free_port()
    full_env = {**BASE_ENV, "LOGITLAB_PYTHON": sys.executable, "PORT": str(port), "MODEL_NAME": NAME, **env}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(project / "scripts" / "serve.sh")],
            cwd=project,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while status(port, "GET", "/ping") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve.sh did not start (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield port, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def status(port: int, method: str, path: str) -> int | None:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request(method, path)
        return connection.getresponse().status
    except OSError:
        return None


def drive(port: int, body: bytes, clients: int, seconds: float, max_requests: int) -> dict[str, Any]:
    """`clients` threads posting `body` back to back on keep-alive connections, until `max_requests` are sent
    or `seconds` have passed: throughput, latency percentiles, non-200 answers."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    sent = iter(range(max_requests))  # next() on one shared iterator: atomic under the GIL
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json"}
        while time.perf_counter() < deadline:
            with lock:
                if next(sent, None) is None:
                    break
            began = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body, headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                ok = False
            latencies[index].append(time.perf_counter() - began)
            failures[index] += not ok
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    all_ms = np.array([x for per_client in latencies for x in per_client]) * 1e3
    p50, p95, p99 = np.percentile(all_ms, [50, 95, 99]) if all_ms.size else (float("nan"),) * 3
    return {
        "clients": clients,
        "requests": int(all_ms.size),
        "seconds": round(elapsed, 2),
        "req_per_s": round(all_ms.size / elapsed, 1),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "non_200": sum(failures),
    }
