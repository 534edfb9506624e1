"""Serving load benchmark: `make serve`'s server under one client and under eight, with one worker and with the
default (one per core), and what an over-limit body and a big invalid body are answered.

Run as ``python -m tests.benchmarks.serving_load [--seconds S] [--rounds R]``, or `make bench-serve` (which
writes reports/bench/). It copies the project into a temporary git repository (`tests.conftest.make_project`),
runs a 4-job sweep on `circles` there to register a champion, then starts `scripts/serve.sh` twice on free
127.0.0.1 ports, WORKERS=1 and the default, and drives both from this process, **interleaved**: each round runs
one client, then eight, against one server and then the other, so that load from other work on a shared
machine lands on both sides of the ratio. A client is a thread holding one keep-alive connection and posting
the same 20-row request back to back; every phase stops at S seconds or MAX_REQUESTS requests, whichever
comes first. Throughput and latency percentiles pool the rounds. Nothing leaves 127.0.0.1; the servers are
stopped (their process groups) whatever happens. Asserts nothing.
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
CLIENTS = 8
MAX_REQUESTS = 3000  # per phase
START_TIMEOUT_S = 180
LIMIT = 1 << 20  # logitlab.serving.DEFAULT_MAX_REQUEST_BYTES, the default server's limit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_body(rows: int = ROWS) -> bytes:
    data = np.random.default_rng(0).uniform(-1.0, 1.0, size=(rows, 2)).tolist()
    return json.dumps({"dataframe_split": {"columns": ["x0", "x1"], "data": data}}).encode()


@contextlib.contextmanager
def serving(project: Path, log: Path, **env: str) -> Iterator[tuple[int, int]]:
    """`scripts/serve.sh` on a free port until the block ends (its port and pid); its process group is stopped
    after."""
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
        yield port, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_until_serving(port: int, log: Path) -> None:
    """Until /ping answers and every worker the server announced has started (each loads the model)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        text = log.read_text(errors="replace")
        announced = next((line.split()[1] for line in text.splitlines() if line.startswith("serving: ")), None)
        started = announced is not None and text.count("Application startup complete.") >= int(announced)
        if started and post(port, "GET", "/ping", b"")[0] == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve.sh did not start in {START_TIMEOUT_S} s:\n{text[-3000:]}")
        time.sleep(0.5)


def post(
    port: int, method: str, path: str, body: bytes | Iterator[bytes], content_type: str = "application/json"
) -> tuple[int | None, bytes]:
    """One request on a new connection: (status, reply body), or (None, b"") if the connection failed.
    An iterator body goes out chunked, with no Content-Length."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body, {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        connection.close()


def drive(port: int, body: bytes, clients: int, seconds: float, max_requests: int = MAX_REQUESTS) -> dict[str, Any]:
    """`clients` threads posting `body` back to back, each on its keep-alive connection, until `max_requests`
    are sent or `seconds` have passed: the latencies (s), the non-200 count and the wall time."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    tickets = iter(range(max_requests))
    lock = threading.Lock()
    start = time.perf_counter()
    deadline = start + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                if next(tickets, None) is None:
                    break
            began = time.perf_counter()
            try:
                connection.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()  # reconnects on the next request
                ok = False
            latencies[index].append(time.perf_counter() - began)
            failures[index] += not ok
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "latencies": [x for per_client in latencies for x in per_client],
        "non_200": sum(failures),
        "seconds": time.perf_counter() - start,
    }


def server_cpu_seconds(pid: int) -> float:
    """CPU time of the server process and all its children (the workers)."""
    import psutil

    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def summary(workers: int, clients: int, phases: list[dict[str, Any]], load: list[float]) -> dict[str, Any]:
    """One row: throughput over all rounds of a (workers, clients) phase, pooled latency percentiles, and the
    cores the server used (its CPU seconds over the wall time: short of the workers on a busy machine)."""
    latencies_ms = np.array([x for phase in phases for x in phase["latencies"]]) * 1e3
    seconds = sum(phase["seconds"] for phase in phases)
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    return {
        "workers": workers,
        "clients": clients,
        "requests": int(latencies_ms.size),
        "req/s": round(latencies_ms.size / seconds, 1),
        "p50 ms": round(float(p50), 1),
        "p95 ms": round(float(p95), 1),
        "p99 ms": round(float(p99), 1),
        "non-200": sum(phase["non_200"] for phase in phases),
        "server cores": round(sum(phase["cpu"] for phase in phases) / seconds, 2),
        "load avg": f"{min(load):.1f}-{max(load):.1f}",
    }


