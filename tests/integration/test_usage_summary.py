"""GET /v1/customers/{id}/usage-summary through HTTP against the local stack
(DESIGN.md section 4): Stripe's meter event summaries for the period and
meter, beside the local counts of the customer's pending and failed events
of that name."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.usage_helpers import delivery_paused, new_customer, put_usage, settle, uid, usage_body


def test_stripes_figure_beside_what_is_still_pending_or_failed(stack: LocalStack, api: Client) -> None:
    customer, other = new_customer(api), new_customer(api)
    meter = f"summary_{uid('m')[-8:]}"
    minute = int(time.time()) // 60 * 60
    start, end = minute - 3600, minute + 60
    reported = {uid("s-rep"): 4, uid("s-rep"): 6}
    canceled = uid("s-cxl")
    for identifier, value in reported.items():
        put_usage(api, identifier, usage_body(customer, value, event_name=meter, timestamp=minute - 60))
    put_usage(api, canceled, usage_body(customer, 100, event_name=meter, timestamp=minute - 60))
    elsewhere = [uid("s-other"), uid("s-before")]
    put_usage(api, elsewhere[0], usage_body(other, 50, event_name=meter, timestamp=minute - 60))
    put_usage(api, elsewhere[1], usage_body(customer, 70, event_name=meter, timestamp=start - 60))
    settle(stack, api, [*reported, canceled, *elsewhere])
    failed = uid("s-fail")  # Stripe refuses the next event sent: this one
    assert api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": 400,
                                                   "code": "meter_event_invalid_value"}).status_code == 200
    put_usage(api, failed, usage_body(customer, 3, event_name=meter, timestamp=minute - 60))
    assert settle(stack, api, [failed])[failed]["stripe_status"] == "failed"
    assert api.post(f"/v1/usage/{canceled}/cancel").status_code == 200
    with delivery_paused(stack):
        pending = [uid("s-pend"), uid("s-pend")]
        for identifier in pending:
            put_usage(api, identifier, usage_body(customer, 5, event_name=meter, timestamp=minute - 30))
        put_usage(api, uid("s-pend-other-meter"), usage_body(customer, 8, event_name=f"{meter}_x"))

        resp = api.get(f"/v1/customers/{customer['id']}/usage-summary",
                       params={"event_name": meter, "start": str(start),
                               "end": datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
        assert resp.status_code == 200, resp.text
        body = resp.json()
    assert (body["customer_id"], body["stripe_customer_id"], body["event_name"]) == (
        customer["id"], customer["processor_id"], meter)
    assert body["start"] == datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    stripe = body["stripe"]
    assert stripe["meter_id"].startswith("mtr_")
    # Stripe counts the reported events of the period: not the canceled one,
    # the other customer's, the one before the period, the failed or pending ones.
    assert stripe["aggregated_value"] == 10.0
    assert [s["aggregated_value"] for s in stripe["summaries"]] == [10.0]
    assert body["local"] == {"pending": {"count": 2, "value": 10}, "failed": {"count": 1, "value": 3},
                             "complete": True}
    settle(stack, api, pending)


def test_bad_periods_and_unknown_customers_or_meters(api: Client) -> None:
    customer = new_customer(api)
    path = f"/v1/customers/{customer['id']}/usage-summary"
    minute = int(time.time()) // 60 * 60
    for params in ({"event_name": "m", "start": str(minute + 1), "end": str(minute + 60)},
                   {"event_name": "m", "start": str(minute), "end": str(minute)},
                   {"event_name": "m", "start": "yesterday", "end": str(minute)},
                   {"event_name": "m", "start": "2026-01-01T00:00:00", "end": str(minute)},
                   {"event_name": "m", "start": str(minute)}):
        assert_error(api.get(path, params=params), 422, "validation_error")
    period = {"start": str(minute - 60), "end": str(minute)}
    assert_error(api.get("/v1/customers/cust_missing/usage-summary", params={"event_name": "m", **period}),
                 404, "not_found")
    # No Stripe meter has this event name.
    assert_error(api.get(path, params={"event_name": f"no_meter_{uid()[-6:]}", **period}), 404, "not_found")


def test_openapi_documents_the_summary_route(api: Client) -> None:
    get = api.get("/v1/openapi.json").json()["paths"]["/v1/customers/{customer_id}/usage-summary"]["get"]
    assert {"200", "404", "422"} <= set(get["responses"])
