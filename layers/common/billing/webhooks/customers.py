"""customer.created|updated|deleted into the customers projection.

The processor's object is canonical for `data` (PII keys dropped, as on the
user path), the default payment method, deletion and the columns Stripe
holds (STRIPE_COLUMNS: email, name, currency, tax_exempt, preferred_locale
from preferred_locales[0], metadata without the reserved owner keys), so a
change made in the Stripe dashboard or the customer portal reaches the row.
What only this deployment holds stays: preferred_timezone and the owner.
Stripe's currency is null until its first invoice or subscription sets it;
until then the row keeps the currency the host application chose. The
ledger row names the changed fields, never their values (personal data).

A webhook for a processor customer this deployment has not recorded
creates its row, owned by the customer's metadata owner_type/owner_id when
present, else unowned, claiming the same guards as the user path
(billing.customers.create.add_created_from_processor).

customer.created and customer.updated both create an unknown customer:
updated carries the whole object, so a lost or late created changes
nothing. customer.deleted of an unknown customer is deferred: its created
may still be on its way, and creating a row only to delete it would hide
that. Every applied customer re-drives the events deferred for want of it.
"""

from __future__ import annotations

from typing import Any

from billing.core import clock
from billing.core.pii import scrub
from billing.customers.create import add_created_from_processor, add_owner_release
from billing.customers.records import find_by_processor_id
from billing.customers.stripe_held import (
    STRIPE_COLUMNS,
    apply_columns,
    attrs_from,
    default_payment_method,
    set_from_answer,
)
from billing.data import ledger
from billing.data.tables import CustomerRow
from billing.data.transactions import retry_on_conflict
from billing.webhooks import store
from billing.webhooks.context import Context, Deferred, order

EVENT_TYPES = ("customer.created", "customer.updated", "customer.deleted")
__all__ = ["EVENT_TYPES", "STRIPE_COLUMNS", "apply", "attrs_from", "default_payment_method"]


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _create(ctx: Context, obj: dict[str, Any]) -> None:
    with ctx.transaction() as tw:
        add_created_from_processor(tw, obj, attrs_from(obj), ctx.actor, watermark=(ctx.created, ctx.id),
                                             default_payment_method_id=default_payment_method(obj))


def _update(ctx: Context, row: CustomerRow, obj: dict[str, Any], *, same_second: bool = False) -> bool:
    """Apply the object; False when it changes nothing and need not be written:
    a replay of what is there, or, in the second of an API call's watermark,
    Stripe's current object (re-fetched) that the row already shows. The
    latter is what the customer.created of a customer the API created, and
    the customer.updated of a PATCH, meet (the API wrote Stripe's answer with
    its time as the watermark), so they settle without a write: no second
    ledger row (no second customer.created on the bus), no new lock_version
    for the caller's ETag."""
    deleting = ctx.type == "customer.deleted" or obj.get("deleted") is True
    changed: list[str] = []
    if not obj.get("deleted"):  # a deleted customer re-fetched is a stub: keep the last state
        clean = scrub(obj)
        changed += [f"data.{k}" for k in _changed(row.data or {}, clean)]
        row.data = clean
        changed += apply_columns(row, obj)
        default = default_payment_method(obj)
        if default != row.default_payment_method_id:
            row.default_payment_method_id = default
            changed.append("default_payment_method_id")
    release = deleting and not row.deleted_at
    settled_by_answer = same_second and set_from_answer(row.last_stripe_event_id)
    if not changed and not release and (settled_by_answer or ctx.skip_unchanged(row.last_stripe_event_id)):
        return False
    row.updated_at = clock.iso()
    if release:
        row.deleted_at = row.updated_at
        changed.append("deleted_at")
    row.last_stripe_event_ts, row.last_stripe_event_id = ctx.created, ctx.id
    with ctx.transaction() as tw:
        tw.save(row)  # conditional on the lock_version read
        if release:
            add_owner_release(tw, row)
        ledger.append(tw, type_=_ledger_type(ctx.type), subject_type="customer", subject_id=row.pk, actor=ctx.actor,
                      data={"stripe_event_id": ctx.id, "processor_id": row.processor_id, "changed_fields": changed})
    return True


def _ledger_type(event_type: str) -> str:
    """What happened to an existing row. Its creation is recorded once, by
    whoever made it: a customer.created that finds the row (the API made it,
    and the event is re-fetched in the second of its watermark, or comes
    from a clock ahead of ours) updates it."""
    return "customer.updated" if event_type == "customer.created" else event_type


def apply(ctx: Context) -> str:
    obj = ctx.object()
    processor_id = str(obj["id"])

    def attempt() -> str:
        row = find_by_processor_id(processor_id)
        if row is None:
            if ctx.type == "customer.deleted" or obj.get("deleted"):
                raise Deferred("customer", processor_id)
            _create(ctx, obj)
        else:
            position = order(ctx.created, row.last_stripe_event_ts)
            if position < 0:
                return ctx.finish(store.STALE)
            current = obj
            if position == 0:
                if ctx.already_applied(row.last_stripe_event_id):
                    return ctx.finish(store.PROCESSED)
                current = ctx.refetch("customer", processor_id, fallback=obj)
            if not _update(ctx, row, current, same_second=position == 0):
                return ctx.finish(store.PROCESSED)
        store.redrive_waiting(processor_id)
        return store.PROCESSED

    return retry_on_conflict(attempt, subject=f"customer {processor_id}")