def limits(port: int) -> list[dict[str, Any]]:
    """What the default server answers to an over-limit body (declared, then streamed) and to big invalid
    bodies: status and reply size (the request is never echoed beyond a short excerpt)."""
    rows = []
    for request, body, content_type in [
        (f"{LIMIT + 1} bytes, Content-Length", b"a" * (LIMIT + 1), "application/json"),
        (f"{10 * LIMIT} bytes, chunked", (b"a" * (64 << 10) for _ in range(160)), "application/json"),
        (f"{LIMIT - 10} bytes of non-JSON", b"a" * (LIMIT - 10), "application/json"),
        (f"{LIMIT - 10} bytes of CSV, x0 not a number", b"x0,x1\n" + b"abc,1\n" * ((LIMIT - 20) // 6), "text/csv"),
    ]:
        status, reply = post(port, "POST", "/invocations", body, content_type)
        rows.append(
            {
                "request": request,
                "status": status,
                "reply bytes": len(reply),
                "reply lines": reply.count(b"\n") + 1,
                "reply": reply[:100].decode(errors="replace") + ("..." if len(reply) > 100 else ""),
            }
        )
    return rows


def measure(seconds: float = 5.0, rounds: int = 3) -> dict[str, list[dict[str, Any]]]:
    """Both servers up at once, phases interleaved round by round; rows for the "serving" and
    "serving_limits" sections of reports/bench/results.md."""
    from logitlab.serving import cores

    with tempfile.TemporaryDirectory(prefix="logitlab-bench-serve-") as tmp:
        project = make_project(Path(tmp) / "project")
        run([sys.executable, "-m", "logitlab.sweep", *SWEEP], project)
        default = cores()
        body = request_body()
        settings = {1: {"WORKERS": "1"}, default: {}}  # one entry on a one-core machine
        phases: dict[tuple[int, int], list[dict[str, Any]]] = {}
        load: dict[tuple[int, int], list[float]] = {}
        with contextlib.ExitStack() as stack:
            servers = {
                workers: stack.enter_context(serving(project, Path(tmp) / f"serve-{workers}.log", **env))
                for workers, env in settings.items()
            }
            for workers, (port, _) in servers.items():
                wait_until_serving(port, Path(tmp) / f"serve-{workers}.log")
                drive(port, body, CLIENTS, 1.0, 100)  # warm-up: first requests, connections
            for _ in range(rounds):
                for workers, (port, pid) in servers.items():
                    for clients in (1, CLIENTS):
                        load.setdefault((workers, clients), []).append(os.getloadavg()[0])
                        cpu = server_cpu_seconds(pid)
                        phase = drive(port, body, clients, seconds)
                        phase["cpu"] = server_cpu_seconds(pid) - cpu
                        phases.setdefault((workers, clients), []).append(phase)
            limit_rows = limits(servers[default][0])
    rows = [summary(w, c, phases[w, c], load[w, c]) for w, c in sorted(phases)]
    one_worker = {row["clients"]: row["req/s"] for row in rows if row["workers"] == 1}
    for row in rows:
        row["x 1 worker"] = round(row["req/s"] / one_worker[row["clients"]], 2)
    return {"serving": rows, "serving_limits": limit_rows}


def table(rows: list[dict[str, Any]]) -> str:
    header = list(rows[0])
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    return "\n".join([*lines, *(" | ".join(str(row[key]) for key in header) for row in rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase (one server, one client count)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from tests.benchmarks.conftest import machine

    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine().items()))
    results = measure(args.seconds, args.rounds)
    print(table(results["serving"]))
    print()
    print(table(results["serving_limits"]))


if __name__ == "__main__":
    main()
