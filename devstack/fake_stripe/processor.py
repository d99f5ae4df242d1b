"""FakeProcessor: Stripe in memory, for tests and the local stack.

It behaves like Stripe's test mode where the billing code can tell the
difference: deterministic ids, Stripe's idempotency semantics, Stripe's test
payment methods with stable fingerprints, immediate tax-location validation,
meter events deduplicated by identifier, v2 meter event sessions that expire,
and thin `v1.billing.meter.error_report_triggered` events. It records every
call it receives and fails on demand (`add_fault`), so tests can prove what
was sent and what happens when Stripe misbehaves.

One lock guards all state: the local stack's functions call one shared Fake
from many threads (see rpc.py), and a test asserting on `snapshot()` must see
a consistent picture.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, cast

from billing.processor.base import (
    MAX_STREAM_EVENTS,
    PROCESSOR_METHODS,
    JSONDict,
    check_object_type,
    rfc3339,
    unix_seconds,
)
from billing.processor.errors import (
    API_ERROR,
    INVALID_REQUEST,
    NETWORK,
    RATE_LIMIT,
    SESSION_EXPIRED,
    TIMEOUT,
    ProcessorFailure,
)
from devstack.fake_stripe.countries import ISO_3166_ALPHA2
from devstack.fake_stripe.shapes import SHAPES

# The DESIGN's local control route scripts faults for "report_meter_event"
# (the outbox's name for delivering usage); it means whichever of the two
# delivery calls the reporter makes. "*" matches any operation.
FAULT_ALIASES: Final[dict[str, frozenset[str]]] = {
    "report_meter_event": frozenset({"create_meter_event", "send_meter_events"}),
    "*": PROCESSOR_METHODS,
}
# add_fault(op, NETWORK_FAULT): no HTTP response at all (connection failed);
# with code="timeout", the request timed out.
NETWORK_FAULT: Final = 0


class ProcessCrash(BaseException):
    """A scripted crash (add_fault(..., crash=True)): the call took effect and
    its caller's process must die now, before it can record the result.

    A BaseException, so no `except Exception` in the billing code can swallow
    it when the Fake runs in the caller's own process. Through the local
    stack's RPC (rpc.py) it becomes an answer that makes the calling worker
    process exit (remote.py)."""

# Stripe's windows for a meter event's timestamp.
METER_PAST_WINDOW_SECONDS: Final = 35 * 24 * 3600
METER_FUTURE_WINDOW_SECONDS: Final = 5 * 60
# A v2 meter event session lasts 15 minutes.
METER_SESSION_SECONDS: Final = 15 * 60

_US_POSTAL_CODE = re.compile(r"^\d{5}(-\d{4})?$")
_ADDRESS_KEYS: Final = ("city", "country", "line1", "line2", "postal_code", "state")
_TAX_EXEMPT: Final = frozenset({"none", "exempt", "reverse"})
_CUSTOMER_UPDATE_FIELDS: Final = frozenset(
    {
        "address",
        "description",
        "email",
        "invoice_settings",
        "metadata",
        "name",
        "phone",
        "preferred_locales",
        "shipping",
        "tax_exempt",
    }
)
_INVOICE_SETTINGS_FIELDS: Final = frozenset({"custom_fields", "default_payment_method", "footer", "rendering_options"})
_COUPON_FIELDS: Final = frozenset(
    {
        "amount_off",
        "applies_to",
        "currency",
        "currency_options",
        "duration",
        "duration_in_months",
        "id",
        "max_redemptions",
        "metadata",
        "name",
        "percent_off",
        "redeem_by",
    }
)
_PROMOTION_CODE_FIELDS: Final = frozenset(
    {"active", "code", "coupon", "customer", "expires_at", "max_redemptions", "metadata", "promotion", "restrictions"}
)
_PROMOTION_CODE_UPDATE_FIELDS: Final = frozenset({"active", "metadata", "restrictions"})


@dataclass(frozen=True)
class TestCard:
    """One of Stripe's test-mode payment methods (pm_card_*)."""

    __test__ = False  # not a pytest test class, whatever its name

    number: str
    brand: str
    display_brand: str
    funding: str
    country: str
    # (code, decline_code, message) when attaching it is declined, as in test mode.
    decline: tuple[str, str, str] | None = None

    @property
    def fingerprint(self) -> str:
        """Stable per card number, like Stripe's: the same card always has the
        same fingerprint, so attaching pm_card_visa twice is detectably the same card."""
        digest = hashlib.sha256(f"fake-card:{self.number}".encode()).digest()
        return base64.b64encode(digest, altchars=b"Ab").decode()[:16]


_DECLINED = ("card_declined", "generic_decline", "Your card was declined.")
_INSUFFICIENT = ("card_declined", "insufficient_funds", "Your card has insufficient funds.")
_EXPIRED = ("expired_card", "expired_card", "Your card has expired.")
_BAD_CVC = ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
_PROCESSING = ("processing_error", "processing_error", "An error occurred while processing your card. Try again.")

