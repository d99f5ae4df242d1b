"""Subscriptions in the Fake, as Stripe's test mode runs them: create (items,
trials, a promotion code, a default payment method, payment_behavior),
update (swap price or quantity with a proration behaviour, cancel at period
end and undo it, pause and unpause collection) and cancel now. Each change
records the events Stripe sends (customer.subscription.created, .updated,
.deleted; the invoice and charge events of its billing; the entitlement
summary when the customer's features change). Time moves on in
test_clock.py."""

from __future__ import annotations

import calendar
import copy
from datetime import UTC, datetime
from typing import Any, Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.core import shape
from devstack.fake_stripe.entitlements import EntitlementsMixin
from devstack.fake_stripe.events import changed

_CREATE_FIELDS: Final = frozenset({
    "customer", "items", "trial_period_days", "trial_end", "default_payment_method", "payment_behavior",
    "discounts", "metadata", "expand", "proration_behavior", "collection_method", "off_session", "description",
    "payment_settings", "trial_settings", "cancel_at_period_end",
})
_UPDATE_FIELDS: Final = frozenset({
    "items", "proration_behavior", "cancel_at_period_end", "pause_collection", "default_payment_method",
    "metadata", "payment_behavior", "expand", "description", "proration_date",
})
_CANCEL_FIELDS: Final = frozenset({"invoice_now", "prorate", "cancellation_details", "expand"})
PAYMENT_BEHAVIORS: Final = ("allow_incomplete", "default_incomplete", "error_if_incomplete", "pending_if_incomplete")
PRORATION_BEHAVIORS: Final = ("create_prorations", "always_invoice", "none")
PAUSE_BEHAVIORS: Final = ("keep_as_draft", "mark_uncollectible", "void")
ENDED: Final = frozenset({"canceled", "incomplete_expired"})
MAX_TRIAL_SECONDS: Final = 730 * 86400


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    """`ts` moved on by `count` intervals, by the calendar (Jan 31 + 1 month = Feb 28/29)."""
    if interval in ("day", "week"):
        return ts + count * (86400 if interval == "day" else 7 * 86400)
    moment = datetime.fromtimestamp(ts, UTC)
    months = count * (12 if interval == "year" else 1)
    year, month = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + year, month + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


