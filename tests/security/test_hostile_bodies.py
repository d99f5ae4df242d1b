"""Hostile bodies over HTTP, as a new user would send them (issue 15): a JSON
array nested 100,000 deep, a `value` of 5,000 digits (past Python's limit on
converting long digit strings) and a body that is not UTF-8. Each is a 400
`bad_request` in the contract's shape on every route of the API and on the
webhook, and writes nothing: the customer keeps its version, no usage row,
no customer, no webhook event appears.

tests/api/test_hostile_bodies.py holds the same through the resolver
in-process; tests/fuzz/test_raw_bytes_fuzz.py mutates bytes at random."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from devstack.template import ApiRoute, Stack
from tests.conftest import Client
from tests.integration.usage_helpers import new_customer, uid
from tests.integration.webhook_helpers import deliver, settled, sign_bytes

ROOT = Path(__file__).resolve().parents[2]

DEEP = b"[" * 100_000 + b"]" * 100_000
LATIN1_NAME = '{"name":"\xe9"}'.encode("latin-1")


def long_value(customer_id: str) -> bytes:
    return (b'{"event_name": "api_requests", "customer_id": "' + customer_id.encode()
            + b'", "value": ' + b"5" * 5000 + b"}")


def assert_bad_request(resp: Any, fault: str) -> None:
    assert resp.status_code == 400, resp.text[:300]
    error = resp.json()["error"]
    assert error["type"] == "bad_request" and fault in error["message"], error
    assert set(error) == {"type", "message", "details"}
    assert len(resp.content) < 512


def send(api: Client, method: str, path: str, body: bytes) -> Any:
    return api.session.request(method, api.base_url + path, data=body, timeout=60,
                               headers={"Content-Type": "application/json"})


def api_routes() -> list[ApiRoute]:
    stack = Stack(ROOT / "template.yaml", stack_name="hostile-http")
    return [r for f in stack.functions({}) if f.logical_id == "ApiFunction" for r in f.routes]


def concrete(path: str, value: str) -> str:
    return re.sub(r"\{(\w+)\+?\}", value, path)


# -- the three, where it found them ---------------------------------------------------


def test_a_patch_nested_100000_deep_is_400_and_the_customer_is_unchanged(api: Client) -> None:
    customer = new_customer(api)
    assert_bad_request(send(api, "PATCH", f"/v1/customers/{customer['id']}", DEEP), "nested deeper than 32")
    after = api.get(f"/v1/customers/{customer['id']}").json()
    assert after == customer


def test_a_usage_value_of_5000_digits_is_400_and_no_row_is_written(api: Client) -> None:
    customer = new_customer(api)
    identifier = uid("digits")
    resp = send(api, "PUT", f"/v1/usage/{identifier}", long_value(customer["id"]))
    assert_bad_request(resp, "integer longer than 4300 digits")
    assert api.get(f"/v1/usage/{identifier}").status_code == 404


def test_a_latin1_body_is_400_on_patch_and_on_create_and_writes_nothing(api: Client) -> None:
    customer = new_customer(api)
    assert_bad_request(send(api, "PATCH", f"/v1/customers/{customer['id']}", LATIN1_NAME), "is not UTF-8")
    assert api.get(f"/v1/customers/{customer['id']}").json() == customer
    owner_id = uid("latin1")
    assert_bad_request(send(api, "PUT", f"/v1/owners/Team/{owner_id}/customer", LATIN1_NAME), "is not UTF-8")
    found = api.get("/v1/customers", params={"owner_type": "Team", "owner_id": owner_id}).json()["data"]
    assert found == []


# -- every route ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "fault"), [("deep", "nested deeper than 32"),
                                             ("digits", "integer longer than 4300 digits"),
                                             ("latin1", "is not UTF-8")])
def test_each_hostile_body_is_400_on_every_route_of_the_api(api: Client, name: str, fault: str) -> None:
    customer = new_customer(api)
    settled(api)  # Stripe's customer.created webhook for it, applied before the snapshot
    customer = api.get(f"/v1/customers/{customer['id']}").json()
    body = {"deep": DEEP, "digits": long_value(customer["id"]), "latin1": LATIN1_NAME}[name]
    routes = api_routes()
    assert len(routes) >= 25
    for route in routes:
        # Real ids where a route takes one, so a route that ran would find (and change) something.
        path = concrete(route.path, customer["id"]) if "{customer_id}" in route.path \
            else concrete(route.path, uid("hostile"))
        resp = send(api, route.method, path, body)
        assert resp.status_code == 400, f"{route.method} {route.path}: {resp.status_code} {resp.text[:200]}"
        assert_bad_request(resp, fault)
    assert api.get(f"/v1/customers/{customer['id']}").json() == customer


# -- the webhook --------------------------------------------------------------------------------


def hostile_events(event_id: str) -> dict[str, tuple[bytes, str]]:
    head = f'{{"id": "{event_id}", "object": "event", "type": "customer.updated", '.encode()
    now = str(int(time.time())).encode()
    return {
        "deep": (head + b'"created": ' + now + b', "data": {"object": ' + DEEP + b"}}", "nested deeper than 32"),
        "digits": (head + b'"created": ' + b"5" * 5000 + b', "data": {"object": {"id": "cus_x"}}}',
                   "integer longer than 4300 digits"),
        "latin1": (head + b'"created": ' + now + b', "data": {"object": {"id": "cus_x", "name": "\xe9"}}}',
                   "is not UTF-8"),
    }


@pytest.mark.parametrize("name", ["deep", "digits", "latin1"])
def test_a_signed_hostile_webhook_is_400_and_nothing_is_stored(api: Client, name: str) -> None:
    event_id = f"evt_hostile_{uid()}"
    body, fault = hostile_events(event_id)[name]
    resp = deliver(api, body, header=sign_bytes(body))
    assert resp.status_code == 400, resp.text[:300]
    assert resp.json()["error"]["type"] == "bad_request" and fault in resp.json()["error"]["message"]
    assert api.get(f"/v1/webhook-events/{event_id}").status_code == 404


@pytest.mark.parametrize("name", ["deep", "digits", "latin1"])
def test_an_unsigned_hostile_webhook_is_refused_on_its_signature_and_nothing_is_stored(api: Client,
                                                                                      name: str) -> None:
    event_id = f"evt_hostile_{uid()}"
    body, _ = hostile_events(event_id)[name]
    resp = deliver(api, body, header="t=1,v1=" + "0" * 64)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_signature"
    assert api.get(f"/v1/webhook-events/{event_id}").status_code == 404


def test_a_webhook_body_within_the_limits_is_still_acknowledged(api: Client) -> None:
    event_id = f"evt_ok_{uid()}"
    body = json.dumps({"id": event_id, "object": "event", "type": "ping.unknown", "created": int(time.time()),
                       "data": {"object": {"id": "x", "note": "[[[{{{ not nesting, text"}}}).encode()
    resp = deliver(api, body, header=sign_bytes(body))
    assert resp.status_code == 200, resp.text
    assert api.get(f"/v1/webhook-events/{event_id}").status_code == 200
