"""Stripe Entitlements in the Fake: a customer's active entitlements are the
features of the products its current subscriptions are for (trialing,
active or past due). When they change, the Fake records
`entitlements.active_entitlement_summary.updated`, whose object (the
summary) has no id of its own: it is the customer's. As on Stripe, the
event embeds only the first page of the summary's `entitlements`
(`has_more: true` beyond it); retrieving the summary lists them all, as
StripeProcessor does by following the active entitlements list."""

from __future__ import annotations

from typing import Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.invoices import InvoicesMixin

# Subscription statuses that grant their products' features.
ENTITLED: Final = frozenset({"trialing", "active", "past_due"})
# Stripe's default list page: what an event embeds of a summary's entitlements.
EMBEDDED_PAGE: Final = 10


class EntitlementsMixin(InvoicesMixin):
    def _init_state(self) -> None:
        super()._init_state()
        self._subscriptions: dict[str, JSONDict] = {}
        self._entitled: dict[str, list[str]] = {}  # customer id -> lookup keys, sorted
        self._entitlement_ids: dict[tuple[str, str], str] = {}  # (customer, lookup key) -> ent_...

    def _entitlement_summary(self, customer_id: str, *, embedded: bool = False) -> JSONDict:
        data = []
        for key in self._entitled.get(customer_id, []):
            ent_id = self._entitlement_ids.setdefault((customer_id, key), self._next_id("ent_fake"))
            data.append({"id": ent_id, "object": "entitlements.active_entitlement", "livemode": False,
                         "feature": self._features[key]["id"], "lookup_key": key})
        more = embedded and len(data) > EMBEDDED_PAGE
        return {"object": "entitlements.active_entitlement_summary", "customer": customer_id, "livemode": False,
                "entitlements": {"object": "list", "data": data[:EMBEDDED_PAGE] if more else data, "has_more": more,
                                 "url": f"/v1/customer/{customer_id}/entitlements"}}

    def _refresh_entitlements(self, customer_id: str) -> None:
        keys: set[str] = set()
        for sub in self._subscriptions.values():
            if sub["customer"] == customer_id and sub["status"] in ENTITLED:
                for item in sub["items"]["data"]:
                    keys.update(self._product_features.get(item["price"]["product"], []))
        now = sorted(keys)
        if now == self._entitled.get(customer_id, []):
            return
        before = self._entitlement_summary(customer_id, embedded=True)["entitlements"]
        self._entitled[customer_id] = now
        summary = self._entitlement_summary(customer_id, embedded=True)
        self._emit("entitlements.active_entitlement_summary.updated", summary, {"entitlements": before})
