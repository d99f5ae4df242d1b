"""StripeProcessor's real HTTP requests, against a local stand-in for Stripe.

The stub records each request (method, path, headers, form or JSON body) and
answers with Stripe's own fixture objects, so these tests pin what goes over
the wire — the parts Stripe's behaviour depends on: paths, form fields,
Idempotency-Key, which credential — and how Stripe's errors come back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from billing.metering.reconciliation import summaries
from billing.metering.reconciliation.window import Window
from billing.processor import set_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.stripe_processor import StripeProcessor

API_KEY = "sk_test_stub_key"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        """The form-encoded v1 body, one value per (bracketed) key."""
        return {key: values[-1] for key, values in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class StripeStub(ThreadingHTTPServer):
    """Answers scripted replies in order and records every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.requests: list[Recorded] = []
        self.replies: deque[Reply] = deque()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1) -> None:
        for _ in range(times):
            self.replies.append(Reply(status, body, headers or {}))

    def only(self) -> Recorded:
        assert len(self.requests) == 1, [f"{r.method} {r.path}" for r in self.requests]
        return self.requests[0]


class _StubHandler(BaseHTTPRequestHandler):
    server: StripeStub

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        with self.server.lock:
            self.server.requests.append(Recorded(
                self.command, parts.path, parse_qs(parts.query),
                {k.lower(): v for k, v in self.headers.items()}, body,
            ))
            reply = self.server.replies.popleft() if self.server.replies else Reply(
                500, {"error": {"type": "api_error", "message": f"stub: nothing scripted for {parts.path}"}})
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.headers.pop("Content-Type", "application/json"))
        self.send_header("Request-Id", "req_stub_123")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


