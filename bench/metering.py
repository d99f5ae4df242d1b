"""Usage metering through the local stack (DESIGN.md section 7 targets).

For each delivery mode (v1, v2), on a fresh local stack:
1. with the meter_reporter's stream poller paused, N usage PUTs from a pool
   of client threads: accepted per second, and DynamoDB write requests per
   accepted event (target: 1);
2. the poller resumed: seconds until every event is reported, Stripe requests
   per reported event (target for v2: at most 1 per 100) and DynamoDB write
   requests per reported event (target for v2: at most 1 per 100).

The stack runs on DynamoDB Local (DYNAMODB_ENDPOINT_URL, or one started here
as `make test-dynamodb-local` does): moto snapshots a whole table for every
TransactWriteItems, which at thousands of rows would measure moto, not this
code. Write requests are counted where they arrive: every DynamoDB request of
every process (API and reporter workers, stream pollers) goes through a small
counting proxy in front of DynamoDB, keyed by its X-Amz-Target operation, so
the figures are measured, not estimated. Stripe requests are the Fake's own
record of the calls it received.
"""

from __future__ import annotations

import http.client
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from devstack.stack import LocalStack, Settings

EVENTS = int(os.environ.get("BENCH_USAGE_EVENTS", "2000"))
CLIENT_THREADS = int(os.environ.get("BENCH_USAGE_THREADS", "16"))
CUSTOMERS = 20
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
STRIPE_METER_OPERATIONS = frozenset({"create_meter_event", "create_meter_event_session", "send_meter_events"})
REPORTER_STREAM = "MeterReporterFunction.Stream"


class CountingProxy:
    """Forwards DynamoDB (and DynamoDB Streams) requests to `upstream`,
    counting them by operation."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._host, self._port = target.hostname or "127.0.0.1", target.port or 80
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = str(self.headers.get("X-Amz-Target", "")).split(".", 1)[-1]
                proxy.count(operation)
                status, headers, answer = proxy.forward(self.command, self.path, dict(self.headers.items()), body)
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._local = threading.local()
        threading.Thread(target=self._server.serve_forever, daemon=True, name="ddb-count-proxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, operation: str) -> None:
        with self._lock:
            self.counts[operation] += 1

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in range(2):  # a kept-alive upstream connection may have been closed
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=60)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.getheaders(), response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    def writes(self) -> int:
        with self._lock:
            return sum(n for op, n in self.counts.items() if op in WRITE_OPERATIONS)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def dynamodb_local() -> Iterator[str]:
    """DYNAMODB_ENDPOINT_URL, or an in-memory DynamoDB Local started for the run."""
    given = os.environ.get("DYNAMODB_ENDPOINT_URL")
    if given:
        yield given
        return
    from devstack.dynamodb_local.__main__ import running

    with running() as url:
        yield url


def _meter_calls(stack: LocalStack) -> int:
    assert stack.fake_stripe is not None
    return sum(1 for c in stack.fake_stripe.fake.calls if c["operation"] in STRIPE_METER_OPERATIONS)


def _put_all(base: str, customer_ids: list[str], run_id: str) -> tuple[int, float]:
    local = threading.local()

    def put(i: int) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        body: dict[str, Any] = {"event_name": "bench_calls", "value": 1 + i % 7,
                                "customer_id": customer_ids[i % len(customer_ids)]}
        return int(session.put(f"{base}/v1/usage/bench-{run_id}-{i}", json=body, timeout=60).status_code)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        statuses = list(pool.map(put, range(EVENTS)))
    elapsed = time.monotonic() - started
    return sum(1 for s in statuses if s == 202), elapsed


def _wait_reported(stack: LocalStack, base: str, timeout: float = 600) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.drain(timeout=max(1.0, deadline - time.monotonic()))
        if not requests.get(f"{base}/v1/usage?status=pending&limit=1", timeout=30).json()["data"]:
            return True
    return False


def _run_mode(mode: str, endpoint: str) -> list[dict[str, Any]]:
    counter = CountingProxy(endpoint)
    # Function output (logs, and the EMF lines Powertools prints) goes to a
    # file, as it would to CloudWatch, not into the table.
    log = Path(tempfile.mkdtemp(prefix="bench-metering-")) / "functions.log"
    stack = LocalStack(Settings(port=0, meter_api=mode, concurrency=4, dynamodb_endpoint=counter.url,
                                stack_name=f"bench-metering-{mode}", function_log=log,
                                extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"})).start()
    try:
        base = stack.url
        customer_ids = [requests.put(f"{base}/v1/owners/Bench/{uuid.uuid4()}/customer", json={}, timeout=30)
                        .json()["id"] for _ in range(CUSTOMERS)]
        # Stripe's customer.created webhooks for them, applied before anything is counted.
        stack.settle(60)
        assert stack.streams is not None
        poller = stack.streams.poller(REPORTER_STREAM)
        poller.stop()  # accept first, deliver after: each phase's writes are its own

        counter.reset()
        accepted, put_seconds = _put_all(base, customer_ids, uuid.uuid4().hex[:8])
        put_writes = counter.writes()

        counter.reset()
        stripe_before = _meter_calls(stack)
        assert stack.fake_stripe is not None
        billed_before = len(stack.fake_stripe.fake.meter_events)
        started = time.monotonic()
        poller.start()
        drained = _wait_reported(stack, base)
        drain_seconds = time.monotonic() - started
        reported = len(stack.fake_stripe.fake.meter_events) - billed_before
        stripe_requests = _meter_calls(stack) - stripe_before
        report_writes = counter.writes()
        duplicates = sum(stack.fake_stripe.fake.meter_event_duplicates.values())
    finally:
        stack.stop()
        counter.stop()
    name = f"metering {mode}"
    per = max(reported, 1)
    return [
        {"benchmark": name, "metric": f"usage PUTs accepted ({CLIENT_THREADS} client threads)", "value": accepted,
         "unit": f"of {EVENTS}"},
        {"benchmark": name, "metric": "accepted per second", "value": round(accepted / put_seconds, 1), "unit": "/s"},
        {"benchmark": name, "metric": "DynamoDB write requests per accepted event",
         "value": round(put_writes / max(accepted, 1), 3), "unit": "requests"},
        {"benchmark": name, "metric": "seconds to drain (all reported)" + ("" if drained else " TIMED OUT"),
         "value": round(drain_seconds, 2), "unit": "s"},
        {"benchmark": name, "metric": "Stripe requests per reported event", "value": round(stripe_requests / per, 4),
         "unit": f"{stripe_requests} for {reported}"},
        {"benchmark": name, "metric": "DynamoDB write requests per reported event",
         "value": round(report_writes / per, 4), "unit": f"{report_writes} for {reported}"},
        {"benchmark": name, "metric": "events Stripe received twice (deduplicated)", "value": duplicates,
         "unit": "events"},
    ]


def run() -> list[dict[str, Any]]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with dynamodb_local() as endpoint:
        return [row for mode in ("v1", "v2") for row in _run_mode(mode, endpoint)]


if __name__ == "__main__":
    for row in run():
        print(f"{row['benchmark']:<12} {row['metric']:<55} {row['value']:>10} {row['unit']}")
