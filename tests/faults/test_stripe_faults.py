"""Stripe failing under the metering path (429, 5xx, timeouts, lost answers)
together with a real crash between the Stripe call and the DynamoDB write,
in v1 (the session stack) and v2 (a stack of this module's own); and the
same crash on the API's customer create.

The crash is real: the Fake answers a scripted `crash` fault only after the
call took effect, and the calling function's worker process exits on the
spot (devstack/fake_stripe/remote.py, local stack only). The runtime reports the
dead worker as a function error, the event source retries, and the resend
carries the same identifier (or idempotency key), so Stripe takes it once.

tests/integration/test_meter_reporter.py covers a fault storm and lost
answers in v1 without a crash; here every scenario ends with the suite's
invariants (tests/faults/invariants.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client, running, stack_settings
from tests.faults.invariants import check_ledger, check_usage, pending_faults, quiet
from tests.integration.usage_helpers import REPORTER, fake, new_customer, put_many, uid, usage_body
from tests.integration.webhook_helpers import settled, webhooks_held

# Each fault hits the next delivery call, in this order: throttled, Stripe
# down, no answer in time, no connection, an answer lost after Stripe took the
# event, and finally the crash right after Stripe took one.
FAULTS: list[dict[str, Any]] = [
    {"status": 429}, {"status": 500}, {"status": 503}, {"status": 0, "code": "timeout"},
    {"status": 0}, {"status": 502, "after": True}, {"status": 0, "crash": True},
]


def script(api: Client, faults: list[dict[str, Any]], operation: str = "report_meter_event") -> None:
    for fault in faults:
        resp = api.post("/_local/fake-stripe/faults", {"operation": operation, "times": 1, **fault})
        assert resp.status_code == 200, resp.text


def crashed_calls(stack: LocalStack, operation: str) -> list[dict[str, Any]]:
    return [c for c in fake(stack).calls if c["operation"] == operation and c.get("error") == {"crash": True}]


def storm_of_usage(stack: LocalStack, api: Client, rng: random.Random, rows: int) -> dict[str, int]:
    customers = [new_customer(api) for _ in range(3)]
    bodies = {uid("fault"): usage_body(rng.choice(customers), rng.randint(0, 40)) for _ in range(rows)}
    put_many(api, bodies)
    return {identifier: body["value"] for identifier, body in bodies.items()}


def run_metering_scenario(stack: LocalStack, api: Client, operation: str, seed: int) -> None:
    quiet(stack, api)
    rng = random.Random(seed)  # noqa: S311 - reproducible values and customers
    exits = stack.runtimes[REPORTER].worker_exits
    crashes = len(crashed_calls(stack, operation))
    script(api, FAULTS)
    accepted = storm_of_usage(stack, api, rng, rows=24)

    check_usage(stack, api, accepted)
    assert pending_faults(stack, api) == {}
    # The crash was real: one call took effect at Stripe, then the worker died.
    (crash,) = crashed_calls(stack, operation)[crashes:]
    assert stack.runtimes[REPORTER].worker_exits > exits
    sent = ([crash["args"]["identifier"]] if operation == "create_meter_event"
            else [e["identifier"] for e in crash["args"]["events"]])
    mine = [i for i in sent if i in accepted]
    assert mine, "the crash hit another scenario's call"
    # Its events reached Stripe before the crash and again after the stream's
    # redelivery: received twice (or more), billed once (check_usage).
    duplicates = fake(stack).meter_event_duplicates
    assert all(duplicates.get(i, 0) >= 1 for i in mine), {i: duplicates.get(i) for i in mine}


def test_v1_stripe_faults_and_a_crash_after_stripe_took_the_event(stack: LocalStack, api: Client) -> None:
    run_metering_scenario(stack, api, "create_meter_event", seed=1)


def test_a_crash_after_stripe_created_the_customer_yields_one_customer(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    runtime = stack.runtimes["ApiFunction"]
    exits, customers = runtime.worker_exits, fake(stack).snapshot()["customers"]
    script(api, [{"status": 0, "crash": True}], operation="create_customer")
    path = f"/v1/owners/Team/{uid('crash')}/customer"

    # The retry comes before Stripe's customer.created webhook (held here; the next test lets it come first).
    with webhooks_held(api):
        died = api.put(path, {"email": "crash@example.com"})
        assert died.status_code == 502 and runtime.worker_exits == exits + 1  # what API Gateway answers
        assert api.get("/v1/customers", params={"owner_type": "Team", "owner_id": path.split("/")[4]}).json()[
            "data"] == []
        again = api.put(path, {"email": "crash@example.com"})
        assert again.status_code == 201, again.text

    # Stripe created it once: the retry's idempotency key returned the same customer.
    assert fake(stack).snapshot()["customers"] == customers + 1
    creates = [c for c in fake(stack).calls if c["operation"] == "create_customer"
               and c["args"]["metadata"].get("owner_id") == path.split("/")[4]]
    assert len(creates) == 2 and creates[0]["idempotency_key"] == creates[1]["idempotency_key"]
    assert again.json()["processor_id"] == fake(stack).retrieve_customer(again.json()["processor_id"])["id"]
    # The API's row; Stripe's customer.created settles against the watermark of its answer.
    check_ledger(api, again.json()["id"], {"customer.created": 1})
    assert pending_faults(stack, api) == {}


def test_a_crash_after_stripe_created_the_customer_is_recorded_by_its_webhook(stack: LocalStack,
                                                                             api: Client) -> None:
    quiet(stack, api)
    runtime = stack.runtimes["ApiFunction"]
    exits, customers = runtime.worker_exits, fake(stack).snapshot()["customers"]
    script(api, [{"status": 0, "crash": True}], operation="create_customer")
    owner_id = uid("crash")
    path = f"/v1/owners/Team/{owner_id}/customer"

    died = api.put(path, {"email": "crash@example.com"})
    assert died.status_code == 502 and runtime.worker_exits == exits + 1
    settled(api)  # Stripe's customer.created arrives: it names the owner, so it records the owner's customer
    (hooked,) = api.get("/v1/customers", params={"owner_type": "Team", "owner_id": owner_id}).json()["data"]
    again = api.put(path, {"email": "crash@example.com"})
    assert again.status_code == 200, again.text  # the owner has its customer: fetched, not made again
    assert again.json()["id"] == hooked["id"] and again.json()["processor_id"] == hooked["processor_id"]
    assert fake(stack).snapshot()["customers"] == customers + 1
    check_ledger(api, hooked["id"], {"customer.created": 1})  # the webhook's: the API never recorded one
    assert pending_faults(stack, api) == {}


# -- v2: the meter event stream -------------------------------------------------------------


@pytest.fixture(scope="module")
def stack_v2(function_log: Path) -> Iterator[LocalStack]:
    yield from running(stack_settings(function_log, concurrency=4, meter_api="v2", stack_name="billing-local-faults-v2",
                                     extra_env={"METER_BACKOFF_BASE_MS": "5"}))


def test_v2_stripe_faults_and_a_crash_after_stripe_took_the_batch(stack_v2: LocalStack) -> None:
    run_metering_scenario(stack_v2, Client(stack_v2.url), "send_meter_events", seed=2)
