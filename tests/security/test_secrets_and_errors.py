"""Secrets sent to the service never come back in an answer and never reach
the function log; errors the service stores are only {type, code, message}
with the message capped at 512 characters, never a raw payload.

Each test registers the secrets it sends with the module's log guard
(tests/security/conftest.py), which fails it if the function log gained any
of them, or any standard forbidden fragment, while it ran.
"""

from __future__ import annotations

import json
import time

import requests

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.usage_helpers import get_usage, new_customer, put_usage, settle, uid, usage_body
from tests.integration.webhook_helpers import accepted, customer_object, deliver, event, fake
from tests.integration.webhook_helpers import settle as settle_events
from tests.security.conftest import LogWindow, fake_secret

SAFE_ERROR_KEYS = {"type", "code", "message"}
RAW_PAYLOAD_MARKERS = ('"pending_webhooks"', '"billing_details"', '"invoice_prefix"', '"object": "event"')


def assert_no_echo(resp: requests.Response, *secrets: str) -> None:
    assert resp.status_code < 500, resp.text
    for secret in secrets:
        assert secret not in resp.text and secret not in str(resp.headers)


def test_secret_bearing_requests_are_answered_without_echo_and_never_logged(stack: LocalStack, api: Client,
                                                                             log_window: LogWindow) -> None:
    key, whsec = fake_secret("sk_test_"), fake_secret("whsec_")
    log_window.watch(key, whsec, key[8:], whsec[6:])
    headers = {"Authorization": f"Bearer {key}", "X-Api-Key": key, "Cookie": f"session={key}",
               "X-Stripe-Secret": whsec}
    customer = new_customer(api)
    identifier = uid("secret")

    answers = [
        # Accepted: the secrets rode along in headers the handler never reads.
        api.put(f"/v1/usage/{identifier}", usage_body(customer, 3), headers=headers),
        # Rejected input that contains them.
        api.put(f"/v1/usage/{uid('secret')}", {**usage_body(customer), "event_name": f"{whsec}\x00"},
                headers=headers),
        api.put(f"/v1/usage/{uid('secret')}", {**usage_body(customer), "operation_id": key * 20}, headers=headers),
        api.patch(f"/v1/customers/{customer['id']}", {"metadata": {"api_key": key * 20}}, headers=headers),
        # (A 422 names each offending metadata key, by contract; values are never repeated.)
        api.patch(f"/v1/customers/{customer['id']}", {"metadata": {"nested": {"token": whsec}}}, headers=headers),
        api.request("PUT", f"/v1/owners/Team/{uid()}/customer", data=f'{{"name": "{key}", ', headers=headers),
        api.patch(f"/v1/customers/{customer['id']}", {"name": "x"}, headers={**headers, "If-Match": f'"{key}"'}),
        api.post("/v1/customers", {"owner_type": "Team", "owner_id": uid(), "secret": whsec}, headers=headers),
        api.get(f"/v1/usage?status=failed&cursor={key}", headers=headers),
        # A webhook signed with a guessed secret, carrying one in its body.
        deliver(api, event("customer.updated", customer_object(customer["processor_id"],
                                                               metadata={"leak": whsec})), secret=whsec),
    ]
    assert answers[0].status_code == 202, answers[0].text
    assert [a.status_code for a in answers[1:]] == [422, 422, 422, 422, 400, 422, 422, 422, 400], \
        [a.text for a in answers]
    for resp in answers:
        assert_no_echo(resp, key, whsec)
    assert settle(stack, api, [identifier])[identifier]["stripe_status"] == "reported"
    # The guard is not vacuous: the accepted request was logged, without its headers.
    assert identifier in log_window.text()


def test_a_secret_inside_a_stripe_object_reaches_the_projection_but_not_the_log(stack: LocalStack, api: Client,
                                                                                 log_window: LogWindow) -> None:
    """Customer data is the customer's: a secret-shaped metadata value is
    stored like any other, and the webhook path never logs the object."""
    whsec = fake_secret("whsec_")
    log_window.watch(whsec)
    customer = new_customer(api)
    current = fake(stack).retrieve_customer(customer["processor_id"])
    body = event("customer.updated", dict(current, metadata={**current["metadata"], "pasted": whsec}),
                 created=int(current["created"]) + 1)
    accepted(api, body)
    (stored,) = settle_events(stack, api, body["id"])
    assert stored["status"] == "processed"
    assert whsec not in json.dumps(stored)  # the event row's API view has no body
    projection = api.get(f"/v1/customers/{customer['id']}").json()
    assert projection["data"]["metadata"]["pasted"] == whsec
    assert body["id"] in log_window.text()


def test_a_failed_webhook_event_keeps_only_a_sanitized_error(stack: LocalStack, api: Client) -> None:
    """An event in its watermark's second re-fetches the object; Stripe keeps
    refusing with a long message: the row fails with {type, code, message<=512}."""
    customer = new_customer(api)
    current = fake(stack).retrieve_customer(customer["processor_id"])
    second = int(current["created"]) + 1
    first = event("customer.updated", dict(current, name="first"), created=second)
    accepted(api, first)
    assert settle_events(stack, api, first["id"])[0]["status"] == "processed"

    message = "Stripe said no: " + "the object is unavailable right now. " * 60
    processor = next(f for f in stack.functions if f.logical_id == "WebhookProcessorFunction")
    attempts = 1 + processor.streams[0].maximum_retry_attempts  # the first delivery and each retry
    resp = api.post("/_local/fake-stripe/faults", {"operation": "retrieve_object", "status": 400,
                                                   "code": "resource_unavailable", "message": message,
                                                   "times": attempts})
    assert resp.status_code == 200, resp.text
    same_second = event("customer.updated", dict(current, name="second"), created=second)
    accepted(api, same_second)
    (stored,) = settle_events(stack, api, same_second["id"], timeout=60)
    assert stored["status"] == "failed", stored
    error = stored["error"]
    assert set(error) == SAFE_ERROR_KEYS
    assert (error["type"], error["code"]) == ("invalid_request_error", "resource_unavailable")
    assert error["message"].startswith("Stripe said no: ") and len(error["message"]) <= 512
    assert not any(marker in json.dumps(stored) for marker in RAW_PAYLOAD_MARKERS)
    assert api.get("/_local/fake-stripe/state").json()["pending_faults"] == {}


def test_a_meter_error_keeps_only_a_sanitized_error_on_the_usage_row(stack: LocalStack, api: Client) -> None:
    customer = new_customer(api)
    identifier = uid("merr")
    put_usage(api, identifier, usage_body(customer, 2))
    settle(stack, api, [identifier])
    message = "Invalid value: " + "the value must be a whole number. " * 60
    resp = api.post("/_local/fake-stripe/meter-error", {"identifiers": [identifier], "message": message,
                                                        "code": "meter_event_invalid_value"})
    assert resp.status_code == 200 and resp.json()["delivery"]["status"] == 200, resp.text
    deadline = time.monotonic() + 60
    row = get_usage(api, identifier)
    while row["stripe_status"] != "failed" and time.monotonic() < deadline:
        assert stack.drain(timeout=30)
        row = get_usage(api, identifier)
    assert row["stripe_status"] == "failed"
    error = row["stripe_error"]
    assert set(error) == SAFE_ERROR_KEYS
    assert error["code"] == "meter_event_invalid_value"
    assert error["message"].startswith("Invalid value: ") and len(error["message"]) <= 512
    assert not any(marker in json.dumps(row) for marker in RAW_PAYLOAD_MARKERS)

