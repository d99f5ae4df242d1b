"""EventBridge in and out, against the local stack (DESIGN.md section 8):

- in: Stripe events from the partner event source (a Stripe event
  destination) land in the webhook store once per id, whichever of the two
  paths delivers first, snapshot and thin; `make trigger VIA=eventbridge`;
- out: every ledger row reaches the domain event bus as itself, valid
  against schemas/events/, in the ledger's order per subject, through
  refused entries and failed calls (retried by the stream), and a usage
  event that ends failed is published as usage.failed;
- the events/eventbridge/ samples through the two functions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the dev pins; a test-only use
import pytest

from devstack import trigger
from devstack.stack import LOCAL_STRIPE_EVENT_SOURCE, LocalStack
from tests.conftest import Client
from tests.integration.usage_helpers import new_customer, put_usage, usage_body
from tests.integration.usage_helpers import settle as settle_usage
from tests.integration.webhook_helpers import (
    accepted,
    customer_object,
    event,
    fake,
    kinds,
    ledger,
    settle,
    settled,
    uid,
    webhook_event,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "events" / "billing-functions.events.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
PUBLISHER_STREAMS = ("EventPublisherFunction.Ledger", "EventPublisherFunction.UsageFailed")


def partner(api: Client, stripe_event: dict[str, Any]) -> dict[str, Any]:
    """Deliver through the Stripe partner source, as EventBridge would."""
    resp = api.post("/_local/events/partner", trigger.eventbridge_event(stripe_event))
    assert resp.status_code == 200, resp.text
    (report,) = resp.json()["delivered"]
    assert "result" in report, report
    return dict(report["result"])


def published(api: Client) -> list[dict[str, Any]]:
    resp = api.get("/_local/events/published")
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def wait_for(stack: LocalStack, found: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Drain the streams until `found()` is truthy (the publisher reads a
    stream that other stream consumers write to, so one drain may not do).
    The stream's retries back off: on a loaded machine (four test workers on
    two cores) a refused entry may take many seconds to go out."""
    deadline = time.monotonic() + timeout
    while True:
        assert stack.drain(timeout), "the streams did not drain"
        result = found()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def of_subject(api: Client, subject_id: str) -> list[dict[str, Any]]:
    """The bus's events of one subject, in arrival order, the first of each id (as a deduplicating consumer)."""
    seen: set[str] = set()
    out = []
    for e in published(api):
        if e["detail"].get("subject_id") == subject_id and e["detail"]["id"] not in seen:
            seen.add(e["detail"]["id"])
            out.append(e)
    return out


def at_least(api: Client, subject_id: str, n: int) -> Callable[[], list[dict[str, Any]] | None]:
    """For wait_for: the subject's events once there are n of them."""
    def found() -> list[dict[str, Any]] | None:
        got = of_subject(api, subject_id)
        return got if len(got) >= n else None
    return found


def schema_errors(e: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, err.absolute_path))}: {err.message}" for err in VALIDATOR.iter_errors(e)]


@pytest.fixture
def no_bus_faults(api: Client) -> Iterator[None]:
    """No scripted PutEvents fault before or after the test."""
    assert api.delete("/_local/events/faults").json() == {"calls": [], "entries": []}
    yield
    api.delete("/_local/events/faults")


# -- in: the partner event source ----------------------------------------------------


def test_an_event_through_eventbridge_then_the_webhook_is_applied_once(api: Client, stack: LocalStack) -> None:
    body = event("customer.created", customer_object(f"cus_eb_{uid()}", email="eb@example.com"))
    assert partner(api, body) == {"id": body["id"], "type": "customer.created", "duplicate": False}
    assert accepted(api, body) == {"received": True, "duplicate": True}
    assert partner(api, body)["duplicate"] is True
    (stored,) = settle(stack, api, body["id"])
    assert (stored["status"], stored["attempts"], stored["object_id"]) == ("processed", 1, body["data"]["object"]["id"])
    customer = api.get("/v1/customers", params={"processor_id": body["data"]["object"]["id"]}).json()["data"][0]
    rows = [r for r in ledger(api, customer["id"]) if r.get("caused_by_webhook_event_id") == body["id"]]
    assert len(rows) == 1


