"""Stripe's list endpoints in the Fake (`list_objects`): one page of the
account's customers, a customer's payment methods, subscriptions, invoices,
charges, coupons, promotion codes, prices, products or events, newest first,
with Stripe's cursors (`starting_after` towards older objects,
`ending_before` towards newer ones, `has_more`) and the filters the billing
code uses (`customer` for payment methods, which Stripe requires; `status`
for subscriptions, every status by default as the StripeProcessor asks;
`created` and `types` for events).

Newest first is the order the Fake made them in, reversed: its ids and
`created` times follow that order, as Stripe's list order does.
"""

from __future__ import annotations

from typing import Any, Final

from billing.processor.base import MAX_LIST_LIMIT, JSONDict, check_list_type
from devstack.fake_stripe.sessions import SessionsMixin

_URLS: Final = {"customer": "/v1/customers", "payment_method": "/v1/payment_methods",
                "subscription": "/v1/subscriptions", "invoice": "/v1/invoices", "charge": "/v1/charges",
                "coupon": "/v1/coupons", "promotion_code": "/v1/promotion_codes", "price": "/v1/prices",
                "product": "/v1/products", "event": "/v1/events", "invoice_payment": "/v1/invoice_payments"}
_RANGES: Final = {"gt": lambda v, b: v > b, "gte": lambda v, b: v >= b, "lt": lambda v, b: v < b,
                  "lte": lambda v, b: v <= b}


class ListingMixin(SessionsMixin):
    """list_objects over every store the Fake keeps."""

    def _stores(self) -> dict[str, dict[str, JSONDict]]:
        """Object type -> its store (id -> object), in the order the Fake made them."""
        return {"customer": self._customers, "payment_method": self._payment_methods, "coupon": self._coupons,
                "promotion_code": self._promotion_codes, "price": self._prices, "product": self._products,
                "subscription": self._subscriptions, "invoice": self._invoices, "charge": self._charges,
                "invoice_payment": self._invoice_payments}

    def list_objects(self, object_type: str, *, limit: int = MAX_LIST_LIMIT, starting_after: str | None = None,
                     ending_before: str | None = None, params: JSONDict | None = None) -> JSONDict:
        check_list_type(object_type, limit, params)
        args = {"object_type": object_type, "limit": limit, "starting_after": starting_after,
                "ending_before": ending_before, "params": params}
        return self._run("list_objects", args,
                         lambda: self._page(object_type, limit, starting_after, ending_before, params or {}))

    def _listed(self, object_type: str, params: JSONDict) -> list[JSONDict]:
        """Every object of the type the filters let through, newest first."""
        if object_type == "event":
            found = self._events.oldest_first()
        else:
            found = list(self._stores()[object_type].values())
        found.reverse()
        if object_type == "payment_method":
            found = [pm for pm in found if pm.get("customer") == params.get("customer")]
        if object_type == "subscription" and params.get("status") not in (None, "all"):
            found = [s for s in found if s.get("status") == params["status"]]
        if object_type == "event":
            found = [e for e in found if self._event_matches(e, params)]
        if object_type == "invoice_payment":
            wanted = params.get("payment") or {}
            found = [p for p in found if params.get("invoice") in (None, p.get("invoice"))
                     and all((p.get("payment") or {}).get(k) == v for k, v in wanted.items())]
        return found

    def _event_matches(self, event: JSONDict, params: JSONDict) -> bool:
        types = params.get("types") or ([params["type"]] if params.get("type") else None)
        if types is not None and event["type"] not in types:
            return False
        created: Any = params.get("created")
        if isinstance(created, dict):
            return all(_RANGES[op](int(event["created"]), int(bound)) for op, bound in created.items()
                       if op in _RANGES)
        if created is not None:
            return int(event["created"]) == int(created)
        return True

    def _page(self, object_type: str, limit: int, starting_after: str | None, ending_before: str | None,
              params: JSONDict) -> JSONDict:
        if starting_after and ending_before:
            raise self._error(400, "You may only specify one of these parameters: ending_before, starting_after.",
                              param="ending_before")
        listed = self._listed(object_type, params)
        ids = [str(o["id"]) for o in listed]
        cursor = starting_after or ending_before
        if cursor is not None and cursor not in ids:
            label = {"payment_method": "PaymentMethod", "promotion_code": "promotion code"}.get(
                object_type, object_type)
            raise self._error(404, f"No such {label}: '{cursor}'", code="resource_missing",
                              param="starting_after" if starting_after else "ending_before")
        if ending_before is not None:
            # The page nearest the cursor on its newer side, still newest first.
            end = ids.index(ending_before)
            data, more = listed[max(0, end - limit):end], end > limit
        else:
            start = ids.index(starting_after) + 1 if starting_after is not None else 0
            data, more = listed[start:start + limit], len(listed) > start + limit
        return {"object": "list", "data": data, "has_more": more, "url": _URLS[object_type]}
