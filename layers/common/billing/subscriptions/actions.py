"""Subscription actions on the user path: create, swap price or quantity,
cancel (now or at period end), resume (undo a cancel at period end), pause
and unpause collection.

Each checks what the projection says first (an action its status forbids
is 409 `invalid_state` naming the status, before Stripe is called), then
calls Stripe with an idempotency key derived from the operation and the
request's Idempotency-Key, then records Stripe's answer: the row and its
ledger row in one transaction under the watermark (recording.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

from billing.core import metadata as metadata_rules
from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.core.idempotency import processor_key
from billing.customers import records as customers
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.tables import CustomerRow, PaymentMethodRow, PromotionCodeRow, SubscriptionRow
from billing.processor import get_processor
from billing.processor.base import JSONDict
from billing.processor.errors import ProcessorFailure
from billing.processor.fields import mapping, reference
from billing.processor.mapping import raise_for_processor
from billing.promotions import listing as promotions
from billing.subscriptions.listing import subscription_to_api
from billing.subscriptions.recording import record

PAYMENT_BEHAVIORS: Final = ("default_incomplete", "allow_incomplete", "error_if_incomplete", "pending_if_incomplete")
PRORATION_BEHAVIORS: Final = ("create_prorations", "always_invoice", "none")
PAUSE_BEHAVIORS: Final = ("void", "mark_uncollectible", "keep_as_draft")
ENDED: Final = frozenset({"canceled", "incomplete_expired"})
# Where each action is allowed (the others are checked on the row's flags).
CHANGEABLE: Final = frozenset({"trialing", "active", "past_due", "unpaid"})
MAX_TRIAL_SECONDS: Final = 730 * 86400
# What Stripe is asked to expand on create: the secrets a client confirms with.
CONFIRMATION_EXPANSIONS: Final = ["latest_invoice.confirmation_secret", "pending_setup_intent"]


@dataclass(frozen=True)
class NewSubscription:
    items: list[tuple[str, int]]
    trial_period_days: int | None = None
    trial_end: int | None = None
    promotion_code: str | None = None
    default_payment_method: str | None = None
    payment_behavior: str = "default_incomplete"
    metadata: dict[str, str] = field(default_factory=dict)


# -- checks ------------------------------------------------------------------------------


def live_customer(customer_id: str) -> CustomerRow:
    customer = customers.load(customer_id)
    if customer.deleted_at or not customer.processor_id:
        raise Conflict(f"customer {customer_id} is deleted or has no processor customer", {"customer_id": customer_id})
    return customer


def load(subscription_id: str) -> SubscriptionRow:
    row = find(SubscriptionRow, subscription_id)
    if row is None:
        raise NotFound(f"subscription {subscription_id} not found")
    return row


def invalid_state(row: SubscriptionRow, action: str, why: str | None = None) -> Conflict:
    return Conflict(f"subscription {row.pk} is {row.status}{why or ''}: it cannot {action}",
                    {"subscription_id": row.pk, "status": row.status, "action": action}, type_="invalid_state")


def _promotion_code(raw: str, customer_id: str) -> str:
    """A promotion code (its id, promo_..., or the code a customer types) as
    Stripe's promotion code id, if it can be redeemed by this customer."""
    row = find(PromotionCodeRow, raw) if raw.startswith("promo_") else None
    if row is None:
        found = [r for r in PromotionCodeRow.by_code.query(PromotionCodeRow.code_key_for(raw)) if r.active]
        row = found[0] if found else None
    verdict = promotions.check(row.code or raw if row is not None else raw, customer_id)
    if row is None or not verdict["valid"]:
        raise ValidationFailed(f"promotion code cannot be redeemed: {verdict['reason'] or 'not_found'}",
                               {"promotion_code": verdict["reason"] or "not_found"})
    return row.pk


def _attached(customer_id: str, payment_method_id: str) -> None:
    pm = find(PaymentMethodRow, payment_method_id)
    if pm is None or pm.customer_id != customer_id or pm.detached_at:
        raise Conflict(f"payment method {payment_method_id} is not attached to customer {customer_id}",
                       {"payment_method_id": payment_method_id}, type_="not_attached")


def _validate(req: NewSubscription) -> None:
    problems: dict[str, str] = {}
    if req.trial_period_days is not None and req.trial_end is not None:
        problems["trial_end"] = "give trial_period_days or trial_end, not both"
    elif req.trial_end is not None and not time.time() < req.trial_end <= time.time() + MAX_TRIAL_SECONDS:
        problems["trial_end"] = "must be in the future and at most two years away"
    if req.payment_behavior not in PAYMENT_BEHAVIORS:
        problems["payment_behavior"] = f"one of {', '.join(PAYMENT_BEHAVIORS)}"
    if problems:
        raise ValidationFailed.of_fields("invalid subscription", problems)
    metadata_rules.validate(req.metadata)


def _call(operation: str, *args: Any, **kwargs: Any) -> JSONDict:
    try:
        result: JSONDict = getattr(get_processor(), operation)(*args, **kwargs)
    except ProcessorFailure as failure:
        raise_for_processor(failure)
    return result


# -- create ------------------------------------------------------------------------------