def test_an_event_through_the_webhook_then_eventbridge_is_applied_once(api: Client, stack: LocalStack) -> None:
    body = event("customer.created", customer_object(f"cus_eb_{uid()}"))
    assert accepted(api, body)["duplicate"] is False
    assert partner(api, body)["duplicate"] is True
    (stored,) = settle(stack, api, body["id"])
    assert (stored["status"], stored["attempts"]) == ("processed", 1)


def test_a_thin_event_through_eventbridge_applies_the_object_stripe_has_now(api: Client, stack: LocalStack) -> None:
    customer = new_customer(api)
    fake(stack).update_customer(customer["processor_id"], fields={"name": "Thin Renamed",
                                                                  "metadata": {"plan": "gold"}})
    thin = trigger.build("v1.customer.updated", sets=[("related_object.id", customer["processor_id"])])
    assert partner(api, thin)["duplicate"] is False
    (stored,) = settle(stack, api, thin["id"])
    assert (stored["status"], stored["type"], stored["object_id"]) == ("processed", "v1.customer.updated",
                                                                       customer["processor_id"])
    current = api.get(f"/v1/customers/{customer['id']}").json()
    assert current["data"]["name"] == "Thin Renamed" and current["data"]["metadata"]["plan"] == "gold"
    (row,) = [r for r in ledger(api, customer["id"]) if r.get("caused_by_webhook_event_id") == thin["id"]]
    assert row["type"] == "customer.updated"
    out = wait_for(stack, lambda: [e for e in of_subject(api, customer["id"]) if e["detail"]["id"] == row["id"]])
    assert [e["detail-type"] for e in out] == ["customer.updated"]


