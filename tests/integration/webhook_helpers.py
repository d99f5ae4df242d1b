"""Building, signing and delivering Stripe webhook events to the local stack.

Payloads are Stripe's own object fixtures (objects.json) wrapped in the
event envelope, and signatures come from the Stripe SDK's signer, so the
webhook function is tested against what Stripe really sends.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import stripe

from devstack.fake_stripe import FakeProcessor
from devstack.stack import LocalStack
from tests.conftest import FIXTURES, WEBHOOK_SECRETS, Client

SECRET = WEBHOOK_SECRETS[0]
WEBHOOK = "/v1/webhooks/stripe"
FINISHED = ("processed", "ignored", "stale", "failed")


def fake(stack: LocalStack) -> FakeProcessor:
    """The stack's one Fake Stripe (every function reaches it over RPC)."""
    assert stack.fake_stripe is not None
    return stack.fake_stripe.fake


def uid() -> str:
    return uuid.uuid4().hex[:12]


def stripe_object(fixture: str, **changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(FIXTURES[fixture])
    obj.update(changes)
    return obj


def customer_object(processor_id: str, **changes: Any) -> dict[str, Any]:
    return stripe_object("customer", id=processor_id, **changes)


def event(type_: str, obj: dict[str, Any] | None, *, created: int | None = None, event_id: str | None = None,
          previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stripe's event envelope (objects.json README) around `obj`."""
    body: dict[str, Any] = {
        "id": event_id or f"evt_test_{uid()}", "object": "event", "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": type_,
    }
    if obj is not None:
        body["data"] = {"object": obj, **({"previous_attributes": previous} if previous else {})}
    return body


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    return str(stripe.WebhookSignature.generate_signature_header(payload.decode("utf-8"), secret, timestamp))


def sign_bytes(payload: bytes, secret: str = SECRET) -> str:
    """Stripe's scheme over bytes that are not UTF-8 (the SDK's signer takes text)."""
    now = int(time.time())
    return f"t={now},v1=" + hmac.new(secret.encode(), f"{now}.".encode() + payload, hashlib.sha256).hexdigest()


def deliver(api: Client, body: dict[str, Any] | bytes, *, secret: str = SECRET, header: str | None = None,
            timestamp: int | None = None, sign_header: bool = True) -> requests.Response:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if header is not None:
        headers["Stripe-Signature"] = header
    elif sign_header:
        headers["Stripe-Signature"] = sign(payload, secret, timestamp)
    return api.session.post(api.base_url + WEBHOOK, data=payload, headers=headers, timeout=30)


def accepted(api: Client, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    resp = deliver(api, body, **kwargs)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def webhook_event(api: Client, event_id: str) -> dict[str, Any]:
    resp = api.get(f"/v1/webhook-events/{event_id}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def settle(stack: LocalStack, api: Client, *event_ids: str, until: tuple[str, ...] = FINISHED,
           timeout: float = 30.0) -> list[dict[str, Any]]:
    """Drain the streams until every event is in one of `until` (a re-drive
    writes a new stream record while the first is processed, hence the loop)."""
    deadline = time.monotonic() + timeout
    while True:
        assert stack.drain(timeout), "the streams did not drain"
        found = [webhook_event(api, e) for e in event_ids]
        if all(f["status"] in until for f in found) or time.monotonic() > deadline:
            return found


def customer_by_processor_id(api: Client, processor_id: str) -> dict[str, Any] | None:
    resp = api.get("/v1/customers", params={"processor_id": processor_id, "include_deleted": "true"})
    assert resp.status_code == 200, resp.text
    data = resp.json()["data"]
    assert len(data) <= 1, data
    return dict(data[0]) if data else None


def ledger(api: Client, customer_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/v1/customers/{customer_id}/events?limit=100")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def settled(api: Client) -> None:
    """Wait until the Fake delivered every event it recorded so far (the
    webhooks Stripe sends for API-made changes) and the stack applied them."""
    resp = api.post("/_local/settle")
    assert resp.status_code == 200, resp.text


def kinds(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Ledger rows as (type, actor_type), in the order given."""
    return [(r["type"], r["actor_type"]) for r in rows]


@contextmanager
def webhooks_held(api: Client) -> Iterator[None]:
    """Hold the Fake's webhooks while the block runs (the API's own writes
    come first, as when Stripe's delivery is slower than its answer), then
    deliver them and wait until they are applied."""
    assert api.post("/_local/fake-stripe/delivery", {"hold": True}).status_code == 200
    try:
        yield
    finally:
        assert api.post("/_local/fake-stripe/delivery", {"hold": False}).status_code == 200
    settled(api)
