"""moto's server in a process of its own, one per local stack.

moto keeps its state in process-wide backends, so two stacks in one process
(a test session's and a second one with other settings) would share tables
and parameters. A process per stack keeps them apart, and moves moto's CPU
work off the process that runs the gateway and the tests.

The server also takes scripted DynamoDB faults, the way the Fake takes
Stripe's: `POST /_devstack/faults {"operation": "TransactWriteItems",
"error": "ThrottlingException", "times": 3}` makes the next three matching
requests fail as DynamoDB would, so tests can throttle the write path.
`GET /_devstack/faults` shows what is pending and what was injected.

Run: `python -m devstack.moto_server PORT`.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

# DynamoDB's own error shapes: (HTTP status, __type suffix, message).
ERRORS: dict[str, tuple[int, str, str]] = {
    "ThrottlingException": (400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
    "ProvisionedThroughputExceededException": (
        400, "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded."),
    "RequestLimitExceeded": (400, "RequestLimitExceeded", "Throughput exceeds the current throughput limit."),
    "InternalServerError": (500, "InternalServerError", "Internal server error"),
}
FAULTS_PATH = "/_devstack/faults"


class FaultInjector:
    """WSGI middleware: answers scripted DynamoDB errors before moto sees the request."""

    def __init__(self, app: Callable[[Environ, StartResponse], Iterable[bytes]]) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._pending: dict[str, deque[list[Any]]] = {}
        self.injected: dict[str, int] = {}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == FAULTS_PATH:
            return self._control(environ, start_response)
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith("DynamoDB_20120810."):
            fault = self._take(target.split(".", 1)[1])
            if fault is not None:
                status, type_, message = ERRORS[fault]
                body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{type_}",
                                   "message": message}).encode()
                start_response(f"{status} {'Bad Request' if status == 400 else 'Internal Server Error'}",
                               [("Content-Type", "application/x-amz-json-1.0"),
                                ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)

    def _take(self, operation: str) -> str | None:
        with self._lock:
            queue = self._pending.get(operation)
            if not queue:
                return None
            fault = queue[0]
            fault[1] -= 1
            if fault[1] <= 0:
                queue.popleft()
            self.injected[operation] = self.injected.get(operation, 0) + 1
            return str(fault[0])

    def _control(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        status = "200 OK"
        if environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                spec = json.loads(environ["wsgi.input"].read(length) or b"{}")
                operation, error, times = str(spec["operation"]), str(spec.get("error", "ThrottlingException")), \
                    int(spec.get("times", 1))
                if error not in ERRORS or times < 1:
                    raise ValueError(f"error must be one of {sorted(ERRORS)} and times >= 1")
            except (KeyError, ValueError, TypeError) as exc:
                body = json.dumps({"error": str(exc)}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [body]
            with self._lock:
                self._pending.setdefault(operation, deque()).append([error, times])
        elif environ.get("REQUEST_METHOD") == "DELETE":
            with self._lock:
                self._pending.clear()
        with self._lock:
            state = {"pending": {op: sum(f[1] for f in q) for op, q in self._pending.items() if q},
                     "injected": dict(self.injected)}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(state).encode()]


def main(argv: list[str]) -> int:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """Thousands of requests a test run: the access log is noise."""

    from devstack.dynamodb import patch_moto

    port = int(argv[0])
    patch_moto()
    app = FaultInjector(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"moto ready on {port}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
