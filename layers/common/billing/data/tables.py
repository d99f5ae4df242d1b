"""PynamoDB models: one table per aggregate (template.yaml), guard items beside
the rows they protect, and the append-only ledger.

Table names come from the environment the template gives each function; a
function checks the ones it needs at cold start (billing.core.settings).
"""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    Attribute,
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection, Projection
from pynamodb.models import Model

from billing.core import snapstart
from billing.core.settings import (
    CHARGES_TABLE,
    COUPONS_TABLE,
    CUSTOMERS_TABLE,
    EVENTS_TABLE,
    INVOICES_TABLE,
    PAYMENT_METHODS_TABLE,
    PROMOTION_CODES_TABLE,
    SUBSCRIPTIONS_TABLE,
    WEBHOOK_EVENTS_TABLE,
)


class _TableName:
    """A model's table name, read from the environment when PynamoDB asks
    (it compares it on every call), not when this module is imported: a
    process that imports the models before its environment is complete (a
    test session, a SnapStart snapshot) still reaches the right table."""

    def __init__(self, variable: str) -> None:
        self.variable = variable

    def __get__(self, instance: object, owner: type | None = None) -> str:
        # An unset variable yields a name no table has; the function's settings
        # check reports it at cold start, before any request can reach DynamoDB.
        return os.environ.get(self.variable) or f"unset-{self.variable}"


def _table(variable: str) -> str:
    # Typed as the str PynamoDB reads; the descriptor answers on each access.
    return _TableName(variable)  # type: ignore[return-value]


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


_connection: Connection | None = None


def connection() -> Connection:
    """A connection for TransactWrite; endpoint from AWS_ENDPOINT_URL_DYNAMODB when set.

    One per process, reused across warm invocations: building its botocore
    client costs tens of milliseconds of CPU, more than the transaction."""
    global _connection
    if _connection is None:
        _connection = Connection(region=_region())
    return _connection


@snapstart.after_restore
def _drop_connections() -> None:
    """Every connection (its botocore session, credentials and pool) is built
    again after a SnapStart restore: the shared one and each model's."""
    global _connection
    _connection = None
    models: list[type[Model]] = list(Model.__subclasses__())
    while models:
        model = models.pop()
        model._connection = None
        models.extend(model.__subclasses__())


class _Meta:
    region = _region()
    max_retry_attempts = 3


def _index(name: str, hash_key: str, range_key: str | None = None, *,
           projection: Projection | None = None, laned: bool = False) -> GlobalSecondaryIndex[Any]:
    """A GSI declared as template.yaml declares it (PynamoDB queries only what it knows).
    A laned one's partition key is spread over lanes (billing.data.lanes)."""
    attrs: dict[str, Any] = {
        "Meta": type("Meta", (), {"index_name": name, "projection": projection or AllProjection()}),
        hash_key: UnicodeAttribute(hash_key=True),
    }
    if range_key:
        attrs[range_key] = UnicodeAttribute(range_key=True)
    index: GlobalSecondaryIndex[Any] = type(f"Index_{name}", (GlobalSecondaryIndex,), attrs)()
    index.laned = laned  # type: ignore[attr-defined]
    return index


def key_names(model: type[Model], index: GlobalSecondaryIndex[Any] | None = None) -> frozenset[str]:
    """The attributes of a LastEvaluatedKey: the table's key, plus the index's."""
    names = {model._hash_keyname} | ({model._range_keyname} if model._range_keyname else set())
    if index is not None:
        names |= {a.attr_name for a in vars(type(index)).values() if isinstance(a, Attribute)}
    return frozenset(n for n in names if n)


def hash_key_name(index: GlobalSecondaryIndex[Any]) -> str:
    """The partition key attribute an index is queried by."""
    return str(index._hash_key_attribute().attr_name)  # type: ignore[no-untyped-call]


