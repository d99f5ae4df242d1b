"""The processor interface: what the billing code may ask of Stripe.

One interface. The layer implements it once, StripeProcessor (the real API);
the Fake, outside the layer in devstack/fake_stripe/, implements it twice:
FakeProcessor (in memory, for tests and the local stack) and
RemoteFakeProcessor (one shared Fake reached over HTTP, so the local stack's
functions, each in its own process, see the same Stripe). Tests and the
local stack install those with billing.processor.set_processor().

Every method returns plain JSON-able dicts shaped like Stripe's objects, never
SDK objects: rows store them as `data`, tests compare them, and the RPC hop
sends them as JSON. Every failure is a billing.processor.errors.ProcessorFailure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Protocol, runtime_checkable

JSONDict = dict[str, Any]

# Objects reconcile may re-fetch to learn the canonical state (retrieve_object).
OBJECT_TYPES: Final = frozenset(
    {"customer", "payment_method", "subscription", "invoice", "charge", "coupon", "promotion_code"}
    # The catalog, Checkout, and a customer's active entitlement summary (retrieved by the
    # customer's id: the summary has no id of its own).
    | {"price", "product", "checkout.session", "entitlements.active_entitlement_summary"}
)

# What list_objects lists: Stripe's list endpoints the backfill and the events poll
# read (billing.sync), and invoice payments (from 2025-03-31.basil a charge names no
# invoice: params {"payment": {"type": "payment_intent", "payment_intent": ...}}
# find its). Payment methods are listed per customer (params["customer"]):
# Stripe lists no account-wide payment methods for payments.
LIST_TYPES: Final = frozenset(
    {"customer", "payment_method", "subscription", "invoice", "charge", "coupon", "promotion_code", "price",
     "product", "event", "invoice_payment"}
)
# Stripe's largest page.
MAX_LIST_LIMIT: Final = 100

# Stripe's limit on one v2 meter_event_stream request.
MAX_STREAM_EVENTS: Final = 100


@runtime_checkable
class Processor(Protocol):
    """Stripe, as the billing code uses it. Keyword arguments throughout."""

    # What rows record in their `processor` column ("stripe"; the Fake says
    # "fake"), read by billing.processor.processor_name().
    name: str

    def create_customer(
        self,
        *,
        idempotency_key: str,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        preferred_locales: list[str] | None = None,
        tax_exempt: str | None = None,
    ) -> JSONDict: ...

    def retrieve_customer(self, customer_id: str) -> JSONDict:
        """A deleted customer comes back as `{"id", "object": "customer", "deleted": true}`, like Stripe."""
        ...

    def update_customer(self, customer_id: str, *, idempotency_key: str | None = None, fields: JSONDict) -> JSONDict:
        """`fields` are Stripe's update parameters (email, name, metadata, tax_exempt,
        preferred_locales, invoice_settings={"default_payment_method": pm}, ...).
        Metadata merges; a key set to "" or None is removed."""
        ...

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> JSONDict:
        """Stripe ignores idempotency keys on DELETE: deleting twice is a 404
        resource_missing, which a caller mirroring a soft delete treats as done."""
        ...

    def update_tax_location(self, customer_id: str, *, address: JSONDict, idempotency_key: str) -> JSONDict:
        """Set the address with immediate validation; an unusable location
        raises code `customer_tax_location_invalid` (400)."""
        ...

    def attach_payment_method(self, payment_method_id: str, *, customer_id: str, idempotency_key: str) -> JSONDict: ...

    def detach_payment_method(self, payment_method_id: str, *, idempotency_key: str) -> JSONDict: ...

    def retrieve_payment_method(self, payment_method_id: str) -> JSONDict: ...

    def create_meter_event(
        self, *, event_name: str, identifier: str, timestamp: int, payload: dict[str, str]
    ) -> JSONDict:
        """v1 billing.meter_events. The idempotency key is derived from
        `identifier` (billing.processor.keys.meter_event_key), so a resend is
        answered with the first result instead of counting twice."""
        ...

    def create_meter_event_session(self) -> JSONDict:
        """v2 meter event session: `authentication_token` and `expires_at` (RFC 3339)."""
        ...

    def send_meter_events(self, *, session_token: str, events: list[JSONDict]) -> None:
        """v2 meter_event_stream: 1 to 100 events of {event_name, identifier,
        payload, timestamp}; timestamp may be unix seconds or RFC 3339."""
        ...

    def retrieve_v2_event(self, event_id: str) -> JSONDict:
        """GET /v2/core/events/{id}: the full event behind a thin webhook."""
        ...

    def list_v2_events(self, *, types: list[str], created_gte: int, created_lte: int, limit: int) -> JSONDict:
        """GET /v2/core/events: the v2 (thin) events of these types created in
        [created_gte, created_lte] (unix seconds, sent as RFC 3339), newest
        first as Stripe lists them, following next_page_url up to `limit`
        events: `{"data": [...], "has_more": bool}` (has_more: the walk
        stopped at `limit`, so the list may go on)."""
        ...

    def cancel_meter_event(self, *, event_name: str, identifier: str, idempotency_key: str) -> JSONDict:
        """POST /v1/billing/meter_event_adjustments, `type: cancel` by identifier:
        Stripe stops counting the event. Stripe takes it within 24 hours of
        receiving the event only. Returns the billing.meter_event_adjustment."""
        ...

    def meter_event_summaries(
        self, *, event_name: str, customer_id: str, start_time: int, end_time: int,
        value_grouping_window: str | None = None,
    ) -> JSONDict:
        """The meter whose `event_name` this is (GET /v1/billing/meters), then its
        event summaries for one customer (GET /v1/billing/meters/{id}/event_summaries,
        start inclusive, end exclusive, both on minute boundaries), every page:
        `{"meter": <billing.meter>, "data": [<billing.meter_event_summary>, ...]}`.
        `value_grouping_window` "hour" or "day": one summary per window (the
        bounds aligned to it), else one for the range.
        No meter with that event name: a 404 `resource_missing`."""
        ...

    def find_meter(self, event_name: str) -> JSONDict:
        """The active billing.meter whose event name this is; none: a 404 `resource_missing`."""
        ...

    def retrieve_object(self, object_type: str, object_id: str) -> JSONDict:
        """Re-fetch one of OBJECT_TYPES by id (canonical state for reconcile)."""
        ...

    def create_coupon(self, *, idempotency_key: str, params: JSONDict) -> JSONDict: ...

    def create_promotion_code(self, *, idempotency_key: str, params: JSONDict) -> JSONDict: ...

    def update_promotion_code(
        self, promotion_code_id: str, *, params: JSONDict, idempotency_key: str | None = None
    ) -> JSONDict: ...

    # -- subscriptions, Checkout and the customer portal --------------------------------
    # `params` are Stripe's own parameters; the idempotency key is the caller's
    # (derived from the operation and the request's Idempotency-Key).

    def create_subscription(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        """POST /v1/subscriptions. `params["expand"]` may ask for
        latest_invoice.confirmation_secret and pending_setup_intent (client secrets)."""
        ...

    def update_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        """POST /v1/subscriptions/{id}: items (swap), proration_behavior,
        cancel_at_period_end, pause_collection ("" unpauses), default_payment_method."""
        ...

    def cancel_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        """DELETE /v1/subscriptions/{id}: cancel now (invoice_now, prorate)."""
        ...

    def list_subscriptions(self, *, customer_id: str) -> list[JSONDict]:
        """Every subscription of a customer, whatever its status (all pages)."""
        ...

    def list_payment_methods(self, *, customer_id: str) -> list[JSONDict]:
        """Every payment method attached to a customer (all pages)."""
        ...

    def list_objects(self, object_type: str, *, limit: int = MAX_LIST_LIMIT, starting_after: str | None = None,
                     ending_before: str | None = None, params: JSONDict | None = None) -> JSONDict:
        """One page of Stripe's list endpoint of one of LIST_TYPES, as Stripe answers
        it: `{"object": "list", "data": [...], "has_more": bool, "url": ...}`, newest
        first. `starting_after` pages towards older objects; `ending_before` to
        newer ones (the page nearest the cursor, still newest first; `has_more`:
        more lie beyond it). `params` are the endpoint's filters (`customer` for
        payment methods, which it requires; `created` and `types` for events;
        subscriptions default to every status). An unknown cursor is
        resource_missing."""
        ...

    def create_checkout_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict: ...

    def create_portal_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict: ...


# The interface's method names: the only calls the Fake's RPC will execute.
PROCESSOR_METHODS: Final = frozenset(
    name for name, value in vars(Processor).items() if callable(value) and not name.startswith("_")
)


def check_list_type(object_type: str, limit: int, params: JSONDict | None) -> None:
    """A wrong list call is a programming error, the same for every implementation."""
    if object_type not in LIST_TYPES:
        raise ValueError(f"list_objects: unsupported object type {object_type!r}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"list_objects: limit must be between 1 and {MAX_LIST_LIMIT}")
    if object_type == "payment_method" and not (params or {}).get("customer"):
        raise ValueError("list_objects: payment methods are listed per customer (params customer)")


def check_object_type(object_type: str) -> None:
    """A wrong type is a programming error, the same for every implementation."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"retrieve_object: unsupported object type {object_type!r}")


def rfc3339(unix_seconds: int | float) -> str:
    """Unix seconds as the v2 API writes times: 2024-09-26T17:46:22.000Z."""
    moment = datetime.fromtimestamp(unix_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def unix_seconds(value: int | float | str) -> int:
    """Unix seconds from unix seconds or an RFC 3339 / ISO 8601 string."""
    if isinstance(value, bool):  # bool is an int; a True timestamp is a bug
        raise ValueError("timestamp must be unix seconds or an RFC 3339 string")
    if isinstance(value, int | float):
        return int(value)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 timestamp needs a UTC offset")
    return int(moment.timestamp())