class SubscriptionsMixin(EntitlementsMixin):
    def _init_state(self) -> None:
        super()._init_state()
        self._pending_lines: dict[str, list[JSONDict]] = {}  # subscription id -> prorations for the next invoice

    # -- the Processor interface ---------------------------------------------------------

    def create_subscription(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._run("create_subscription", {"params": params},
                         lambda: self._expanded(self._create_subscription(params), params.get("expand")),
                         idempotency_key=idempotency_key)

    def update_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._run("update_subscription", {"subscription_id": subscription_id, "params": params},
                         lambda: self._expanded(self._update_subscription(subscription_id, params),
                                                params.get("expand")),
                         idempotency_key=idempotency_key)

    def cancel_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._run("cancel_subscription", {"subscription_id": subscription_id, "params": params},
                         lambda: self._cancel_subscription(subscription_id, params), idempotency_key=idempotency_key)

    def list_subscriptions(self, *, customer_id: str) -> list[JSONDict]:
        def listed() -> JSONDict:
            subs = [s for s in self._subscriptions.values() if s["customer"] == customer_id]
            return {"data": sorted(subs, key=lambda s: (s["created"], s["id"]), reverse=True)}

        return list(self._run("list_subscriptions", {"customer_id": customer_id}, listed)["data"])

    def list_payment_methods(self, *, customer_id: str) -> list[JSONDict]:
        def listed() -> JSONDict:
            return {"data": [p for p in self._payment_methods.values() if p.get("customer") == customer_id]}

        return list(self._run("list_payment_methods", {"customer_id": customer_id}, listed)["data"])

    # -- create --------------------------------------------------------------------------

    def _create_subscription(self, params: JSONDict) -> JSONDict:
        self._check_known(params, _CREATE_FIELDS)
        customer_id = params.get("customer")
        customer = self._customers.get(customer_id) if isinstance(customer_id, str) else None
        if customer is None:
            raise self._error(400, f"No such customer: '{str(customer_id)[:64]}'", code="resource_missing",
                              param="customer")
        wanted = self._requested_items(params.get("items"))
        behavior = params.get("payment_behavior", "allow_incomplete")
        if behavior not in PAYMENT_BEHAVIORS:
            raise self._error(400, f"Invalid payment_behavior: must be one of {', '.join(PAYMENT_BEHAVIORS)}",
                              param="payment_behavior")
        default_pm = self._attached(params.get("default_payment_method"), str(customer_id), "default_payment_method")
        collect_with = default_pm or (customer.get("invoice_settings") or {}).get("default_payment_method")
        now = self._billing_now()
        trial_end = self._trial_end(params, now)
        coupon = self._redeem(params.get("discounts"), str(customer_id))
        first = wanted[0][0]["recurring"]
        if trial_end is None and behavior == "error_if_incomplete" and not self._would_pay(collect_with) \
                and sum(p["unit_amount"] * q for p, q in wanted) > 0:
            raise self._error(402, "Your card was declined.", code="card_declined", error_type="card_error")
        sub_id = self._next_id("sub_fake")
        period_end = trial_end or add_interval(now, first["interval"], first["interval_count"])
        items = [self._item(sub_id, price, quantity, now, period_end) for price, quantity in wanted]
        sub = shape("subscription")
        sub.update(
            id=sub_id, customer=customer_id, status="trialing" if trial_end else "incomplete", created=now,
            start_date=now, billing_cycle_anchor=period_end if trial_end else now, billing_cycle_anchor_config=None,
            billing_schedules=[], cancel_at=None, cancel_at_period_end=False, canceled_at=None, ended_at=None,
            trial_start=now if trial_end else None, trial_end=trial_end, default_payment_method=default_pm,
            default_source=None, latest_invoice=None, pending_setup_intent=None, pending_update=None,
            pause_collection=None, currency=wanted[0][0]["currency"], metadata=dict(params.get("metadata") or {}),
            discounts=[], description=params.get("description"), schedule=None, test_clock=None,
            transfer_data=None, next_pending_invoice_item_invoice=None, pending_invoice_item_interval=None,
            collection_method="charge_automatically", days_until_due=None, application=None,
            application_fee_percent=None, on_behalf_of=None,
            cancellation_details={"comment": None, "feedback": None, "reason": None},
            items={"object": "list", "data": items, "has_more": False, "total_count": len(items),
                   "url": f"/v1/subscription_items?subscription={sub_id}"},
        )
        if coupon is not None:
            self._sub_coupons[sub_id] = coupon
            sub["discounts"] = [self._next_id("di_fake")]
        self._subscriptions[sub_id] = sub
        self._emit("customer.subscription.created", sub)
        before = copy.deepcopy(sub)
        lines = [self._line(sub_id, item, 0 if trial_end else item["price"]["unit_amount"] * item["quantity"],
                            (now, period_end), proration=False,
                            description=("Trial period for " if trial_end else f"{item['quantity']} x ")
                            + self._product_name(item)) for item in items]
        invoice = self._new_invoice(sub, "subscription_create", lines, (now, period_end))
        sub["latest_invoice"] = invoice["id"]
        self._finalize(invoice)
        if trial_end is not None:
            self._settle(invoice, None)  # nothing to pay during the trial
            if collect_with is None and behavior == "default_incomplete":
                # Stripe collects the payment method for after the trial through a SetupIntent.
                sub["pending_setup_intent"] = self._new_setup_intent(str(customer_id))["id"]
        elif invoice["amount_due"] > 0 and behavior == "default_incomplete":
            self._await_payment(invoice, collect_with)  # confirmed by the client, with the secret
        elif self._settle(invoice, collect_with):
            sub["status"] = "active"
        self._save(sub, before)
        return sub

    def _requested_items(self, raw: Any) -> list[tuple[JSONDict, int]]:
        if not isinstance(raw, list) or not raw or len(raw) > 20:
            raise self._error(400, "Missing required param: items.", code="parameter_missing", param="items")
        wanted = []
        for n, spec in enumerate(raw):
            self._check_known(spec, {"price", "quantity", "metadata"}, prefix=f"items[{n}]")
            price = self._price(spec.get("price"), f"items[{n}][price]")
            if not price.get("recurring"):
                raise self._error(400, "The price specified is set to `type=one_time` but this field only accepts "
                                  "prices with `type=recurring`.", param=f"items[{n}][price]")
            wanted.append((price, self._quantity(spec.get("quantity", 1), f"items[{n}][quantity]")))
        if len({(p["currency"], p["recurring"]["interval"], p["recurring"]["interval_count"]) for p, _ in wanted}) > 1:
            raise self._error(400, "All prices on a subscription must have the same currency and billing interval.",
                              param="items")
        return wanted

    def _quantity(self, value: Any, param: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._error(400, "Invalid positive integer", code="parameter_invalid_integer", param=param)
        return value

    def _attached(self, payment_method: Any, customer_id: str, param: str) -> str | None:
        if payment_method in (None, ""):
            return None
        pm = self._payment_methods.get(str(payment_method))
        if pm is None or pm.get("customer") != customer_id:
            raise self._error(400, f"The customer does not have a payment method with the ID {payment_method}. "
                              "The payment method must be attached to the customer.", code="resource_missing",
                              param=param)
        return str(payment_method)

    def _trial_end(self, params: JSONDict, now: int) -> int | None:
        days, end = params.get("trial_period_days"), params.get("trial_end")
        if days is not None and end is not None:
            raise self._error(400, "You may only specify one of these parameters: trial_end, trial_period_days.",
                              param="trial_end")
        if days is not None:
            if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 730:
                raise self._error(400, "trial_period_days must be between 0 and 730.", param="trial_period_days")
            return now + days * 86400 if days else None
        if end is None or end == "now":
            return None
        if isinstance(end, bool) or not isinstance(end, int) or not now < end <= now + MAX_TRIAL_SECONDS:
            raise self._error(400, "Invalid timestamp: must be in the future and at most two years away.",
                              param="trial_end")
        return end

    def _redeem(self, discounts: Any, customer_id: str) -> str | None:
        """The coupon of a `discounts` entry (a coupon or a promotion code), checked as Stripe does."""
        if not discounts:
            return None
        if not isinstance(discounts, list) or len(discounts) != 1 or not isinstance(discounts[0], dict):
            raise self._error(400, "Invalid discounts: give one coupon or promotion code.", param="discounts")
        entry = discounts[0]
        if entry.get("promotion_code"):
            promo = self._promotion_codes.get(str(entry["promotion_code"]))
            if promo is None:
                raise self._error(400, f"No such promotion code: '{entry['promotion_code']}'",
                                  code="resource_missing", param="discounts[0][promotion_code]")
            expired = promo.get("expires_at") is not None and promo["expires_at"] <= self._now()
            exhausted = promo.get("max_redemptions") is not None and promo["times_redeemed"] >= promo["max_redemptions"]
            foreign = promo.get("customer") not in (None, customer_id)
            if not promo["active"] or expired or exhausted or foreign:
                raise self._error(400, "This promotion code cannot be redeemed.", code="promotion_code_invalid",
                                  param="discounts[0][promotion_code]")
            promo["times_redeemed"] += 1
            return str((promo.get("promotion") or {}).get("coupon"))
        coupon = self._coupons.get(str(entry.get("coupon")))
        if coupon is None or not coupon.get("valid", True):
            raise self._error(400, f"No such coupon: '{entry.get('coupon')}'", code="resource_missing",
                              param="discounts[0][coupon]")
        return str(coupon["id"])

    def _item(self, sub_id: str, price: JSONDict, quantity: int, start: int, end: int) -> JSONDict:
        item = shape("subscription_item")
        item.update(id=self._next_id("si_fake"), created=start, current_period_start=start, current_period_end=end,
                    price=copy.deepcopy(price), plan=self._plan(price), quantity=quantity, subscription=sub_id,
                    metadata={}, discounts=[], tax_rates=[], billing_thresholds=None)
        return item

    def _product_name(self, item: JSONDict) -> str:
        return str((self._products.get(item["price"]["product"]) or {}).get("name") or item["price"]["product"])

    # -- update and cancel ---------------------------------------------------------------

    def _live_subscription(self, subscription_id: str) -> JSONDict:
        sub = self._subscriptions.get(subscription_id)
        if sub is None:
            raise self._missing("subscription", subscription_id)
        if sub["status"] in ENDED:
            raise self._error(400, "A canceled subscription can only update its cancellation_details and metadata.",
                              param="subscription")
        return sub

    def _update_subscription(self, subscription_id: str, params: JSONDict) -> JSONDict:
        self._check_known(params, _UPDATE_FIELDS)
        sub = self._live_subscription(subscription_id)
        before = copy.deepcopy(sub)
        proration = params.get("proration_behavior", "create_prorations")
        if proration not in PRORATION_BEHAVIORS:
            raise self._error(400, f"Invalid proration_behavior: must be one of {', '.join(PRORATION_BEHAVIORS)}",
                              param="proration_behavior")
        if "default_payment_method" in params:
            sub["default_payment_method"] = self._attached(params["default_payment_method"], sub["customer"],
                                                           "default_payment_method")
        if "items" in params:
            self._change_items(sub, params["items"], proration)
        if "cancel_at_period_end" in params:
            flag = bool(params["cancel_at_period_end"])
            sub["cancel_at_period_end"] = flag
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"] if flag else None
            sub["canceled_at"] = self._billing_now() if flag else None
        if "pause_collection" in params:
            sub["pause_collection"] = self._pause(params["pause_collection"])
        if "metadata" in params:
            sub["metadata"] = self._merge_metadata(sub.get("metadata") or {}, params["metadata"])
        self._save(sub, before)
        return sub

    def _pause(self, value: Any) -> JSONDict | None:
        if value in ("", None):
            return None
        if not isinstance(value, dict) or value.get("behavior") not in PAUSE_BEHAVIORS:
            raise self._error(400, f"pause_collection[behavior] must be one of {', '.join(PAUSE_BEHAVIORS)}.",
                              param="pause_collection[behavior]")
        resumes_at = value.get("resumes_at")
        if resumes_at is not None and (not isinstance(resumes_at, int) or resumes_at <= self._billing_now()):
            raise self._error(400, "resumes_at must be in the future.", param="pause_collection[resumes_at]")
        return {"behavior": value["behavior"], "resumes_at": resumes_at}

    def _change_items(self, sub: JSONDict, raw: Any, proration: str) -> None:
        """Swap prices or quantities. Prorations credit the unused time of the
        old item and charge the remaining time of the new one: on the next
        invoice (create_prorations), on one now (always_invoice), or not at all."""
        if not isinstance(raw, list) or not raw:
            raise self._error(400, "Invalid items: must be a non-empty list.", param="items")
        current = {i["id"]: i for i in sub["items"]["data"]}
        now = self._billing_now()
        first_item = sub["items"]["data"][0]
        start, end = first_item["current_period_start"], first_item["current_period_end"]
        share = max(0.0, min(1.0, (end - now) / (end - start))) if end > start else 0.0
        lines: list[JSONDict] = []
        interval_changed = False
        for n, spec in enumerate(raw):
            self._check_known(spec, {"id", "price", "quantity", "deleted", "metadata"}, prefix=f"items[{n}]")
            old = current.get(spec["id"]) if spec.get("id") is not None else None
            if spec.get("id") is not None and old is None:
                raise self._error(400, f"Invalid subscription_item id: {spec['id']}", code="resource_missing",
                                  param=f"items[{n}][id]")
            if old is None and "price" not in spec:
                raise self._error(400, "Missing required param: items[0][price].", code="parameter_missing",
                                  param=f"items[{n}][price]")
            price = self._price(spec["price"], f"items[{n}][price]") if "price" in spec else old["price"]  # type: ignore[index]
            quantity = self._quantity(spec.get("quantity", old["quantity"] if old else 1), f"items[{n}][quantity]")
            if price["recurring"]["interval"] != sub["items"]["data"][0]["price"]["recurring"]["interval"]:
                interval_changed = True
            if old is not None:
                unused = -round(old["price"]["unit_amount"] * old["quantity"] * share)
                lines.append(self._line(sub["id"], old, unused, (now, end), proration=True,
                                        description=f"Unused time on {self._product_name(old)}"))
            if spec.get("deleted") and old is not None:
                sub["items"]["data"].remove(old)
                continue
            item = old if old is not None else self._item(sub["id"], price, quantity, start, end)
            item.update(price=copy.deepcopy(price), plan=self._plan(price), quantity=quantity)
            if old is None:
                sub["items"]["data"].append(item)
            lines.append(self._line(sub["id"], item, round(price["unit_amount"] * quantity * share), (now, end),
                                    proration=True, description=f"Remaining time on {self._product_name(item)}"))
        sub["items"]["total_count"] = len(sub["items"]["data"])
        if interval_changed and sub["status"] != "trialing":
            # A new billing interval starts a new cycle now, invoiced at once (as Stripe does).
            first = sub["items"]["data"][0]["price"]["recurring"]
            new_end = add_interval(now, first["interval"], first["interval_count"])
            for item in sub["items"]["data"]:
                item.update(current_period_start=now, current_period_end=new_end)
                lines.append(self._line(sub["id"], item, item["price"]["unit_amount"] * item["quantity"],
                                        (now, new_end), proration=False, description=self._product_name(item)))
            sub["billing_cycle_anchor"] = now
            proration = "always_invoice"
        if sub["status"] == "trialing" or proration == "none":
            return  # nothing is owed for a trial, and `none` bills nothing for the change
        if proration == "create_prorations":
            self._pending_lines.setdefault(sub["id"], []).extend(lines)
            return
        period = (now, sub["items"]["data"][0]["current_period_end"])
        invoice = self._new_invoice(sub, "subscription_update", lines, period)
        sub["latest_invoice"] = invoice["id"]
        self._finalize(invoice)
        if not self._settle(invoice, self._collect_with(sub)):
            sub["status"] = "past_due"

    def _cancel_subscription(self, subscription_id: str, params: JSONDict) -> JSONDict:
        self._check_known(params, _CANCEL_FIELDS)
        sub = self._live_subscription(subscription_id)
        self._end(sub, self._billing_now())
        return sub

    # -- shared with the test clock ------------------------------------------------------

    def _end(self, sub: JSONDict, at: int) -> None:
        before = copy.deepcopy(sub)
        sub.update(status="canceled", ended_at=at, canceled_at=sub.get("canceled_at") or at,
                   cancel_at_period_end=False, cancel_at=None)
        self._pending_lines.pop(sub["id"], None)
        self._emit("customer.subscription.deleted", sub, changed(before, sub))
        self._refresh_entitlements(sub["customer"])

    def _collect_with(self, sub: JSONDict) -> str | None:
        customer = self._customers.get(sub["customer"]) or {}
        return sub.get("default_payment_method") or (customer.get("invoice_settings") or {}).get(
            "default_payment_method")

    def _save(self, sub: JSONDict, before: JSONDict) -> None:
        """customer.subscription.updated for what changed, then the entitlements."""
        previous = changed(before, sub)
        if previous:
            self._emit("customer.subscription.updated", sub, previous)
        self._refresh_entitlements(sub["customer"])

    def _expanded(self, sub: JSONDict, expand: Any) -> JSONDict:
        """The answer with the expansions asked for (client secrets only there)."""
        out = copy.deepcopy(sub)
        wanted = set(expand) if isinstance(expand, list) else set()
        if wanted & {"latest_invoice", "latest_invoice.confirmation_secret"} and out.get("latest_invoice"):
            invoice = copy.deepcopy(self._invoices[out["latest_invoice"]])
            if "latest_invoice.confirmation_secret" in wanted and invoice["status"] == "open":
                invoice["confirmation_secret"] = copy.deepcopy(self._invoice_secrets.get(invoice["id"]))
            out["latest_invoice"] = invoice
        if "pending_setup_intent" in wanted and out.get("pending_setup_intent"):
            out["pending_setup_intent"] = copy.deepcopy(self._setup_intents[out["pending_setup_intent"]])
        return out
