"""DynamoDB for the local stack: moto's server (or DYNAMODB_ENDPOINT_URL) with
every table created from template.yaml's own resource definitions."""

from __future__ import annotations

import contextvars
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devstack.template import REGION, TableSpec

_CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=50)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_TRANSACTION_SNAPSHOTS: contextvars.ContextVar[dict[int, Any] | None] = contextvars.ContextVar(
    "moto_transaction_snapshots", default=None)


def _snapshot_each_table_once() -> None:
    """moto 5.2.5's TransactWriteItems deep-copies a table (items and stream
    records) for rollback once per *item* that names it: a 100-item
    transaction copied the same table 100 times, seconds on a table of a few
    thousand rows. Within one call every copy is of the same unchanged table,
    so one copy per table is the same snapshot at a hundredth of the cost."""
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    if getattr(models.DynamoDBBackend.transact_write_items, "_snapshots_once", False):
        return
    import copy as real_copy

    class _Copy:
        def __getattr__(self, name: str) -> Any:
            return getattr(real_copy, name)

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            cache = _TRANSACTION_SNAPSHOTS.get()
            if cache is None or not isinstance(obj, Table):
                return real_copy.deepcopy(obj, memo)
            if id(obj) not in cache:
                cache[id(obj)] = real_copy.deepcopy(obj, memo)
            return cache[id(obj)]

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        token = _TRANSACTION_SNAPSHOTS.set({})
        try:
            original(self, transact_items)
        finally:
            _TRANSACTION_SNAPSHOTS.reset(token)

    transact_write_items._snapshots_once = True  # type: ignore[attr-defined]
    setattr(models, "copy", _Copy())  # noqa: B010 - the module's `copy` global, seen only by moto
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


_MOTO_DYNAMODB_LOCK = threading.RLock()


def _serialize_dynamodb_requests() -> None:
    """moto's server runs each request in its own thread, but its DynamoDB
    backend is not thread-safe: a TransactWriteItems deep-copies a table
    while another request adds an item to it ("dictionary changed size during
    iteration", a 500 that three retries may not get past). DynamoDB itself
    has no such failure, so the local stack must not have one either: its
    DynamoDB and DynamoDB Streams requests run one at a time (moto holds the
    GIL for nearly all of each request anyway)."""
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    for handler in (DynamoHandler, DynamoDBStreamsHandler):
        original = handler.call_action
        if getattr(original, "_serialized", False):
            continue

        def call_action(self: Any, _original: Any = original) -> Any:
            with _MOTO_DYNAMODB_LOCK:
                return _original(self)

        call_action._serialized = True  # type: ignore[attr-defined]
        handler.call_action = call_action  # type: ignore[method-assign]


def patch_moto() -> None:
    """Make moto's DynamoDB behave like DynamoDB under the local stack's load
    (both fixes above); call it in the process that hosts the moto server."""
    _snapshot_each_table_once()
    _serialize_dynamodb_requests()


class EmbeddedMoto:
    """moto's server in a process of its own (devstack.moto_server), on a
    free loopback port: its state belongs to this stack alone."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - our own module, our interpreter
            [sys.executable, "-m", "devstack.moto_server", str(self.port)],
            cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True,
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if line.startswith("moto ready"):
                return
            if not line and self._proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("the embedded moto server did not start")

    def faults(self, **fault: Any) -> dict[str, Any]:
        """Script DynamoDB faults (devstack.moto_server.FaultInjector), or read them."""
        import json
        from urllib.request import Request, urlopen

        data = json.dumps(fault).encode() if fault else None
        request = Request(self.url + "/_devstack/faults", data=data, method="POST" if fault else "GET",  # noqa: S310
                          headers={"Content-Type": "application/json"})
        with urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback only
            return dict(json.loads(resp.read()))

    def clear_faults(self) -> dict[str, Any]:
        """Drop every pending DynamoDB fault (what was injected stays counted)."""
        import json
        from urllib.request import Request, urlopen

        request = Request(self.url + "/_devstack/faults", method="DELETE")  # noqa: S310
        with urlopen(request, timeout=10) as resp:  # noqa: S310 - loopback only
            return dict(json.loads(resp.read()))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def client(endpoint_url: str, service: str = "dynamodb") -> Any:
    # The service name is a runtime string; the stubs type one overload per literal.
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint_url, region_name=REGION,
        aws_access_key_id="local", aws_secret_access_key="local", config=_CLIENT_CONFIG,
    )


def create_table_request(spec: TableSpec) -> dict[str, Any]:
    """Translate CloudFormation table properties into a CreateTable request."""
    p = spec.properties
    req: dict[str, Any] = {
        "TableName": spec.name,
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "BillingMode": p.get("BillingMode", "PROVISIONED"),
    }
    if req["BillingMode"] == "PROVISIONED":
        req["ProvisionedThroughput"] = p.get("ProvisionedThroughput") or {
            "ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if p.get(key):
            wanted = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
            req[key] = [{k: v for k, v in ix.items() if k in wanted} for ix in p[key]]
    stream = p.get("StreamSpecification")
    if stream:
        req["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return req


def create_tables(endpoint_url: str, tables: list[TableSpec]) -> dict[str, str]:
    """Create every table (replacing a same-named leftover); return stream ARNs by logical id."""
    ddb = client(endpoint_url)
    streams: dict[str, str] = {}
    try:
        existing = set(ddb.list_tables().get("TableNames", []))
    except (BotoCoreError, ClientError) as exc:
        raise RuntimeError(f"DynamoDB at {endpoint_url} is not reachable: {type(exc).__name__}") from None
    for spec in tables:
        if spec.name in existing:
            ddb.delete_table(TableName=spec.name)
            ddb.get_waiter("table_not_exists").wait(TableName=spec.name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        desc = ddb.create_table(**create_table_request(spec))["TableDescription"]
        ddb.get_waiter("table_exists").wait(TableName=spec.name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        ttl = spec.properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=spec.name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
        if desc.get("LatestStreamArn"):
            streams[spec.logical_id] = desc["LatestStreamArn"]
        else:
            arn = ddb.describe_table(TableName=spec.name)["Table"].get("LatestStreamArn")
            if arn:
                streams[spec.logical_id] = arn
    return streams