TEST_CARDS: Final[dict[str, TestCard]] = {
    "pm_card_visa": TestCard("4242424242424242", "visa", "visa", "credit", "US"),
    "pm_card_visa_debit": TestCard("4000056655665556", "visa", "visa", "debit", "US"),
    "pm_card_mastercard": TestCard("5555555555554444", "mastercard", "mastercard", "credit", "US"),
    "pm_card_mastercard_debit": TestCard("5200828282828210", "mastercard", "mastercard", "debit", "US"),
    "pm_card_mastercard_prepaid": TestCard("5105105105105100", "mastercard", "mastercard", "prepaid", "US"),
    "pm_card_amex": TestCard("378282246310005", "amex", "american_express", "credit", "US"),
    "pm_card_discover": TestCard("6011111111111117", "discover", "discover", "credit", "US"),
    "pm_card_diners": TestCard("3056930009020004", "diners", "diners_club", "credit", "US"),
    "pm_card_jcb": TestCard("3566002020360505", "jcb", "jcb", "credit", "JP"),
    "pm_card_unionpay": TestCard("6200000000000005", "unionpay", "union_pay", "credit", "CN"),
    # Attaches fine; only charging it fails (Stripe's "decline after attaching").
    "pm_card_chargeCustomerFail": TestCard("4000000000000341", "visa", "visa", "credit", "US"),
    # Declined when attached, as Stripe's test mode does.
    "pm_card_chargeDeclined": TestCard("4000000000000002", "visa", "visa", "credit", "US", _DECLINED),
    "pm_card_visa_chargeDeclined": TestCard("4000000000000002", "visa", "visa", "credit", "US", _DECLINED),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "4000000000009995", "visa", "visa", "credit", "US", _INSUFFICIENT
    ),
    "pm_card_visa_chargeDeclinedInsufficientFunds": TestCard(
        "4000000000009995", "visa", "visa", "credit", "US", _INSUFFICIENT
    ),
    "pm_card_chargeDeclinedExpiredCard": TestCard("4000000000000069", "visa", "visa", "credit", "US", _EXPIRED),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard("4000000000000127", "visa", "visa", "credit", "US", _BAD_CVC),
    "pm_card_chargeDeclinedProcessingError": TestCard("4000000000000119", "visa", "visa", "credit", "US", _PROCESSING),
}
_NETWORK_OF: Final = {"amex": "amex", "diners": "diners", "unionpay": "unionpay"}

# What Stripe says in the sample errors of a meter error report, by code.
_METER_ERROR_MESSAGES: Final = {
    "meter_event_customer_not_found": "Customer {customer} not found.",
    "meter_event_no_customer_defined": "Customer mapping key stripe_customer_id not found in payload.",
    "meter_event_invalid_value": "Value must be a non-negative number.",
    "timestamp_too_far_in_past": "Timestamp must be within the past 35 days.",
    "timestamp_in_future": "Timestamp must not be more than 5 minutes in the future.",
    "no_meter": "No active meter found for event name {event_name}.",
    "archived_meter": "The meter for event name {event_name} is archived.",
}

_DEFAULT_FAULT_MESSAGES: Final = {
    400: "Invalid request.",
    401: "Invalid API Key provided.",
    402: "Your card was declined.",
    403: "The provided key does not have access to this resource.",
    404: "No such object.",
    409: "This object cannot be accessed right now because another API request or Stripe process is accessing it.",
    429: "Too many requests hit the API too quickly.",
}


def _type_for_status(status: int) -> str:
    if status == 402:
        return "card_error"
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return RATE_LIMIT
    if status >= 500:
        return API_ERROR
    return INVALID_REQUEST


@dataclass
class _Fault:
    status: int
    code: str | None
    message: str | None
    remaining: int
    after: bool
    crash: bool = False


def _shape(name: str) -> JSONDict:
    return copy.deepcopy(SHAPES[name])


def _fingerprint(args: JSONDict) -> str:
    return json.dumps(args, sort_keys=True, default=str)


