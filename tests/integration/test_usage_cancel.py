"""POST /v1/usage/{identifier}/cancel through HTTP against the local stack
(DESIGN.md section 4): a pending event is canceled before it ever reaches
Stripe; a reported one through Stripe's meter event adjustment within 24
hours of Stripe receiving it; past that, 409 `cancel_window_passed`.

The reporter's side of the race (a cancel landing while the event is on its
way to Stripe) is proven in-process, where the timing can be forced:
tests/unit/test_usage_cancel_race.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from devstack.stack import LocalStack
from devstack.template import REGION
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.usage_helpers import (
    delivery_paused,
    fake,
    get_usage,
    list_all,
    new_customer,
    put_usage,
    settle,
    uid,
    usage_body,
)


def cancel(api: Client, identifier: str, status: int = 200) -> dict[str, Any]:
    resp = api.post(f"/v1/usage/{identifier}/cancel")
    assert resp.status_code == status, resp.text
    return dict(resp.json())


def adjustments(stack: LocalStack, identifier: str) -> list[dict[str, Any]]:
    return [c for c in fake(stack).calls
            if c["operation"] == "cancel_meter_event" and c["args"]["identifier"] == identifier]


def received(stack: LocalStack, identifier: str) -> dict[str, Any] | None:
    return next((e for e in fake(stack).meter_events if e["identifier"] == identifier), None)


def test_a_pending_event_is_canceled_before_it_ever_reaches_stripe(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    identifier, kept = uid("c-pending"), uid("c-kept")
    with delivery_paused(stack):
        put_usage(api, identifier, usage_body(customer, 6))
        put_usage(api, kept, usage_body(customer, 1))
        row = cancel(api, identifier)
        assert (row["stripe_status"], row["value"]) == ("canceled", 6)
        assert row["canceled_at"] is not None and row["reported_at"] is None
    rows = settle(stack, api, [identifier, kept])
    assert (rows[identifier]["stripe_status"], rows[kept]["stripe_status"]) == ("canceled", "reported")
    assert received(stack, identifier) is None  # the reporter never sent it
    assert adjustments(stack, identifier) == []  # nor had anything to cancel at Stripe
    # Canceling again changes nothing; a canceled event cannot be retried.
    assert cancel(api, identifier) == rows[identifier]
    assert_error(api.post(f"/v1/usage/{identifier}/retry"), 409, "conflict")
    assert identifier in {r["identifier"] for r in list_all(api, {"status": "canceled"}, limit=50)}
    assert identifier not in {r["identifier"] for r in list_all(api, {"status": "pending"}, limit=50)}


def test_a_reported_event_is_canceled_through_stripes_meter_event_adjustment(stack: LocalStack,
                                                                            api: Client) -> None:
    customer = new_customer(api)
    identifier = uid("c-reported")
    put_usage(api, identifier, usage_body(customer, 9, event_name="api_calls_cancel"))
    reported = settle(stack, api, [identifier])[identifier]
    assert reported["stripe_status"] == "reported"

    row = cancel(api, identifier)
    assert (row["stripe_status"], row["reported_at"]) == ("canceled", reported["reported_at"])
    assert row["canceled_at"] >= reported["reported_at"]
    (call,) = adjustments(stack, identifier)
    assert call["args"] == {"event_name": "api_calls_cancel", "identifier": identifier}
    assert call["idempotency_key"] == f"usage-cancel:{identifier}"
    entry = received(stack, identifier)
    assert entry is not None and entry["canceled"] is True  # received once, no longer billed
    assert cancel(api, identifier)["stripe_status"] == "canceled"
    assert len(adjustments(stack, identifier)) == 1  # nothing more asked of Stripe


def test_a_failed_event_is_canceled_without_stripe(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    identifier = uid("c-failed")
    assert api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": 400,
                                                   "code": "meter_event_invalid_value"}).status_code == 200
    put_usage(api, identifier, usage_body(customer))
    assert settle(stack, api, [identifier])[identifier]["stripe_status"] == "failed"
    assert cancel(api, identifier)["stripe_status"] == "canceled"
    assert adjustments(stack, identifier) == []
    assert identifier not in {r["identifier"] for r in list_all(api, {"status": "failed"}, limit=50)}


def _age_report(stack: LocalStack, identifier: str, hours: float) -> None:
    """Move the row's reported_at back (time passing, for the 24-hour window)."""
    ddb = boto3.client("dynamodb", endpoint_url=stack.ddb_endpoint, region_name=REGION,
                       aws_access_key_id="test", aws_secret_access_key="test")
    past = (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    ddb.update_item(TableName=stack.runtimes["ApiFunction"].env["METER_EVENTS_TABLE"],
                    Key={"pk": {"S": identifier}}, UpdateExpression="SET reported_at = :at",
                    ExpressionAttributeValues={":at": {"S": past}})


def test_past_stripes_24_hours_the_cancel_is_409_cancel_window_passed(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    identifier = uid("c-late")
    put_usage(api, identifier, usage_body(customer))
    settle(stack, api, [identifier])
    _age_report(stack, identifier, 25)
    err = assert_error(api.post(f"/v1/usage/{identifier}/cancel"), 409, "cancel_window_passed")
    assert set(err["error"]["details"]) == {"reported_at"}
    assert get_usage(api, identifier)["stripe_status"] == "reported"
    assert adjustments(stack, identifier) == []  # refused without a call to Stripe
    entry = received(stack, identifier)
    assert entry is not None and entry["canceled"] is False


def test_unknown_and_invalid_identifiers(api: Client) -> None:
    assert_error(api.post(f"/v1/usage/{uid()}/cancel"), 404, "not_found")
    assert_error(api.post("/v1/usage/has%20space/cancel"), 422, "validation_error")


def test_openapi_documents_the_cancel_route(api: Client) -> None:
    post = api.get("/v1/openapi.json").json()["paths"]["/v1/usage/{identifier}/cancel"]["post"]
    assert {"200", "404", "409", "422"} <= set(post["responses"])
