"""FakeProcessor: Stripe in memory, for tests and the local stack.

It behaves like Stripe's test mode where the billing code can tell the
difference: deterministic ids, Stripe's idempotency semantics, Stripe's test
payment methods with stable fingerprints, immediate tax-location validation,
meter events deduplicated by identifier, v2 meter event sessions that expire,
and thin `v1.billing.meter.error_report_triggered` events. It records every
call it receives and fails on demand (`add_fault`), so tests can prove what
was sent and what happens when Stripe misbehaves.

One lock guards all state: the local stack's functions call one shared Fake
from many threads (see rpc.py), and a test asserting on `snapshot()` must see
a consistent picture. The state and the path every call takes are core.py's;
each resource's calls are a mixin of their own (customers.py,
payment_methods.py, meters.py, promotions.py).
"""

from __future__ import annotations

import copy

from billing.processor.base import JSONDict, check_object_type
from devstack.fake_stripe.customers import CustomersMixin
from devstack.fake_stripe.meter_adjustments import MeterAdjustmentsMixin
from devstack.fake_stripe.meters import MetersMixin
from devstack.fake_stripe.payment_methods import PaymentMethodsMixin
from devstack.fake_stripe.promotions import PromotionsMixin


class FakeProcessor(CustomersMixin, PaymentMethodsMixin, MetersMixin, MeterAdjustmentsMixin, PromotionsMixin):
    """In-memory Stripe. Thread-safe; every result is a deep copy."""

    name = "fake"

    # -- test and local-stack controls (not part of the Processor interface) --------

    def reset(self) -> None:
        """Forget everything: objects, counters, calls, faults, meter events."""
        with self._lock:
            self._init_state()

    def add_fault(
        self,
        operation: str,
        status: int,
        code: str | None = None,
        times: int = 1,
        message: str | None = None,
        *,
        after: bool = False,
        crash: bool = False,
    ) -> None:
        """Make the next `times` calls of `operation` fail (FIFO per operation).

        `status` 429 or 5xx is transient, other 4xx permanent; NETWORK_FAULT (0)
        is a connection failure, or a timeout with code="timeout". With
        `after=True` the call takes effect first and only its response is lost
        (the case idempotency keys exist for): a retry with the same key gets
        the original result. With `crash=True` the call takes effect and then
        the caller dies (ProcessCrash; `status` is not used): the crash
        between the Stripe call and the DynamoDB write.
        """
        with self._lock:
            self._faults.add(operation, status, code, times, message, after=after, crash=crash)

    def put_object(self, obj: JSONDict) -> None:
        """Seed or overwrite an object (e.g. a subscription or invoice fixture)
        so retrieve_object returns it, as if it had been created on Stripe."""
        object_type = str(obj.get("object", ""))
        object_id = str(obj.get("id", ""))
        check_object_type(object_type)
        if not object_id:
            raise ValueError("put_object: the object needs an id")
        with self._lock:
            stored = copy.deepcopy(obj)
            if object_type == "customer":
                if stored.get("deleted"):
                    self._deleted_customers.add(object_id)
                    self._customers.pop(object_id, None)
                else:
                    self._customers[object_id] = stored
                    self._deleted_customers.discard(object_id)
            elif object_type == "payment_method":
                self._payment_methods[object_id] = stored
            elif object_type == "coupon":
                self._coupons[object_id] = stored
            elif object_type == "promotion_code":
                self._promotion_codes[object_id] = stored
            else:
                self._other_objects[(object_type, object_id)] = stored

    @property
    def calls(self) -> list[JSONDict]:
        """Every interface call received, in order: {operation, args, idempotency_key?, error?}."""
        with self._lock:
            return copy.deepcopy(self._calls)

    def snapshot(self) -> JSONDict:
        """What the Fake holds and received, JSON-able, for tests and /_local routes."""
        with self._lock:
            return {
                "meter_events": self._meter_event_list(),
                "meter_event_duplicates": dict(self._meter_duplicates),
                "meter_event_count": len(self._meter_events),
                "canceled_meter_event_count": len(self._meter_adjustments),
                "duplicate_count": sum(self._meter_duplicates.values()),
                "customers": len(self._customers),
                "deleted_customers": len(self._deleted_customers),
                "payment_methods": len(self._payment_methods),
                "coupons": len(self._coupons),
                "promotion_codes": len(self._promotion_codes),
                "v2_events": list(self._v2_events),
                "pending_faults": self._faults.pending(),
                "calls": copy.deepcopy(self._calls),
            }

    # -- any object -------------------------------------------------------------------

    def retrieve_object(self, object_type: str, object_id: str) -> JSONDict:
        check_object_type(object_type)

        def retrieve() -> JSONDict:
            if object_type == "customer":
                return self._get_customer(object_id)
            store: dict[str, JSONDict] | None = {
                "payment_method": self._payment_methods,
                "coupon": self._coupons,
                "promotion_code": self._promotion_codes,
            }.get(object_type)
            found = store.get(object_id) if store is not None else self._other_objects.get((object_type, object_id))
            if found is None:
                raise self._missing(object_type, object_id)
            return found

        return self._run("retrieve_object", {"object_type": object_type, "object_id": object_id}, retrieve)
