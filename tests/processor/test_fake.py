"""FakeProcessor behaves like Stripe's test mode where billing code can tell,
in process and through the RPC hop the local stack uses."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.processor.base import PROCESSOR_METHODS, Processor, rfc3339
from billing.processor.errors import ProcessorFailure
from devstack.fake_stripe import (
    NETWORK_FAULT,
    TEST_CARDS,
    FakeProcessor,
    FakeProcessorServer,
    RemoteFakeProcessor,
    dispatch,
)

from .conftest import Clock

OWNER = {"owner_type": "team", "owner_id": "42"}


def new_customer(p: Processor, key: str = "create-customer:team:42", **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"email": "ada@example.com", "name": "Ada", "metadata": dict(OWNER)}
    args.update(overrides)
    return p.create_customer(idempotency_key=key, **args)


def meter(p: Processor, identifier: str, ts: int, value: str = "3", customer: str = "cus_fake_00001") -> dict[str, Any]:
    return p.create_meter_event(
        event_name="api_requests",
        identifier=identifier,
        timestamp=ts,
        payload={"stripe_customer_id": customer, "value": value},
    )


def failure_of(excinfo: pytest.ExceptionInfo[ProcessorFailure]) -> ProcessorFailure:
    return excinfo.value


# -- ids and shapes -----------------------------------------------------------------------


def test_ids_are_deterministic_per_prefix_and_restart_on_reset(fake: FakeProcessor) -> None:
    first = new_customer(fake, "k1")
    second = new_customer(fake, "k2")
    pm = fake.attach_payment_method("pm_card_visa", customer_id=first["id"], idempotency_key="a1")
    coupon = fake.create_coupon(idempotency_key="c1", params={"percent_off": 10, "duration": "once"})
    promo = fake.create_promotion_code(
        idempotency_key="p1", params={"promotion": {"type": "coupon", "coupon": coupon["id"]}, "code": "WELCOME"}
    )
    assert (first["id"], second["id"]) == ("cus_fake_00001", "cus_fake_00002")
    assert pm["id"] == "pm_fake_00001"
    assert coupon["id"] == "coupon_fake_00001"
    assert promo["id"] == "promo_fake_00001"

    fake.reset()
    assert new_customer(fake, "k1")["id"] == "cus_fake_00001"
    assert fake.snapshot()["customers"] == 1


def test_objects_carry_every_field_of_stripes_shape(fake: FakeProcessor, fixtures: dict[str, Any]) -> None:
    customer = new_customer(fake, preferred_locales=["fr"], tax_exempt="exempt")
    assert set(fixtures["customer"]) <= set(customer)
    assert customer["object"] == "customer"
    assert customer["metadata"] == OWNER
    assert customer["preferred_locales"] == ["fr"]
    assert customer["tax_exempt"] == "exempt"
    assert customer["livemode"] is False

    pm = fake.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key="a1")
    assert set(fixtures["payment_method"]) <= set(pm)
    assert set(fixtures["payment_method"]["card"]) <= set(pm["card"])
    assert pm["customer"] == customer["id"]
    assert (pm["type"], pm["card"]["brand"], pm["card"]["last4"]) == ("card", "visa", "4242")

    coupon = fake.create_coupon(idempotency_key="c1", params={"percent_off": 25.5, "duration": "forever"})
    assert set(fixtures["coupon"]) <= set(coupon)
    promo = fake.create_promotion_code(idempotency_key="p1", params={"promotion": {"type": "coupon",
                                                                                   "coupon": coupon["id"]}})
    assert set(fixtures["promotion_code"]) <= set(promo)
    assert promo["promotion"] == {"coupon": coupon["id"], "type": "coupon"}
    json.dumps([customer, pm, coupon, promo])  # plain JSON-able data


def test_results_are_copies_not_the_fakes_state(fake: FakeProcessor) -> None:
    customer = new_customer(fake)
    customer["email"] = "mutated@example.com"
    assert fake.retrieve_customer("cus_fake_00001")["email"] == "ada@example.com"


# -- idempotency --------------------------------------------------------------------------


def test_same_key_same_parameters_replays_the_first_result(processor: Processor) -> None:
    first = new_customer(processor, "create-customer:team:42")
    again = new_customer(processor, "create-customer:team:42")
    assert again == first
    other = new_customer(processor, "create-customer:team:43", metadata={"owner_type": "team", "owner_id": "43"})
    assert other["id"] == "cus_fake_00002"


def test_same_key_other_parameters_is_an_idempotency_error(processor: Processor) -> None:
    new_customer(processor, "k")
    with pytest.raises(ProcessorFailure) as excinfo:
        new_customer(processor, "k", email="other@example.com")
    failure = failure_of(excinfo)
    assert (failure.status, failure.type, failure.transient) == (400, "idempotency_error", False)
    assert "same parameters" in failure.message


def test_same_key_on_another_endpoint_is_an_idempotency_error(fake: FakeProcessor) -> None:
    customer = new_customer(fake, "k")
    with pytest.raises(ProcessorFailure) as excinfo:
        fake.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key="k")
    assert failure_of(excinfo).type == "idempotency_error"


def test_validation_errors_are_not_saved_under_the_key(fake: FakeProcessor) -> None:
    customer = new_customer(fake)
    bad = {"country": "US", "postal_code": "nope"}
    with pytest.raises(ProcessorFailure):
        fake.update_tax_location(customer["id"], address=bad, idempotency_key="tax-1")
    with pytest.raises(ProcessorFailure):
        fake.update_tax_location(customer["id"], address=bad, idempotency_key="tax-1")
    good = fake.update_tax_location(customer["id"], address={"country": "DE"}, idempotency_key="tax-2")
    assert good["address"]["country"] == "DE"


# -- faults -------------------------------------------------------------------------------


def test_faults_are_consumed_fifo_per_operation(fake: FakeProcessor) -> None:
    fake.add_fault("create_customer", 429)
    fake.add_fault("create_customer", 500, times=2)
    fake.add_fault("retrieve_customer", 404, code="resource_missing")
    statuses = []
    for attempt in range(3):
        with pytest.raises(ProcessorFailure) as excinfo:
            new_customer(fake, f"k{attempt}")
        statuses.append((failure_of(excinfo).status, failure_of(excinfo).transient))
    assert statuses == [(429, True), (500, True), (500, True)]
    customer = new_customer(fake, "k-ok")  # faults used up
    with pytest.raises(ProcessorFailure) as excinfo:
        fake.retrieve_customer(customer["id"])
    assert (failure_of(excinfo).code, failure_of(excinfo).transient) == ("resource_missing", False)
    assert fake.retrieve_customer(customer["id"])["id"] == customer["id"]
    assert fake.snapshot()["pending_faults"] == {}


@pytest.mark.parametrize(
    ("status", "code", "error_type", "transient"),
    [
        (400, "parameter_invalid_empty", "invalid_request_error", False),
        (402, "card_declined", "card_error", False),
        (404, "resource_missing", "invalid_request_error", False),
        (409, None, "invalid_request_error", False),
        (409, "lock_timeout", "invalid_request_error", True),
        (429, None, "rate_limit", True),
        (500, None, "api_error", True),
        (503, None, "api_error", True),
        (NETWORK_FAULT, None, "network", True),
        (NETWORK_FAULT, "timeout", "timeout", True),
    ],
)
def test_fault_kinds(
    processor: Processor,
    fake: FakeProcessor,
    clock: Clock,
    status: int,
    code: str | None,
    error_type: str,
    transient: bool,
) -> None:
    fake.add_fault("create_meter_event", status, code=code, message="scripted")
    with pytest.raises(ProcessorFailure) as excinfo:
        meter(processor, "u-1", int(clock.now))
    failure = failure_of(excinfo)
    assert (failure.type, failure.transient, failure.message) == (error_type, transient, "scripted")
    assert failure.status == (None if status == NETWORK_FAULT else status)
    if status == 429:
        assert failure.code == "rate_limit"
    assert meter(processor, "u-1", int(clock.now))["identifier"] == "u-1"


def test_fault_aliases_match_either_delivery_call(fake: FakeProcessor, clock: Clock) -> None:
    fake.add_fault("report_meter_event", 500, times=2)
    session = fake.create_meter_event_session()
    with pytest.raises(ProcessorFailure):
        meter(fake, "u-1", int(clock.now))
    with pytest.raises(ProcessorFailure):
        fake.send_meter_events(session_token=session["authentication_token"], events=[
            {"event_name": "api_requests", "identifier": "u-2", "payload": {"stripe_customer_id": "c", "value": "1"}}
        ])
    meter(fake, "u-1", int(clock.now))
    fake.add_fault("*", 503)
    with pytest.raises(ProcessorFailure):
        fake.retrieve_customer("cus_anything")


def test_a_lost_response_leaves_the_effect_and_the_retry_replays_it(fake: FakeProcessor) -> None:
    fake.add_fault("create_customer", NETWORK_FAULT, code="timeout", after=True)
    with pytest.raises(ProcessorFailure) as excinfo:
        new_customer(fake, "create-customer:team:42")
    assert failure_of(excinfo).transient
    retried = new_customer(fake, "create-customer:team:42")
    assert retried["id"] == "cus_fake_00001"
    assert fake.snapshot()["customers"] == 1


def test_add_fault_rejects_typos(fake: FakeProcessor) -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        fake.add_fault("create_custmer", 500)
    with pytest.raises(ValueError, match="status"):
        fake.add_fault("create_customer", 200)


def test_every_call_is_recorded_without_the_session_token(fake: FakeProcessor) -> None:
    customer = new_customer(fake, "k1")
    fake.add_fault("retrieve_customer", 500)
    with pytest.raises(ProcessorFailure):
        fake.retrieve_customer(customer["id"])
    session = fake.create_meter_event_session()
    token = session["authentication_token"]
    fake.send_meter_events(session_token=token, events=[
        {"event_name": "api_requests", "identifier": "u-1", "payload": {"stripe_customer_id": "c", "value": "1"}}
    ])
    calls = fake.calls
    assert [c["operation"] for c in calls] == [
        "create_customer", "retrieve_customer", "create_meter_event_session", "send_meter_events"
    ]
    assert calls[0]["idempotency_key"] == "k1"
    assert calls[0]["args"]["metadata"] == OWNER
    assert calls[1]["error"]["status"] == 500
    assert token not in json.dumps(calls)


# -- payment methods ----------------------------------------------------------------------


def test_test_cards_have_a_stable_fingerprint_per_card(processor: Processor) -> None:
    customer = new_customer(processor)
    attached = {
        name: processor.attach_payment_method(name, customer_id=customer["id"], idempotency_key=f"attach-{name}-{n}")
        for n, name in enumerate(["pm_card_visa", "pm_card_mastercard", "pm_card_amex", "pm_card_discover",
                                  "pm_card_visa_debit"])
    }
    again = processor.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key="again")
    assert again["id"] != attached["pm_card_visa"]["id"]  # a new PaymentMethod each time...
    assert again["card"]["fingerprint"] == attached["pm_card_visa"]["card"]["fingerprint"]  # ...of the same card
    fingerprints = {name: pm["card"]["fingerprint"] for name, pm in attached.items()}
    assert len(set(fingerprints.values())) == len(fingerprints)
    assert {name: pm["card"]["brand"] for name, pm in attached.items()} == {
        "pm_card_visa": "visa", "pm_card_mastercard": "mastercard", "pm_card_amex": "amex",
        "pm_card_discover": "discover", "pm_card_visa_debit": "visa",
    }
    assert attached["pm_card_visa_debit"]["card"]["funding"] == "debit"
    # Stable across Fake instances and processes, not just within one.
    assert fingerprints["pm_card_visa"] == TEST_CARDS["pm_card_visa"].fingerprint


def test_declining_test_cards_fail_to_attach(processor: Processor) -> None:
    customer = new_customer(processor)
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.attach_payment_method("pm_card_chargeDeclined", customer_id=customer["id"], idempotency_key="a")
    failure = failure_of(excinfo)
    assert (failure.status, failure.type, failure.code, failure.transient) == (402, "card_error", "card_declined",
                                                                                False)
    ok = processor.attach_payment_method("pm_card_chargeCustomerFail", customer_id=customer["id"],
                                         idempotency_key="b")
    assert ok["customer"] == customer["id"]


def test_unknown_payment_method_and_customer_are_resource_missing(processor: Processor) -> None:
    customer = new_customer(processor)
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.attach_payment_method("pm_nope", customer_id=customer["id"], idempotency_key="a")
    assert (failure_of(excinfo).code, failure_of(excinfo).status) == ("resource_missing", 404)
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.attach_payment_method("pm_card_visa", customer_id="cus_nope", idempotency_key="b")
    failure = failure_of(excinfo)
    assert (failure.code, failure.status, failure.param) == ("resource_missing", 400, "customer")
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.retrieve_payment_method("pm_nope")
    assert failure_of(excinfo).code == "resource_missing"


def test_detach_clears_the_default_and_is_final(processor: Processor) -> None:
    customer = new_customer(processor)
    pm = processor.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key="a")
    updated = processor.update_customer(customer["id"], fields={"invoice_settings": {"default_payment_method":
                                                                                      pm["id"]}})
    assert updated["invoice_settings"]["default_payment_method"] == pm["id"]

    detached = processor.detach_payment_method(pm["id"], idempotency_key="d")
    assert detached["customer"] is None
    assert processor.retrieve_customer(customer["id"])["invoice_settings"]["default_payment_method"] is None
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.detach_payment_method(pm["id"], idempotency_key="d2")
    assert failure_of(excinfo).code == "payment_method_unexpected_state"
    with pytest.raises(ProcessorFailure):
        processor.attach_payment_method(pm["id"], customer_id=customer["id"], idempotency_key="a2")


def test_default_payment_method_must_be_attached_to_the_customer(processor: Processor) -> None:
    ada = new_customer(processor, "k1")
    bob = new_customer(processor, "k2", email="bob@example.com")
    pm = processor.attach_payment_method("pm_card_visa", customer_id=bob["id"], idempotency_key="a")
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.update_customer(ada["id"], fields={"invoice_settings": {"default_payment_method": pm["id"]}})
    assert failure_of(excinfo).param == "invoice_settings[default_payment_method]"


# -- customers ----------------------------------------------------------------------------


def test_update_merges_metadata_and_rejects_unknown_fields(processor: Processor) -> None:
    customer = new_customer(processor)
    updated = processor.update_customer(
        customer["id"], idempotency_key="u1", fields={"metadata": {"plan": "pro", "owner_id": ""}, "name": "Ada L."}
    )
    assert updated["metadata"] == {"owner_type": "team", "plan": "pro"}
    assert updated["name"] == "Ada L."
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.update_customer(customer["id"], fields={"nickname": "x"})
    assert (failure_of(excinfo).code, failure_of(excinfo).param) == ("parameter_unknown", "nickname")
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.update_customer(customer["id"], fields={"email": "not an email"})
    assert failure_of(excinfo).code == "email_invalid"


def test_deleted_customers_read_as_deleted_and_cannot_change(processor: Processor) -> None:
    customer = new_customer(processor)
    pm = processor.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key="a")
    assert processor.delete_customer(customer["id"], idempotency_key="del") == {
        "deleted": True, "id": customer["id"], "object": "customer"
    }
    assert processor.retrieve_customer(customer["id"])["deleted"] is True
    assert processor.retrieve_payment_method(pm["id"])["customer"] is None
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.delete_customer(customer["id"], idempotency_key="del")  # DELETE ignores keys, like Stripe
    assert (failure_of(excinfo).status, failure_of(excinfo).code) == (404, "resource_missing")
    with pytest.raises(ProcessorFailure):
        processor.update_customer(customer["id"], fields={"name": "x"})


# -- tax location -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        {"country": "US", "postal_code": "94103", "line1": "1 Market St", "city": "SF", "state": "CA"},
        {"country": "US", "postal_code": "94103-1234"},
        {"country": "us", "postal_code": "10001"},
        {"country": "DE"},
        {"country": "CA", "state": "ON"},
        {"country": "GB", "postal_code": "SW1A 1AA"},
    ],
)
def test_valid_tax_locations_are_stored(processor: Processor, address: dict[str, str]) -> None:
    customer = new_customer(processor)
    updated = processor.update_tax_location(customer["id"], address=address, idempotency_key="tax")
    assert updated["address"]["country"] == address["country"].upper()
    assert updated["address"]["postal_code"] == address.get("postal_code")
    assert set(updated["address"]) == {"city", "country", "line1", "line2", "postal_code", "state"}


@pytest.mark.parametrize(
    ("address", "param"),
    [
        ({"country": "XX"}, "address[country]"),
        ({"country": "USA", "postal_code": "94103"}, "address[country]"),
        ({"country": "UK"}, "address[country]"),  # GB is the ISO code
        ({"postal_code": "94103"}, "address[country]"),
        ({"country": "US", "postal_code": "9410"}, "address[postal_code]"),
        ({"country": "US", "postal_code": "ABCDE"}, "address[postal_code]"),
        ({"country": "US", "postal_code": "94103-12"}, "address[postal_code]"),
        ({"country": "US"}, "address[postal_code]"),
        ({"country": "CA"}, "address[postal_code]"),
    ],
)
def test_invalid_tax_locations_fail_like_stripe(processor: Processor, address: dict[str, str], param: str) -> None:
    customer = new_customer(processor)
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.update_tax_location(customer["id"], address=address, idempotency_key="tax")
    failure = failure_of(excinfo)
    assert (failure.status, failure.type, failure.code) == (400, "invalid_request_error",
                                                             "customer_tax_location_invalid")
    assert (failure.param, failure.transient) == (param, False)
    assert processor.retrieve_customer(customer["id"])["address"] is None  # unchanged


# -- meter events -------------------------------------------------------------------------


def test_v1_meter_events_dedupe_by_identifier_and_count_duplicates(processor: Processor, fake: FakeProcessor,
                                                                   clock: Clock) -> None:
    ts = int(clock.now) - 60
    first = meter(processor, "u-1", ts)
    assert first == {
        "created": int(clock.now), "event_name": "api_requests", "identifier": "u-1", "livemode": False,
        "object": "billing.meter_event", "payload": {"stripe_customer_id": "cus_fake_00001", "value": "3"},
        "timestamp": ts,
    }
    assert meter(processor, "u-1", ts) == first
    assert meter(processor, "u-1", ts) == first
    meter(processor, "u-2", ts, value="5")
    snapshot = fake.snapshot()
    assert [e["identifier"] for e in snapshot["meter_events"]] == ["u-1", "u-2"]
    assert snapshot["meter_events"][0]["received"] == 3
    assert snapshot["meter_event_duplicates"] == {"u-1": 2}
    assert (snapshot["meter_event_count"], snapshot["duplicate_count"]) == (2, 2)

    with pytest.raises(ProcessorFailure) as excinfo:
        meter(processor, "u-1", ts, value="4")  # the identifier is also the idempotency key
    assert failure_of(excinfo).type == "idempotency_error"


@pytest.mark.parametrize(
    ("offset", "payload", "code"),
    [
        (-36 * 24 * 3600, {"stripe_customer_id": "cus_1", "value": "1"}, "timestamp_too_far_in_past"),
        (6 * 60, {"stripe_customer_id": "cus_1", "value": "1"}, "timestamp_in_future"),
        (0, {"value": "1"}, "meter_event_no_customer_defined"),
        (0, {"stripe_customer_id": "cus_1", "value": "lots"}, "meter_event_invalid_value"),
    ],
)
def test_v1_meter_events_are_validated_synchronously(
    processor: Processor, clock: Clock, offset: int, payload: dict[str, str], code: str
) -> None:
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.create_meter_event(event_name="api_requests", identifier="u-1", timestamp=int(clock.now) + offset,
                                     payload=payload)
    assert (failure_of(excinfo).code, failure_of(excinfo).status, failure_of(excinfo).transient) == (code, 400, False)


def stream_event(identifier: str, ts: int | str, value: str = "1") -> dict[str, Any]:
    return {"event_name": "api_requests", "identifier": identifier, "timestamp": ts,
            "payload": {"stripe_customer_id": "cus_fake_00001", "value": value}}


def test_v2_session_and_stream(processor: Processor, fake: FakeProcessor, clock: Clock) -> None:
    session = processor.create_meter_event_session()
    assert session["object"] == "v2.billing.meter_event_session"
    assert session["expires_at"] == rfc3339(clock.now + 15 * 60)
    token = session["authentication_token"]
    ts = int(clock.now) - 30
    events = [stream_event(f"u-{n}", rfc3339(ts) if n % 2 else ts) for n in range(100)]
    processor.send_meter_events(session_token=token, events=events)
    processor.send_meter_events(session_token=token, events=events[:3])  # a redelivered batch
    meter(processor, "u-0", ts)  # and one through v1

    snapshot = fake.snapshot()
    assert snapshot["meter_event_count"] == 100
    assert {e["timestamp"] for e in snapshot["meter_events"]} == {ts}
    assert snapshot["meter_events"][0]["api"] == "v2"
    assert snapshot["meter_event_duplicates"] == {"u-0": 2, "u-1": 1, "u-2": 1}


def test_v2_stream_limits_and_session_expiry(processor: Processor, clock: Clock) -> None:
    token = processor.create_meter_event_session()["authentication_token"]
    ts = int(clock.now)
    for events in ([], [stream_event(f"u-{n}", ts) for n in range(101)]):
        with pytest.raises(ProcessorFailure) as excinfo:
            processor.send_meter_events(session_token=token, events=events)
        assert (failure_of(excinfo).status, failure_of(excinfo).param) == (400, "events")
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.send_meter_events(session_token=token, events=[{"identifier": "u-1", "payload": {"value": "1"}}])
    assert failure_of(excinfo).param == "events[0].event_name"

    clock.advance(15 * 60)
    for bad_token in (token, "mes_tok_unknown"):
        with pytest.raises(ProcessorFailure) as excinfo:
            processor.send_meter_events(session_token=bad_token, events=[stream_event("u-1", ts)])
        failure = failure_of(excinfo)
        assert (failure.status, failure.type, failure.code) == (401, "temporary_session_expired",
                                                                 "billing_meter_event_session_expired")
        assert failure.transient  # a new session makes the same batch succeed
    fresh = processor.create_meter_event_session()["authentication_token"]
    processor.send_meter_events(session_token=fresh, events=[stream_event("u-1", ts)])


def test_a_cancel_adjustment_cancels_a_received_event_within_24_hours(processor: Processor, fake: FakeProcessor,
                                                                      clock: Clock) -> None:
    minute = int(clock.now) // 60 * 60
    meter(processor, "u-1", minute, value="3")
    meter(processor, "u-2", minute, value="5")
    adjustment = processor.cancel_meter_event(event_name="api_requests", identifier="u-1",
                                              idempotency_key="usage-cancel:u-1")
    assert adjustment == {"object": "billing.meter_event_adjustment", "cancel": {"identifier": "u-1"},
                          "event_name": "api_requests", "livemode": False, "status": "complete", "type": "cancel"}
    # The same key again is the same adjustment; the view still holds the event, marked canceled.
    assert processor.cancel_meter_event(event_name="api_requests", identifier="u-1",
                                        idempotency_key="usage-cancel:u-1") == adjustment
    view = {e["identifier"]: e for e in fake.snapshot()["meter_events"]}
    assert (view["u-1"]["canceled"], view["u-2"]["canceled"]) == (True, False)
    assert fake.snapshot()["canceled_meter_event_count"] == 1
    assert fake.canceled_meter_events == {"u-1"}
    # Only what is not canceled counts in the summary.
    summary = processor.meter_event_summaries(event_name="api_requests", customer_id="cus_fake_00001",
                                              start_time=minute, end_time=minute + 60)
    assert summary["meter"]["event_name"] == "api_requests"
    assert [(s["aggregated_value"], s["start_time"], s["end_time"], s["meter"]) for s in summary["data"]] == [
        (5.0, minute, minute + 60, summary["meter"]["id"])]
    assert processor.meter_event_summaries(event_name="api_requests", customer_id="cus_other",
                                           start_time=minute, end_time=minute + 60)["data"][0]["aggregated_value"] == 0

    clock.advance(24 * 3600 + 1)
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.cancel_meter_event(event_name="api_requests", identifier="u-2", idempotency_key="usage-cancel:u-2")
    failure = failure_of(excinfo)
    assert (failure.status, failure.transient) == (400, False)
    assert "24 hours" in failure.message


def test_a_cancel_of_an_identifier_stripe_never_received_cancels_nothing(processor: Processor,
                                                                         fake: FakeProcessor) -> None:
    adjustment = processor.cancel_meter_event(event_name="api_requests", identifier="never-sent",
                                              idempotency_key="usage-cancel:never-sent")
    assert adjustment["status"] == "pending"  # Stripe applies adjustments asynchronously
    assert fake.canceled_meter_events == set()


def test_meter_event_summaries_need_a_meter_and_minute_boundaries(processor: Processor, clock: Clock) -> None:
    minute = int(clock.now) // 60 * 60
    with pytest.raises(ProcessorFailure) as missing:
        processor.meter_event_summaries(event_name="api_requests", customer_id="cus_fake_00001",
                                        start_time=minute, end_time=minute + 60)
    assert (failure_of(missing).status, failure_of(missing).code) == (404, "resource_missing")
    meter(processor, "u-1", minute)
    for start, end in ((minute + 1, minute + 60), (minute, minute + 61), (minute + 60, minute)):
        with pytest.raises(ProcessorFailure) as refused:
            processor.meter_event_summaries(event_name="api_requests", customer_id="cus_fake_00001",
                                            start_time=start, end_time=end)
        assert failure_of(refused).status == 400


def test_meter_error_report_is_a_thin_event_with_a_fetchable_body(processor: Processor, fake: FakeProcessor,
                                                                  clock: Clock) -> None:
    ts = int(clock.now)
    meter(processor, "u-1", ts, customer="cus_gone")
    meter(processor, "u-2", ts, customer="cus_gone")
    thin = fake.raise_meter_error(["u-1", "u-2"])
    assert "data" not in thin
    assert thin["object"] == "v2.core.event"
    assert thin["type"] == "v1.billing.meter.error_report_triggered"
    assert thin["related_object"]["type"] == "billing.meter"
    assert thin["related_object"]["url"] == f"/v1/billing/meters/{thin['related_object']['id']}"

    event = processor.retrieve_v2_event(thin["id"])
    assert {k: v for k, v in event.items() if k != "data"} == thin
    reason = event["data"]["reason"]
    assert reason["error_count"] == 2
    (error_type,) = reason["error_types"]
    assert (error_type["code"], error_type["error_count"]) == ("meter_event_customer_not_found", 2)
    assert [s["request"]["identifier"] for s in error_type["sample_errors"]] == ["u-1", "u-2"]
    assert error_type["sample_errors"][0]["error_message"] == "Customer cus_gone not found."
    assert event["data"]["developer_message_summary"] == "There are 2 invalid events"

    custom = fake.raise_meter_error(["u-9"], code="meter_event_invalid_value", message="bad value")
    sample = processor.retrieve_v2_event(custom["id"])["data"]["reason"]["error_types"][0]["sample_errors"][0]
    assert sample == {"error_message": "bad value", "request": {"identifier": "u-9"}}
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.retrieve_v2_event("evt_nope")
    assert failure_of(excinfo).status == 404


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=40))
def test_every_identifier_counts_once_however_often_it_arrives(identifiers: list[str]) -> None:
    clock = Clock()
    fake = FakeProcessor(clock=clock)
    token = fake.create_meter_event_session()["authentication_token"]
    for n, identifier in enumerate(identifiers):
        if n % 2:
            meter(fake, identifier, int(clock.now))
        else:
            fake.send_meter_events(session_token=token, events=[stream_event(identifier, int(clock.now), "3")])
    snapshot = fake.snapshot()
    assert [e["identifier"] for e in snapshot["meter_events"]] == list(dict.fromkeys(identifiers))
    assert snapshot["duplicate_count"] == len(identifiers) - len(set(identifiers))
    assert sum(e["received"] for e in snapshot["meter_events"]) == len(identifiers)


# -- any object, coupons, promotion codes -------------------------------------------------


def test_retrieve_object_returns_canonical_state(processor: Processor, fake: FakeProcessor,
                                                 fixtures: dict[str, Any]) -> None:
    customer = new_customer(processor)
    assert processor.retrieve_object("customer", customer["id"]) == customer
    subscription = fixtures["subscription"]
    subscription["customer"] = customer["id"]
    fake.put_object(subscription)
    assert processor.retrieve_object("subscription", subscription["id"]) == subscription
    fake.put_object(fixtures["invoice"])
    assert processor.retrieve_object("invoice", fixtures["invoice"]["id"])["object"] == "invoice"
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.retrieve_object("charge", "ch_nope")
    assert (failure_of(excinfo).status, failure_of(excinfo).code) == (404, "resource_missing")
    with pytest.raises(ValueError, match="unsupported object type"):
        processor.retrieve_object("plan", "x")


def test_coupons_and_promotion_codes(processor: Processor, clock: Clock) -> None:
    coupon = processor.create_coupon(idempotency_key="c1", params={"id": "SPRING", "amount_off": 500,
                                                                   "currency": "USD", "duration": "repeating",
                                                                   "duration_in_months": 3})
    assert (coupon["id"], coupon["currency"], coupon["duration_in_months"]) == ("SPRING", "usd", 3)
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.create_coupon(idempotency_key="c2", params={"id": "SPRING", "percent_off": 5})
    assert failure_of(excinfo).code == "resource_already_exists"
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.create_coupon(idempotency_key="c3", params={"amount_off": 5})
    assert failure_of(excinfo).param == "currency"

    expires = int(clock.now) + 3600
    promo = processor.create_promotion_code(idempotency_key="p1", params={
        "promotion": {"type": "coupon", "coupon": "SPRING"}, "code": "spring25", "max_redemptions": 10,
        "expires_at": expires, "metadata": {"campaign": "spring"},
    })
    assert (promo["code"], promo["active"], promo["expires_at"], promo["max_redemptions"]) == (
        "spring25", True, expires, 10)
    with pytest.raises(ProcessorFailure) as excinfo:  # codes are unique among active ones, any case
        processor.create_promotion_code(idempotency_key="p2", params={"coupon": "SPRING", "code": "SPRING25"})
    assert failure_of(excinfo).code == "resource_already_exists"
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.create_promotion_code(idempotency_key="p3", params={"promotion": {"type": "coupon",
                                                                                    "coupon": "NOPE"}})
    assert (failure_of(excinfo).code, failure_of(excinfo).param) == ("resource_missing", "promotion[coupon]")

    inactive = processor.update_promotion_code(promo["id"], params={"active": False, "metadata": {"campaign": ""}})
    assert (inactive["active"], inactive["metadata"]) == (False, {})
    again = processor.create_promotion_code(idempotency_key="p4", params={"coupon": "SPRING", "code": "SPRING25"})
    assert again["active"] is True
    with pytest.raises(ProcessorFailure) as excinfo:
        processor.update_promotion_code(promo["id"], params={"code": "NEW"})
    assert failure_of(excinfo).code == "parameter_unknown"


# -- concurrency --------------------------------------------------------------------------


def test_concurrent_callers_get_unique_ids_and_one_object_per_key(fake: FakeProcessor) -> None:
    results: list[str] = []
    errors: list[ProcessorFailure] = []

    def work(worker: int) -> None:
        try:
            for n in range(50):
                results.append(new_customer(fake, f"k-{worker}-{n}")["id"])
                results.append(new_customer(fake, "shared-key")["id"])
        except ProcessorFailure as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 8 * 50 + 1
    assert fake.snapshot()["customers"] == 8 * 50 + 1


# -- the RPC hop --------------------------------------------------------------------------


def test_dispatch_runs_only_interface_methods(fake: FakeProcessor) -> None:
    assert dispatch(fake, {"method": "reset"})[0] == 400
    assert dispatch(fake, {"method": "add_fault", "args": ["create_customer", 500]})[0] == 400
    assert dispatch(fake, {"method": "_run"})[0] == 400
    assert dispatch(fake, ["create_customer"])[0] == 400
    status, body = dispatch(fake, {"method": "retrieve_customer", "kwargs": {"nope": 1}})
    assert status == 400 and body["error"]["type"] == "rpc_error"
    status, body = dispatch(fake, {"method": "create_customer", "kwargs": {
        "idempotency_key": "k", "email": None, "name": "Ada", "metadata": OWNER}})
    assert (status, body["result"]["id"]) == (200, "cus_fake_00001")
    status, body = dispatch(fake, {"method": "retrieve_customer", "args": ["cus_nope"]})
    assert status == 200
    assert body["error"]["code"] == "resource_missing" and body["error"]["transient"] is False
    assert dispatch(fake, {"method": "retrieve_object", "args": ["plan", "x"]})[0] == 400
    assert "create_customer" in PROCESSOR_METHODS and "reset" not in PROCESSOR_METHODS


def test_remote_round_trip_shares_one_fake(fake: FakeProcessor, fake_server: FakeProcessorServer,
                                           clock: Clock) -> None:
    one, two = RemoteFakeProcessor(fake_server.url), RemoteFakeProcessor(fake_server.url)
    assert isinstance(one, Processor) and isinstance(fake, Processor)
    customer = new_customer(one)
    assert two.retrieve_customer(customer["id"]) == fake.retrieve_customer(customer["id"]) == customer
    pm = two.attach_payment_method("pm_card_visa", customer_id=customer["id"], idempotency_key="a")
    assert one.retrieve_payment_method(pm["id"])["card"]["fingerprint"] == TEST_CARDS["pm_card_visa"].fingerprint
    token = one.create_meter_event_session()["authentication_token"]
    two.send_meter_events(session_token=token, events=[stream_event("u-1", int(clock.now))])
    assert [e["identifier"] for e in fake.meter_events] == ["u-1"]


def test_remote_errors_keep_every_field(fake: FakeProcessor, remote: RemoteFakeProcessor) -> None:
    customer = new_customer(remote)
    with pytest.raises(ProcessorFailure) as excinfo:
        remote.update_tax_location(customer["id"], address={"country": "ZZ"}, idempotency_key="t")
    failure = failure_of(excinfo)
    assert (failure.status, failure.type, failure.code, failure.param, failure.transient) == (
        400, "invalid_request_error", "customer_tax_location_invalid", "address[country]", False)
    assert failure.request_id and failure.request_id.startswith("req_fake_")

    fake.add_fault("retrieve_customer", 503)
    with pytest.raises(ProcessorFailure) as excinfo:
        remote.retrieve_customer(customer["id"])
    assert (failure_of(excinfo).status, failure_of(excinfo).transient) == (503, True)


def test_remote_unreachable_is_a_transient_network_failure(fake: FakeProcessor) -> None:
    server = FakeProcessorServer(fake).start()
    url = server.url
    server.stop()  # nothing listens there any more
    with pytest.raises(ProcessorFailure) as excinfo:
        RemoteFakeProcessor(url, timeout=2).retrieve_customer("cus_1")
    assert (failure_of(excinfo).type, failure_of(excinfo).status, failure_of(excinfo).transient) == (
        "network", None, True)
    with pytest.raises(ValueError, match="http"):
        RemoteFakeProcessor("file:///etc/passwd")


def test_meter_event_summaries_by_hour_and_day_leave_out_canceled_rejected_and_count_a_late_resend(
        processor: Processor, fake: FakeProcessor, clock: Clock) -> None:
    hour = int(clock.now) // 86400 * 86400 - 86400 + 3 * 3600  # 03:00 yesterday (within every window)
    meter(processor, "u-1", hour + 10, value="3")
    meter(processor, "u-2", hour + 3599, value="5")
    meter(processor, "u-3", hour + 3600, value="7")
    meter(processor, "u-4", hour + 3601, value="11")
    meter(processor, "u-5", hour + 20, value="13")
    fake.raise_meter_error(["u-4", "u-5"], sampled=1)  # rejected: counted by neither window
    processor.cancel_meter_event(event_name="api_requests", identifier="u-1", idempotency_key="c:u-1")

    def windows(grouping: str, start: int, end: int) -> list[tuple[int, int, float]]:
        found = processor.meter_event_summaries(event_name="api_requests", customer_id="cus_fake_00001",
                                                start_time=start, end_time=end, value_grouping_window=grouping)
        return [(s["start_time"], s["end_time"], s["aggregated_value"]) for s in found["data"]]

    assert windows("hour", hour, hour + 3 * 3600) == [
        (hour, hour + 3600, 5.0), (hour + 3600, hour + 7200, 7.0), (hour + 7200, hour + 10800, 0.0)]
    day = hour - 3 * 3600
    assert windows("day", day, day + 86400) == [(day, day + 86400, 12.0)]
    with pytest.raises(ProcessorFailure) as unaligned:  # hour grouping needs hour-aligned bounds
        windows("hour", hour + 60, hour + 3600)
    assert failure_of(unaligned).status == 400
    # A resend of u-2 after the dedupe window is a new event to Stripe: counted twice.
    fake.age_meter_events(24 * 3600 + 1)
    meter(processor, "u-2", hour + 3599, value="5")
    assert windows("hour", hour, hour + 3600) == [(hour, hour + 3600, 10.0)]
    assert processor.find_meter("api_requests")["event_name"] == "api_requests"


def test_a_sampled_meter_error_names_only_the_first_n_but_counts_them_all(processor: Processor,
                                                                           fake: FakeProcessor, clock: Clock) -> None:
    ts = int(clock.now)
    for n in range(4):
        meter(processor, f"u-{n}", ts)
    reason = processor.retrieve_v2_event(fake.raise_meter_error([f"u-{n}" for n in range(4)], sampled=1)["id"]
                                         )["data"]["reason"]
    assert reason["error_count"] == 4 and reason["error_types"][0]["error_count"] == 4
    assert [s["request"]["identifier"] for s in reason["error_types"][0]["sample_errors"]] == ["u-0"]
    none = processor.retrieve_v2_event(fake.raise_meter_error(["u-3"], sampled=0)["id"])["data"]["reason"]
    assert (none["error_count"], none["error_types"][0]["sample_errors"]) == (1, [])
