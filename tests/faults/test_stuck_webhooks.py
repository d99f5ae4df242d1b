"""No webhook event stays `received`: an event whose processing dies before it
records any outcome (the worker killed mid-invocation, as a Lambda timeout or
an out-of-memory kill ends it) is re-driven by the schedule once it has been
`received` for WebhookStuckAfterSeconds, and ends processed (DESIGN.md
section 4)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client, running, stack_settings
from tests.integration.webhook_helpers import accepted, customer_object, event, fake, settled, uid, webhook_event

STUCK_AFTER_SECONDS = 2
REDRIVE = "/_local/schedules/WebhookProcessorFunction.RedriveDeferred/trigger"
# The stream mapping's MaximumRetryAttempts (template.yaml) plus its first try.
STREAM_ATTEMPTS = 4


@pytest.fixture(scope="module")
def stack(function_log: Path) -> Iterator[LocalStack]:
    yield from running(stack_settings(function_log, concurrency=2, stack_name="billing-local-stuck",
                                     parameters={"WebhookStuckAfterSeconds": str(STUCK_AFTER_SECONDS)}))


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Client:
    return Client(stack.url)


def poll(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def refetches(stack: LocalStack) -> list[dict[str, Any]]:
    return [c for c in fake(stack).calls if c["operation"] == "retrieve_object"]


def test_an_event_whose_processing_died_is_redriven_and_processed(stack: LocalStack, api: Client) -> None:
    made = api.put(f"/v1/owners/Team/{uid()}/customer", {"email": "stuck@example.com"})
    assert made.status_code == 201, made.text
    settled(api)
    row = api.get(f"/v1/customers/{made.json()['id']}").json()
    fetched = len(refetches(stack))
    # An update in the watermark's own second makes the processor re-fetch the
    # customer from Stripe, and every one of the stream's tries dies right there.
    api.post("/_local/fake-stripe/faults", {"operation": "retrieve_object", "status": 0, "crash": True,
                                            "times": STREAM_ATTEMPTS}).raise_for_status()
    body = event("customer.updated", customer_object(row["processor_id"], email="stuck@example.com",
                                                     metadata={"plan": "stuck"}),
                 created=int(row["last_stripe_event_ts"]))
    given_up = len(stack.on_failure.records())
    assert accepted(api, body) == {"received": True, "duplicate": False}

    poll("the stream to give the record up", lambda: len(stack.on_failure.records()) > given_up)
    assert fake(stack).snapshot()["pending_faults"] == {}
    stuck = webhook_event(api, body["id"])
    assert stuck["status"] == "received", stuck  # no outcome was ever recorded
    listed = api.get("/v1/webhook-events", params={"status": "received", "limit": 100})
    assert listed.status_code == 200, listed.text
    assert body["id"] in [e["id"] for e in listed.json()["data"]]

    def processed() -> dict[str, Any] | None:
        api.post(REDRIVE).raise_for_status()  # the schedule, without waiting for its minute
        stack.drain(10.0)
        found = webhook_event(api, body["id"])
        return found if found["status"] == "processed" else None

    done = poll("the stuck event to be re-driven and processed", processed)
    assert done["replays"] == 0 and done["attempts"] == 1
    # The run that finished is the re-drive's: it re-fetched the customer.
    assert len(refetches(stack)) == fetched + STREAM_ATTEMPTS + 1
    listed = api.get("/v1/webhook-events", params={"status": "received", "limit": 100}).json()["data"]
    assert body["id"] not in [e["id"] for e in listed]
