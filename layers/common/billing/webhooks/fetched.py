"""Objects fetched from the processor, applied through the reconcile path
as if an event had carried them: `POST /v1/customers/{id}/sync`, for the
redirect back from Checkout (the webhook may come after the customer).

A fetched object is the processor's state when it was fetched: it is
applied with the fetch's time as its watermark, under the same rules as an
event (older than the row's watermark: stale, nothing changes), through
the same handlers, columns and ledger rows, with the caller as the actor.
The rows' `last_stripe_event_id` names the fetch (`sync_...`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.transactions import TransactWrite

from billing.core import ids
from billing.core.errors import Conflict
from billing.customers import records
from billing.data.ledger import Actor
from billing.data.tables import WebhookEventRow, connection
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor
from billing.webhooks import customers, objects
from billing.webhooks.context import Context, Deferred


class Fetched(Context):
    """A Context for an object the processor just answered: no stored event
    behind it, so nothing to mark, and nothing to re-fetch."""

    def __init__(self, event_type: str, obj: dict[str, Any], at: int, actor: Actor, fetch_id: str) -> None:
        row = WebhookEventRow(pk=fetch_id, type=event_type, created=at, body="", received_at="", status="received")
        super().__init__(row, {"data": {"object": obj}})
        self._actor = actor

    @property
    def actor(self) -> Actor:
        return self._actor

    def already_applied(self, last_event_id: str | None) -> bool:
        return False

    def refetch(self, object_type: str, object_id: str, fallback: dict[str, Any]) -> dict[str, Any]:
        return fallback  # fetched a moment ago: that is what the processor has

    def finish(self, status: str) -> str:
        return status

    @contextmanager
    def transaction(self) -> Iterator[TransactWrite]:
        with TransactWrite(connection=connection()) as tw:
            yield tw


def sync_customer(customer_id: str, actor: Actor) -> dict[str, Any]:
    """Re-fetch the customer, its payment methods and its subscriptions and
    apply them now; the customer with both embedded."""
    row = records.load(customer_id)
    if row.deleted_at or not row.processor_id:
        raise Conflict(f"customer {customer_id} is deleted or has no processor customer", {"customer_id": customer_id})
    at = int(time.time())
    processor = get_processor()
    try:
        customer = processor.retrieve_customer(row.processor_id)
        payment_methods = processor.list_payment_methods(customer_id=row.processor_id)
        subscriptions = processor.list_subscriptions(customer_id=row.processor_id)
    except ProcessorFailure as failure:
        raise_for_processor(failure)
    fetch_id = f"sync_{ids.ulid()}"
    customers.apply(Fetched("customer.updated", customer, at, actor, fetch_id))
    for kind, objs, event_type in (("payment_method", payment_methods, "payment_method.updated"),
                                   ("subscription", subscriptions, "customer.subscription.updated")):
        for obj in objs:
            try:
                objects.apply(Fetched(event_type, obj, at, actor, fetch_id), objects.SPEC_BY_TYPE[kind])
            except Deferred:  # listed for our customer, so only if it was deleted meanwhile
                continue
    return records.get(customer_id, ["payment_methods", "subscriptions"])
