"""PUT/GET/list/retry of usage through HTTP against the local stack (DESIGN.md section 4, Usage)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.usage_helpers import (
    EVENT_FIELDS,
    billed,
    get_usage,
    list_all,
    new_customer,
    put_usage,
    settle,
    uid,
    usage_body,
)

DAY = 24 * 3600


def events_of(api: Client, customer_id: str) -> list[dict[str, Any]]:
    resp = api.get(f"/v1/customers/{customer_id}/events?limit=100")
    assert resp.status_code == 200
    return list(resp.json()["data"])


# -- accept, replay, conflict ------------------------------------------------------------


def test_new_usage_is_accepted_pending_as_its_own_record_then_reported(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    identifier = uid()
    row = put_usage(api, identifier, usage_body(customer, 3, operation_id="op-1"))
    assert set(row) == EVENT_FIELDS
    assert row["identifier"] == identifier
    assert row["id"].startswith("mev_")
    assert row["stripe_status"] == "pending"
    assert (row["customer_id"], row["stripe_customer_id"]) == (customer["id"], customer["processor_id"])
    assert (row["event_name"], row["value"], row["operation_id"], row["attempts"]) == ("api_requests", 3, "op-1", 0)
    assert row["reported_at"] is None and row["canceled_at"] is None and row["stripe_error"] is None
    assert row["occurred_at"].endswith("Z")

    # The row is its own audit record (DESIGN.md section 2): no ledger row per usage event.
    assert [e for e in events_of(api, customer["id"]) if e["type"].startswith("usage.")] == []

    done = settle(stack, api, [identifier])[identifier]
    assert done["stripe_status"] == "reported"
    assert done["reported_at"] >= done["inserted_at"]
    assert done["attempts"] == 1
    assert [e for e in events_of(api, customer["id"]) if e["type"].startswith("usage.")] == []
    sent = billed(stack, [identifier])[identifier]
    assert sent["api"] == "v1"
    assert sent["event_name"] == "api_requests"
    assert sent["payload"] == {"stripe_customer_id": customer["processor_id"], "value": "3"}
    assert sent["timestamp"] == int(datetime.fromisoformat(row["occurred_at"]).timestamp())
    assert sent["received"] == 1


def test_same_identifier_and_body_replays_and_a_different_body_conflicts(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    identifier = uid()
    body = usage_body(customer, 5)
    first = put_usage(api, identifier, body)
    again = put_usage(api, identifier, body, status=200)
    assert again["id"] == first["id"]
    assert again["occurred_at"] == first["occurred_at"]
    # The same customer named another way is the same request.
    by_stripe_id = {"event_name": "api_requests", "value": 5, "stripe_customer_id": customer["processor_id"]}
    assert put_usage(api, identifier, by_stripe_id, status=200)["id"] == first["id"]

    for changed in (usage_body(customer, 6), usage_body(customer, 5, event_name="other_meter"),
                    usage_body(customer, 5, operation_id="op-x"),
                    usage_body(customer, 5, timestamp=int(time.time()) - 60),
                    usage_body(new_customer(api), 5)):
        body_ = assert_error(api.put(f"/v1/usage/{identifier}", changed), 409, "identifier_conflict")
        assert body_["error"]["details"] == {"identifier": identifier}

    assert [e["type"] for e in events_of(api, customer["id"]) if e["type"].startswith("usage.")] == []
    assert get_usage(api, identifier)["value"] == 5  # the first body, written once
    settle(stack, api, [identifier])
    assert billed(stack, [identifier])[identifier]["received"] == 1


def test_customer_is_resolved_by_stripe_id_or_owner(api: Client) -> None:
    customer = new_customer(api)
    by_stripe = put_usage(api, uid(), {"event_name": "api_requests", "value": 1,
                                       "stripe_customer_id": customer["processor_id"]})
    by_owner = put_usage(api, uid(), {"event_name": "api_requests", "value": 1,
                                      "owner": {"type": customer["owner_type"], "id": customer["owner_id"]}})
    assert by_stripe["customer_id"] == by_owner["customer_id"] == customer["id"]
    assert by_owner["stripe_customer_id"] == customer["processor_id"]


@pytest.mark.parametrize("reference", [
    {"customer_id": "cust_does_not_exist"},
    {"stripe_customer_id": "cus_does_not_exist"},
    {"owner": {"type": "User", "id": "nobody-has-this-owner-id"}},
])
def test_unknown_customer_is_404_and_nothing_is_written(api: Client, reference: dict[str, Any]) -> None:
    identifier = uid()
    assert_error(api.put(f"/v1/usage/{identifier}", {"event_name": "api_requests", "value": 1, **reference}),
                 404, "not_found")
    assert_error(api.get(f"/v1/usage/{identifier}"), 404, "not_found")


def test_deleted_customer_cannot_be_billed(api: Client) -> None:
    customer = new_customer(api)
    assert api.delete(f"/v1/customers/{customer['id']}").status_code == 200
    identifier = uid()
    assert_error(api.put(f"/v1/usage/{identifier}", usage_body(customer)), 404, "not_found")
    assert_error(api.get(f"/v1/usage/{identifier}"), 404, "not_found")


# -- validation ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def customer(api: Client) -> dict[str, Any]:
    return new_customer(api)


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("negative value", {"value": -1}),
    ("fractional value", {"value": 1.5}),
    ("value as a string", {"value": "3"}),
    ("value as a boolean", {"value": True}),
    ("value too large for JSON", {"value": 2**53}),
    ("no value", {"value": None}),
    ("empty event name", {"event_name": ""}),
    ("event name too long", {"event_name": "e" * 101}),
    ("event name with a leading space", {"event_name": " api"}),
    ("event name with a control character", {"event_name": "api\u0007calls"}),
    ("unknown field", {"units": "ms"}),
    ("timestamp that is not a time", {"timestamp": "yesterday"}),
    ("timestamp without an offset", {"timestamp": "2024-01-01T00:00:00"}),
    ("timestamp as a float", {"timestamp": 1700000000.5}),
    ("two customer references", {"stripe_customer_id": "cus_x"}),
    ("no customer reference", {"customer_id": None}),
    ("owner without id", {"customer_id": None, "owner": {"type": "User"}}),
]


@pytest.mark.parametrize(("case", "change"), BAD_BODIES, ids=[c for c, _ in BAD_BODIES])
def test_invalid_body_is_422_and_nothing_is_written(api: Client, customer: dict[str, Any], case: str,
                                                    change: dict[str, Any]) -> None:
    body = {k: v for k, v in {**usage_body(customer), **change}.items() if v is not None}
    identifier = uid()
    err = assert_error(api.put(f"/v1/usage/{identifier}", body), 422, "validation_error")
    details = err["error"]["details"]
    assert details
    # Where and why, never the value sent.
    assert all(set(e) == {"field", "type", "message"} for e in details.get("errors", []))
    assert_error(api.get(f"/v1/usage/{identifier}"), 404, "not_found")


@pytest.mark.parametrize("identifier", ["has%20space", "x" * 101, "semi%3Bcolon", "star*"])
def test_invalid_identifier_is_422(api: Client, customer: dict[str, Any], identifier: str) -> None:
    assert_error(api.put(f"/v1/usage/{identifier}", usage_body(customer)), 422, "validation_error")
    assert_error(api.get(f"/v1/usage/{identifier}"), 422, "validation_error")


def test_identifier_may_use_every_allowed_character(api: Client, customer: dict[str, Any]) -> None:
    identifier = f"Az09_-.:{uid()}"[:100]
    assert put_usage(api, identifier, usage_body(customer))["identifier"] == identifier
    assert get_usage(api, identifier)["identifier"] == identifier


def test_malformed_json_is_400(api: Client) -> None:
    resp = api.put(f"/v1/usage/{uid()}", data="{not json", headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "bad_request")


# -- Stripe's time window --------------------------------------------------------------------


def test_timestamps_inside_both_window_edges_are_accepted_and_delivered(stack: LocalStack, api: Client,
                                                                        customer: dict[str, Any]) -> None:
    now = int(time.time())
    oldest = now - 35 * DAY + 120
    latest = now + 300 - 60
    old_id, new_id, iso_id = uid(), uid(), uid()
    assert put_usage(api, old_id, usage_body(customer, timestamp=oldest))["occurred_at"] == \
        datetime.fromtimestamp(oldest, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    put_usage(api, new_id, usage_body(customer, timestamp=latest))
    iso = datetime.fromtimestamp(now - DAY, UTC).isoformat()  # "+00:00" offset
    put_usage(api, iso_id, usage_body(customer, timestamp=iso))
    rows = settle(stack, api, [old_id, new_id, iso_id])
    assert {r["stripe_status"] for r in rows.values()} == {"reported"}
    sent = billed(stack, [old_id, new_id, iso_id])
    assert (sent[old_id]["timestamp"], sent[new_id]["timestamp"], sent[iso_id]["timestamp"]) == \
        (oldest, latest, now - DAY)


@pytest.mark.parametrize(("offset", "error_type"), [
    (-35 * DAY - 120, "timestamp_out_of_window"),
    (-400 * DAY, "timestamp_out_of_window"),
    (300 + 60, "timestamp_in_future"),
    (30 * DAY, "timestamp_in_future"),
])
def test_timestamps_outside_the_window_are_422(api: Client, customer: dict[str, Any], offset: int,
                                               error_type: str) -> None:
    identifier = uid()
    for timestamp in (int(time.time()) + offset,
                      datetime.fromtimestamp(time.time() + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")):
        assert_error(api.put(f"/v1/usage/{identifier}", usage_body(customer, timestamp=timestamp)), 422, error_type)
    assert_error(api.get(f"/v1/usage/{identifier}"), 404, "not_found")


# -- reads ---------------------------------------------------------------------------------


def test_unknown_identifier_is_404(api: Client) -> None:
    assert_error(api.get(f"/v1/usage/{uid()}"), 404, "not_found")
    assert_error(api.post(f"/v1/usage/{uid()}/retry"), 404, "not_found")


def test_a_customers_usage_is_listed_newest_first_in_pages(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    now = int(time.time())
    identifiers = [uid() for _ in range(5)]
    for age, identifier in enumerate(identifiers):
        put_usage(api, identifier, usage_body(customer, timestamp=now - 60 * (5 - age)))
    listed = list_all(api, {"customer_id": customer["id"]}, limit=2)
    assert [r["identifier"] for r in listed] == identifiers[::-1]
    settle(stack, api, identifiers)
    assert [r["identifier"] for r in list_all(api, {"customer_id": customer["id"], "status": "reported"})] == \
        identifiers[::-1]
    assert list_all(api, {"customer_id": customer["id"], "status": "pending"}) == []


def test_reported_usage_is_listed_from_the_accept_index_newest_accepted_first(stack: LocalStack,
                                                                              api: Client) -> None:
    # The report writes no index entry (DESIGN.md section 7's write budget):
    # the list reads by_accepted and the rows' status, newest accepted first.
    customer = new_customer(api)
    identifiers = [uid() for _ in range(3)]
    for identifier in identifiers:
        put_usage(api, identifier, usage_body(customer))
    settle(stack, api, identifiers)
    page = api.get("/v1/usage", params={"status": "reported", "limit": "100"}).json()
    assert page["data"] and all(r["stripe_status"] == "reported" for r in page["data"])
    inserted_at = [r["inserted_at"] for r in page["data"]]
    assert inserted_at == sorted(inserted_at, reverse=True)
    listed = list_all(api, {"status": "reported"}, limit=50)
    assert set(identifiers) <= {r["identifier"] for r in listed}
    assert len({r["identifier"] for r in listed}) == len(listed)  # no row twice across pages


@pytest.mark.parametrize("query", [{}, {"status": "lost"}, {"status": "failed", "limit": "0"},
                                   {"status": "failed", "limit": "101"}, {"status": "failed", "cursor": "@@@"}])
def test_list_needs_a_valid_filter(api: Client, query: dict[str, str]) -> None:
    assert_error(api.get("/v1/usage", params=query), 422, "validation_error")


def test_a_cursor_of_one_list_is_refused_by_another(stack: LocalStack, api: Client,
                                                    customer: dict[str, Any]) -> None:
    identifiers = [uid() for _ in range(2)]
    for identifier in identifiers:
        put_usage(api, identifier, usage_body(customer))
    settle(stack, api, identifiers)
    cursor = api.get("/v1/usage", params={"status": "reported", "limit": "1"}).json()["next_cursor"]
    assert cursor
    assert_error(api.get("/v1/usage", params={"status": "failed", "cursor": cursor}), 422, "validation_error")
    by_customer = api.get("/v1/usage", params={"customer_id": customer["id"], "limit": "1"}).json()["next_cursor"]
    assert by_customer
    assert_error(api.get("/v1/usage", params={"status": "pending", "cursor": by_customer}), 422,
                 "validation_error")


def test_retry_of_pending_or_reported_usage_is_409(stack: LocalStack, api: Client,
                                                   customer: dict[str, Any]) -> None:
    identifier = uid()
    put_usage(api, identifier, usage_body(customer))
    settle(stack, api, [identifier])
    err = assert_error(api.post(f"/v1/usage/{identifier}/retry"), 409, "conflict")
    assert err["error"]["details"] == {"stripe_status": "reported"}


def test_openapi_documents_the_usage_routes(api: Client) -> None:
    paths = api.get("/v1/openapi.json").json()["paths"]
    assert {"put", "get"} <= set(paths["/v1/usage/{identifier}"])
    assert "get" in paths["/v1/usage"]
    assert "post" in paths["/v1/usage/{identifier}/retry"]
    put = paths["/v1/usage/{identifier}"]["put"]
    assert {"200", "202", "404", "409", "422"} <= set(put["responses"])
