"""Stripe Checkout and the customer portal for one customer: sessions made
on Stripe (with an idempotency key from the request's Idempotency-Key) and
handed back as their URLs. Nothing is written here: what the customer then
does on Stripe's pages comes back by webhook (checkout.session.completed,
customer.subscription.*), or at once through POST /v1/customers/{id}/sync
when the customer is redirected back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from billing.core.errors import NotFound, ValidationFailed
from billing.core.idempotency import processor_key
from billing.processor import get_processor
from billing.processor.base import JSONDict
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor
from billing.subscriptions.actions import ENDED, invalid_state, live_customer, load

MODES: Final = ("subscription", "payment", "setup")
FLOWS: Final = ("payment_method_update", "subscription_cancel", "subscription_update")


@dataclass(frozen=True)
class CheckoutRequest:
    mode: str
    success_url: str
    cancel_url: str | None = None
    items: tuple[tuple[str, int], ...] = ()
    allow_promotion_codes: bool = False
    trial_period_days: int | None = None


def _create(operation: str, key: str, params: JSONDict) -> JSONDict:
    try:
        result: JSONDict = getattr(get_processor(), operation)(idempotency_key=key, params=params)
    except ProcessorFailure as failure:
        raise_for_processor(failure)
    return result


def checkout(customer_id: str, req: CheckoutRequest) -> dict[str, Any]:
    if req.mode not in MODES:
        raise ValidationFailed(f"mode must be one of {', '.join(MODES)}", {"mode": "invalid"})
    if (req.mode == "setup") == bool(req.items):
        raise ValidationFailed("items are required in payment and subscription mode, and refused in setup mode",
                               {"items": "required" if req.mode != "setup" else "not_allowed"})
    if req.trial_period_days is not None and req.mode != "subscription":
        raise ValidationFailed("trial_period_days is for subscription mode", {"trial_period_days": "not_allowed"})
    customer = live_customer(customer_id)
    params: JSONDict = {"customer": customer.processor_id, "mode": req.mode, "success_url": req.success_url,
                        "client_reference_id": customer_id, "metadata": {"customer_id": customer_id}}
    if req.cancel_url is not None:
        params["cancel_url"] = req.cancel_url
    if req.items:
        params["line_items"] = [{"price": price, "quantity": quantity} for price, quantity in req.items]
    else:
        params["payment_method_types"] = ["card"]
    if req.allow_promotion_codes:
        params["allow_promotion_codes"] = True
    if req.mode == "subscription":
        params["subscription_data"] = {"metadata": {"customer_id": customer_id},
                                       **({"trial_period_days": req.trial_period_days}
                                          if req.trial_period_days is not None else {})}
    session = _create("create_checkout_session", processor_key("checkout-session", customer_id), params)
    return {"id": session["id"], "url": session["url"], "expires_at": session["expires_at"]}


def portal(customer_id: str, *, return_url: str | None, flow: str | None, subscription_id: str | None
           ) -> dict[str, Any]:
    if flow is not None and flow not in FLOWS:
        raise ValidationFailed(f"flow must be one of {', '.join(FLOWS)}", {"flow": "invalid"})
    if (flow in ("subscription_cancel", "subscription_update")) != (subscription_id is not None):
        raise ValidationFailed("subscription is required by the subscription_cancel and subscription_update flows, "
                               "and only by them", {"subscription": "required" if flow else "not_allowed"})
    customer = live_customer(customer_id)
    params: JSONDict = {"customer": customer.processor_id}
    if return_url is not None:
        params["return_url"] = return_url
    if flow is not None:
        params["flow_data"] = {"type": flow}
        if subscription_id is not None:
            row = load(subscription_id)
            if row.customer_id != customer_id:
                raise NotFound(f"subscription {subscription_id} not found for customer {customer_id}")
            if row.status in ENDED:
                raise invalid_state(row, flow.replace("_", " ").replace("subscription ", "be "))
            params["flow_data"][flow] = {"subscription": subscription_id}
    session = _create("create_portal_session", processor_key("portal-session", customer_id), params)
    return {"id": session["id"], "url": session["url"]}
