"""Changes made on Stripe's side, as the Dashboard (or the customer portal)
makes them: not an API call of the billing code, so nothing is recorded in
`calls` and no idempotency key applies, but the object changes and Stripe
sends its `*.updated` event, with `previous_attributes`, like any other
change (the local route POST /_local/fake-stripe/dashboard/{type}/{id}).
Tests use it to prove that a change made outside this service reaches the
projection through its webhook."""

from __future__ import annotations

import copy
import re
from typing import Final

from billing.processor.base import JSONDict
from devstack.fake_stripe.events import changed
from devstack.fake_stripe.listing import ListingMixin

# The event a Dashboard edit of each object type sends.
DASHBOARD_EVENTS: Final = {
    "customer": "customer.updated", "payment_method": "payment_method.updated",
    "subscription": "customer.subscription.updated", "invoice": "invoice.updated", "charge": "charge.updated",
    "coupon": "coupon.updated", "promotion_code": "promotion_code.updated", "price": "price.updated",
    "product": "product.updated",
}
_FIXED: Final = frozenset({"id", "object", "created", "livemode"})


class DashboardMixin(ListingMixin):
    def dashboard_update(self, object_type: str, object_id: str, changes: JSONDict) -> JSONDict:
        """Change top-level fields of an object (metadata merges, "" or None
        removes a key, as on Stripe) and send its updated event when
        something changed. Unknown objects are resource_missing."""
        if object_type not in DASHBOARD_EVENTS:
            raise ValueError(f"dashboard_update: one of {', '.join(sorted(DASHBOARD_EVENTS))}")
        with self._lock:
            obj = self._stores()[object_type].get(object_id)
            if obj is None:
                raise self._missing(object_type, object_id)
            fixed = sorted(set(changes) & _FIXED)
            if fixed:
                raise self._error(400, f"{fixed[0]} cannot be changed", param=fixed[0])
            email = changes.get("email")
            if object_type == "customer" and email and not re.fullmatch(r"[^@\s]+@[^@\s]+", str(email)):
                raise self._error(400, "Invalid email address", code="email_invalid", param="email")
            before = copy.deepcopy(obj)
            for key, value in changes.items():
                if key == "metadata":
                    obj["metadata"] = self._merge_metadata(obj.get("metadata") or {}, value)
                else:
                    obj[key] = copy.deepcopy(value)
            previous = changed(before, obj)
            if previous:
                self._emit(DASHBOARD_EVENTS[object_type], obj, previous)
            return copy.deepcopy(obj)
