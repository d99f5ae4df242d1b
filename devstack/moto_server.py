"""moto's server in a process of its own, one per local stack.

moto keeps its state in process-wide backends, so two stacks in one process
(a test session's and a second one with other settings) would share tables
and parameters. A process per stack keeps them apart, and moves moto's CPU
work off the process that runs the gateway and the tests.

The server also takes scripted DynamoDB faults, the way the Fake takes
Stripe's: `POST /_devstack/faults {"operation": "TransactWriteItems",
"error": "ThrottlingException", "times": 3}` makes the next three matching
requests fail as DynamoDB would, so tests can throttle the write path
(errors: ERRORS below; "TransactionConflict" cancels a TransactWriteItems as
a concurrent transaction on one of its items would).
An optional `"table": "<name>"` limits a fault to requests that name that
table (a transaction: any of its items), so a schedule writing elsewhere
cannot take a test's fault. `GET /_devstack/faults` shows what is pending
and what was injected; `DELETE` drops what is pending.

Run: `python -m devstack.moto_server PORT`.
"""

from __future__ import annotations

import io
import json
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
    # Another transaction holds one of the items (TransactWriteItems only):
    # DynamoDB cancels this one, naming TransactionConflict for the first item.
    "TransactionConflict": (400, "TransactionCanceledException",
                            "Transaction cancelled, please refer cancellation reasons for specific reasons"),
    # A conditional single-item write refused, as when another writer changed
    # the item between the caller's read and its write.
    "ConditionalCheckFailedException": (400, "ConditionalCheckFailedException", "The conditional request failed"),
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
            operation = target.split(".", 1)[1]
            request = b"{}"
            if self._reads_body(operation):
                # Read the body (its tables, its items), then hand moto a fresh copy.
                length = int(environ.get("CONTENT_LENGTH") or 0)
                request = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = io.BytesIO(request)
            fault = self._take(operation, _tables(request))
            if fault is not None:
                status, type_, message = ERRORS[fault]
                answer: dict[str, Any] = {"__type": f"com.amazonaws.dynamodb.v20120810#{type_}",
                                          "message": message}
                if fault == "TransactionConflict":
                    items = _items(request)
                    reasons = ["TransactionConflict", *["None"] * (items - 1)]
                    answer["message"] = f"{message} [{', '.join(reasons)}]"
                    answer["CancellationReasons"] = [
                        {"Code": r, **({"Message": "Transaction is ongoing for the item"} if r != "None" else {})}
                        for r in reasons]
                body = json.dumps(answer).encode()
                start_response(f"{status} {'Bad Request' if status == 400 else 'Internal Server Error'}",
                               [("Content-Type", "application/x-amz-json-1.0"),
                                ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start_response)

    def _reads_body(self, operation: str) -> bool:
        with self._lock:
            return any(f[2] is not None or f[0] == "TransactionConflict" for f in self._pending.get(operation, ()))

    def _take(self, operation: str, tables: set[str]) -> str | None:
        """The first pending fault for this operation that applies to `tables`."""
        with self._lock:
            queue = self._pending.get(operation)
            if not queue:
                return None
            for fault in queue:
                if fault[2] is None or fault[2] in tables:
                    break
            else:
                return None
            fault[1] -= 1
            if fault[1] <= 0:
                queue.remove(fault)
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
                table = spec.get("table")
                if error not in ERRORS or times < 1:
                    raise ValueError(f"error must be one of {sorted(ERRORS)} and times >= 1")
                if table is not None and (not isinstance(table, str) or not table):
                    raise ValueError("table must be a table name")
                if error == "TransactionConflict" and operation != "TransactWriteItems":
                    raise ValueError("TransactionConflict cancels a TransactWriteItems only")
            except (KeyError, ValueError, TypeError) as exc:
                body = json.dumps({"error": str(exc)}).encode()
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [body]
            with self._lock:
                self._pending.setdefault(operation, deque()).append([error, times, table])
        elif environ.get("REQUEST_METHOD") == "DELETE":
            with self._lock:
                self._pending.clear()
        with self._lock:
            state = {"pending": {op: sum(f[1] for f in q) for op, q in self._pending.items() if q},
                     "injected": dict(self.injected)}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(state).encode()]


def _items(body: bytes) -> int:
    """How many items a TransactWriteItems request holds (at least one)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return 1
    items = request.get("TransactItems") if isinstance(request, dict) else None
    return max(1, len(items)) if isinstance(items, list) else 1


def _tables(body: bytes) -> set[str]:
    """The tables a DynamoDB JSON request names (TableName, TransactItems, RequestItems)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return set()
    if not isinstance(request, dict):
        return set()
    names = {request["TableName"]} if isinstance(request.get("TableName"), str) else set()
    for item in request.get("TransactItems") or []:
        for action in item.values() if isinstance(item, dict) else ():
            if isinstance(action, dict) and isinstance(action.get("TableName"), str):
                names.add(action["TableName"])
    if isinstance(request.get("RequestItems"), dict):
        names.update(str(name) for name in request["RequestItems"])
    return names


def main(argv: list[str]) -> int:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """Thousands of requests a test run: the access log is noise."""

    from devstack.dynamodb import patch_moto
    from devstack.signals import StopSignal

    port = int(argv[0])
    patch_moto()
    app = FaultInjector(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    stop = StopSignal()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"moto ready on {port}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