def client_secret(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """(secret, "payment_intent" | "setup_intent") when the client must confirm, else (None, None)."""
    invoice = obj.get("latest_invoice")
    secret = mapping(mapping(invoice).get("confirmation_secret")).get("client_secret")
    if obj.get("status") == "incomplete" and isinstance(secret, str):
        return secret, "payment_intent"
    setup = mapping(obj.get("pending_setup_intent")).get("client_secret")
    if isinstance(setup, str):
        return setup, "setup_intent"
    return None, None


def create(customer_id: str, req: NewSubscription, actor: Actor) -> dict[str, Any]:
    _validate(req)
    customer = live_customer(customer_id)
    if req.default_payment_method is not None:
        _attached(customer_id, req.default_payment_method)
    params: JSONDict = {"customer": customer.processor_id, "payment_behavior": req.payment_behavior,
                        "items": [{"price": price, "quantity": quantity} for price, quantity in req.items],
                        "expand": list(CONFIRMATION_EXPANSIONS)}
    if req.trial_period_days is not None:
        params["trial_period_days"] = req.trial_period_days
    if req.trial_end is not None:
        params["trial_end"] = req.trial_end
    if req.default_payment_method is not None:
        params["default_payment_method"] = req.default_payment_method
    if req.promotion_code is not None:
        params["discounts"] = [{"promotion_code": _promotion_code(req.promotion_code, customer_id)}]
    if req.metadata:
        params["metadata"] = dict(req.metadata)
    started = int(time.time())
    obj = _call("create_subscription", idempotency_key=processor_key("subscription-create", customer_id),
                params=params)
    row = record(obj, started=started, actor=actor, type_="subscription.created")
    secret, kind = client_secret(obj)
    return {**subscription_to_api(row), "client_secret": secret, "client_secret_type": kind}


# -- changes -----------------------------------------------------------------------------


def _change(row: SubscriptionRow, operation: str, params: JSONDict, actor: Actor, type_: str,
            data: dict[str, Any] | None = None) -> dict[str, Any]:
    started = int(time.time())
    key = processor_key(f"subscription-{type_.split('.')[-1]}", row.pk)
    obj = _call(operation, row.pk, idempotency_key=key, params=params)
    return subscription_to_api(record(obj, started=started, actor=actor, type_=type_, data=data))


def swap(subscription_id: str, *, price: str | None, quantity: int | None, item: str | None,
         proration_behavior: str, actor: Actor) -> dict[str, Any]:
    if proration_behavior not in PRORATION_BEHAVIORS:
        raise ValidationFailed(f"proration_behavior must be one of {', '.join(PRORATION_BEHAVIORS)}",
                               {"proration_behavior": "invalid"})
    if price is None and quantity is None:
        raise ValidationFailed("give a price, a quantity or both", {"price": "missing", "quantity": "missing"})
    row = load(subscription_id)
    if row.status not in CHANGEABLE:
        raise invalid_state(row, "swap")
    items = [i for i in (mapping((row.data or {}).get("items")).get("data") or []) if isinstance(i, dict)]
    chosen = [i for i in items if i.get("id") == item] if item is not None else items
    if len(chosen) != 1 and item is None:
        raise ValidationFailed("name the subscription item to change (item)", {"item": "required"})
    if len(chosen) != 1:
        raise ValidationFailed(f"subscription {row.pk} has no item {item}", {"item": "not_found"})
    change: JSONDict = {"id": chosen[0]["id"]}
    if price is not None:
        change["price"] = price
    if quantity is not None:
        change["quantity"] = quantity
    old = {"price_id": reference(chosen[0].get("price")), "quantity": chosen[0].get("quantity")}
    return _change(row, "update_subscription", {"items": [change], "proration_behavior": proration_behavior},
                   actor, "subscription.swapped", {"from": old, "proration_behavior": proration_behavior})


def cancel(subscription_id: str, *, at_period_end: bool, actor: Actor) -> dict[str, Any]:
    row = load(subscription_id)
    if row.status in ENDED:
        raise invalid_state(row, "be canceled")
    if at_period_end:
        if row.status not in CHANGEABLE:
            raise invalid_state(row, "cancel at period end")
        if row.cancel_at_period_end:
            return subscription_to_api(row)  # already set to cancel at period end
        return _change(row, "update_subscription", {"cancel_at_period_end": True}, actor,
                       "subscription.cancel_scheduled")
    return _change(row, "cancel_subscription", {}, actor, "subscription.canceled")


def resume(subscription_id: str, *, actor: Actor) -> dict[str, Any]:
    row = load(subscription_id)
    if row.status in ENDED or not row.cancel_at_period_end:
        raise invalid_state(row, "resume", "" if row.status in ENDED else " and not set to cancel at period end")
    return _change(row, "update_subscription", {"cancel_at_period_end": False}, actor, "subscription.resumed")


def pause(subscription_id: str, *, behavior: str, resumes_at: int | None, actor: Actor) -> dict[str, Any]:
    if behavior not in PAUSE_BEHAVIORS:
        raise ValidationFailed(f"behavior must be one of {', '.join(PAUSE_BEHAVIORS)}", {"behavior": "invalid"})
    if resumes_at is not None and resumes_at <= time.time():
        raise ValidationFailed("resumes_at must be in the future", {"resumes_at": "in_the_past"})
    row = load(subscription_id)
    if row.status not in CHANGEABLE:
        raise invalid_state(row, "pause collection")
    if row.pause_behavior is not None:
        raise invalid_state(row, "pause collection", " with collection paused already")
    pause_collection: JSONDict = {"behavior": behavior}
    if resumes_at is not None:
        pause_collection["resumes_at"] = resumes_at
    return _change(row, "update_subscription", {"pause_collection": pause_collection}, actor,
                   "subscription.paused", {"behavior": behavior})


def unpause(subscription_id: str, *, actor: Actor) -> dict[str, Any]:
    row = load(subscription_id)
    if row.status in ENDED or row.pause_behavior is None:
        raise invalid_state(row, "unpause collection", "" if row.status in ENDED else " with collection not paused")
    return _change(row, "update_subscription", {"pause_collection": ""}, actor, "subscription.unpaused")