def test_make_trigger_via_eventbridge(api: Client, stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    customer = new_customer(api)
    # Stripe's own customer.created for it first; then a later second, so the
    # triggered update is newer than the row's watermark (a same-second event
    # would be re-fetched from the Fake, which has no such metadata).
    settled(api)
    time.sleep(1.1)
    code = trigger.main(["customer.updated", "--via", "eventbridge", "--url", api.base_url + "/_local/events/partner",
                         "--set", f"data.object.id={customer['processor_id']}",
                         "--set", "data.object.metadata={\"via\": \"eventbridge\"}"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    event_id = printed.split()[1]
    assert printed.startswith(f"customer.updated {event_id} via eventbridge -> 200")
    (stored,) = settle(stack, api, event_id)
    assert stored["status"] == "processed"
    assert api.get(f"/v1/customers/{customer['id']}").json()["data"]["metadata"]["via"] == "eventbridge"
    assert trigger.main(["customer.updated", "--via", "eventbridge", "--source", "aws.partner/stripe.com/ed_other",
                         "--url", api.base_url + "/_local/events/partner"]) == 1
    assert "no rule on a partner bus" in capsys.readouterr().out


# -- out: the domain event bus -------------------------------------------------------


def test_every_ledger_row_is_published_as_itself_in_order(api: Client, stack: LocalStack, no_bus_faults: None) -> None:
    customer = new_customer(api)
    settled(api)  # its customer.created webhook applied: the version below is current
    customer = api.get(f"/v1/customers/{customer['id']}").json()
    assert api.patch(f"/v1/customers/{customer['id']}", {"name": "Ada"},
                     headers={"If-Match": f'"{customer["lock_version"]}"'}).status_code == 200
    assert api.post(f"/v1/customers/{customer['id']}/payment-methods",
                    {"payment_method_id": "pm_card_visa"}).status_code == 201
    hook = event("customer.updated", customer_object(customer["processor_id"], name="From Stripe"))
    accepted(api, hook)
    settle(stack, api, hook["id"])
    settled(api)  # and the webhooks Stripe sends for the API's own changes
    rows = list(reversed(ledger(api, customer["id"])))  # oldest first
    assert len(rows) >= 4
    out = wait_for(stack, at_least(api, customer["id"], len(rows)))
    assert [e["detail"]["id"] for e in out] == [r["id"] for r in rows]
    for e, row in zip(out, rows, strict=True):
        assert (e["source"], e["detail-type"]) == ("billing-functions", row["type"])
        assert e["detail"]["data"] == row["data"] and e["detail"]["inserted_at"] == row["inserted_at"]
        assert schema_errors(e) == [], e
        text = json.dumps(e["detail"])
        for marker in ('"address"', '"card"', '"last4"', '"fingerprint"', '"billing_details"', '"object":'):
            assert marker not in text, (marker, e["detail-type"])
    assert {"customer.created", "customer.updated", "payment_method.attached"} <= {e["detail-type"] for e in out}


def test_refused_entries_are_retried_and_each_subject_stays_in_order(api: Client, stack: LocalStack,
                                                                     no_bus_faults: None) -> None:
    first, second = new_customer(api), new_customer(api)
    settled(api)  # their customer.created webhooks applied: the versions below are current
    first, second = (api.get(f"/v1/customers/{c['id']}").json() for c in (first, second))
    wait_for(stack, lambda: of_subject(api, first["id"]) and of_subject(api, second["id"]))
    before = api.get("/_local/events/published").json()["refused_entries"]
    # The next three customer.updated entries are refused: the stream must retry them, in order.
    assert api.post("/_local/events/faults", {"entry_error": "ThrottlingException", "times": 3,
                                              "detail_type": "customer.updated"}).status_code == 200
    versions = {first["id"]: first["lock_version"], second["id"]: second["lock_version"]}
    for i in range(4):
        for cust in (first, second):
            resp = api.patch(f"/v1/customers/{cust['id']}", {"name": f"name {i}"},
                             headers={"If-Match": f'"{versions[cust["id"]]}"'})
            assert resp.status_code == 200, resp.text
            versions[cust["id"]] = resp.json()["lock_version"]
        # Each round's own customer.updated webhooks settle before the next round:
        # a same-second re-fetch could otherwise meet the next PATCH already at
        # Stripe and record that state as Stripe's (a webhook row of its own).
        settled(api)
    for cust in (first, second):
        rows = list(reversed(ledger(api, cust["id"])))
        # Created by the API (Stripe's customer.created settles against it), and four updates.
        assert len(rows) == 5, kinds(rows)
        out = wait_for(stack, at_least(api, cust["id"], len(rows)))
        assert out is not None, (cust["id"], [e["detail"]["id"] for e in of_subject(api, cust["id"])])
        assert [e["detail"]["id"] for e in out] == [r["id"] for r in rows], cust["id"]
    after = api.get("/_local/events/published").json()["refused_entries"]
    assert after - before == 3
    assert api.get("/_local/events/faults").json()["entries"] == []
    records = [r for r in stack.on_failure.records()
               if "EventPublisherFunction" in r["requestContext"].get("functionArn", "")]
    assert records == []


def test_failed_putevents_calls_are_retried_by_the_stream(api: Client, stack: LocalStack,
                                                           no_bus_faults: None) -> None:
    customer = new_customer(api)
    settled(api)  # its customer.created webhook applied: the version below is current
    customer = api.get(f"/v1/customers/{customer['id']}").json()
    wait_for(stack, lambda: of_subject(api, customer["id"]))
    # Two whole calls refused with a code botocore does not retry: the batch
    # reports its records, the stream invokes again, and they go out.
    assert api.post("/_local/events/faults", {"error": "AccessDeniedException", "times": 2}).status_code == 200
    resp = api.patch(f"/v1/customers/{customer['id']}", {"name": "after a denial"},
                     headers={"If-Match": f'"{customer["lock_version"]}"'})
    assert resp.status_code == 200
    out = wait_for(stack, at_least(api, customer["id"], 2))
    assert [e["detail-type"] for e in out] == ["customer.created", "customer.updated"]
    assert api.get("/_local/events/faults").json()["calls"] == []


def test_a_usage_event_that_ends_failed_is_published(api: Client, stack: LocalStack, no_bus_faults: None) -> None:
    customer = new_customer(api)
    identifier = f"eb-usage-{uid()}"
    put_usage(api, identifier, usage_body(customer, value=7))
    assert settle_usage(stack, api, [identifier])[identifier]["stripe_status"] == "reported"
    # Stripe's asynchronous verdict: a meter error report names it (a thin event).
    assert api.post("/_local/fake-stripe/meter-error", {"identifiers": [identifier],
                                                        "code": "meter_event_customer_not_found"}).status_code == 200

    def failures() -> list[dict[str, Any]]:
        return [e for e in published(api) if e["detail-type"] == "usage.failed"
                and e["detail"]["identifier"] == identifier]

    (out,) = wait_for(stack, failures)
    row = api.get(f"/v1/usage/{identifier}").json()
    assert row["stripe_status"] == "failed"
    detail = out["detail"]
    assert detail["id"].startswith(f"usage.failed:{identifier}:")
    assert {k: detail[k] for k in ("customer_id", "stripe_customer_id", "event_name", "value", "occurred_at")} == {
        "customer_id": customer["id"], "stripe_customer_id": customer["processor_id"], "event_name": "api_requests",
        "value": 7, "occurred_at": row["occurred_at"]}
    assert detail["stripe_error"]["code"] == "meter_event_customer_not_found"
    assert detail["failed_at"] == row["updated_at"]
    assert schema_errors(out) == []
    # Usage is not published one by one: nothing else of this usage event went out.
    usage_events = [e for e in published(api) if str(e["detail-type"]).startswith("usage.")]
    assert {e["detail-type"] for e in usage_events} == {"usage.failed"}


# -- the samples -----------------------------------------------------------------------


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / "eventbridge" / name).read_text()))