class CustomerRow(Model):
    class Meta(_Meta):
        table_name = _table(CUSTOMERS_TABLE)

    by_owner = _index("by_owner", "owner_key", "inserted_at")
    by_email = _index("by_email", "email", "inserted_at")
    by_currency = _index("by_currency", "currency", "inserted_at")
    by_processor_id = _index("by_processor_id", "processor_id")
    # Every customer, newest first, over lanes (laned("customer", pk)); projects what its filters read.
    by_inserted_lane = _index("by_inserted_lane", "list_lane", "inserted_at", laned=True,
                              projection=IncludeProjection(["deleted_at"]))

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default="customer")
    list_lane = UnicodeAttribute(null=True)
    owner_type = UnicodeAttribute(null=True)
    owner_id = UnicodeAttribute(null=True)
    owner_key = UnicodeAttribute(null=True)
    processor = UnicodeAttribute()
    processor_id = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    tax_exempt = UnicodeAttribute(null=True)
    preferred_locale = UnicodeAttribute(null=True)
    preferred_timezone = UnicodeAttribute(null=True)
    metadata = JSONAttribute(default=dict)
    data = JSONAttribute(default=dict)
    default_payment_method_id = UnicodeAttribute(null=True)
    tax_location_digest = JSONAttribute(null=True)
    # The Stripe idempotency key of the PATCH that claimed the current
    # lock_version before calling Stripe (customers.update): its own retry resumes.
    patch_claim = UnicodeAttribute(null=True)
    last_stripe_event_ts = NumberAttribute(null=True)
    last_stripe_event_id = UnicodeAttribute(null=True)
    inserted_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    deleted_at = UnicodeAttribute(null=True)
    lock_version = VersionAttribute()


class GuardRow(Model):
    """A uniqueness claim (`guard#...`) in the customers table: owner per
    processor, processor id. Written with attribute_not_exists in the same
    transaction as the row it protects."""

    class Meta(_Meta):
        table_name = _table(CUSTOMERS_TABLE)

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default="guard")
    customer_id = UnicodeAttribute(null=True)
    # Bumped when the owner's customer is deleted, so the next customer gets
    # a fresh processor idempotency key instead of the deleted one back.
    generation = NumberAttribute(default=0)


class _Projection(Model):
    """What every thin projection of one processor object carries: its id,
    the object, the webhook watermark, timestamps and the lock version."""

    class Meta(_Meta):
        table_name = "abstract"

    pk = UnicodeAttribute(hash_key=True)  # the processor's id (pm_..., sub_..., in_..., promo_...)
    data = JSONAttribute(default=dict)
    last_stripe_event_ts = NumberAttribute(null=True)
    last_stripe_event_id = UnicodeAttribute(null=True)
    inserted_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    lock_version = VersionAttribute()


class _ProjectionAttributes(_Projection):
    """A projection that hangs off a customer (payment methods, subscriptions,
    invoices, charges)."""

    class Meta(_Meta):
        table_name = "abstract"

    customer_id = UnicodeAttribute(null=True)
    processor_customer_id = UnicodeAttribute(null=True)
    sort_key = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)


class PaymentMethodRow(_ProjectionAttributes):
    class Meta(_Meta):
        table_name = _table(PAYMENT_METHODS_TABLE)

    by_customer = _index("by_customer", "customer_id", "sort_key")

    type = UnicodeAttribute(null=True)
    brand = UnicodeAttribute(null=True)
    last4 = UnicodeAttribute(null=True)
    exp_month = NumberAttribute(null=True)
    exp_year = NumberAttribute(null=True)
    # Kept for de-duplication only: never returned, never logged.
    fingerprint = UnicodeAttribute(null=True)
    detached_at = UnicodeAttribute(null=True)


class SubscriptionRow(_ProjectionAttributes):
    class Meta(_Meta):
        table_name = _table(SUBSCRIPTIONS_TABLE)

    # An index per list filter (GET /v1/subscriptions, /invoices, /charges), newest first.
    # The status and whole-list ones are laned (billing.data.lanes) and project
    # keys only: a renewal's update writes no entry unless its status changes.
    by_customer = _index("by_customer", "customer_id", "sort_key")
    by_status_lane = _index("by_status_lane", "status_lane", "sort_key", laned=True, projection=KeysOnlyProjection())
    by_price = _index("by_price", "price_id", "sort_key")
    by_list_lane = _index("by_list_lane", "list_lane", "sort_key", laned=True, projection=KeysOnlyProjection())

    list_lane = UnicodeAttribute(null=True)
    status_lane = UnicodeAttribute(null=True)
    # The first item's price and product (`?price=` filters on it); pause_behavior while collection is paused.
    price_id, product_id, pause_behavior = (UnicodeAttribute(null=True) for _ in range(3))
    quantity, current_period_end, trial_end = (NumberAttribute(null=True) for _ in range(3))
    cancel_at_period_end = BooleanAttribute(null=True)


class InvoiceRow(_ProjectionAttributes):
    class Meta(_Meta):
        table_name = _table(INVOICES_TABLE)

    by_customer = _index("by_customer", "customer_id", "sort_key")
    by_status_lane = _index("by_status_lane", "status_lane", "sort_key", laned=True, projection=KeysOnlyProjection())
    by_subscription = _index("by_subscription", "subscription_id", "sort_key")
    by_list_lane = _index("by_list_lane", "list_lane", "sort_key", laned=True, projection=KeysOnlyProjection())

    list_lane = UnicodeAttribute(null=True)
    status_lane = UnicodeAttribute(null=True)
    subscription_id, billing_reason, currency = (UnicodeAttribute(null=True) for _ in range(3))
    amount_due, amount_paid = NumberAttribute(null=True), NumberAttribute(null=True)


