"""Attacks on the webhook signature (DESIGN.md section 4, Webhooks): only a
Stripe-Signature made with a configured secret, over these exact bytes, within
300 s, is accepted; anything else is 400 `invalid_signature`, stores nothing
and repeats neither the header nor a secret.

Already covered in tests/integration/test_webhooks.py, not repeated here: a
signature made with an unknown secret (forged), an expired timestamp
(> 300 s) beside one inside the tolerance, a missing or malformed header, a
valid signature over a tampered body, a body over 256 KiB (413), and a
capture of the function's output showing that no secret, signature or body
reaches the log. The signature module's own rules against the Stripe SDK are
tests/webhooks/test_signature.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from tests.conftest import WEBHOOK_SECRETS, Client
from tests.integration.webhook_helpers import customer_object, deliver, event, sign, uid
from tests.security.conftest import LogWindow


def new_event() -> dict[str, Any]:
    return event("customer.created", customer_object(f"cus_sec_{uid()}"))


def assert_rejected(api: Client, resp: requests.Response, body: dict[str, Any], *hidden: str) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "invalid_signature"
    for value in (*WEBHOOK_SECRETS, *hidden):
        assert value not in resp.text
    assert api.get(f"/v1/webhook-events/{body['id']}").status_code == 404  # nothing stored


def test_a_captured_header_replayed_with_a_new_body_is_rejected(api: Client) -> None:
    first = new_event()
    payload = json.dumps(first).encode()
    header = sign(payload)
    assert deliver(api, payload, header=header).status_code == 200
    # Within the tolerance, the same header over other bytes verifies nothing.
    second = new_event()
    assert_rejected(api, deliver(api, second, header=header), second, header.split("v1=")[1])
    assert api.get(f"/v1/webhook-events/{first['id']}").json()["status"] != "failed"


def test_an_old_header_with_its_timestamp_moved_forward_is_rejected(api: Client) -> None:
    body = new_event()
    payload = json.dumps(body).encode()
    old = int(time.time()) - 3600
    header = sign(payload, timestamp=old)
    assert_rejected(api, deliver(api, payload, header=header), body)  # expired as captured
    # The timestamp is signed too: moving it into the window breaks the signature.
    moved = header.replace(f"t={old}", f"t={int(time.time())}")
    assert_rejected(api, deliver(api, payload, header=moved), body, moved.split("v1=")[1])


def test_a_signature_over_the_same_event_serialized_otherwise_is_rejected(api: Client) -> None:
    """The signature covers the raw bytes, not the JSON document they encode."""
    body = new_event()
    header = sign(json.dumps(body).encode())
    reformatted = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=True).encode()
    assert json.loads(reformatted) == body
    assert_rejected(api, deliver(api, reformatted, header=header), body)


@pytest.mark.parametrize("secret", [
    WEBHOOK_SECRETS[0][:-1],  # a prefix of the real secret
    WEBHOOK_SECRETS[0] + "x",  # the real secret, extended
    WEBHOOK_SECRETS[0].upper(),
    f"{WEBHOOK_SECRETS[0]},{WEBHOOK_SECRETS[1]}",  # the configured list as one secret
    "",
])
def test_signatures_from_near_miss_secrets_are_rejected(api: Client, secret: str) -> None:
    body = new_event()
    assert_rejected(api, deliver(api, body, secret=secret), body)


def test_a_header_with_hundreds_of_candidate_signatures_is_rejected_not_a_500(api: Client,
                                                                              log_window: LogWindow) -> None:
    body = new_event()
    payload = json.dumps(body).encode()
    now = int(time.time())
    guesses = ",".join(f"v1={i:064x}" for i in range(500))  # ~34 KB of guesses, none right
    header = f"t={now},{guesses}"
    assert_rejected(api, deliver(api, payload, header=header), body)
    log_window.watch(f"{499:064x}")  # not even a guess is logged


@pytest.mark.parametrize("header", [
    "t=1700000000,v1=" + "é" * 64,  # not ASCII
    "t=99999999999999999999999999,v1=00",  # a timestamp no clock reaches
    "t=-5,v1=00",
    "t=1700000000,v1=" + "0" * 4096,
    "t=1700000000;v1=00",
    "t=,v1=",
])
def test_strange_headers_are_rejected_not_a_500(api: Client, header: str) -> None:
    body = new_event()
    payload = json.dumps(body).encode()
    resp = api.session.post(api.base_url + "/v1/webhooks/stripe", data=payload, timeout=30,
                            headers={"Content-Type": "application/json",
                                     "Stripe-Signature": header.encode("utf-8")})
    assert_rejected(api, resp, body)
