"""POST /v1/usage/batch through HTTP against the local stack (DESIGN.md
section 4): up to 100 events, each under the rules of PUT
/v1/usage/{identifier}, each accepted or refused on its own, the results in
request order; over 100 is a 413, none a 422."""

from __future__ import annotations

import time
from typing import Any

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.usage_helpers import (
    EVENT_FIELDS,
    billed,
    delivery_paused,
    get_usage,
    new_customer,
    put_usage,
    settle,
    uid,
    usage_body,
)

DAY = 24 * 3600


def post_batch(api: Client, events: list[Any], status: int = 207) -> list[dict[str, Any]]:
    resp = api.post("/v1/usage/batch", {"events": events})
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"data"}
    return list(body["data"])


def test_a_mixed_batch_answers_each_event_on_its_own_in_request_order(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    replayed, conflicting, fresh, twice = uid("b-replay"), uid("b-conflict"), uid("b-new"), uid("b-twice")
    put_usage(api, replayed, usage_body(customer, 2))
    put_usage(api, conflicting, usage_body(customer, 3))
    events: list[Any] = [
        {"identifier": fresh, **usage_body(customer, 7, operation_id="job-9")},
        {"identifier": replayed, **usage_body(customer, 2)},  # the same event again: 200
        {"identifier": conflicting, **usage_body(customer, 4)},  # another body: 409
        {"identifier": uid("b-neg"), **usage_body(customer, -1)},  # invalid: 422
        {"identifier": uid("b-old"), **usage_body(customer, timestamp=int(time.time()) - 40 * DAY)},
        {"identifier": uid("b-who"), "event_name": "api_requests", "value": 1, "customer_id": "cust_missing"},
        usage_body(customer, 1),  # no identifier
        {"identifier": "not valid!", **usage_body(customer, 1)},
        "not an event",
        {"identifier": twice, **usage_body(customer, 5)},
        {"identifier": twice, **usage_body(customer, 5)},  # the same identifier twice in one batch
    ]
    results = post_batch(api, events)
    assert [r.get("identifier") for r in results] == [
        fresh, replayed, conflicting, events[3]["identifier"], events[4]["identifier"], events[5]["identifier"],
        None, "not valid!", None, twice, twice]
    statuses = [r["status"] for r in results]
    assert statuses[:9] == [202, 200, 409, 422, 422, 404, 422, 422, 422]
    assert sorted(statuses[9:]) == [200, 202]  # one accepts it, the other replays it

    accepted = results[0]["event"]
    assert set(accepted) == EVENT_FIELDS
    assert (accepted["stripe_status"], accepted["value"], accepted["operation_id"]) == ("pending", 7, "job-9")
    assert results[1]["event"]["id"] == get_usage(api, replayed)["id"]
    assert results[2]["error"]["type"] == "identifier_conflict"
    assert results[2]["error"]["details"] == {"identifier": conflicting}
    assert results[3]["error"]["type"] == "validation_error"
    assert [e["field"] for e in results[3]["error"]["details"]["errors"]] == ["value"]
    assert results[4]["error"]["type"] == "timestamp_out_of_window"
    assert results[5]["error"]["type"] == "not_found"
    assert [e["field"] for e in results[6]["error"]["details"]["errors"]] == ["identifier"]
    for refused in results[2:9]:
        assert set(refused) == {"identifier", "status", "error"}
        # Where and why, never the value sent (-1); an identifier named in the
        # details is the caller's own key, and may hold "-1" by chance.
        shown = {k: v for k, v in refused["error"]["details"].items() if k != "identifier"}
        assert "-1" not in str(shown)

    # Nothing refused was written; the conflicting identifier keeps its first body.
    for event in events[3:6]:
        assert_error(api.get(f"/v1/usage/{event['identifier']}"), 404, "not_found")
    assert get_usage(api, conflicting)["value"] == 3
    rows = settle(stack, api, [fresh, replayed, conflicting, twice])
    assert {r["stripe_status"] for r in rows.values()} == {"reported"}
    sent = billed(stack, [fresh, replayed, conflicting, twice])
    assert {i: (e["payload"]["value"], e["received"]) for i, e in sent.items()} == {
        fresh: ("7", 1), replayed: ("2", 1), conflicting: ("3", 1), twice: ("5", 1)}


def test_a_hundred_events_are_one_request_and_one_invocation(stack: LocalStack, api: Client) -> None:
    customers = [new_customer(api) for _ in range(3)]
    identifiers = [uid("b-100") for _ in range(100)]
    events = [{"identifier": i, **usage_body(customers[n % 3], n)} for n, i in enumerate(identifiers)]
    before = stack.runtimes["ApiFunction"].invocations
    with delivery_paused(stack):
        results = post_batch(api, events)
        assert stack.runtimes["ApiFunction"].invocations == before + 1  # 0.01 invocations per event
    assert [r["identifier"] for r in results] == identifiers
    assert {r["status"] for r in results} == {202}
    rows = settle(stack, api, identifiers)
    assert {r["stripe_status"] for r in rows.values()} == {"reported"}
    assert [rows[i]["value"] for i in identifiers] == list(range(100))
    # The same batch again: every event a replay, nothing written twice or billed twice.
    assert {r["status"] for r in post_batch(api, events)} == {200}
    assert {e["received"] for e in billed(stack, identifiers).values()} == {1}


def test_over_a_hundred_events_is_413_and_nothing_is_written(api: Client) -> None:
    customer = new_customer(api)
    identifiers = [uid("b-413") for _ in range(101)]
    resp = api.post("/v1/usage/batch", {"events": [{"identifier": i, **usage_body(customer)} for i in identifiers]})
    err = assert_error(resp, 413, "payload_too_large")
    assert err["error"]["details"] == {"max_events": 100, "events": 101}
    for identifier in (identifiers[0], identifiers[-1]):
        assert_error(api.get(f"/v1/usage/{identifier}"), 404, "not_found")


def test_an_empty_or_malformed_batch_is_refused_whole(api: Client) -> None:
    assert_error(api.post("/v1/usage/batch", {"events": []}), 422, "validation_error")
    bodies: list[Any] = [{}, {"events": {"identifier": "x"}}, {"events": [], "extra": 1}, []]
    for body in bodies:
        assert_error(api.post("/v1/usage/batch", body), 422, "validation_error")
    resp = api.post("/v1/usage/batch", data="{not json", headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "bad_request")


def test_openapi_documents_the_batch_route(api: Client) -> None:
    post = api.get("/v1/openapi.json").json()["paths"]["/v1/usage/batch"]["post"]
    assert {"207", "413", "422"} <= set(post["responses"])
