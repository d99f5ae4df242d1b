"""Stripe Checkout and the customer portal in the Fake: sessions with the
URLs Stripe gives (checkout.stripe.com, billing.stripe.com), checked as
Stripe checks their parameters. What the customer then does on Stripe's
page is played by `complete_checkout_session` (processor.py; the local
route POST /_local/fake-stripe/checkout-sessions/{id}/complete)."""

from __future__ import annotations

from typing import Any, Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.core import shape
from devstack.fake_stripe.test_clock import ClockMixin

CHECKOUT_MODES: Final = ("payment", "setup", "subscription")
CHECKOUT_SECONDS: Final = 24 * 3600
_CHECKOUT_FIELDS: Final = frozenset({
    "customer", "mode", "line_items", "success_url", "cancel_url", "allow_promotion_codes", "client_reference_id",
    "metadata", "subscription_data", "payment_method_types", "currency", "discounts", "expand", "ui_mode",
    "customer_update", "locale",
})
_PORTAL_FIELDS: Final = frozenset({"customer", "return_url", "flow_data", "configuration", "locale", "on_behalf_of"})
PORTAL_FLOWS: Final = ("payment_method_update", "subscription_cancel", "subscription_update",
                       "subscription_update_confirm")


class SessionsMixin(ClockMixin):
    def _init_state(self) -> None:
        super()._init_state()
        self._checkout_sessions: dict[str, JSONDict] = {}
        self._checkout_items: dict[str, list[tuple[JSONDict, int]]] = {}
        self._portal_sessions: dict[str, JSONDict] = {}
        self._checkout_data: dict[str, JSONDict] = {}  # session id -> its subscription_data

    def create_checkout_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._run("create_checkout_session", {"params": params}, lambda: self._new_checkout(params),
                         idempotency_key=idempotency_key)

    def create_portal_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._run("create_portal_session", {"params": params}, lambda: self._new_portal(params),
                         idempotency_key=idempotency_key)

    def _customer_param(self, params: JSONDict) -> str:
        customer_id = params.get("customer")
        if not isinstance(customer_id, str) or customer_id not in self._customers:
            raise self._error(400, f"No such customer: '{str(customer_id)[:64]}'", code="resource_missing",
                              param="customer")
        return customer_id

    def _url(self, params: JSONDict, name: str, *, required: bool) -> str | None:
        value = params.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")) or len(value) > 5000:
            raise self._error(400, f"Not a valid URL: {name}", code="url_invalid", param=name)
        return value

    def _new_checkout(self, params: JSONDict) -> JSONDict:
        self._check_known(params, _CHECKOUT_FIELDS)
        customer_id = self._customer_param(params)
        mode = params.get("mode")
        if mode not in CHECKOUT_MODES:
            raise self._error(400, f"Invalid mode: must be one of {', '.join(CHECKOUT_MODES)}", param="mode")
        if params.get("allow_promotion_codes") and params.get("discounts"):
            raise self._error(400, "You may only specify one of these parameters: allow_promotion_codes, discounts.",
                              param="allow_promotion_codes")
        items = self._checkout_line_items(params.get("line_items"), mode)
        now = self._billing_now()
        session = shape("checkout.session")
        session_id = self._next_id("cs_test_fake")
        amount = sum(p["unit_amount"] * q for p, q in items)
        trial = (params.get("subscription_data") or {}).get("trial_period_days")
        session.update(
            id=session_id, url=f"https://checkout.stripe.com/c/pay/{session_id}", created=now,
            expires_at=now + CHECKOUT_SECONDS, status="open", mode=mode, customer=customer_id,
            payment_status="no_payment_required" if mode == "setup" else "unpaid",
            success_url=self._url(params, "success_url", required=params.get("ui_mode") != "embedded"),
            cancel_url=self._url(params, "cancel_url", required=False),
            allow_promotion_codes=params.get("allow_promotion_codes"),
            client_reference_id=params.get("client_reference_id"), metadata=dict(params.get("metadata") or {}),
            currency=items[0][0]["currency"] if items else params.get("currency"),
            amount_subtotal=amount if items else None, amount_total=(0 if trial else amount) if items else None,
            subscription=None, setup_intent=None, payment_intent=None, invoice=None, customer_details=None,
            customer_email=None, client_secret=None, collected_information=None, currency_conversion=None,
            shipping_cost=None, total_details=None, discounts=None, after_expiration=None, payment_link=None,
            recovered_from=None, shipping_address_collection=None, custom_text=None, custom_fields=[],
            ui_mode=params.get("ui_mode") or "hosted", locale=params.get("locale"),
            payment_method_types=list(params.get("payment_method_types") or ["card"]),
        )
        self._checkout_sessions[session_id] = session
        self._checkout_items[session_id] = items
        self._checkout_data[session_id] = {"trial_period_days": trial,
                                           "metadata": (params.get("subscription_data") or {}).get("metadata")}
        return session

    def _checkout_line_items(self, raw: Any, mode: Any) -> list[tuple[JSONDict, int]]:
        if mode == "setup":
            if raw:
                raise self._error(400, "You cannot pass `line_items` in `setup` mode.", param="line_items")
            return []
        if not isinstance(raw, list) or not raw:
            raise self._error(400, f"`line_items` is required in `{mode}` mode.", code="parameter_missing",
                              param="line_items")
        items = []
        for n, spec in enumerate(raw):
            self._check_known(spec, {"price", "quantity", "adjustable_quantity"}, prefix=f"line_items[{n}]")
            price = self._price(spec.get("price"), f"line_items[{n}][price]")
            if (mode == "subscription") != bool(price.get("recurring")):
                raise self._error(400, f"In `{mode}` mode every price must be "
                                  + ("recurring." if mode == "subscription" else "one-time."),
                                  param=f"line_items[{n}][price]")
            items.append((price, self._quantity(spec.get("quantity", 1), f"line_items[{n}][quantity]")))
        return items

    def _new_portal(self, params: JSONDict) -> JSONDict:
        self._check_known(params, _PORTAL_FIELDS)
        customer_id = self._customer_param(params)
        return_url = self._url(params, "return_url", required=False)
        flow = self._portal_flow(params.get("flow_data"), customer_id)
        session_id = self._next_id("bps_fake")
        session: JSONDict = {
            "id": session_id, "object": "billing_portal.session", "configuration": "bpc_fake_default",
            "created": self._billing_now(), "customer": customer_id, "customer_account": None, "flow": flow,
            "livemode": False, "locale": params.get("locale"), "on_behalf_of": None, "return_url": return_url,
            "url": f"https://billing.stripe.com/p/session/test_{session_id}",
        }
        self._portal_sessions[session_id] = session
        return session

    def _portal_flow(self, raw: Any, customer_id: str) -> JSONDict | None:
        if raw is None:
            return None
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in PORTAL_FLOWS:
            raise self._error(400, f"Invalid flow_data[type]: must be one of {', '.join(PORTAL_FLOWS)}",
                              param="flow_data[type]")
        flow: JSONDict = {"type": kind, "after_completion": {"type": "portal_homepage", "hosted_confirmation": None,
                                                             "redirect": None},
                          "subscription_cancel": None, "subscription_update": None,
                          "subscription_update_confirm": None}
        if kind != "payment_method_update":
            detail = raw.get(kind) if isinstance(raw.get(kind), dict) else {}
            sub = self._subscriptions.get(str(detail.get("subscription")))
            if sub is None or sub["customer"] != customer_id:
                raise self._error(400, f"No such subscription: '{str(detail.get('subscription'))[:64]}'",
                                  code="resource_missing", param=f"flow_data[{kind}][subscription]")
            flow[kind] = {"subscription": sub["id"], "retention": None, "discounts": None, "items": None}
        return flow
