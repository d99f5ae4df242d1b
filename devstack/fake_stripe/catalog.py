"""The catalog in the Fake: products with entitlement features, and their
prices (monthly and yearly, with lookup keys). A few are seeded when the
Fake starts (or is reset), so `GET /v1/prices` lists them right after
`make run`; `add_product` (the local route POST /_local/fake-stripe/products)
adds more. Each creation records the events Stripe sends (product.created,
price.created)."""

from __future__ import annotations

import copy
from typing import Any, Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.core import FakeCore, shape

# (name, description, feature lookup keys, [(price lookup key, unit amount in cents, interval)])
SEED_CATALOG: Final = (
    ("Starter", "For one person getting started", ("reports", "api_access"),
     (("starter_monthly", 900, "month"), ("starter_yearly", 9000, "year"))),
    ("Pro", "For growing teams", ("reports", "api_access", "advanced_reports", "priority_support"),
     (("pro_monthly", 2900, "month"), ("pro_yearly", 29000, "year"))),
    ("Enterprise", "For organisations that need control", ("reports", "api_access", "advanced_reports",
                                                           "priority_support", "sso", "audit_log"),
     (("enterprise_monthly", 9900, "month"), ("enterprise_yearly", 99000, "year"))),
)
INTERVALS: Final = ("day", "week", "month", "year")


class CatalogMixin(FakeCore):
    """Products, prices and entitlement features (test and local-stack controls)."""

    seed_catalog_on_reset: bool = True

    def _init_state(self) -> None:
        super()._init_state()
        self._products: dict[str, JSONDict] = {}
        self._prices: dict[str, JSONDict] = {}
        self._features: dict[str, JSONDict] = {}  # lookup key -> entitlements.feature
        self._product_features: dict[str, list[str]] = {}  # product id -> feature lookup keys
        if self.seed_catalog_on_reset:
            for name, description, features, prices in SEED_CATALOG:
                self._add_product(name, description=description, features=list(features),
                                  prices=[{"lookup_key": k, "unit_amount": a, "interval": i} for k, a, i in prices])

    # -- controls ----------------------------------------------------------------------

    def add_product(self, name: str, *, features: list[str], prices: list[JSONDict],
                    description: str | None = None) -> JSONDict:
        """A product with its features and prices, as if made in the dashboard:
        {"product": ..., "prices": [...]}. ValueError for a bad definition."""
        with self._lock:
            return self._add_product(name, description=description, features=features, prices=prices)

    def catalog(self) -> JSONDict:
        with self._lock:
            return {"products": copy.deepcopy(list(self._products.values())),
                    "prices": copy.deepcopy(list(self._prices.values()))}

    # -- helpers -----------------------------------------------------------------------

    def _add_product(self, name: str, *, description: str | None, features: list[str],
                     prices: list[JSONDict]) -> JSONDict:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a product needs a name")
        if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
            raise ValueError("features must be a list of lookup keys")
        if not isinstance(prices, list) or not prices:
            raise ValueError("give at least one price: {unit_amount, interval, lookup_key?, currency?}")
        taken = {p.get("lookup_key") for p in self._prices.values()} - {None}
        for spec in prices:
            if not isinstance(spec, dict) or not isinstance(spec.get("unit_amount"), int) or spec["unit_amount"] < 0:
                raise ValueError("each price needs a unit_amount (integer cents, >= 0)")
            if spec.get("interval", "month") not in INTERVALS:
                raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
            if spec.get("lookup_key") in taken:
                raise ValueError(f"lookup key {spec['lookup_key']} is taken")
        now = int(self._now())
        for key in features:
            if key not in self._features:
                self._features[key] = {
                    "id": self._next_id("feat_fake"), "object": "entitlements.feature", "active": True,
                    "livemode": False, "lookup_key": key, "metadata": {}, "name": key.replace("_", " ").title(),
                }
        product = shape("product")
        product.update(
            id=self._next_id("prod_fake"), name=name.strip(), description=description, created=now, updated=now,
            default_price=None, images=[], metadata={}, package_dimensions=None, shippable=None, type="service",
            marketing_features=[{"name": self._features[k]["name"]} for k in features], url=None,
        )
        self._products[product["id"]] = product
        self._product_features[product["id"]] = list(features)
        made = [self._new_price(product["id"], spec, now) for spec in prices]
        product["default_price"] = made[0]["id"]
        self._emit("product.created", product)
        for price in made:
            self._emit("price.created", price)
        return {"product": copy.deepcopy(product), "prices": copy.deepcopy(made)}

    def _new_price(self, product_id: str, spec: JSONDict, now: int) -> JSONDict:
        price = shape("price")
        amount = int(spec["unit_amount"])
        price.update(
            id=self._next_id("price_fake"), product=product_id, created=now, currency=spec.get("currency", "usd"),
            unit_amount=amount, unit_amount_decimal=str(amount), lookup_key=spec.get("lookup_key"),
            nickname=spec.get("nickname"), custom_unit_amount=None, transform_quantity=None, metadata={},
            recurring={"interval": spec.get("interval", "month"), "interval_count": int(spec.get("interval_count", 1)),
                       "meter": None, "trial_period_days": None, "usage_type": "licensed"},
        )
        self._prices[price["id"]] = price
        return price

    def _price(self, price_id: Any, param: str) -> JSONDict:
        price = self._prices.get(price_id) if isinstance(price_id, str) else None
        if price is None:
            raise self._error(400, f"No such price: '{str(price_id)[:64]}'", code="resource_missing", param=param)
        if not price.get("active"):
            raise self._error(400, f"The price specified is inactive: {price_id}", param=param)
        return price

    def _plan(self, price: JSONDict) -> JSONDict:
        """The legacy `plan` Stripe still puts on subscription items, from the price."""
        recurring = price.get("recurring") or {}
        return {"id": price["id"], "object": "plan", "active": price["active"], "amount": price["unit_amount"],
                "amount_decimal": price["unit_amount_decimal"], "billing_scheme": "per_unit",
                "created": price["created"], "currency": price["currency"], "interval": recurring.get("interval"),
                "interval_count": recurring.get("interval_count"), "livemode": False, "metadata": {}, "meter": None,
                "nickname": price.get("nickname"), "product": price["product"], "tiers_mode": None,
                "transform_usage": None, "trial_period_days": None, "usage_type": "licensed"}
