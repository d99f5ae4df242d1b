"""The user path's record of what Stripe answered a subscription action:
the row and its ledger row (and the owner's billing summary) in one
transaction, under the watermark.

Stripe's answer is the state right after the request, which started at
`started` (unix seconds, the request's own clock). The webhook path stamps
rows with its events' `created`; the user path stamps `started`, so an
event from before the request (delayed) is stale afterwards, while the
event the action itself causes (created at or after `started`) still
applies. A row whose watermark already reached `started` was changed by a
webhook from this request's second or later: which of the two is newer is
unknown, so the processor is asked again (as the webhook path does for an
event in the watermark's second) and its answer recorded.
"""

from __future__ import annotations

import copy
from typing import Any

from pynamodb.transactions import TransactWrite

from billing.core import clock
from billing.core.pii import scrub
from billing.customers.records import find_by_processor_id
from billing.data import ledger
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.tables import SubscriptionRow, connection
from billing.data.transactions import retry_on_conflict
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.fields import reference
from billing.processor.mapping import raise_for_processor
from billing.subscriptions import columns, summary


def without_expansions(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as a row keeps it: expanded objects (the latest invoice,
    the pending SetupIntent, with their client secrets) back to their ids."""
    clean = copy.deepcopy(obj)
    for name in ("latest_invoice", "pending_setup_intent"):
        if isinstance(clean.get(name), dict):
            clean[name] = clean[name].get("id")
    return clean


def record(obj: dict[str, Any], *, started: int, actor: Actor, type_: str,
           data: dict[str, Any] | None = None) -> SubscriptionRow:
    subscription_id = str(obj["id"])
    fetched: dict[str, dict[str, Any]] = {}

    def canonical() -> dict[str, Any]:
        if "now" not in fetched:
            try:
                fetched["now"] = without_expansions(get_processor().retrieve_object("subscription", subscription_id))
            except ProcessorFailure as failure:
                raise_for_processor(failure)
        return fetched["now"]

    def attempt() -> SubscriptionRow:
        row = find(SubscriptionRow, subscription_id)
        current = without_expansions(obj)
        if row is not None and row.last_stripe_event_ts is not None and row.last_stripe_event_ts >= started:
            current = canonical()
        now = clock.iso()
        if row is None:
            row = SubscriptionRow(pk=subscription_id, inserted_at=now)
        processor_customer = reference(current.get("customer"))
        customer = find_by_processor_id(processor_customer) if processor_customer else None
        if customer is not None:
            row.customer_id, row.processor_customer_id = customer.pk, processor_customer
        before = dict(row.data or {})
        for name, value in columns.subscription(current, type_, row).items():
            setattr(row, name, value)
        row.data = scrub(current)
        row.updated_at = now
        row.last_stripe_event_ts = max(int(row.last_stripe_event_ts or 0), started)
        changed = sorted(k for k in set(before) | set(row.data) if before.get(k) != row.data.get(k))
        subject = ("customer", row.customer_id) if row.customer_id else ("subscription", subscription_id)
        with TransactWrite(connection=connection()) as tw:
            tw.save(row)  # a new row on condition it still does not exist; else on its lock_version
            summary.add_subscription(tw, row)
            ledger.append(tw, type_=type_, subject_type=subject[0], subject_id=subject[1], actor=actor,
                          data={"subscription_id": subscription_id, "status": row.status,
                                "changed_fields": changed, **(data or {})})
        return row

    return retry_on_conflict(attempt, subject=f"subscription {subscription_id}")
