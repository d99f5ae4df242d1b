"""Shared steps of the usage tests: customers, PUTs, and waiting for delivery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from devstack.fake_stripe import FakeProcessor
from devstack.stack import LocalStack
from tests.conftest import Client

REPORTER = "MeterReporterFunction"
REPORTER_STREAM = "MeterReporterFunction.Stream"
SWEEPER_SCHEDULE = "MeterSweeperFunction.Sweep"
EVENT_FIELDS = {"id", "identifier", "customer_id", "stripe_customer_id", "event_name", "value", "occurred_at",
                "operation_id", "stripe_status", "reported_at", "canceled_at", "stripe_error", "attempts",
                "stripe_identifier", "inserted_at", "updated_at"}


@contextmanager
def delivery_paused(stack: LocalStack) -> Iterator[None]:
    """Hold the reporter's stream poller: what is written meanwhile waits (and is read as full batches)."""
    assert stack.streams is not None
    poller = stack.streams.poller(REPORTER_STREAM)
    poller.stop()
    try:
        yield
    finally:
        poller.start()


def uid(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def fake(stack: LocalStack) -> FakeProcessor:
    assert stack.fake_stripe is not None
    return stack.fake_stripe.fake


def new_customer(api: Client) -> dict[str, Any]:
    resp = api.put(f"/v1/owners/User/{uuid.uuid4()}/customer", {"email": "usage@example.com"})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def usage_body(customer: dict[str, Any], value: int = 1, event_name: str = "api_requests",
               **extra: Any) -> dict[str, Any]:
    return {"event_name": event_name, "value": value, "customer_id": customer["id"], **extra}


def put_usage(api: Client, identifier: str, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
    resp = api.put(f"/v1/usage/{identifier}", body)
    assert resp.status_code == status, resp.text
    return dict(resp.json())


def get_usage(api: Client, identifier: str) -> dict[str, Any]:
    resp = api.get(f"/v1/usage/{identifier}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def get_many(api: Client, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(identifiers, pool.map(lambda i: get_usage(api, i), identifiers), strict=True))


def put_many(api: Client, bodies: dict[str, dict[str, Any]]) -> None:
    """PUT each identifier's body, eight at a time; all must be accepted (202)."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: put_usage(api, *item), bodies.items()))


def settle(stack: LocalStack, api: Client, identifiers: list[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Drain the streams until none of `identifiers` is pending; their rows.

    drain() covers what was written when it started; a delivery that failed
    transiently comes back through retries, so drain again until settled."""
    deadline = time.monotonic() + timeout
    rows: dict[str, dict[str, Any]] = {}
    while True:
        assert stack.drain(timeout=max(1.0, deadline - time.monotonic())), "the streams did not drain"
        rows = get_many(api, identifiers)
        if all(r["stripe_status"] != "pending" for r in rows.values()):
            return rows
        assert time.monotonic() < deadline, {i: r["stripe_status"] for i, r in rows.items()}
        time.sleep(0.1)


def billed(stack: LocalStack, identifiers: list[str]) -> dict[str, dict[str, Any]]:
    """What the Fake billed for these identifiers (at most one entry each, by construction)."""
    wanted = set(identifiers)
    return {e["identifier"]: e for e in fake(stack).meter_events if e["identifier"] in wanted}


def list_all(api: Client, params: dict[str, str], limit: int = 3) -> list[dict[str, Any]]:
    """Every page of GET /v1/usage with these filters."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(1000):
        page = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        resp = api.get("/v1/usage", params=page)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["data"]) <= limit
        out.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the list never ended")
