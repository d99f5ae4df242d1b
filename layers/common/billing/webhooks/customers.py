"""customer.created|updated|deleted into the customers projection.

The processor's object is canonical for `data` (PII keys dropped, as on the
user path), the default payment method and deletion. The other columns
(email, name, currency, metadata...) are the host application's own, set
through the API (PATCH is a local update): a webhook fills them only when
it creates the row, for a processor customer this deployment has not
recorded. That row is owned by the customer's metadata owner_type/owner_id
when present, else unowned, and claims the same guards as the user path
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
from billing.customers.keys import RESERVED_METADATA, CustomerAttrs
from billing.customers.records import find_by_processor_id
from billing.data import ledger
from billing.data.tables import CustomerRow
from billing.data.transactions import retry_on_conflict
from billing.processor.fields import reference, text
from billing.webhooks import store
from billing.webhooks.context import Context, Deferred, order

EVENT_TYPES = ("customer.created", "customer.updated", "customer.deleted")


def attrs_from(obj: dict[str, Any]) -> CustomerAttrs:
    """The columns of a row created from the processor's object (no checks: canonical)."""
    raw_meta = obj.get("metadata")
    meta = {k: v for k, v in (raw_meta.items() if isinstance(raw_meta, dict) else ())
            if isinstance(k, str) and isinstance(v, str) and k not in RESERVED_METADATA}
    locales = obj.get("preferred_locales")
    locale = locales[0] if isinstance(locales, list) and locales and isinstance(locales[0], str) else None
    return CustomerAttrs(email=text(obj.get("email")), name=text(obj.get("name")),
                                   currency=text(obj.get("currency")), tax_exempt=text(obj.get("tax_exempt")),
                                   preferred_locale=locale, metadata=meta)


def default_payment_method(obj: dict[str, Any]) -> str | None:
    settings = obj.get("invoice_settings")
    return reference(settings.get("default_payment_method")) if isinstance(settings, dict) else None


def _changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def _create(ctx: Context, obj: dict[str, Any]) -> None:
    with ctx.transaction() as tw:
        add_created_from_processor(tw, obj, attrs_from(obj), ctx.actor, watermark=(ctx.created, ctx.id),
                                             default_payment_method_id=default_payment_method(obj))


def _update(ctx: Context, row: CustomerRow, obj: dict[str, Any]) -> bool:
    """Apply the object; False when it changes nothing (a replay of what is there)."""
    deleting = ctx.type == "customer.deleted" or obj.get("deleted") is True
    changed: list[str] = []
    if not obj.get("deleted"):  # a deleted customer re-fetched is a stub: keep the last state
        clean = scrub(obj)
        changed += [f"data.{k}" for k in _changed(row.data or {}, clean)]
        row.data = clean
        default = default_payment_method(obj)
        if default != row.default_payment_method_id:
            row.default_payment_method_id = default
            changed.append("default_payment_method_id")
    release = deleting and not row.deleted_at
    if not changed and not release and row.last_stripe_event_id == ctx.id:
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
        ledger.append(tw, type_=ctx.type, subject_type="customer", subject_id=row.pk, actor=ctx.actor,
                      data={"stripe_event_id": ctx.id, "processor_id": row.processor_id, "changed_fields": changed})
    return True


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
            if not _update(ctx, row, current):
                return ctx.finish(store.PROCESSED)
        store.redrive_waiting(processor_id)
        return store.PROCESSED

    return retry_on_conflict(attempt, subject=f"customer {processor_id}")
