"""A counting proxy in front of DynamoDB, for the benchmarks.

Every DynamoDB (and DynamoDB Streams) request of every process of the local
stack goes through it, so the figures are measured where the requests
arrive, not estimated from the code:

- requests, by operation (X-Amz-Target);
- with `capacity=True`, the capacity DynamoDB itself says each request
  consumed: `ReturnConsumedCapacity=INDEXES` is added to every request that
  takes it, and the answer's `ConsumedCapacity` is summed by read or write,
  table and index (DynamoDB Local computes it as DynamoDB does: 1 write unit
  per KB written, twice that in a transaction, one more per index entry
  added, changed or removed; reads by 4 KB, halved when eventually
  consistent). The answer is passed on untouched (botocore checks its CRC),
  so a client that did not ask for capacity just ignores the extra field;
- the partition key values each write request writes in each table (the
  keys of a Put's item, an Update's or a Delete's key), for the hot-key
  count of bench.partitions.

A conditional write DynamoDB refuses carries no ConsumedCapacity in its
answer (DynamoDB still bills it one write unit): those are counted apart,
by operation, in `refused`.

One correction: DynamoDB Local answers a TransactWriteItems with the
capacity of each *distinct* per-item figure once (a set: five alike puts
in one table come back as one put's 2 units, where DynamoDB bills 10). When
every item of a table in the transaction is alike (same operation, same
attributes, same update expression: the reporter's batches of outcomes),
the proxy multiplies that table's figure by the item count, which is exact;
otherwise it scales by items over distinct shapes and counts the request
in `approximated`.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from devstack.dynamodb import EmbeddedMoto
from devstack.stack import LocalStack, Settings

WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
DYNAMODB_TARGET = "DynamoDB_20120810"


class CountingProxy:
    """Forwards DynamoDB (and DynamoDB Streams) requests to `upstream`,
    counting them by operation, and (capacity=True) their consumed capacity."""

    def __init__(self, upstream: str, *, capacity: bool = False,
                 key_names: dict[str, tuple[str, ...]] | None = None) -> None:
        self.upstream = upstream
        target = urlsplit(upstream)
        self._host, self._port = target.hostname or "127.0.0.1", target.port or 80
        self._lock = threading.Lock()
        self.capacity = capacity
        # table name -> its partition key attribute (for key_writes)
        self.key_names = dict(key_names or {})
        self.counts: Counter[str] = Counter()
        # ("write" | "read", table, index or "") -> capacity units
        self.units: dict[tuple[str, str, str], float] = defaultdict(float)
        # (table, partition key value) -> write requests that wrote it
        self.key_writes: Counter[tuple[str, str]] = Counter()
        self.refused: Counter[str] = Counter()
        self.approximated = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                service, _, operation = str(self.headers.get("X-Amz-Target", "")).partition(".")
                headers = dict(self.headers.items())
                body = proxy.before(service, operation, body)
                headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
                headers["Content-Length"] = str(len(body))
                status, answer_headers, answer = proxy.forward(self.command, self.path, headers, body)
                proxy.after(service, operation, status, answer)
                self.send_response(status)
                for key, value in answer_headers:
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        # The scale of the transaction each handler thread is forwarding.
        self._scales: dict[int, dict[str, float]] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._local = threading.local()
        threading.Thread(target=self._server.serve_forever, daemon=True, name="ddb-count-proxy").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what passes through --------------------------------------------------------------

    def count(self, operation: str) -> None:
        with self._lock:
            self.counts[operation] += 1

    def before(self, service: str, operation: str, body: bytes) -> bytes:
        self.count(operation)
        if service != DYNAMODB_TARGET or operation not in WRITE_OPERATIONS | READ_OPERATIONS:
            return body
        request = json.loads(body or b"{}")
        if operation in WRITE_OPERATIONS:
            self._count_keys(operation, request)
        if not self.capacity:
            return body
        request["ReturnConsumedCapacity"] = "INDEXES"
        if operation == "TransactWriteItems":
            self._scales[id(threading.current_thread())] = self._transaction_scale(request)
        return json.dumps(request).encode()

    def _transaction_scale(self, request: dict[str, Any]) -> dict[str, float]:
        shapes: dict[str, list[str]] = {}
        for entry in request.get("TransactItems") or []:
            for kind, part in entry.items():
                if kind == "ConditionCheck":
                    continue
                shape = json.dumps([kind, sorted(part.get("Item") or {}), part.get("UpdateExpression"),
                                    part.get("ConditionExpression")], sort_keys=True)
                shapes.setdefault(part["TableName"], []).append(shape)
        scale: dict[str, float] = {}
        for table, items in shapes.items():
            distinct = len(set(items))
            if distinct > 1 and len(items) > distinct:
                with self._lock:
                    self.approximated += 1
            scale[table] = len(items) / distinct
        return scale

    def after(self, service: str, operation: str, status: int, answer: bytes) -> None:
        if service != DYNAMODB_TARGET or operation not in WRITE_OPERATIONS | READ_OPERATIONS:
            return
        if status != 200:
            if b"ConditionalCheckFailed" in answer or b"TransactionCanceled" in answer:
                with self._lock:
                    self.refused[operation] += 1
            return
        if not self.capacity:
            return
        consumed = json.loads(answer or b"{}").get("ConsumedCapacity")
        kind = "write" if operation in WRITE_OPERATIONS else "read"
        scale = self._scales.pop(id(threading.current_thread()), {}) if operation == "TransactWriteItems" else {}
        with self._lock:
            for entry in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
                table = str(entry.get("TableName", ""))
                factor = scale.get(table, 1.0)
                self.units[(kind, table, "")] += factor * float((entry.get("Table") or {}).get("CapacityUnits", 0.0))
                for group in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                    for index, used in (entry.get(group) or {}).items():
                        self.units[(kind, table, index)] += factor * float(used.get("CapacityUnits", 0.0))

    def _count_keys(self, operation: str, request: dict[str, Any]) -> None:
        items: list[tuple[str, dict[str, Any]]] = []
        if operation == "PutItem":
            items.append((request["TableName"], request.get("Item") or {}))
        elif operation in ("UpdateItem", "DeleteItem"):
            items.append((request["TableName"], request.get("Key") or {}))
        elif operation == "TransactWriteItems":
            for entry in request.get("TransactItems") or []:
                for kind, part in entry.items():
                    if kind == "Put":
                        items.append((part["TableName"], part.get("Item") or {}))
                    elif kind in ("Update", "Delete"):
                        items.append((part["TableName"], part.get("Key") or {}))
        elif operation == "BatchWriteItem":
            for table, writes in (request.get("RequestItems") or {}).items():
                for write in writes:
                    put, delete = write.get("PutRequest"), write.get("DeleteRequest")
                    items.append((table, (put or {}).get("Item") or (delete or {}).get("Key") or {}))
        with self._lock:
            for table, attrs in items:
                names = self.key_names.get(table)
                if names:
                    value = attrs.get(names[0]) or {}
                    self.key_writes[(table, str(next(iter(value.values()), "")))] += 1

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

    # -- reading the counts ----------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.units.clear()
            self.key_writes.clear()
            self.refused.clear()
            self.approximated = 0

    def writes(self) -> int:
        with self._lock:
            return sum(n for op, n in self.counts.items() if op in WRITE_OPERATIONS)

    def capacity_units(self, kind: str) -> dict[tuple[str, str], float]:
        """(table, index or "") -> units of `kind` ("write" or "read") consumed."""
        with self._lock:
            return {(table, index): units for (k, table, index), units in self.units.items() if k == kind}

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def counted_stack(*, concurrency: int, webhook_secrets: str | None = None
                  ) -> Iterator[tuple[LocalStack, CountingProxy]]:
    """A local stack on an embedded moto whose every DynamoDB request goes
    through a CountingProxy, its functions logging warnings only."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = EmbeddedMoto()
    moto.start()
    counter = CountingProxy(moto.url)
    settings = Settings(port=0, concurrency=concurrency, dynamodb_endpoint=counter.url,
                        extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"})
    if webhook_secrets is not None:
        settings.webhook_secrets = webhook_secrets
    stack = LocalStack(settings).start()
    try:
        yield stack, counter
    finally:
        stack.stop()
        counter.stop()
        moto.stop()
