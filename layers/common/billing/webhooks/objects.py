"""Thin projections of processor objects, one table-driven path for all of
them: payment methods, subscriptions, invoices, charges and entitlement
summaries (linked to the local customer by the object's processor customer
id), coupons, promotion codes, prices and products (no customer).

A Spec names the row class, the columns taken from the object (the fields
a user filters or sorts on; the whole object, scrubbed, goes to `data`)
and whether the object hangs off a customer; optionally what else the
change writes in the same transaction (`also`: the owner's billing
summary) and the field that keys the object when it has no id of its own.
An object whose customer is not in the projection yet is deferred; an
object without a customer (a guest charge, a detached payment method)
keeps whatever link its row had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pynamodb.transactions import TransactWrite

from billing.catalog import columns as catalog_columns
from billing.core import clock
from billing.core.errors import NotFound
from billing.core.pii import scrub
from billing.customers.records import find_by_processor_id, load
from billing.data import ledger
from billing.data.billing_tables import EntitlementRow, PriceRow, ProductRow
from billing.data.reads import find
from billing.data.tables import (
    ChargeRow,
    CouponRow,
    InvoiceRow,
    PaymentMethodRow,
    PromotionCodeRow,
    SubscriptionRow,
)
from billing.data.transactions import retry_on_conflict
from billing.processor.fields import integer, mapping, reference, text
from billing.promotions import columns as promotion_columns
from billing.promotions.guards import add_code_guard
from billing.subscriptions import charges, summary
from billing.subscriptions import columns as subscription_columns
from billing.webhooks import store
from billing.webhooks.context import Context, Deferred, Handler, order

Row = (PaymentMethodRow | SubscriptionRow | InvoiceRow | ChargeRow | CouponRow | PromotionCodeRow | PriceRow
       | ProductRow | EntitlementRow)

# -- columns per object type ---------------------------------------------------------------

Columns = Callable[[dict[str, Any], str, Any], dict[str, Any]]  # (object, event type, row) -> attributes


def _payment_method(obj: dict[str, Any], event_type: str, row: Any) -> dict[str, Any]:
    card = mapping(obj.get("card"))
    attached = reference(obj.get("customer")) is not None
    return {
        "type": text(obj.get("type")), "brand": text(card.get("brand")), "last4": text(card.get("last4")),
        "exp_month": integer(card.get("exp_month")), "exp_year": integer(card.get("exp_year")),
        # Kept for de-duplication on the user path; never returned, never logged.
        "fingerprint": text(card.get("fingerprint")),
        "status": "attached" if attached else "detached",
        "detached_at": None if attached else (row.detached_at or clock.iso()),
        "sort_key": row.sort_key or f"{clock.iso()}#{obj['id']}",
    }


@dataclass(frozen=True)
class Spec:
    object_type: str  # Stripe's object name, for retrieve_object
    model: type[Row]
    columns: Columns
    events: tuple[str, ...]
    linked: bool = False  # hangs off a customer through object.customer
    # What else the change writes, in the same transaction (after the row's own save).
    also: Callable[[TransactWrite, Any], None] | None = None
    id_field: str = "id"  # the object's key (an entitlement summary is its customer's)
    # Whether the object as the event carries it is all of it; if not, the
    # processor's whole object is fetched (an entitlement summary's first page).
    whole: Callable[[dict[str, Any]], bool] | None = None


SPECS = (
    Spec("payment_method", PaymentMethodRow, _payment_method, linked=True, events=(
        "payment_method.attached", "payment_method.detached", "payment_method.updated",
        "payment_method.automatically_updated")),
    Spec("subscription", SubscriptionRow, subscription_columns.subscription, linked=True,
         also=summary.add_subscription, events=tuple(
        f"customer.subscription.{verb}"
        for verb in ("created", "updated", "deleted", "paused", "resumed", "trial_will_end"))),
    Spec("invoice", InvoiceRow, subscription_columns.invoice, linked=True, also=charges.link_charges, events=tuple(
        f"invoice.{verb}"
        for verb in ("created", "updated", "finalized", "paid", "payment_failed", "voided", "marked_uncollectible"))),
    Spec("charge", ChargeRow, subscription_columns.charge, linked=True, events=tuple(
        f"charge.{verb}" for verb in ("succeeded", "failed", "refunded", "updated"))),
    Spec("entitlements.active_entitlement_summary", EntitlementRow, subscription_columns.entitlements, linked=True,
         also=summary.add_entitlements, id_field="customer", whole=subscription_columns.entitlements_whole,
         events=("entitlements.active_entitlement_summary.updated",)),
    Spec("price", PriceRow, catalog_columns.price, events=("price.created", "price.updated", "price.deleted")),
    Spec("product", ProductRow, catalog_columns.product,
         events=("product.created", "product.updated", "product.deleted")),
    Spec("coupon", CouponRow, promotion_columns.coupon, events=("coupon.created", "coupon.updated", "coupon.deleted")),
    Spec("promotion_code", PromotionCodeRow, promotion_columns.promotion_code,
         events=("promotion_code.created", "promotion_code.updated")),
)


# -- applying one ------------------------------------------------------------------------


def _link(row: Any, obj: dict[str, Any]) -> None:
    """Point the row at the local customer of object.customer, or defer."""
    processor_customer = reference(obj.get("customer"))
    if processor_customer is None:
        return  # no customer now: keep the link the row had
    customer = find_by_processor_id(processor_customer)
    if customer is None:
        raise Deferred("customer", processor_customer)
    row.customer_id = customer.pk
    row.processor_customer_id = processor_customer


def _clear_default(tw: TransactWrite, row: Any, was_attached: bool) -> bool:
    """A payment method leaving its customer takes the customer's default with it."""
    if not (isinstance(row, PaymentMethodRow) and was_attached and row.status == "detached" and row.customer_id):
        return False
    try:
        customer = load(row.customer_id)
    except NotFound:
        return False
    if customer.default_payment_method_id != row.pk:
        return False
    customer.default_payment_method_id = None
    customer.updated_at = clock.iso()
    tw.save(customer)  # conditional on its lock_version: a race re-runs the whole apply
    return True