class ChargeRow(_ProjectionAttributes):
    class Meta(_Meta):
        table_name = _table(CHARGES_TABLE)

    by_customer = _index("by_customer", "customer_id", "sort_key")
    by_subscription = _index("by_subscription", "subscription_id", "sort_key")
    by_list_lane = _index("by_list_lane", "list_lane", "sort_key", laned=True, projection=KeysOnlyProjection())

    list_lane = UnicodeAttribute(null=True)
    # subscription_id: through the charge's invoice, when it names one.
    invoice_id, subscription_id, currency = (UnicodeAttribute(null=True) for _ in range(3))
    amount = NumberAttribute(null=True)


class LedgerRow(Model):
    """One immutable row per state change, partitioned by its subject."""

    class Meta(_Meta):
        table_name = _table(EVENTS_TABLE)

    pk = UnicodeAttribute(hash_key=True)  # "<subject_type>#<subject_id>"
    sk = UnicodeAttribute(range_key=True)  # "<inserted_at>#<id>": newest last
    id = UnicodeAttribute()
    type = UnicodeAttribute()
    subject_type = UnicodeAttribute()
    subject_id = UnicodeAttribute()
    actor_type = UnicodeAttribute()
    actor_id = UnicodeAttribute(null=True)
    data = JSONAttribute(default=dict)
    trace_id = UnicodeAttribute(null=True)
    idempotency_key = UnicodeAttribute(null=True)
    caused_by_webhook_event_id = UnicodeAttribute(null=True)
    inserted_at = UnicodeAttribute()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "subject_type": self.subject_type, "subject_id": self.subject_id,
            "actor_type": self.actor_type, "actor_id": self.actor_id, "data": self.data,
            "trace_id": self.trace_id, "idempotency_key": self.idempotency_key,
            "caused_by_webhook_event_id": self.caused_by_webhook_event_id, "inserted_at": self.inserted_at,
        }


# -- webhooks: the inbox and the coupon / promotion code projections ------------------


# What the by_received index holds beside its keys (template.yaml's NonKeyAttributes):
# what the webhook-events list shows and the re-drive's condition reads.
RECEIVED_INDEX_ATTRIBUTES = ("type", "created", "livemode", "object_id", "status", "attempts", "run", "replays",
                             "error", "received_at", "received_via", "processed_at", "next_attempt_at")


class WebhookEventRow(Model):
    """One row per Stripe event id: the raw body as it was signed (kept for
    replay) and where its processing stands.

    The webhook function or the EventBridge inbound function writes it once
    with a plain PutItem (attribute names as here, billing.webhooks.inbox);
    afterwards only the processor and the
    replay route update it. `run` counts processing requests (the insert is
    run 0; a replay or re-drive adds one and sets `run_reason`, which is what
    the stream filter lets through), so a stale stream record can tell that a
    newer run superseded it.
    """

    class Meta(_Meta):
        table_name = _table(WEBHOOK_EVENTS_TABLE)

    # Sparse: only failed and deferred rows carry status_key, so the processed
    # majority never lands in (or heats) the index.
    by_status = _index("by_status", "status_key", "received_at")
    # Rows waiting for the processor (received: stored, replayed or re-driven,
    # no outcome yet), by when that run was requested: the stuck re-drive and
    # the `received` list. Its own lean index (everything but the body, as
    # template.yaml declares it), so the ack's put adds one small index write
    # instead of a second copy of the body (by_status projects ALL).
    by_received = _index("by_received", "received_key", "updated_at", laned=True,
                         projection=IncludeProjection(list(RECEIVED_INDEX_ATTRIBUTES)))

    pk = UnicodeAttribute(hash_key=True)  # the Stripe event id
    type = UnicodeAttribute()
    created = NumberAttribute()  # Stripe's `created`, unix seconds
    livemode = BooleanAttribute(null=True)
    object_id = UnicodeAttribute(null=True)  # data.object.id (thin events: related_object.id)
    body = UnicodeAttribute()  # the raw body; never returned by the API, never logged
    received_at = UnicodeAttribute()
    received_via = UnicodeAttribute(null=True)  # webhook | eventbridge: the path that stored it first
    updated_at = UnicodeAttribute(null=True)
    processed_at = UnicodeAttribute(null=True)
    status = UnicodeAttribute()  # received, processed, ignored, stale, deferred, failed
    status_key = UnicodeAttribute(null=True)
    received_key = UnicodeAttribute(null=True)  # "received#<lane>" until an outcome is recorded (by_received)
    attempts = NumberAttribute(default=0)
    run = NumberAttribute(default=0)
    run_reason = UnicodeAttribute(null=True)  # replay | redrive, until the run starts
    replays = NumberAttribute(default=0)
    deferrals = NumberAttribute(default=0)
    waiting_for = UnicodeAttribute(null=True)  # the processor id of the missing parent
    next_attempt_at = NumberAttribute(null=True)  # unix seconds, while deferred
    error = JSONAttribute(null=True)  # {type, code, message<=512}, never a payload
    expires_at = NumberAttribute(null=True)  # TTL (unix seconds) on finished rows