def test_the_partner_samples_through_the_inbound_function(api: Client, stack: LocalStack) -> None:
    for name in ("stripe_partner_snapshot.json", "stripe_partner_thin.json"):
        envelope = sample(name)
        assert envelope["source"] == LOCAL_STRIPE_EVENT_SOURCE
        envelope["detail"]["id"] = f"evt_sample_{uid()}"
        result = stack.invoke("StripeEventsFunction", envelope)
        assert result == {"id": envelope["detail"]["id"], "type": envelope["detail-type"], "duplicate": False}
        assert webhook_event(api, envelope["detail"]["id"])["type"] == envelope["detail-type"]


def stream_sample(stack: LocalStack, name: str, table_env: str) -> dict[str, Any]:
    """A stream sample whose records name this stack's table (the samples
    name make run's; a pytest-xdist worker's stack has names of its own)."""
    event = sample(name)
    table = stack.runtimes["EventPublisherFunction"].env[table_env]
    for record in event["Records"]:
        head, tail = record["eventSourceARN"].split(":table/", 1)
        record["eventSourceARN"] = f"{head}:table/{table}/{tail.split('/', 1)[1]}"
    return event


def test_the_stream_samples_through_the_publisher(api: Client, stack: LocalStack, no_bus_faults: None) -> None:
    ledger_sample = stream_sample(stack, "ledger_stream_insert.json", "EVENTS_TABLE")
    row_id = ledger_sample["Records"][0]["dynamodb"]["NewImage"]["id"]["S"]
    assert stack.invoke("EventPublisherFunction", ledger_sample) == {"batchItemFailures": []}
    usage_sample = stream_sample(stack, "meter_events_stream_failed.json", "METER_EVENTS_TABLE")
    assert stack.invoke("EventPublisherFunction", usage_sample) == {"batchItemFailures": []}
    got = {e["detail"]["id"]: e for e in published(api)}
    assert got[row_id]["detail-type"] == "customer.created"
    assert got["usage.failed:sample-usage-0001:2025-11-21T00:00:01.500Z"]["detail-type"] == "usage.failed"
    for e in (got[row_id], got["usage.failed:sample-usage-0001:2025-11-21T00:00:01.500Z"]):
        assert schema_errors(e) == []
    # The bus refusing an entry: the record is reported for the stream to retry.
    api.post("/_local/events/faults", {"entry_error": "InternalFailure", "times": 1})
    sequence = ledger_sample["Records"][0]["dynamodb"]["SequenceNumber"]
    assert stack.invoke("EventPublisherFunction", ledger_sample) == {
        "batchItemFailures": [{"itemIdentifier": sequence}]}