def _guard_code(tw: TransactWrite, row: Any, previous_code_key: str | None) -> None:
    """A promotion code claims its code's guard while active and releases it
    once not, as the user path does (billing.promotions.codes), so whichever path
    writes first holds it for that processor id. Never fails on a claim
    another code holds: the processor's state is applied regardless."""
    if isinstance(row, PromotionCodeRow):
        add_code_guard(tw, row, previous_code_key)


def apply(ctx: Context, spec: Spec, fetched: dict[str, Any] | None = None, *,
          stale: Callable[[], str] | None = None) -> str:
    """Apply the event's object (or `fetched`, the processor's current object
    the event points at) to its projection row. `stale` finishes an event
    older than the row its own way (one that records a fact of its own)."""
    obj = fetched if fetched is not None else ctx.object(spec.id_field)
    object_id = str(obj[spec.id_field])

    def attempt() -> str:
        current = obj
        row: Any = find(spec.model, object_id)
        if row is not None:
            position = order(ctx.created, row.last_stripe_event_ts)
            if position < 0:
                return stale() if stale is not None else ctx.finish(store.STALE)
            if position == 0:
                if ctx.already_applied(row.last_stripe_event_id):
                    return ctx.finish(store.PROCESSED)
                current = ctx.refetch(spec.object_type, object_id, fallback=obj)
        if spec.whole is not None and not spec.whole(current):
            # The re-fetch follows the list to its end (at least as new as the event).
            current = ctx.refetch(spec.object_type, object_id, fallback=current)
        now = clock.iso()
        if row is None:
            row = spec.model(pk=object_id, inserted_at=now)
        was_attached = getattr(row, "status", None) == "attached"
        previous_code_key = getattr(row, "code_key", None)
        if spec.linked:
            _link(row, current)
        before = dict(row.data or {})
        before_event = row.last_stripe_event_id
        for name, value in spec.columns(current, ctx.type, row).items():
            setattr(row, name, value)
        row.data = scrub(current)
        row.updated_at = now
        row.last_stripe_event_ts, row.last_stripe_event_id = ctx.created, ctx.id
        changed = sorted(k for k in set(before) | set(row.data) if before.get(k) != row.data.get(k))
        if not changed and row.lock_version is not None and ctx.skip_unchanged(before_event):
            return ctx.finish(store.PROCESSED)  # a replay of what is there: nothing to write
        linked_to = getattr(row, "customer_id", None)
        subject = ("customer", linked_to) if linked_to else (spec.object_type, object_id)
        with ctx.transaction() as tw:
            tw.save(row)  # a new row: on condition it still does not exist; else on its lock_version
            cleared = _clear_default(tw, row, was_attached)
            _guard_code(tw, row, previous_code_key)
            if spec.also is not None:
                spec.also(tw, row)
            ledger.append(tw, type_=ctx.type, subject_type=subject[0], subject_id=subject[1], actor=ctx.actor,
                          data={"stripe_event_id": ctx.id, "object_type": spec.object_type,
                                "object_id": object_id, "changed_fields": changed,
                                **({"default_cleared": True} if cleared else {})})
        return store.PROCESSED

    return retry_on_conflict(attempt, subject=f"{spec.object_type} {object_id}")




SPEC_BY_TYPE = {spec.object_type: spec for spec in SPECS}


def handlers() -> dict[str, Handler]:
    table: dict[str, Handler] = {}
    for spec in SPECS:
        for event_type in spec.events:
            table[event_type] = partial(apply, spec=spec)
    return table