class _Watermarked(_Projection):
    """A projection outside the customer graph (coupons, promotion codes)."""

    class Meta(_Meta):
        table_name = "abstract"

    processor_id = UnicodeAttribute(null=True)
    metadata = JSONAttribute(default=dict)
    # The user path's processor idempotency key, once a create request has
    # recorded the object (billing.promotions.coupons, billing.promotions.codes); a row only a
    # webhook recorded has none, and the user path merges into it.
    create_key = UnicodeAttribute(null=True)


class CouponRow(_Watermarked):
    class Meta(_Meta):
        table_name = _table(COUPONS_TABLE)

    name = UnicodeAttribute(null=True)
    percent_off = NumberAttribute(null=True)
    amount_off = NumberAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    duration = UnicodeAttribute(null=True)
    duration_in_months = NumberAttribute(null=True)
    max_redemptions = NumberAttribute(null=True)
    redeem_by = NumberAttribute(null=True)
    times_redeemed = NumberAttribute(null=True)
    valid = BooleanAttribute(null=True)
    deleted_at = UnicodeAttribute(null=True)


class PromotionCodeRow(_Watermarked):
    class Meta(_Meta):
        table_name = _table(PROMOTION_CODES_TABLE)

    by_code = _index("by_code", "code_key")
    by_coupon = _index("by_coupon", "coupon_id", "expires_sort")
    # The whole list in either order, laned (billing.data.lanes); they project what its filters read.
    by_expires_lane = _index("by_expires_lane", "list_lane", "expires_sort", laned=True,
                             projection=IncludeProjection(["coupon_id", "active"]))
    by_redeemed_lane = _index("by_redeemed_lane", "list_lane", "redeemed_sort", laned=True,
                              projection=IncludeProjection(["coupon_id", "active"]))

    list_lane = UnicodeAttribute(null=True)
    code = UnicodeAttribute(null=True)
    code_key = UnicodeAttribute(null=True)  # code_key_for(code)
    coupon_id = UnicodeAttribute(null=True)
    active = BooleanAttribute(null=True)
    expires_at = NumberAttribute(null=True)
    expires_sort = UnicodeAttribute(null=True)
    times_redeemed = NumberAttribute(null=True)
    redeemed_sort = UnicodeAttribute(null=True)
    max_redemptions = NumberAttribute(null=True)
    processor_customer_id = UnicodeAttribute(null=True)  # a code restricted to one customer

    @staticmethod
    def code_key_for(code: str) -> str:
        # Stripe matches promotion codes case-insensitively.
        return code.upper()

    @staticmethod
    def expires_sort_for(expires_at: int | None, promotion_code_id: str) -> str:
        # Zero-padded so the index sorts numerically; no expiry sorts last ("~" > digits).
        return f"{expires_at:012d}#{promotion_code_id}" if expires_at is not None else f"~#{promotion_code_id}"

    @staticmethod
    def redeemed_sort_for(times_redeemed: int, promotion_code_id: str) -> str:
        return f"{times_redeemed:012d}#{promotion_code_id}"


class PromotionCodeGuardRow(Model):
    """The claim of an active promotion code on its code (`guard#code#<CODE_KEY>`),
    in the promotion codes table: `promotion_code_id` is set with
    attribute_not_exists in the transaction that records or activates the code,
    and removed (generation + 1) in the one that deactivates it. It carries none
    of PromotionCodeRow's index keys, so it never shows up in a listing."""

    class Meta(_Meta):
        table_name = _table(PROMOTION_CODES_TABLE)

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default="code_guard")
    promotion_code_id = UnicodeAttribute(null=True)
    # Bumped on every release, so a later create of the same code gets a
    # fresh processor idempotency key instead of the released code back.
    generation = NumberAttribute(default=0)