def serve(stub: StripeStub) -> Iterator[StripeStub]:
    thread = threading.Thread(target=stub.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.shutdown()
        stub.server_close()
        thread.join(timeout=5)


@pytest.fixture
def stub() -> Iterator[StripeStub]:
    yield from serve(StripeStub())


@pytest.fixture
def meter_stub() -> Iterator[StripeStub]:
    """The meter events base address (meter-events.stripe.com in production)."""
    yield from serve(StripeStub())


@pytest.fixture
def stripe(stub: StripeStub, meter_stub: StripeStub) -> StripeProcessor:
    # No SDK retries: each test scripts exactly the replies it expects.
    return StripeProcessor(API_KEY, base_url=stub.url, meter_events_base_url=meter_stub.url, max_network_retries=0)


def assert_api_key_auth(request: Recorded) -> None:
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["stripe-version"]


# -- customers ----------------------------------------------------------------------------


def test_create_customer(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    customer = fixtures["customer"] | {"email": "ada@example.com", "name": "Ada",
                                       "metadata": {"owner_type": "team", "owner_id": "42"}}
    stub.reply(200, customer)
    result = stripe.create_customer(
        idempotency_key="create-customer:team:42", email="ada@example.com", name="Ada",
        metadata={"owner_type": "team", "owner_id": "42"}, preferred_locales=["fr", "en"], tax_exempt="none",
    )
    request = stub.only()
    assert (request.method, request.path) == ("POST", "/v1/customers")
    assert_api_key_auth(request)
    assert request.headers["idempotency-key"] == "create-customer:team:42"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form == {
        "email": "ada@example.com", "name": "Ada", "metadata[owner_type]": "team", "metadata[owner_id]": "42",
        "preferred_locales[0]": "fr", "preferred_locales[1]": "en", "tax_exempt": "none",
    }
    assert result == customer
    assert type(result) is dict and type(result["invoice_settings"]) is dict  # plain data, not StripeObjects
    json.dumps(result)


def test_create_customer_sends_no_empty_fields(stripe: StripeProcessor, stub: StripeStub,
                                               fixtures: dict[str, Any]) -> None:
    stub.reply(200, fixtures["customer"])
    stripe.create_customer(idempotency_key="k", email=None, name=None, metadata={"owner_type": "team",
                                                                                 "owner_id": "7"})
    assert stub.only().form == {"metadata[owner_type]": "team", "metadata[owner_id]": "7"}


def test_retrieve_update_and_delete_customer(stripe: StripeProcessor, stub: StripeStub,
                                             fixtures: dict[str, Any]) -> None:
    customer_id = fixtures["customer"]["id"]
    stub.reply(200, fixtures["customer"])
    stub.reply(200, fixtures["customer"])
    stub.reply(200, fixtures["deleted_customer"])
    assert stripe.retrieve_customer(customer_id) == fixtures["customer"]
    stripe.update_customer(customer_id, idempotency_key="update:1", fields={
        "email": "new@example.com", "metadata": {"plan": "pro", "old": None},
        "invoice_settings": {"default_payment_method": "pm_123"}, "preferred_locales": ["de"],
    })
    deleted = stripe.delete_customer(customer_id, idempotency_key="delete:1")

    get, update, delete = stub.requests
    assert (get.method, get.path, get.body) == ("GET", f"/v1/customers/{customer_id}", b"")
    assert (update.method, update.path) == ("POST", f"/v1/customers/{customer_id}")
    assert update.headers["idempotency-key"] == "update:1"
    assert update.form == {
        "email": "new@example.com", "metadata[plan]": "pro", "metadata[old]": "",  # "" removes a key
        "invoice_settings[default_payment_method]": "pm_123", "preferred_locales[0]": "de",
    }
    assert (delete.method, delete.path) == ("DELETE", f"/v1/customers/{customer_id}")
    assert "idempotency-key" not in delete.headers  # Stripe ignores keys on DELETE
    assert deleted == {"deleted": True, "id": customer_id, "object": "customer"}


def test_update_tax_location_validates_immediately(stripe: StripeProcessor, stub: StripeStub,
                                                  fixtures: dict[str, Any]) -> None:
    customer = fixtures["customer"]
    address = {"line1": "1 Market St", "city": "San Francisco", "state": "CA", "postal_code": "94103",
               "country": "US"}
    customer["address"] = address | {"line2": None}
    stub.reply(200, customer)
    result = stripe.update_tax_location(customer["id"], address=address, idempotency_key="tax:cus:1")
    request = stub.only()
    assert (request.method, request.path) == ("POST", f"/v1/customers/{customer['id']}")
    assert request.headers["idempotency-key"] == "tax:cus:1"
    assert request.form == {
        "address[line1]": "1 Market St", "address[city]": "San Francisco", "address[state]": "CA",
        "address[postal_code]": "94103", "address[country]": "US", "tax[validate_location]": "immediately",
    }
    assert result["address"]["postal_code"] == "94103"


def test_invalid_tax_location_is_a_permanent_failure(stripe: StripeProcessor, stub: StripeStub) -> None:
    stub.reply(400, {"error": {
        "type": "invalid_request_error", "code": "customer_tax_location_invalid", "param": "address",
        "message": "The customer's location isn't recognized.",
        "doc_url": "https://stripe.com/docs/error-codes/customer-tax-location-invalid",
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_stub_123",
    }})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.update_tax_location("cus_1", address={"country": "XX"}, idempotency_key="tax:1")
    failure = excinfo.value
    assert (failure.status, failure.type, failure.code, failure.param) == (
        400, "invalid_request_error", "customer_tax_location_invalid", "address")
    assert (failure.transient, failure.request_id) == (False, "req_stub_123")
    assert failure.message == "The customer's location isn't recognized."
    assert failure.to_safe_dict() == {"type": "invalid_request_error", "code": "customer_tax_location_invalid",
                                      "message": "The customer's location isn't recognized."}
    assert failure.__cause__ is None and failure.__suppress_context__  # the SDK error (raw body) is dropped


# -- payment methods ----------------------------------------------------------------------


def test_attach_detach_and_retrieve_payment_method(stripe: StripeProcessor, stub: StripeStub,
                                                   fixtures: dict[str, Any]) -> None:
    pm = fixtures["payment_method"] | {"customer": "cus_1"}
    stub.reply(200, pm)
    stub.reply(200, fixtures["payment_method"])
    stub.reply(200, fixtures["payment_method"])
    attached = stripe.attach_payment_method("pm_card_visa", customer_id="cus_1", idempotency_key="attach:1")
    stripe.detach_payment_method(pm["id"], idempotency_key="detach:1")
    stripe.retrieve_payment_method(pm["id"])

    attach, detach, get = stub.requests
    assert (attach.method, attach.path, attach.form) == ("POST", "/v1/payment_methods/pm_card_visa/attach",
                                                         {"customer": "cus_1"})
    assert attach.headers["idempotency-key"] == "attach:1"
    assert (attached["card"]["fingerprint"], attached["card"]["brand"]) == ("AOB934RVNwzk6xtn", "visa")
    assert (detach.method, detach.path, detach.body) == ("POST", f"/v1/payment_methods/{pm['id']}/detach", b"")
    assert detach.headers["idempotency-key"] == "detach:1"
    assert (get.method, get.path) == ("GET", f"/v1/payment_methods/{pm['id']}")


def test_card_declined_is_a_permanent_card_error(stripe: StripeProcessor, stub: StripeStub) -> None:
    stub.reply(402, {"error": {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
                               "message": "Your card was declined."}})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.attach_payment_method("pm_card_chargeDeclined", customer_id="cus_1", idempotency_key="a")
    assert (excinfo.value.type, excinfo.value.code, excinfo.value.transient) == ("card_error", "card_declined",
                                                                                 False)


# -- meter events -------------------------------------------------------------------------


def test_create_meter_event_v1(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    event = fixtures["billing.meter_event"] | {"identifier": "usage-7", "timestamp": 1_700_000_000}
    stub.reply(200, event)
    result = stripe.create_meter_event(event_name="api_request", identifier="usage-7", timestamp=1_700_000_000,
                                       payload={"stripe_customer_id": "cus_123", "value": "25"})
    request = stub.only()
    assert (request.method, request.path) == ("POST", "/v1/billing/meter_events")
    assert_api_key_auth(request)
    # The identifier under the meter event's own prefix (billing.processor.keys).
    assert request.headers["idempotency-key"] == "meter-event:usage-7"
    assert request.form == {"event_name": "api_request", "identifier": "usage-7", "timestamp": "1700000000",
                            "payload[stripe_customer_id]": "cus_123", "payload[value]": "25"}
    assert result == event


def test_a_usage_identifier_shaped_like_another_operations_key_does_not_collide(
        stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    """Stripe's idempotency keys are account-wide: a caller-chosen usage
    identifier equal to the key another operation derives (a usage cancel,
    a payment method detach) must not be sent as that key, or Stripe would
    replay one operation's answer for the other."""
    from billing.metering.cancel import idempotency_key as cancel_key

    shaped = {"usage-cancel:u-1": "cancel", "pm-detach-pm_123": "detach"}
    for identifier in shaped:
        stub.reply(200, fixtures["billing.meter_event"] | {"identifier": identifier})
        stripe.create_meter_event(event_name="api_request", identifier=identifier, timestamp=1_700_000_000,
                                  payload={"stripe_customer_id": "cus_123", "value": "1"})
    stub.reply(200, fixtures["billing.meter_event_adjustment"])
    stripe.cancel_meter_event(event_name="api_request", identifier="u-1", idempotency_key=cancel_key("u-1"))
    stub.reply(200, fixtures["payment_method"])
    stripe.detach_payment_method("pm_123", idempotency_key="pm-detach-pm_123")  # billing.customers.payment_methods
    keys = [r.headers["idempotency-key"] for r in stub.requests]
    assert [r.path for r in stub.requests] == ["/v1/billing/meter_events", "/v1/billing/meter_events",
                                               "/v1/billing/meter_event_adjustments",
                                               "/v1/payment_methods/pm_123/detach"]
    # Each meter event still carries the caller's identifier; its key is its own.
    assert [r.form["identifier"] for r in stub.requests[:2]] == list(shaped)
    assert keys[:2] == ["meter-event:usage-cancel:u-1", "meter-event:pm-detach-pm_123"]
    assert len(set(keys)) == len(keys), keys


def test_v2_session_then_stream(stripe: StripeProcessor, stub: StripeStub, meter_stub: StripeStub) -> None:
    # Shape from Stripe's API reference (not in the v1 fixtures).
    session = {"id": "mes_test_123", "object": "v2.billing.meter_event_session",
               "authentication_token": "mes_tok_secret_abc", "created": "2024-09-26T17:46:22.134Z",
               "expires_at": "2024-09-26T18:01:22.134Z", "livemode": False}
    stub.reply(200, session)
    meter_stub.reply(200, {})
    created = stripe.create_meter_event_session()
    assert (created["authentication_token"], created["expires_at"]) == ("mes_tok_secret_abc",
                                                                        "2024-09-26T18:01:22.134Z")
    stripe.send_meter_events(session_token=created["authentication_token"], events=[
        {"event_name": "api_request", "identifier": "u-1", "timestamp": 1_727_372_782,
         "payload": {"stripe_customer_id": "cus_123", "value": 3}},
        {"event_name": "api_request", "identifier": "u-2", "timestamp": "2024-09-26T17:46:23.000Z",
         "payload": {"stripe_customer_id": "cus_123", "value": "4"}},
    ])

    session_request = stub.only()
    assert (session_request.method, session_request.path) == ("POST", "/v2/billing/meter_event_session")
    assert_api_key_auth(session_request)
    stream = meter_stub.only()  # on the meter events base address, not the API's
    assert (stream.method, stream.path) == ("POST", "/v2/billing/meter_event_stream")
    assert stream.headers["authorization"] == "Bearer mes_tok_secret_abc"  # the session, not the API key
    assert stream.headers["content-type"].startswith("application/json")
    assert stream.json == {"events": [
        {"event_name": "api_request", "identifier": "u-1", "timestamp": "2024-09-26T17:46:22.000Z",
         "payload": {"stripe_customer_id": "cus_123", "value": "3"}},
        {"event_name": "api_request", "identifier": "u-2", "timestamp": "2024-09-26T17:46:23.000Z",
         "payload": {"stripe_customer_id": "cus_123", "value": "4"}},
    ]}


def test_stream_batches_are_capped_before_any_request(stripe: StripeProcessor, meter_stub: StripeStub) -> None:
    events = [{"event_name": "e", "identifier": f"u-{n}", "payload": {"value": "1"}} for n in range(101)]
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.send_meter_events(session_token="mes_tok", events=events)
    assert (excinfo.value.status, excinfo.value.param) == (400, "events")
    assert meter_stub.requests == []


def test_expired_session_is_transient(stripe: StripeProcessor, meter_stub: StripeStub) -> None:
    meter_stub.reply(401, {"error": {"type": "temporary_session_expired",
                                     "code": "billing_meter_event_session_expired",
                                     "message": "The meter event session has expired."}})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.send_meter_events(session_token="mes_tok_old", events=[
            {"event_name": "e", "identifier": "u-1", "payload": {"stripe_customer_id": "c", "value": "1"}}])
    failure = excinfo.value
    assert (failure.status, failure.type, failure.code, failure.transient) == (
        401, "temporary_session_expired", "billing_meter_event_session_expired", True)


def test_cancel_meter_event_is_a_v1_adjustment_by_identifier(stripe: StripeProcessor, stub: StripeStub,
                                                             fixtures: dict[str, Any]) -> None:
    adjustment = fixtures["billing.meter_event_adjustment"] | {"cancel": {"identifier": "usage-7"},
                                                                "event_name": "api_request"}
    stub.reply(200, adjustment)
    result = stripe.cancel_meter_event(event_name="api_request", identifier="usage-7",
                                       idempotency_key="usage-cancel:usage-7")
    request = stub.only()
    assert (request.method, request.path) == ("POST", "/v1/billing/meter_event_adjustments")
    assert_api_key_auth(request)
    assert request.headers["idempotency-key"] == "usage-cancel:usage-7"
    assert request.form == {"type": "cancel", "event_name": "api_request", "cancel[identifier]": "usage-7"}
    assert result == adjustment


def test_cancel_past_stripes_window_comes_back_as_a_permanent_failure(stripe: StripeProcessor,
                                                                      stub: StripeStub) -> None:
    stub.reply(400, {"error": {"type": "invalid_request_error", "param": "cancel[identifier]",
                               "message": "You can only cancel events within 24 hours of Stripe receiving them."}})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.cancel_meter_event(event_name="api_request", identifier="old-1", idempotency_key="usage-cancel:old-1")
    assert (excinfo.value.status, excinfo.value.type, excinfo.value.transient) == (400, "invalid_request_error",
                                                                                  False)


def _meter(fixtures: dict[str, Any], meter_id: str, event_name: str) -> dict[str, Any]:
    return fixtures["billing.meter"] | {"id": meter_id, "event_name": event_name}


def test_meter_event_summaries_find_the_meter_by_event_name_then_list_its_summaries(
        stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    meters = {"object": "list", "url": "/v1/billing/meters", "has_more": False,
              "data": [_meter(fixtures, "mtr_other", "other_event"), _meter(fixtures, "mtr_123", "api_request")]}
    # Shape of billing.meter_event_summary (Stripe's API reference; not in the fixtures).
    summary = {"id": "mtrusum_123", "object": "billing.meter_event_summary", "aggregated_value": 42.0,
               "start_time": 1_700_000_040, "end_time": 1_700_003_640, "livemode": False, "meter": "mtr_123"}
    stub.reply(200, meters)
    stub.reply(200, {"object": "list", "url": "/v1/billing/meters/mtr_123/event_summaries", "has_more": False,
                     "data": [summary]})
    result = stripe.meter_event_summaries(event_name="api_request", customer_id="cus_123",
                                          start_time=1_700_000_040, end_time=1_700_003_640)
    listing, summaries = stub.requests
    assert (listing.method, listing.path) == ("GET", "/v1/billing/meters")
    assert listing.query == {"status": ["active"], "limit": ["100"]}
    assert (summaries.method, summaries.path) == ("GET", "/v1/billing/meters/mtr_123/event_summaries")
    assert summaries.query == {"customer": ["cus_123"], "start_time": ["1700000040"], "end_time": ["1700003640"],
                               "limit": ["100"]}
    assert_api_key_auth(summaries)
    assert result["meter"]["id"] == "mtr_123"
    assert result["data"] == [summary]

    # The meter is looked up once per process and event name.
    stub.reply(200, {"object": "list", "url": "/v1/billing/meters/mtr_123/event_summaries", "has_more": False,
                     "data": []})
    assert stripe.meter_event_summaries(event_name="api_request", customer_id="cus_123", start_time=1_700_000_040,
                                        end_time=1_700_003_640)["data"] == []
    assert [r.path for r in stub.requests[2:]] == ["/v1/billing/meters/mtr_123/event_summaries"]


def test_meter_event_summaries_of_an_event_name_without_a_meter_is_resource_missing(
        stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    stub.reply(200, {"object": "list", "url": "/v1/billing/meters", "has_more": False,
                     "data": [_meter(fixtures, "mtr_other", "other_event")]})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.meter_event_summaries(event_name="api_request", customer_id="cus_123", start_time=0, end_time=60)
    assert (excinfo.value.status, excinfo.value.code, excinfo.value.transient) == (404, "resource_missing", False)
    assert [r.path for r in stub.requests] == ["/v1/billing/meters"]


def test_retrieve_v2_event(stripe: StripeProcessor, stub: StripeStub) -> None:
    # The event object from Stripe's API reference for this type.
    event: dict[str, Any] = {
        "id": "evt_test_65RCjj4EqW1sabcjs2Z16RCMoNQdSQkOWvfL6L5uU2K40u", "object": "v2.core.event",
        "context": None, "created": "2024-09-26T17:46:22.134Z",
        "data": {
            "developer_message_summary": "There is 1 invalid event",
            "reason": {"error_count": 1, "error_types": [{
                "code": "meter_event_no_customer_defined", "error_count": 1,
                "sample_errors": [{"error_message": "Customer mapping key stripe_customer_id not found in payload.",
                                   "request": {"identifier": "cb447754-6880-45c2-8f2f-ef19b6ce81e9"}}],
            }]},
            "validation_end": "2024-09-26T17:46:20.000Z", "validation_start": "2024-09-26T17:46:10.000Z",
        },
        "livemode": False, "reason": None,
        "related_object": {"id": "mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc", "type": "billing.meter",
                           "url": "/v1/billing/meters/mtr_test_61RCjiqdTDC91zgip41IqPCzPnxqqSVc"},
        "type": "v1.billing.meter.error_report_triggered",
    }
    stub.reply(200, event)
    result = stripe.retrieve_v2_event(event["id"])
    request = stub.only()
    assert (request.method, request.path) == ("GET", f"/v2/core/events/{event['id']}")
    assert_api_key_auth(request)
    assert result == event


def test_list_v2_events_follows_next_page_url_up_to_its_limit(stripe: StripeProcessor, stub: StripeStub) -> None:
    def thin(n: int) -> dict[str, Any]:
        return {"id": f"evt_test_{n}", "object": "v2.core.event", "created": f"2024-09-26T17:46:{n:02d}.000Z",
                "type": "v1.billing.meter.error_report_triggered", "livemode": False, "context": None,
                "related_object": {"id": "mtr_test_1", "type": "billing.meter", "url": "/v1/billing/meters/mtr_test_1"}}

    stub.reply(200, {"data": [thin(3), thin(2)], "next_page_url": "/v2/core/events?page=page_2",
                     "previous_page_url": None})
    stub.reply(200, {"data": [thin(1)], "next_page_url": None, "previous_page_url": None})
    types = ["v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found"]
    whole = stripe.list_v2_events(types=types, created_gte=1727372770, created_lte=1727372790, limit=10)
    assert [e["id"] for e in whole["data"]] == ["evt_test_3", "evt_test_2", "evt_test_1"]
    assert whole["has_more"] is False
    first, second = stub.requests
    assert (first.method, first.path) == ("GET", "/v2/core/events")
    assert (first.query["types[0]"], first.query["types[1]"]) == ([types[0]], [types[1]])
    assert [v for k, v in sorted(first.query.items()) if k.startswith("created")] == [
        ["2024-09-26T17:46:10.000Z"], ["2024-09-26T17:46:30.000Z"]]
    assert (second.path, second.query) == ("/v2/core/events", {"page": ["page_2"]})

    stub.requests.clear()
    stub.reply(200, {"data": [thin(3), thin(2)], "next_page_url": "/v2/core/events?page=page_2",
                     "previous_page_url": None})
    cut = stripe.list_v2_events(types=types, created_gte=1727372770, created_lte=1727372790, limit=2)
    assert ([e["id"] for e in cut["data"]], cut["has_more"]) == (["evt_test_3", "evt_test_2"], True)
    assert len(stub.requests) == 1  # the budget ends the walk before it asks for the next page


# -- any object, coupons, promotion codes -------------------------------------------------


@pytest.mark.parametrize(
    ("object_type", "path"),
    [
        ("customer", "/v1/customers"),
        ("payment_method", "/v1/payment_methods"),
        ("subscription", "/v1/subscriptions"),
        ("invoice", "/v1/invoices"),
        ("charge", "/v1/charges"),
        ("coupon", "/v1/coupons"),
        ("promotion_code", "/v1/promotion_codes"),
    ],
)
def test_retrieve_object(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any], object_type: str,
                         path: str) -> None:
    obj = fixtures[object_type]
    stub.reply(200, obj)
    result = stripe.retrieve_object(object_type, obj["id"])
    assert (stub.only().method, stub.only().path) == ("GET", f"{path}/{obj['id']}")
    assert result == obj
    json.dumps(result)


def test_coupon_and_promotion_code(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    stub.reply(200, fixtures["coupon"])
    stub.reply(200, fixtures["promotion_code"])
    stub.reply(200, fixtures["promotion_code"] | {"active": False})
    stripe.create_coupon(idempotency_key="coupon:1", params={"percent_off": 25.5, "duration": "forever",
                                                             "name": "25.5% off"})
    stripe.create_promotion_code(idempotency_key="promo:FALL20", params={
        "promotion": {"type": "coupon", "coupon": "Z4OV52SU"}, "code": "FALL20", "max_redemptions": 5})
    updated = stripe.update_promotion_code("promo_1", params={"active": False, "metadata": {"note": None}})

    coupon, promo, update = stub.requests
    assert (coupon.path, coupon.headers["idempotency-key"]) == ("/v1/coupons", "coupon:1")
    assert coupon.form == {"percent_off": "25.5", "duration": "forever", "name": "25.5% off"}
    assert (promo.path, promo.headers["idempotency-key"]) == ("/v1/promotion_codes", "promo:FALL20")
    assert promo.form == {"promotion[type]": "coupon", "promotion[coupon]": "Z4OV52SU", "code": "FALL20",
                          "max_redemptions": "5"}
    assert (update.method, update.path) == ("POST", "/v1/promotion_codes/promo_1")
    assert update.form == {"active": "false", "metadata[note]": ""}
    assert updated["active"] is False


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "error_type", "transient"),
    [
        (429, {"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests."},
         "rate_limit", True),
        (500, {"type": "api_error", "message": "Something went wrong on Stripe's end."}, "api_error", True),
        (503, {"type": "api_error", "message": "Service unavailable."}, "api_error", True),
        (409, {"type": "invalid_request_error", "code": "lock_timeout", "message": "Locked."},
         "invalid_request_error", True),
        (409, {"type": "idempotency_error", "message": "Conflict."}, "idempotency_error", False),
        (404, {"type": "invalid_request_error", "code": "resource_missing", "param": "id",
               "message": "No such customer: 'cus_x'"}, "invalid_request_error", False),
        (401, {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"},
         "invalid_request_error", False),
    ],
)
def test_error_mapping(stripe: StripeProcessor, stub: StripeStub, status: int, error: dict[str, Any],
                       error_type: str, transient: bool) -> None:
    stub.reply(status, {"error": error})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.retrieve_customer("cus_x")
    failure = excinfo.value
    assert (failure.status, failure.type, failure.transient) == (status, error_type, transient)
    assert (failure.code, failure.param) == (error.get("code"), error.get("param"))
    assert failure.message == error["message"]
    assert failure.request_id == "req_stub_123"
    assert len(stub.requests) == 1  # max_network_retries=0


def test_a_non_json_error_body_is_not_echoed(stripe: StripeProcessor, stub: StripeStub) -> None:
    stub.reply(502, b"<html>proxy error: customer ada@example.com</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.retrieve_customer("cus_x")
    failure = excinfo.value
    assert (failure.status, failure.transient) == (502, True)
    assert "ada@example.com" not in failure.message and "html" not in failure.message
    assert "ada@example.com" not in repr(failure)


def test_stripe_should_retry_header_wins(stripe: StripeProcessor, stub: StripeStub) -> None:
    stub.reply(500, {"error": {"type": "api_error", "message": "replayed"}}, headers={"Stripe-Should-Retry": "false"})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.retrieve_customer("cus_x")
    assert excinfo.value.transient is False


def test_messages_are_capped(stripe: StripeProcessor, stub: StripeStub) -> None:
    stub.reply(400, {"error": {"type": "invalid_request_error", "message": "x" * 5000}})
    with pytest.raises(ProcessorFailure) as excinfo:
        stripe.retrieve_customer("cus_x")
    assert len(excinfo.value.message) == 512


def test_sdk_retries_reuse_the_idempotency_key(stub: StripeStub, fixtures: dict[str, Any],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from stripe._http_client import HTTPClient

    monkeypatch.setattr(HTTPClient, "_sleep_time_seconds", lambda self, num_retries, *a, **k: 0.0)
    processor = StripeProcessor(API_KEY, base_url=stub.url, max_network_retries=2)
    stub.reply(500, {"error": {"type": "api_error", "message": "boom"}}, times=2)
    stub.reply(200, fixtures["customer"])
    result = processor.create_customer(idempotency_key="create-customer:team:42", email=None, name="Ada",
                                       metadata={"owner_type": "team", "owner_id": "42"})
    assert result["id"] == fixtures["customer"]["id"]
    assert [r.headers["idempotency-key"] for r in stub.requests] == ["create-customer:team:42"] * 3
    assert len({r.body for r in stub.requests}) == 1


def test_unreachable_stripe_is_a_transient_network_failure(stub: StripeStub) -> None:
    url = stub.url
    stub.shutdown()
    stub.server_close()
    processor = StripeProcessor(API_KEY, base_url=url, max_network_retries=0, timeout=2)
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.retrieve_customer("cus_x")
    failure = excinfo.value
    assert (failure.type, failure.status, failure.transient) == ("network", None, True)
    assert API_KEY not in repr(processor)


def test_importing_the_package_and_the_fake_does_not_load_the_sdk() -> None:
    code = (
        "import sys\n"
        "import billing.processor, devstack.fake_stripe\n"
        "assert 'stripe' not in sys.modules, 'stripe imported'\n"
        "import billing.processor.stripe_processor\n"
        "assert 'stripe' not in sys.modules, 'stripe imported by the module'\n"
    )
    env_path = f"{ROOT / 'layers' / 'common'}:{ROOT}"
    result = subprocess.run(  # noqa: S603 (our own interpreter, fixed code)
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": env_path}, check=False
    )
    assert result.returncode == 0, result.stderr


# -- subscriptions, Checkout, the portal, catalog retrieval (issue 14) -------------------------


def test_create_subscription_sends_items_expansions_and_the_key(stripe: StripeProcessor, stub: StripeStub,
                                                               fixtures: dict[str, Any]) -> None:
    answer = fixtures["subscription"] | {"latest_invoice": fixtures["invoice"] | {
        "confirmation_secret": {"client_secret": "pi_1_secret_2", "type": "payment_intent"}}}
    stub.reply(200, answer)
    result = stripe.create_subscription(idempotency_key="subscription-create-abc", params={
        "customer": "cus_1", "payment_behavior": "default_incomplete",
        "items": [{"price": "price_1", "quantity": 2}], "trial_period_days": 7,
        "discounts": [{"promotion_code": "promo_1"}], "default_payment_method": "pm_1",
        "expand": ["latest_invoice.confirmation_secret", "pending_setup_intent"], "metadata": {"plan": "pro"}})
    request = stub.only()
    assert (request.method, request.path) == ("POST", "/v1/subscriptions")
    assert_api_key_auth(request)
    assert request.headers["idempotency-key"] == "subscription-create-abc"
    assert request.form == {
        "customer": "cus_1", "payment_behavior": "default_incomplete", "items[0][price]": "price_1",
        "items[0][quantity]": "2", "trial_period_days": "7", "discounts[0][promotion_code]": "promo_1",
        "default_payment_method": "pm_1", "expand[0]": "latest_invoice.confirmation_secret",
        "expand[1]": "pending_setup_intent", "metadata[plan]": "pro"}
    assert result["latest_invoice"]["confirmation_secret"]["client_secret"] == "pi_1_secret_2"
    json.dumps(result)


def test_update_and_cancel_subscription(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    stub.reply(200, fixtures["subscription"], times=4)
    stripe.update_subscription("sub_1", idempotency_key="swap-1", params={
        "items": [{"id": "si_1", "price": "price_2", "quantity": 3}], "proration_behavior": "always_invoice"})
    stripe.update_subscription("sub_1", idempotency_key="pause-1", params={
        "pause_collection": {"behavior": "void", "resumes_at": 1900000000}})
    stripe.update_subscription("sub_1", idempotency_key="unpause-1", params={"pause_collection": ""})
    stripe.cancel_subscription("sub_1", idempotency_key="cancel-1", params={})
    swap, pause, unpause, cancel = stub.requests
    assert (swap.method, swap.path, swap.headers["idempotency-key"]) == ("POST", "/v1/subscriptions/sub_1", "swap-1")
    assert swap.form == {"items[0][id]": "si_1", "items[0][price]": "price_2", "items[0][quantity]": "3",
                         "proration_behavior": "always_invoice"}
    assert pause.form == {"pause_collection[behavior]": "void", "pause_collection[resumes_at]": "1900000000"}
    assert unpause.form == {"pause_collection": ""}  # an empty value unsets it
    assert (cancel.method, cancel.path, cancel.headers["idempotency-key"]) == (
        "DELETE", "/v1/subscriptions/sub_1", "cancel-1")


def test_lists_follow_every_page(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    first = fixtures["subscription"] | {"id": "sub_a"}
    second = fixtures["subscription"] | {"id": "sub_b"}
    stub.reply(200, {"object": "list", "data": [first], "has_more": True, "url": "/v1/subscriptions"})
    stub.reply(200, {"object": "list", "data": [second], "has_more": False, "url": "/v1/subscriptions"})
    stub.reply(200, {"object": "list", "data": [fixtures["payment_method"]], "has_more": False,
                     "url": "/v1/payment_methods"})
    subscriptions = stripe.list_subscriptions(customer_id="cus_1")
    payment_methods = stripe.list_payment_methods(customer_id="cus_1")
    assert [s["id"] for s in subscriptions] == ["sub_a", "sub_b"]
    assert [p["id"] for p in payment_methods] == [fixtures["payment_method"]["id"]]
    page1, page2, pms = stub.requests
    assert (page1.method, page1.path, page1.query) == ("GET", "/v1/subscriptions", {
        "customer": ["cus_1"], "status": ["all"], "limit": ["100"]})
    assert page2.query["starting_after"] == ["sub_a"]
    assert (pms.path, pms.query) == ("/v1/payment_methods", {"customer": ["cus_1"], "limit": ["100"]})


def test_checkout_and_portal_sessions(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    stub.reply(200, fixtures["checkout.session"])
    stub.reply(200, {"id": "bps_1", "object": "billing_portal.session", "url": "https://billing.stripe.com/p/x"})
    session = stripe.create_checkout_session(idempotency_key="checkout-1", params={
        "customer": "cus_1", "mode": "subscription", "line_items": [{"price": "price_1", "quantity": 1}],
        "success_url": "https://app.example.com/ok?s={CHECKOUT_SESSION_ID}", "allow_promotion_codes": True,
        "client_reference_id": "cust_1", "subscription_data": {"trial_period_days": 14}})
    portal = stripe.create_portal_session(idempotency_key="portal-1", params={
        "customer": "cus_1", "return_url": "https://app.example.com/account",
        "flow_data": {"type": "subscription_cancel", "subscription_cancel": {"subscription": "sub_1"}}})
    checkout, billing_portal = stub.requests
    assert (checkout.path, checkout.headers["idempotency-key"]) == ("/v1/checkout/sessions", "checkout-1")
    assert checkout.form == {
        "customer": "cus_1", "mode": "subscription", "line_items[0][price]": "price_1",
        "line_items[0][quantity]": "1", "success_url": "https://app.example.com/ok?s={CHECKOUT_SESSION_ID}",
        "allow_promotion_codes": "true", "client_reference_id": "cust_1",
        "subscription_data[trial_period_days]": "14"}
    assert (billing_portal.path, billing_portal.headers["idempotency-key"]) == ("/v1/billing_portal/sessions",
                                                                              "portal-1")
    assert billing_portal.form == {"customer": "cus_1", "return_url": "https://app.example.com/account",
                                   "flow_data[type]": "subscription_cancel",
                                   "flow_data[subscription_cancel][subscription]": "sub_1"}
    assert session["url"] == fixtures["checkout.session"]["url"] and portal["url"].startswith("https://billing.")


@pytest.mark.parametrize(("object_type", "path"), [("price", "/v1/prices"), ("product", "/v1/products"),
                                                   ("checkout.session", "/v1/checkout/sessions")])
def test_retrieve_catalog_and_checkout_objects(stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any],
                                               object_type: str, path: str) -> None:
    obj = fixtures[object_type]
    stub.reply(200, obj)
    assert stripe.retrieve_object(object_type, obj["id"]) == obj
    assert (stub.only().method, stub.only().path) == ("GET", f"{path}/{obj['id']}")


def test_an_entitlement_summary_is_the_customers_active_entitlements(stripe: StripeProcessor,
                                                                    stub: StripeStub) -> None:
    entitlement = {"id": "ent_1", "object": "entitlements.active_entitlement", "feature": "feat_1",
                   "livemode": False, "lookup_key": "sso"}
    stub.reply(200, {"object": "list", "data": [entitlement], "has_more": False,
                     "url": "/v1/entitlements/active_entitlements"})
    summary = stripe.retrieve_object("entitlements.active_entitlement_summary", "cus_1")
    request = stub.only()
    assert (request.path, request.query) == ("/v1/entitlements/active_entitlements",
                                             {"customer": ["cus_1"], "limit": ["100"]})
    assert summary["object"] == "entitlements.active_entitlement_summary" and summary["customer"] == "cus_1"
    assert summary["entitlements"]["data"] == [entitlement]


# -- list pages (the backfill and the events poll) ------------------------------------------

LIST_PATHS = {"customer": "/v1/customers", "subscription": "/v1/subscriptions", "invoice": "/v1/invoices",
              "charge": "/v1/charges", "coupon": "/v1/coupons", "promotion_code": "/v1/promotion_codes",
              "price": "/v1/prices", "product": "/v1/products", "event": "/v1/events"}


@pytest.mark.parametrize("object_type", sorted(LIST_PATHS))
def test_list_objects_reads_one_page_after_the_cursor(stripe: StripeProcessor, stub: StripeStub,
                                                       fixtures: dict[str, Any], object_type: str) -> None:
    obj = fixtures[object_type]
    stub.reply(200, {"object": "list", "data": [obj], "has_more": True, "url": LIST_PATHS[object_type]})
    page = stripe.list_objects(object_type, limit=25, starting_after="x_1")
    assert page == {"object": "list", "data": [obj], "has_more": True, "url": LIST_PATHS[object_type]}
    request = stub.only()
    assert (request.method, request.path) == ("GET", LIST_PATHS[object_type])
    expected = {"limit": ["25"], "starting_after": ["x_1"]}
    if object_type == "subscription":
        expected["status"] = ["all"]  # Stripe's default would leave canceled ones out
    assert request.query == expected
    assert_api_key_auth(request)


def test_list_objects_pages_newer_events_and_filters(stripe: StripeProcessor, stub: StripeStub,
                                                     fixtures: dict[str, Any]) -> None:
    stub.reply(200, {"object": "list", "data": [fixtures["event"]], "has_more": False, "url": "/v1/events"})
    stub.reply(200, {"object": "list", "data": [fixtures["payment_method"]], "has_more": False,
                     "url": "/v1/payment_methods"})
    events = stripe.list_objects("event", ending_before="evt_cursor", params={"created": {"lte": 1700000000}})
    methods = stripe.list_objects("payment_method", limit=100, params={"customer": "cus_1"})
    assert not events["has_more"] and events["data"][0]["id"] == fixtures["event"]["id"]
    assert methods["data"][0]["id"] == fixtures["payment_method"]["id"]
    newer, pms = stub.requests
    assert (newer.path, newer.query) == ("/v1/events", {"ending_before": ["evt_cursor"], "limit": ["100"],
                                                        "created[lte]": ["1700000000"]})
    assert (pms.path, pms.query) == ("/v1/payment_methods", {"customer": ["cus_1"], "limit": ["100"]})


def test_list_objects_refuses_what_stripe_cannot_list(stripe: StripeProcessor, stub: StripeStub) -> None:
    with pytest.raises(ValueError, match="per customer"):
        stripe.list_objects("payment_method")
    with pytest.raises(ValueError, match="unsupported"):
        stripe.list_objects("refund")
    with pytest.raises(ValueError, match="limit"):
        stripe.list_objects("customer", limit=101)
    assert stub.requests == []


def test_an_unknown_cursor_is_resource_missing(stripe: StripeProcessor, stub: StripeStub) -> None:
    stub.reply(404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                               "param": "ending_before", "message": "No such event: 'evt_gone'"}})
    with pytest.raises(ProcessorFailure) as failure:
        stripe.list_objects("event", ending_before="evt_gone")
    assert (failure.value.code, failure.value.transient) == ("resource_missing", False)


def test_a_reconciliation_asks_for_hourly_summaries_one_call_per_customer_meter_day_paged_under_its_budget(
        stripe: StripeProcessor, stub: StripeStub, fixtures: dict[str, Any]) -> None:
    """Issue 20: Stripe's meter event summaries as its API reference names
    them: GET /v1/billing/meters/{id}/event_summaries with customer,
    start_time, end_time and value_grouping_window=hour, per UTC day of the
    window (hour grouping needs hour-aligned bounds), paged with starting_after."""
    day = 1_700_006_400 // 86400 * 86400  # a UTC midnight
    window = Window(day - 2 * 3600, day + 3600)  # 22:00 to 01:00: two days

    def hour(start: int, value: float) -> dict[str, Any]:
        return {"id": f"mtrusum_{start}", "object": "billing.meter_event_summary", "aggregated_value": value,
                "start_time": start, "end_time": start + 3600, "livemode": False, "meter": "mtr_123"}

    url = "/v1/billing/meters/mtr_123/event_summaries"
    stub.reply(200, {"object": "list", "url": "/v1/billing/meters", "has_more": False,
                     "data": [_meter(fixtures, "mtr_123", "api_request")]})
    stub.reply(200, {"object": "list", "url": url, "has_more": True, "data": [hour(day - 7200, 3.0)]})
    stub.reply(200, {"object": "list", "url": url, "has_more": False, "data": [hour(day - 3600, 4.0)]})
    stub.reply(200, {"object": "list", "url": url, "has_more": False, "data": [hour(day, 5.0)]})
    slept: list[float] = []
    clock = iter([0.0, 0.01])
    budget = summaries.RateBudget(20, sleep=slept.append, monotonic=lambda: next(clock))
    set_processor(stripe)
    try:
        values = summaries.hourly(window, stripe_customer_id="cus_123", event_name="api_request", budget=budget)
    finally:
        set_processor(None)
    assert values == {day - 7200: 3.0, day - 3600: 4.0, day: 5.0}
    _, first, page, second = stub.requests
    assert (first.method, first.path, second.path) == ("GET", url, url)
    assert first.query == {"customer": ["cus_123"], "start_time": [str(day - 7200)], "end_time": [str(day)],
                           "value_grouping_window": ["hour"], "limit": ["100"]}
    assert page.query == {**first.query, "starting_after": [f"mtrusum_{day - 7200}"]}
    assert second.query == {"customer": ["cus_123"], "start_time": [str(day)], "end_time": [str(day + 3600)],
                            "value_grouping_window": ["hour"], "limit": ["100"]}
    assert_api_key_auth(second)
    # One budgeted request per customer-meter-day, spaced 1/20 s apart. (A day has 24 hourly summaries, under
    # the page size of 100: the follow-up page here is the stub's, to prove the SDK pages.)
    assert budget.requests == 2 and slept == [pytest.approx(0.04)]