class FakeProcessor:
    """In-memory Stripe. Thread-safe; every result is a deep copy."""

    name = "fake"

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self._init_state()

    def _init_state(self) -> None:
        self._counters: dict[str, int] = {}
        self._customers: dict[str, JSONDict] = {}
        self._deleted_customers: set[str] = set()
        self._payment_methods: dict[str, JSONDict] = {}
        # Detached payment methods can never be attached again (Stripe).
        self._spent_payment_methods: set[str] = set()
        self._coupons: dict[str, JSONDict] = {}
        self._promotion_codes: dict[str, JSONDict] = {}
        self._other_objects: dict[tuple[str, str], JSONDict] = {}
        # idempotency key -> (operation, parameters, result)
        self._idempotency: dict[str, tuple[str, str, JSONDict]] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._calls: list[JSONDict] = []
        # identifier -> {"api": "v1"|"v2", "event": billing.meter_event}, in arrival order
        self._meter_events: dict[str, JSONDict] = {}
        self._meter_duplicates: dict[str, int] = {}
        self._sessions: dict[str, float] = {}  # authentication_token -> expires at (unix)
        self._v2_events: dict[str, JSONDict] = {}
        self._meters: dict[str, str] = {}  # event_name -> meter id

    # -- test and local-stack controls (not part of the Processor interface) --------

    def reset(self) -> None:
        """Forget everything: objects, counters, calls, faults, meter events."""
        with self._lock:
            self._init_state()

    def add_fault(
        self,
        operation: str,
        status: int,
        code: str | None = None,
        times: int = 1,
        message: str | None = None,
        *,
        after: bool = False,
        crash: bool = False,
    ) -> None:
        """Make the next `times` calls of `operation` fail (FIFO per operation).

        `status` 429 or 5xx is transient, other 4xx permanent; NETWORK_FAULT (0)
        is a connection failure, or a timeout with code="timeout". With
        `after=True` the call takes effect first and only its response is lost
        (the case idempotency keys exist for): a retry with the same key gets
        the original result. With `crash=True` the call takes effect and then
        the caller dies (ProcessCrash; `status` is not used): the crash
        between the Stripe call and the DynamoDB write.
        """
        if operation not in PROCESSOR_METHODS and operation not in FAULT_ALIASES:
            raise ValueError(f"add_fault: unknown operation {operation!r}")
        if times < 1:
            raise ValueError("add_fault: times must be at least 1")
        if status != NETWORK_FAULT and not 400 <= status <= 599:
            raise ValueError("add_fault: status must be 0 (network) or an HTTP error status")
        with self._lock:
            self._faults.setdefault(operation, deque()).append(
                _Fault(status, code, message, times, after or crash, crash))

    def put_object(self, obj: JSONDict) -> None:
        """Seed or overwrite an object (e.g. a subscription or invoice fixture)
        so retrieve_object returns it, as if it had been created on Stripe."""
        object_type = str(obj.get("object", ""))
        object_id = str(obj.get("id", ""))
        check_object_type(object_type)
        if not object_id:
            raise ValueError("put_object: the object needs an id")
        with self._lock:
            stored = copy.deepcopy(obj)
            if object_type == "customer":
                if stored.get("deleted"):
                    self._deleted_customers.add(object_id)
                    self._customers.pop(object_id, None)
                else:
                    self._customers[object_id] = stored
                    self._deleted_customers.discard(object_id)
            elif object_type == "payment_method":
                self._payment_methods[object_id] = stored
            elif object_type == "coupon":
                self._coupons[object_id] = stored
            elif object_type == "promotion_code":
                self._promotion_codes[object_id] = stored
            else:
                self._other_objects[(object_type, object_id)] = stored

    def raise_meter_error(
        self,
        identifiers: list[str],
        code: str = "meter_event_customer_not_found",
        message: str | None = None,
    ) -> JSONDict:
        """Stripe found `identifiers` invalid after accepting them.

        Stores the full v2 event (retrieve_v2_event returns it) and returns the
        thin payload Stripe POSTs to the event destination: no `data`, so the
        receiver must fetch the event to learn which identifiers failed.
        """
        if not identifiers:
            raise ValueError("raise_meter_error: at least one identifier")
        with self._lock:
            now = self._now()
            first = self._meter_events.get(identifiers[0])
            event_name = first["event"]["event_name"] if first else "unknown_event"
            meter_id = self._meters.setdefault(event_name, self._next_id("mtr_fake"))
            samples = []
            for identifier in identifiers:
                known = self._meter_events.get(identifier)
                template = message or _METER_ERROR_MESSAGES.get(code, "Meter event rejected ({code}).")
                text = template.format(
                    code=code,
                    customer=(known["event"]["payload"].get("stripe_customer_id") if known else None) or "unknown",
                    event_name=known["event"]["event_name"] if known else event_name,
                )
                samples.append({"error_message": text, "request": {"identifier": identifier}})
            count = len(identifiers)
            # The shape of GET /v2/core/events/{id} for this type, per Stripe's
            # API reference (docs.stripe.com/api/v2/core/events/object).
            event: JSONDict = {
                "id": self._next_id("evt_fake"),
                "object": "v2.core.event",
                "context": None,
                "created": rfc3339(now),
                "data": {
                    "developer_message_summary": (
                        "There is 1 invalid event" if count == 1 else f"There are {count} invalid events"
                    ),
                    "reason": {
                        "error_count": count,
                        "error_types": [{"code": code, "error_count": count, "sample_errors": samples}],
                    },
                    "validation_end": rfc3339(now),
                    "validation_start": rfc3339(now - 10),
                },
                "livemode": False,
                "reason": None,
                "related_object": {"id": meter_id, "type": "billing.meter", "url": f"/v1/billing/meters/{meter_id}"},
                "type": "v1.billing.meter.error_report_triggered",
            }
            self._v2_events[event["id"]] = event
            thin = {key: value for key, value in event.items() if key != "data"}
            return copy.deepcopy(thin)

    @property
    def calls(self) -> list[JSONDict]:
        """Every interface call received, in order: {operation, args, idempotency_key?, error?}."""
        with self._lock:
            return copy.deepcopy(self._calls)

    @property
    def meter_events(self) -> list[JSONDict]:
        """Unique meter events in arrival order (see snapshot for the shape)."""
        with self._lock:
            return self._meter_event_list()

    @property
    def meter_event_duplicates(self) -> dict[str, int]:
        """identifier -> how many times it arrived again after the first."""
        with self._lock:
            return dict(self._meter_duplicates)

    def snapshot(self) -> JSONDict:
        """What the Fake holds and received, JSON-able, for tests and /_local routes."""
        with self._lock:
            return {
                "meter_events": self._meter_event_list(),
                "meter_event_duplicates": dict(self._meter_duplicates),
                "meter_event_count": len(self._meter_events),
                "duplicate_count": sum(self._meter_duplicates.values()),
                "customers": len(self._customers),
                "deleted_customers": len(self._deleted_customers),
                "payment_methods": len(self._payment_methods),
                "coupons": len(self._coupons),
                "promotion_codes": len(self._promotion_codes),
                "v2_events": list(self._v2_events),
                "pending_faults": {op: sum(f.remaining for f in q) for op, q in self._faults.items() if q},
                "calls": copy.deepcopy(self._calls),
            }

    # -- customers --------------------------------------------------------------------

    def create_customer(
        self,
        *,
        idempotency_key: str,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        preferred_locales: list[str] | None = None,
        tax_exempt: str | None = None,
    ) -> JSONDict:
        args = {
            "email": email,
            "name": name,
            "metadata": metadata,
            "preferred_locales": preferred_locales,
            "tax_exempt": tax_exempt,
        }

        def create() -> JSONDict:
            self._check_email(email)
            self._check_metadata(metadata)
            self._check_tax_exempt(tax_exempt)
            customer = _shape("customer")
            customer.update(
                id=self._next_id("cus_fake"),
                created=int(self._now()),
                email=email,
                name=name,
                metadata={k: str(v) for k, v in metadata.items() if v not in ("", None)},
                preferred_locales=list(preferred_locales or []),
                tax_exempt=tax_exempt or "none",
                # What a brand-new Stripe customer has, where the fixture shows a used one.
                address=None,
                shipping=None,
                currency=None,
                discount=None,
                invoice_prefix=f"FAKE{self._counters['cus_fake']:04d}",
            )
            self._customers[customer["id"]] = customer
            return customer

        return self._run("create_customer", args, create, idempotency_key=idempotency_key)

    def retrieve_customer(self, customer_id: str) -> JSONDict:
        return self._run("retrieve_customer", {"customer_id": customer_id}, lambda: self._get_customer(customer_id))

    def update_customer(self, customer_id: str, *, idempotency_key: str | None = None, fields: JSONDict) -> JSONDict:
        def update() -> JSONDict:
            customer = self._live_customer(customer_id)
            unknown = sorted(set(fields) - _CUSTOMER_UPDATE_FIELDS)
            if unknown:
                raise self._error(
                    400, f"Received unknown parameter: {unknown[0]}", code="parameter_unknown", param=unknown[0]
                )
            if "email" in fields:
                self._check_email(fields["email"])
            if "tax_exempt" in fields:
                self._check_tax_exempt(fields["tax_exempt"])
            updated = copy.deepcopy(customer)
            for key, value in fields.items():
                if key == "metadata":
                    updated["metadata"] = self._merge_metadata(updated.get("metadata") or {}, value)
                elif key == "invoice_settings":
                    updated["invoice_settings"] = self._merge_invoice_settings(customer_id, updated, value)
                elif key == "address":
                    updated["address"] = self._address(value, customer.get("address")) if value else None
                elif key == "preferred_locales":
                    updated["preferred_locales"] = list(value or [])
                else:
                    updated[key] = None if value == "" else value
            self._customers[customer_id] = updated
            return updated

        args = {"customer_id": customer_id, "fields": fields}
        return self._run("update_customer", args, update, idempotency_key=idempotency_key)

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> JSONDict:
        def delete() -> JSONDict:
            self._live_customer(customer_id)
            del self._customers[customer_id]
            self._deleted_customers.add(customer_id)
            # Stripe detaches a deleted customer's payment methods.
            for pm in self._payment_methods.values():
                if pm.get("customer") == customer_id:
                    pm["customer"] = None
                    self._spent_payment_methods.add(pm["id"])
            deleted = _shape("deleted_customer")
            deleted["id"] = customer_id
            return deleted

        # Stripe ignores idempotency keys on DELETE: recorded, not honoured.
        args = {"customer_id": customer_id, "idempotency_key": idempotency_key}
        return self._run("delete_customer", args, delete)

    def update_tax_location(self, customer_id: str, *, address: JSONDict, idempotency_key: str) -> JSONDict:
        def update() -> JSONDict:
            customer = self._live_customer(customer_id)
            normalized = self._address(address, None)
            self._validate_tax_location(normalized)
            updated = copy.deepcopy(customer)
            updated["address"] = normalized
            self._customers[customer_id] = updated
            return updated

        args = {"customer_id": customer_id, "address": address, "tax": {"validate_location": "immediately"}}
        return self._run("update_tax_location", args, update, idempotency_key=idempotency_key)

    # -- payment methods --------------------------------------------------------------

    def attach_payment_method(self, payment_method_id: str, *, customer_id: str, idempotency_key: str) -> JSONDict:
        def attach() -> JSONDict:
            card = TEST_CARDS.get(payment_method_id)
            existing = self._payment_methods.get(payment_method_id)
            if card is None and existing is None:
                raise self._missing("payment_method", payment_method_id)
            if customer_id not in self._customers:
                raise self._error(400, f"No such customer: '{customer_id}'", code="resource_missing", param="customer")
            if card is not None:
                if card.decline is not None:
                    code, _decline_code, message = card.decline
                    raise self._error(402, message, code=code, param=None, error_type="card_error")
                pm = self._new_payment_method(card)
                pm["customer"] = customer_id
                return pm
            existing = cast(JSONDict, existing)  # not None: checked above
            if payment_method_id in self._spent_payment_methods:
                raise self._error(
                    400,
                    "This PaymentMethod was previously used without being attached to a Customer or was detached "
                    "from a Customer, and may not be used again.",
                    code="payment_method_unexpected_state",
                )
            if existing.get("customer") not in (None, customer_id):
                raise self._error(
                    400,
                    "The payment method you provided has already been attached to a customer.",
                    code="payment_method_unexpected_state",
                )
            existing["customer"] = customer_id
            return existing

        args = {"payment_method_id": payment_method_id, "customer_id": customer_id}
        return self._run("attach_payment_method", args, attach, idempotency_key=idempotency_key)

    def detach_payment_method(self, payment_method_id: str, *, idempotency_key: str) -> JSONDict:
        def detach() -> JSONDict:
            pm = self._payment_methods.get(payment_method_id)
            if pm is None:
                raise self._missing("payment_method", payment_method_id)
            owner = pm.get("customer")
            if owner is None:
                raise self._error(
                    400,
                    "The payment method you provided is not attached to a customer so detachment is impossible.",
                    code="payment_method_unexpected_state",
                )
            pm["customer"] = None
            self._spent_payment_methods.add(payment_method_id)
            # Stripe clears a default that pointed at the detached method.
            customer = self._customers.get(owner)
            settings = (customer or {}).get("invoice_settings") or {}
            if settings.get("default_payment_method") == payment_method_id:
                settings["default_payment_method"] = None
            return pm

        args = {"payment_method_id": payment_method_id}
        return self._run("detach_payment_method", args, detach, idempotency_key=idempotency_key)

    def retrieve_payment_method(self, payment_method_id: str) -> JSONDict:
        def retrieve() -> JSONDict:
            pm = self._payment_methods.get(payment_method_id)
            if pm is not None:
                return pm
            card = TEST_CARDS.get(payment_method_id)
            if card is not None and card.decline is None:
                # Test mode turns a pm_card_* id into a new, unattached PaymentMethod.
                return self._new_payment_method(card)
            raise self._missing("payment_method", payment_method_id)

        return self._run("retrieve_payment_method", {"payment_method_id": payment_method_id}, retrieve)

    # -- meter events -----------------------------------------------------------------

    def create_meter_event(
        self, *, event_name: str, identifier: str, timestamp: int, payload: dict[str, str]
    ) -> JSONDict:
        args = {"event_name": event_name, "identifier": identifier, "timestamp": timestamp, "payload": payload}

        def create() -> JSONDict:
            self._check_meter_event(event_name, identifier, payload, v2=False)
            ts = self._check_meter_timestamp(timestamp)
            strings = {str(k): str(v) for k, v in payload.items()}
            known = self._meter_events.get(identifier)
            if known is not None:
                original: JSONDict = known["event"]
                changed = (original["event_name"], original["payload"], original["timestamp"]) != (
                    event_name,
                    strings,
                    ts,
                )
                if changed and known["api"] == "v1":
                    # The identifier was this request's idempotency key too
                    # (StripeProcessor sends it as one): Stripe refuses to
                    # reuse a key with other parameters. After a v2 send (no
                    # key) Stripe just drops the duplicate identifier.
                    raise self._idempotency_error(identifier)
                self._meter_duplicates[identifier] = self._meter_duplicates.get(identifier, 0) + 1
                return original
            event = self._store_meter_event(event_name, identifier, ts, strings, api="v1")
            return event

        return self._run("create_meter_event", args, create)

    def create_meter_event_session(self) -> JSONDict:
        def create() -> JSONDict:
            now = self._now()
            session_id = self._next_id("mes_fake")
            token = f"mes_tok_fake_{self._counters['mes_fake']:05d}"
            self._sessions[token] = now + METER_SESSION_SECONDS
            # Shape of POST /v2/billing/meter_event_session (Stripe API reference).
            return {
                "id": session_id,
                "object": "v2.billing.meter_event_session",
                "authentication_token": token,
                "created": rfc3339(now),
                "expires_at": rfc3339(now + METER_SESSION_SECONDS),
                "livemode": False,
            }

        return self._run("create_meter_event_session", {}, create)

    def send_meter_events(self, *, session_token: str, events: list[JSONDict]) -> None:
        def send() -> JSONDict:
            expires_at = self._sessions.get(session_token)
            if expires_at is None or expires_at <= self._now():
                raise self._error(
                    401,
                    "The meter event session has expired or is not valid. Create a new session.",
                    code="billing_meter_event_session_expired",
                    error_type=SESSION_EXPIRED,
                )
            if not isinstance(events, list) or not 1 <= len(events) <= MAX_STREAM_EVENTS:
                raise self._error(400, f"events must contain between 1 and {MAX_STREAM_EVENTS} items.", param="events")
            accepted: list[tuple[str, str, int, dict[str, str]]] = []
            for index, event in enumerate(events):
                if not isinstance(event, dict):
                    raise self._error(400, f"events[{index}] must be an object.", param=f"events[{index}]")
                event_name = event.get("event_name")
                identifier = event.get("identifier") or self._next_id("mtrevt_fake")
                payload = event.get("payload")
                self._check_meter_event(event_name, identifier, payload, v2=True, index=index)
                event_name, payload = cast(str, event_name), cast(JSONDict, payload)  # checked above
                raw_ts = event.get("timestamp")
                try:
                    ts = int(self._now()) if raw_ts is None else unix_seconds(raw_ts)
                except (TypeError, ValueError):
                    raise self._error(
                        400, "timestamp must be an RFC 3339 date-time.", param=f"events[{index}].timestamp"
                    ) from None
                accepted.append((event_name, str(identifier), ts, {str(k): str(v) for k, v in payload.items()}))
            # The stream validates the rest (customer, value, time window)
            # asynchronously and reports problems through meter error reports
            # (raise_meter_error); a duplicate identifier is dropped silently.
            for event_name, identifier, ts, strings in accepted:
                if identifier in self._meter_events:
                    self._meter_duplicates[identifier] = self._meter_duplicates.get(identifier, 0) + 1
                else:
                    self._store_meter_event(event_name, identifier, ts, strings, api="v2")
            return {}

        # The token is a credential: recorded only by its public prefix.
        args = {"session_token": session_token[:12] + "...", "events": events}
        self._run("send_meter_events", args, send)

    def retrieve_v2_event(self, event_id: str) -> JSONDict:
        def retrieve() -> JSONDict:
            event = self._v2_events.get(event_id)
            if event is None:
                raise self._missing("event", event_id)
            return event

        return self._run("retrieve_v2_event", {"event_id": event_id}, retrieve)

    # -- any object -------------------------------------------------------------------

    def retrieve_object(self, object_type: str, object_id: str) -> JSONDict:
        check_object_type(object_type)

        def retrieve() -> JSONDict:
            if object_type == "customer":
                return self._get_customer(object_id)
            store: dict[str, JSONDict] | None = {
                "payment_method": self._payment_methods,
                "coupon": self._coupons,
                "promotion_code": self._promotion_codes,
            }.get(object_type)
            found = store.get(object_id) if store is not None else self._other_objects.get((object_type, object_id))
            if found is None:
                raise self._missing(object_type, object_id)
            return found

        return self._run("retrieve_object", {"object_type": object_type, "object_id": object_id}, retrieve)

    # -- coupons and promotion codes --------------------------------------------------

    def create_coupon(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        def create() -> JSONDict:
            self._check_known(params, _COUPON_FIELDS)
            percent_off, amount_off = params.get("percent_off"), params.get("amount_off")
            if (percent_off is None) == (amount_off is None):
                raise self._error(
                    400,
                    "Coupons require exactly one of `percent_off` or `amount_off`.",
                    code="parameter_missing",
                    param="percent_off",
                )
            if percent_off is not None and not 0 < float(percent_off) <= 100:
                raise self._error(
                    400,
                    "percent_off must be greater than 0 and at most 100.",
                    code="parameter_invalid_integer",
                    param="percent_off",
                )
            if amount_off is not None and not params.get("currency"):
                raise self._error(
                    400, "You must pass currency when passing amount_off.", code="parameter_missing", param="currency"
                )
            duration = params.get("duration", "once")
            if duration not in ("once", "repeating", "forever"):
                raise self._error(
                    400, "Invalid duration: must be one of once, repeating, or forever.", param="duration"
                )
            if duration == "repeating" and not params.get("duration_in_months"):
                raise self._error(
                    400,
                    "duration_in_months is required when duration is repeating.",
                    code="parameter_missing",
                    param="duration_in_months",
                )
            metadata = params.get("metadata") or {}
            self._check_metadata(metadata)
            coupon_id = params.get("id") or self._next_id("coupon_fake")
            if coupon_id in self._coupons:
                raise self._error(400, "Coupon already exists.", code="resource_already_exists", param="id")
            coupon = _shape("coupon")
            coupon.update(
                id=coupon_id,
                created=int(self._now()),
                amount_off=amount_off,
                percent_off=percent_off,
                currency=str(params["currency"]).lower() if params.get("currency") else None,
                duration=duration,
                duration_in_months=params.get("duration_in_months") if duration == "repeating" else None,
                max_redemptions=params.get("max_redemptions"),
                redeem_by=params.get("redeem_by"),
                name=params.get("name"),
                metadata=dict(metadata),
                times_redeemed=0,
                valid=True,
            )
            self._coupons[coupon_id] = coupon
            return coupon

        return self._run("create_coupon", {"params": params}, create, idempotency_key=idempotency_key)

    def create_promotion_code(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        def create() -> JSONDict:
            self._check_known(params, _PROMOTION_CODE_FIELDS)
            promotion = params.get("promotion") or {}
            # The current API names the coupon under `promotion`; older
            # versions took a top-level `coupon`. Accept both.
            coupon_id = promotion.get("coupon") if isinstance(promotion, dict) else None
            coupon_id = coupon_id or params.get("coupon")
            if not coupon_id:
                raise self._error(
                    400,
                    "Missing required param: promotion[coupon].",
                    code="parameter_missing",
                    param="promotion[coupon]",
                )
            if coupon_id not in self._coupons:
                raise self._error(
                    400, f"No such coupon: '{coupon_id}'", code="resource_missing", param="promotion[coupon]"
                )
            code = params.get("code")
            if code is not None and (not isinstance(code, str) or not code.strip() or len(code) > 500):
                raise self._error(400, "Invalid code.", code="parameter_invalid_string", param="code")
            active = params.get("active", True)
            if code and active and self._active_code_exists(code):
                raise self._error(
                    400,
                    f"An active promotion code with `code: {code}` already exists.",
                    code="resource_already_exists",
                    param="code",
                )
            expires_at = params.get("expires_at")
            if expires_at is not None and int(expires_at) <= self._now():
                raise self._error(400, "expires_at must be in the future.", param="expires_at")
            metadata = params.get("metadata") or {}
            self._check_metadata(metadata)
            promo = _shape("promotion_code")
            restrictions = promo["restrictions"]
            restrictions.update(params.get("restrictions") or {})
            promo_id = self._next_id("promo_fake")
            promo.update(
                id=promo_id,
                created=int(self._now()),
                active=bool(active),
                code=code or f"FAKE{self._counters['promo_fake']:05d}",
                customer=params.get("customer"),
                expires_at=expires_at,
                max_redemptions=params.get("max_redemptions"),
                metadata=dict(metadata),
                promotion={"coupon": coupon_id, "type": "coupon"},
                restrictions=restrictions,
                times_redeemed=0,
            )
            self._promotion_codes[promo_id] = promo
            return promo

        return self._run("create_promotion_code", {"params": params}, create, idempotency_key=idempotency_key)

    def update_promotion_code(
        self, promotion_code_id: str, *, params: JSONDict, idempotency_key: str | None = None
    ) -> JSONDict:
        def update() -> JSONDict:
            promo = self._promotion_codes.get(promotion_code_id)
            if promo is None:
                raise self._missing("promotion_code", promotion_code_id)
            self._check_known(params, _PROMOTION_CODE_UPDATE_FIELDS)
            updated = copy.deepcopy(promo)
            if "active" in params:
                if params["active"] and not promo["active"] and self._active_code_exists(promo["code"]):
                    raise self._error(
                        400,
                        f"An active promotion code with `code: {promo['code']}` already exists.",
                        code="resource_already_exists",
                        param="active",
                    )
                updated["active"] = bool(params["active"])
            if "metadata" in params:
                updated["metadata"] = self._merge_metadata(updated.get("metadata") or {}, params["metadata"])
            if "restrictions" in params:
                updated["restrictions"].update(params["restrictions"] or {})
            self._promotion_codes[promotion_code_id] = updated
            return updated

        args = {"promotion_code_id": promotion_code_id, "params": params}
        return self._run("update_promotion_code", args, update, idempotency_key=idempotency_key)

    # -- the machinery every call goes through -----------------------------------------

    def _run(
        self,
        operation: str,
        args: JSONDict,
        execute: Callable[[], JSONDict],
        *,
        idempotency_key: str | None = None,
    ) -> JSONDict:
        with self._lock:
            entry: JSONDict = {"operation": operation, "args": copy.deepcopy(args)}
            if idempotency_key is not None:
                entry["idempotency_key"] = idempotency_key
            self._calls.append(entry)
            try:
                fault = self._take_fault(operation)
                if fault is not None and not fault.after:
                    raise self._fault_failure(fault)
                result = self._idempotent(operation, args, idempotency_key, execute)
                if fault is not None and fault.crash:
                    entry["error"] = {"crash": True}
                    raise ProcessCrash(operation)
                if fault is not None:
                    raise self._fault_failure(fault)
            except ProcessorFailure as failure:
                entry["error"] = {"status": failure.status, **failure.to_safe_dict()}
                raise
            return copy.deepcopy(result)

    def _idempotent(self, operation: str, args: JSONDict, key: str | None, execute: Callable[[], JSONDict]) -> JSONDict:
        """Stripe's idempotency: the first successful result is saved under the
        key and replayed for a retry with the same parameters; the same key with
        other parameters (or on another endpoint) is an idempotency_error.
        Failures are not saved here, so a retry after a scripted fault or a
        validation error runs again (Stripe saves only requests that began
        executing; faults stand for requests that never got that far)."""
        if key is None:
            return execute()
        fingerprint = _fingerprint(args)
        cached = self._idempotency.get(key)
        if cached is not None:
            cached_operation, cached_fingerprint, result = cached
            if (cached_operation, cached_fingerprint) != (operation, fingerprint):
                raise self._idempotency_error(key)
            return result
        result = execute()
        self._idempotency[key] = (operation, fingerprint, copy.deepcopy(result))
        return result

    def _take_fault(self, operation: str) -> _Fault | None:
        names = [operation, *sorted(alias for alias, ops in FAULT_ALIASES.items() if operation in ops)]
        for name in names:
            queue = self._faults.get(name)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.popleft()
                return fault
        return None

    def _fault_failure(self, fault: _Fault) -> ProcessorFailure:
        if fault.status == NETWORK_FAULT:
            timed_out = fault.code == TIMEOUT
            return ProcessorFailure(
                fault.message or ("timed out waiting for Stripe" if timed_out else "could not reach Stripe"),
                error_type=TIMEOUT if timed_out else NETWORK,
            )
        message = fault.message or _DEFAULT_FAULT_MESSAGES.get(
            fault.status, "An unknown error occurred" if fault.status >= 500 else "Request failed."
        )
        code = fault.code if fault.code is not None else ("rate_limit" if fault.status == 429 else None)
        return self._error(fault.status, message, code=code)

    # -- helpers ----------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock()

    def _next_id(self, prefix: str) -> str:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return f"{prefix}_{self._counters[prefix]:05d}"

    def _error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
    ) -> ProcessorFailure:
        return ProcessorFailure(
            message,
            status=status,
            error_type=error_type or _type_for_status(status),
            code=code,
            param=param,
            request_id=self._next_id("req_fake"),
        )

    def _missing(self, object_type: str, object_id: str) -> ProcessorFailure:
        # A missing object named in the URL path is a 404 on Stripe.
        label = {"payment_method": "PaymentMethod", "promotion_code": "promotion code"}.get(object_type, object_type)
        return self._error(404, f"No such {label}: '{object_id}'", code="resource_missing", param="id")

    def _idempotency_error(self, key: str) -> ProcessorFailure:
        return self._error(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were first used with. "
            f"Try using a key other than '{key}' if you meant to execute a different request.",
            error_type="idempotency_error",
        )

    def _get_customer(self, customer_id: str) -> JSONDict:
        if customer_id in self._deleted_customers:
            deleted = _shape("deleted_customer")
            deleted["id"] = customer_id
            return deleted
        customer = self._customers.get(customer_id)
        if customer is None:
            raise self._missing("customer", customer_id)
        return customer

    def _live_customer(self, customer_id: str) -> JSONDict:
        """A customer that can still be changed: deleted ones are missing to Stripe."""
        customer = self._customers.get(customer_id)
        if customer is None:
            raise self._missing("customer", customer_id)
        return customer

    def _new_payment_method(self, card: TestCard) -> JSONDict:
        pm = _shape("payment_method")
        now = int(self._now())
        pm.update(
            id=self._next_id("pm_fake"),
            created=now,
            customer=None,
            metadata={},
            billing_details={
                "address": dict.fromkeys(_ADDRESS_KEYS),
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
        )
        network = _NETWORK_OF.get(card.brand, card.brand)
        pm["card"].update(
            brand=card.brand,
            display_brand=card.display_brand,
            country=card.country,
            exp_month=12,
            exp_year=time.gmtime(now).tm_year + 3,
            fingerprint=card.fingerprint,
            funding=card.funding,
            last4=card.number[-4:],
            generated_from=None,
            networks={"available": [network], "preferred": None},
            wallet=None,
        )
        self._payment_methods[pm["id"]] = pm
        return pm

    def _store_meter_event(
        self, event_name: str, identifier: str, ts: int, payload: dict[str, str], *, api: str
    ) -> JSONDict:
        event = _shape("billing.meter_event")
        event.update(
            created=int(self._now()),
            event_name=event_name,
            identifier=identifier,
            payload=payload,
            timestamp=ts,
        )
        self._meter_events[identifier] = {"api": api, "event": event}
        return event

    def _meter_event_list(self) -> list[JSONDict]:
        return [
            {
                "identifier": identifier,
                "event_name": record["event"]["event_name"],
                "payload": dict(record["event"]["payload"]),
                "timestamp": record["event"]["timestamp"],
                "api": record["api"],
                "received": 1 + self._meter_duplicates.get(identifier, 0),
            }
            for identifier, record in self._meter_events.items()
        ]

    def _check_meter_event(
        self, event_name: object, identifier: object, payload: object, *, v2: bool, index: int | None = None
    ) -> None:
        where = "" if index is None else f"events[{index}]."
        if not isinstance(event_name, str) or not 1 <= len(event_name) <= 100:
            raise self._error(
                400,
                "event_name must be 1 to 100 characters.",
                param=f"{where}event_name",
                code="parameter_missing" if not event_name else None,
            )
        if not isinstance(identifier, str) or not 1 <= len(identifier) <= 100:
            raise self._error(400, "identifier must be 1 to 100 characters.", param=f"{where}identifier")
        if not isinstance(payload, dict) or not payload:
            raise self._error(
                400, "payload must be a non-empty object.", code="parameter_missing", param=f"{where}payload"
            )
        if v2:
            return  # the stream checks payload contents asynchronously
        if not payload.get("stripe_customer_id"):
            raise self._error(
                400,
                _METER_ERROR_MESSAGES["meter_event_no_customer_defined"],
                code="meter_event_no_customer_defined",
                param="payload[stripe_customer_id]",
            )
        try:
            value = float(str(payload.get("value")))
        except ValueError:
            value = -1.0
        if value < 0:
            raise self._error(
                400,
                _METER_ERROR_MESSAGES["meter_event_invalid_value"],
                code="meter_event_invalid_value",
                param="payload[value]",
            )

    def _check_meter_timestamp(self, timestamp: object) -> int:
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise self._error(400, "timestamp must be an integer (unix seconds).", param="timestamp")
        now = self._now()
        if timestamp < now - METER_PAST_WINDOW_SECONDS:
            raise self._error(
                400,
                _METER_ERROR_MESSAGES["timestamp_too_far_in_past"],
                code="timestamp_too_far_in_past",
                param="timestamp",
            )
        if timestamp > now + METER_FUTURE_WINDOW_SECONDS:
            raise self._error(
                400, _METER_ERROR_MESSAGES["timestamp_in_future"], code="timestamp_in_future", param="timestamp"
            )
        return timestamp

    def _check_email(self, email: object) -> None:
        if email in (None, ""):
            return
        if not isinstance(email, str) or len(email) > 512 or not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise self._error(400, f"Invalid email address: {str(email)[:80]}", code="email_invalid", param="email")

    def _check_tax_exempt(self, tax_exempt: object) -> None:
        if tax_exempt is not None and tax_exempt not in _TAX_EXEMPT:
            raise self._error(400, "Invalid tax_exempt: must be one of none, exempt, or reverse.", param="tax_exempt")

    def _check_metadata(self, metadata: object) -> None:
        """Stripe's metadata limits: 50 keys, key <= 40 chars, value <= 500 chars, no brackets."""
        if not isinstance(metadata, dict):
            raise self._error(400, "Invalid metadata: must be an object.", param="metadata")
        if len(metadata) > 50:
            raise self._error(400, "Metadata can have at most 50 keys.", param="metadata")
        for key, value in metadata.items():
            if not isinstance(key, str) or not key or len(key) > 40 or "[" in key or "]" in key:
                raise self._error(400, f"Invalid metadata key: {str(key)[:40]}", param="metadata")
            if value is not None and (not isinstance(value, str | int | float) or len(str(value)) > 500):
                raise self._error(400, f"Invalid value for metadata[{key}].", param=f"metadata[{key}]")

    def _merge_metadata(self, current: dict[str, str], change: object) -> dict[str, str]:
        if change in ("", None):
            return {}  # Stripe: metadata="" clears every key
        self._check_metadata(change)
        change = cast(dict[str, object], change)  # checked above
        merged = dict(current)
        for key, value in change.items():
            if value in ("", None):
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return merged

    def _merge_invoice_settings(self, customer_id: str, customer: JSONDict, change: object) -> JSONDict:
        if not isinstance(change, dict):
            raise self._error(400, "Invalid invoice_settings: must be an object.", param="invoice_settings")
        self._check_known(change, _INVOICE_SETTINGS_FIELDS, prefix="invoice_settings")
        settings = copy.deepcopy(customer.get("invoice_settings") or {})
        for key, value in change.items():
            if key == "default_payment_method" and value not in ("", None):
                pm = self._payment_methods.get(str(value))
                if pm is None or pm.get("customer") != customer_id:
                    raise self._error(
                        400,
                        f"The customer does not have a payment method with the ID {value}. "
                        "The payment method must be attached to the customer.",
                        code="resource_missing",
                        param="invoice_settings[default_payment_method]",
                    )
            settings[key] = None if value == "" else value
        return settings

    def _check_known(self, params: object, allowed: Iterable[str], *, prefix: str = "") -> None:
        if not isinstance(params, dict):
            raise self._error(400, "Invalid parameters: must be an object.")
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            name = f"{prefix}[{unknown[0]}]" if prefix else unknown[0]
            raise self._error(400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name)

    def _address(self, address: object, current: JSONDict | None) -> JSONDict:
        if not isinstance(address, dict):
            raise self._error(400, "Invalid address: must be an object.", param="address")
        self._check_known(address, _ADDRESS_KEYS, prefix="address")
        merged: JSONDict = dict.fromkeys(_ADDRESS_KEYS)
        merged.update(current or {})
        merged.update({k: (None if v == "" else v) for k, v in address.items()})
        if isinstance(merged.get("country"), str):
            merged["country"] = merged["country"].strip().upper()
        return merged

    def _validate_tax_location(self, address: JSONDict) -> None:
        """What Stripe Tax needs to place a customer: a real country, and for
        the US a well-formed ZIP code, for Canada a postal code or province."""
        country = address.get("country")
        postal_code = str(address.get("postal_code") or "").strip()
        problem: tuple[str, str] | None = None
        if not country or country not in ISO_3166_ALPHA2:
            problem = ("address[country]", f"'{str(country)[:8]}' is not a valid ISO 3166-1 alpha-2 country code.")
        elif country == "US" and not _US_POSTAL_CODE.fullmatch(postal_code):
            problem = ("address[postal_code]", "A US address needs a valid 5-digit ZIP code (or ZIP+4).")
        elif country == "CA" and not (postal_code or address.get("state")):
            problem = ("address[postal_code]", "A Canadian address needs a postal code or a province.")
        if problem is not None:
            param, detail = problem
            raise self._error(
                400,
                f"The customer's location isn't recognized: {detail}",
                code="customer_tax_location_invalid",
                param=param,
            )

    def _active_code_exists(self, code: str) -> bool:
        # Codes are unique among active promotion codes, case-insensitively.
        folded = code.casefold()
        return any(p["active"] and str(p["code"]).casefold() == folded for p in self._promotion_codes.values())
