"""`make serve`: MLflow's scoring server on one uvicorn worker per core, behind a request-size limit.

`mlflow models serve` starts uvicorn on MLflow's scoring app (`mlflow.pyfunc.scoring_server.init`), which reads
a request body whatever its size and answers a body it cannot parse with a 400 that holds the whole body. This
module downloads the model once, then runs uvicorn with N workers on an app factory that builds MLflow's own
scoring app in each worker and wraps it in `RequestGuard`: bodies over the limit get a one-line 413 (checked on
Content-Length and on the bytes of a body streamed without one), and every error reply is one line of bounded
length, so no reply echoes more than a short excerpt of a request.

    python -m logitlab.serving --model-uri models:/logitlab-circles/3 --port 5001 [--workers N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A JSON row of a few dozen numeric columns is ~1 KB: 1 MiB is ~1000 such rows (~25k of a two-column set) per
# request, scored in well under a second; parsing takes ~65x the body in memory (a 10 MB body took a worker to
# 655 MB), so the default bounds one request to ~65 MB per worker. Larger batches: raise it, or split them.
DEFAULT_MAX_REQUEST_BYTES = 1 << 20
# An error reply's message is cut to this many characters: room for a message naming the model's columns
# (BadInput), never more than a short excerpt of a request MLflow quotes.
MAX_ERROR_CHARS = 1000
# How long uvicorn's supervisor waits for a worker's answer before it kills it as hung and starts another: its
# default, 5 s, is less than a worker takes to start (import mlflow, load the model) on a busy 2-core machine,
# where workers were killed and restarted without end.
WORKER_HEALTHCHECK_S = 60
# The app factory reads its settings from the environment: uvicorn's workers are fresh processes (spawn).
MODEL_PATH_ENV = "LOGITLAB_SERVE_MODEL_PATH"
MAX_REQUEST_BYTES_ENV = "LOGITLAB_SERVE_MAX_REQUEST_BYTES"

logger = logging.getLogger("logitlab.serving")


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` on one line (whitespace runs become one space), cut to `limit` characters with a note of the rest."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}... ({len(flat) - limit} more characters)"


class RequestGuard:
    """ASGI middleware: the request-size limit (413) and bounded one-line error replies."""

    def __init__(self, app: ASGIApp, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_request_bytes:
            await self._too_large(send, f"request body of {int(declared)} bytes")
            return
        body = await self._read_body(receive)
        if body is None:  # streamed (chunked) past the limit
            await self._too_large(send, "request body (streamed, no Content-Length)")
            return
        await self.app(scope, _replay(body, receive), _bounded_errors(send))

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it is over the limit (the rest is left unread)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send, what: str) -> None:
        message = f"{what} is over the limit of {self.max_request_bytes} bytes (MAX_REQUEST_BYTES)"
        await _send_json(send, 413, {"error_code": "REQUEST_TOO_LARGE", "message": message})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then defers to the connection's."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _bounded_errors(send: Send) -> Send:
    """A `send` that rewrites any reply of status >= 400: its message on one line and cut to MAX_ERROR_CHARS
    (MLflow quotes a body it cannot parse, or the frame a model rejected, whole); a stack trace is logged
    here instead of being sent."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def bounded(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] >= 400:
            start = message
            return
        if start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        await _send_bounded(send, start, b"".join(chunks))

    return bounded


async def _send_bounded(send: Send, start: Message, body: bytes) -> None:
    text = body.decode("utf-8", errors="replace")
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and "message" in reply:
        trace = reply.pop("stack_trace", None)
        if trace:
            logger.warning("error %s, stack trace: %s", start["status"], str(trace)[-4000:])
        reply["message"] = one_line(str(reply["message"]))
        await _send_json(send, start["status"], reply)
        return
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    data = one_line(text).encode()
    await send({**start, "headers": [*headers, (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def _send_json(send: Send, status: int, reply: dict[str, Any]) -> None:
    data = json.dumps(reply).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


def create_app() -> ASGIApp:
    """uvicorn's app factory, called in each worker: MLflow's scoring app for the downloaded model, guarded."""
    from mlflow.pyfunc import scoring_server

    model = scoring_server.load_model_with_mlflow_config(os.environ[MODEL_PATH_ENV])
    return RequestGuard(scoring_server.init(model), int(os.environ[MAX_REQUEST_BYTES_ENV]))


def listening_socket(config: Any) -> socket.socket:
    """uvicorn's listening socket for its workers (`uvicorn.Config.bind_socket`), with its protocol known to
    Python: uvicorn makes it with proto 0, so asyncio's workers leave Nagle on for every connection (asyncio
    sets TCP_NODELAY only when proto == IPPROTO_TCP), and a client sending requests one after another waited
    ~40 ms for each on delayed ACKs (60 ms per request with 2 workers against 27 ms with 1)."""
    bound = config.bind_socket()
    return socket.socket(fileno=bound.detach())  # family, type and proto read back from the kernel


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which taskset and cpusets narrow)."""
    return len(os.sched_getaffinity(0))


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got '{value}'")
    return int(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m logitlab.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--model-uri", required=True, help="e.g. models:/logitlab-circles/3")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    parser.add_argument("--workers", type=_positive_int, default=cores(), help="default: one per core")
    parser.add_argument("--max-request-bytes", type=_positive_int, default=DEFAULT_MAX_REQUEST_BYTES)
    args = parser.parse_args(argv)

    import mlflow
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    # uvicorn's single-process server re-raises the SIGTERM it stopped on once it is down: as an exit, so that
    # the model's temporary folder is removed on the way out (the default action left it behind)
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(prefix="logitlab-serve-") as tmp:
        os.environ[MODEL_PATH_ENV] = mlflow.artifacts.download_artifacts(artifact_uri=args.model_uri, dst_path=tmp)
        os.environ[MAX_REQUEST_BYTES_ENV] = str(args.max_request_bytes)
        print(
            f"serving: {args.workers} worker(s) on {cores()} core(s), requests up to {args.max_request_bytes} bytes",
            flush=True,
        )
        config = uvicorn.Config(
            "logitlab.serving:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        )
        if config.workers == 1:
            server = uvicorn.Server(config)
            server.run()
            if not server.started:  # the port taken, the model not loading: uvicorn has said why
                sys.exit(STARTUP_FAILURE)
            return
        Multiprocess(config, sockets=[listening_socket(config)]).run()  # uvicorn.run's multi-worker branch


if __name__ == "__main__":
    main()
