"""PynamoDB models: one table per aggregate (template.yaml), guard items beside
the rows they protect, and the append-only ledger.

Table names come from the environment the template gives each function; a
function checks the ones it needs at start (billing.config.require_env).
"""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

CUSTOMERS_TABLE = "CUSTOMERS_TABLE"
PAYMENT_METHODS_TABLE = "PAYMENT_METHODS_TABLE"
SUBSCRIPTIONS_TABLE = "SUBSCRIPTIONS_TABLE"
INVOICES_TABLE = "INVOICES_TABLE"
CHARGES_TABLE = "CHARGES_TABLE"
EVENTS_TABLE = "EVENTS_TABLE"


def _table(variable: str) -> str:
    # An unset variable yields a name no table has; require_env reports it
    # at start, before any request can reach DynamoDB with it.
    return os.environ.get(variable) or f"unset-{variable}"


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def connection() -> Connection:
    """A connection for TransactWrite; endpoint from AWS_ENDPOINT_URL_DYNAMODB when set."""
    return Connection(region=_region())


class _Meta:
    region = _region()
    max_retry_attempts = 3


def _index(name: str, hash_key: str, range_key: str | None = None) -> GlobalSecondaryIndex[Any]:
    """A GSI declared as template.yaml declares it (PynamoDB queries only what it knows)."""
    attrs: dict[str, Any] = {
        "Meta": type("Meta", (), {"index_name": name, "projection": AllProjection()}),
        hash_key: UnicodeAttribute(hash_key=True),
    }
    if range_key:
        attrs[range_key] = UnicodeAttribute(range_key=True)
    index: GlobalSecondaryIndex[Any] = type(f"Index_{name}", (GlobalSecondaryIndex,), attrs)()
    return index


class CustomerRow(Model):
    class Meta(_Meta):
        table_name = _table(CUSTOMERS_TABLE)

    by_owner = _index("by_owner", "owner_key", "inserted_at")
    by_email = _index("by_email", "email", "inserted_at")
    by_currency = _index("by_currency", "currency", "inserted_at")
    by_processor_id = _index("by_processor_id", "processor_id")
    by_inserted = _index("by_inserted", "list_key", "inserted_at")

    pk = UnicodeAttribute(hash_key=True)
    kind = UnicodeAttribute(default="customer")
    list_key = UnicodeAttribute(default="customer")
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


class _ProjectionAttributes(Model):
    """What every thin projection of a processor object carries."""

    class Meta(_Meta):
        table_name = "abstract"

    pk = UnicodeAttribute(hash_key=True)  # the processor's id (pm_..., sub_..., in_..., ch_...)
    customer_id = UnicodeAttribute(null=True)
    processor_customer_id = UnicodeAttribute(null=True)
    sort_key = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    data = JSONAttribute(default=dict)
    last_stripe_event_ts = NumberAttribute(null=True)
    last_stripe_event_id = UnicodeAttribute(null=True)
    inserted_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    lock_version = VersionAttribute()


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

    by_customer = _index("by_customer", "customer_id", "sort_key")


class InvoiceRow(_ProjectionAttributes):
    class Meta(_Meta):
        table_name = _table(INVOICES_TABLE)

    by_customer = _index("by_customer", "customer_id", "sort_key")


class ChargeRow(_ProjectionAttributes):
    class Meta(_Meta):
        table_name = _table(CHARGES_TABLE)

    by_customer = _index("by_customer", "customer_id", "sort_key")


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
