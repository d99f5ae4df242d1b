"""StripeProcessor: the Processor interface on stripe-python's StripeClient.

The SDK is imported when a StripeProcessor is built, not when this module is
imported: functions that never talk to Stripe (and tests on the Fake) do not
pay for it at cold start.

Idempotency keys are the caller's, passed as request options: the caller
derives them from the operation and its subject, so a retried create (by the
SDK, by a Lambda retry, by a stream redelivery) yields the same Stripe object.
The SDK reuses the key for its own network retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from billing.processor.base import (
    MAX_LIST_LIMIT,
    MAX_STREAM_EVENTS,
    JSONDict,
    check_list_type,
    check_object_type,
    rfc3339,
)
from billing.processor.errors import INVALID_REQUEST, ProcessorFailure, from_stripe_error
from billing.processor.keys import meter_event_key

if TYPE_CHECKING:
    import stripe
    from stripe.params import (
        CouponCreateParams,
        CustomerCreateParams,
        CustomerUpdateParams,
        PromotionCodeCreateParams,
        PromotionCodeUpdateParams,
        SubscriptionCancelParams,
        SubscriptionCreateParams,
        SubscriptionUpdateParams,
    )
    from stripe.params.billing import MeterEventSummaryListParams
    from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
    from stripe.params.checkout import SessionCreateParams
    from stripe.params.v2.billing import MeterEventStreamCreateParams

# Lambda functions time out at 29 s; the SDK's default is 80 s per attempt.
DEFAULT_TIMEOUT_SECONDS = 10.0


class StripeProcessor:
    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        meter_events_base_url: str | None = None,
        max_network_retries: int = 2,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        import stripe

        # Only the overridden addresses: StripeClient merges these over its
        # defaults, so a None here would erase the default.
        base_addresses: dict[str, str] = {}
        if base_url:
            base_addresses["api"] = base_url.rstrip("/")
        if meter_events_base_url:
            base_addresses["meter_events"] = meter_events_base_url.rstrip("/")
        self.api_key = api_key
        self._meters: dict[str, JSONDict] = {}
        self._error_class: type[stripe.StripeError] = stripe.StripeError
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=cast("stripe._base_address.BaseAddresses", base_addresses),
            max_network_retries=max_network_retries,
            http_client=stripe.new_default_http_client(timeout=timeout),
        )

    def __repr__(self) -> str:  # never the key
        return "StripeProcessor()"

    def _call[**P, R](self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except self._error_class as exc:
            # `from None`: the SDK exception holds the raw response body, which
            # must not travel on in the traceback into logs.
            raise from_stripe_error(exc) from None

    # -- customers --------------------------------------------------------------------

    def create_customer(
        self,
        *,
        idempotency_key: str,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        preferred_locales: list[str] | None = None,
        tax_exempt: str | None = None,
    ) -> JSONDict:
        params: JSONDict = {"metadata": dict(metadata)}
        for key, value in (
            ("email", email),
            ("name", name),
            ("preferred_locales", preferred_locales),
            ("tax_exempt", tax_exempt),
        ):
            if value is not None:
                params[key] = value
        customer = self._call(
            self._client.v1.customers.create,
            cast("CustomerCreateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(customer)

    def retrieve_customer(self, customer_id: str) -> JSONDict:
        return _to_dict(self._call(self._client.v1.customers.retrieve, customer_id))

    def update_customer(self, customer_id: str, *, idempotency_key: str | None = None, fields: JSONDict) -> JSONDict:
        customer = self._call(
            self._client.v1.customers.update,
            customer_id,
            cast("CustomerUpdateParams", _unset_nones(fields)),
            {"idempotency_key": idempotency_key} if idempotency_key else None,
        )
        return _to_dict(customer)

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> JSONDict:
        # Stripe ignores idempotency keys on DELETE (a repeat is a 404
        # resource_missing), so the key is not sent.
        del idempotency_key
        return _to_dict(self._call(self._client.v1.customers.delete, customer_id))

    def update_tax_location(self, customer_id: str, *, address: JSONDict, idempotency_key: str) -> JSONDict:
        params = {"address": _unset_nones(address), "tax": {"validate_location": "immediately"}}
        customer = self._call(
            self._client.v1.customers.update,
            customer_id,
            cast("CustomerUpdateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(customer)

    # -- payment methods --------------------------------------------------------------

    def attach_payment_method(self, payment_method_id: str, *, customer_id: str, idempotency_key: str) -> JSONDict:
        pm = self._call(
            self._client.v1.payment_methods.attach,
            payment_method_id,
            {"customer": customer_id},
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(pm)

    def detach_payment_method(self, payment_method_id: str, *, idempotency_key: str) -> JSONDict:
        pm = self._call(
            self._client.v1.payment_methods.detach,
            payment_method_id,
            options={"idempotency_key": idempotency_key},
        )
        return _to_dict(pm)

    def retrieve_payment_method(self, payment_method_id: str) -> JSONDict:
        return _to_dict(self._call(self._client.v1.payment_methods.retrieve, payment_method_id))

    # -- meter events -----------------------------------------------------------------

    def create_meter_event(
        self, *, event_name: str, identifier: str, timestamp: int, payload: dict[str, str]
    ) -> JSONDict:
        event = self._call(
            self._client.v1.billing.meter_events.create,
            {
                "event_name": event_name,
                "identifier": identifier,
                "timestamp": timestamp,
                "payload": {str(k): str(v) for k, v in payload.items()},
            },
            # Derived from the identifier (under its operation's prefix): a
            # resend after a lost response replays Stripe's first answer
            # instead of failing on the duplicate identifier.
            {"idempotency_key": meter_event_key(identifier)},
        )
        return _to_dict(event)

    def create_meter_event_session(self) -> JSONDict:
        return _to_dict(self._call(self._client.v2.billing.meter_event_session.create))

    def send_meter_events(self, *, session_token: str, events: list[JSONDict]) -> None:
        if not 1 <= len(events) <= MAX_STREAM_EVENTS:
            raise ProcessorFailure(
                f"events must contain between 1 and {MAX_STREAM_EVENTS} items.",
                status=400,
                error_type=INVALID_REQUEST,
                param="events",
            )
        params = {"events": [_stream_event(event) for event in events]}
        # The stream lives on its own base address (meter-events.stripe.com)
        # and authenticates with the session's token, not the API key.
        self._call(
            self._client.v2.billing.meter_event_stream.create,
            cast("MeterEventStreamCreateParams", params),
            {"api_key": session_token},
        )

    def retrieve_v2_event(self, event_id: str) -> JSONDict:
        return _to_dict(self._call(self._client.v2.core.events.retrieve, event_id))

    def list_v2_events(self, *, types: list[str], created_gte: int, created_lte: int, limit: int) -> JSONDict:
        def walk() -> JSONDict:
            page = self._client.v2.core.events.list(
                {"types": list(types), "created": {"gte": rfc3339(created_gte), "lte": rfc3339(created_lte)}})
            found: list[JSONDict] = []
            for event in page.auto_paging_iter():  # next_page_url, page after page
                found.append(_to_dict(event))
                if len(found) == limit:  # stop before asking for a page past the budget
                    return {"object": "list", "data": found, "has_more": True}
            return {"object": "list", "data": found, "has_more": False}

        return self._call(walk)

    def cancel_meter_event(self, *, event_name: str, identifier: str, idempotency_key: str) -> JSONDict:
        adjustment = self._call(
            self._client.v1.billing.meter_event_adjustments.create,
            {"type": "cancel", "event_name": event_name, "cancel": {"identifier": identifier}},
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(adjustment)

    def meter_event_summaries(
        self, *, event_name: str, customer_id: str, start_time: int, end_time: int,
        value_grouping_window: str | None = None,
    ) -> JSONDict:
        meter = self._meter(event_name)
        params: dict[str, Any] = {"customer": customer_id, "start_time": start_time, "end_time": end_time,
                                  "limit": 100}
        if value_grouping_window is not None:
            params["value_grouping_window"] = value_grouping_window
        summaries = self._call(
            self._client.v1.billing.meters.event_summaries.list,
            str(meter["id"]),
            cast("MeterEventSummaryListParams", params),
        )
        # One summary for the whole range without value_grouping_window; the
        # SDK pages through anything more.
        data = [_to_dict(s) for s in self._call(lambda: list(summaries.auto_paging_iter()))]
        return {"meter": meter, "data": data}

    def find_meter(self, event_name: str) -> JSONDict:
        return self._meter(event_name)

    def _meter(self, event_name: str) -> JSONDict:
        """The active meter with this event name; meters do not change their
        event name, so one lookup per process and event name is enough."""
        cached = self._meters.get(event_name)
        if cached is not None:
            return cached
        meters = self._call(self._client.v1.billing.meters.list, {"status": "active", "limit": 100})
        for meter in self._call(lambda: list(meters.auto_paging_iter())):
            found = _to_dict(meter)
            self._meters[str(found.get("event_name"))] = found
        if event_name not in self._meters:
            raise ProcessorFailure(f"No active meter found for event name {event_name}.", status=404,
                                   error_type=INVALID_REQUEST, code="resource_missing", param="event_name")
        return self._meters[event_name]

    # -- any object -------------------------------------------------------------------

    def retrieve_object(self, object_type: str, object_id: str) -> JSONDict:
        check_object_type(object_type)
        v1 = self._client.v1
        retrievers: dict[str, Callable[[str], Any]] = {
            "customer": v1.customers.retrieve,
            "payment_method": v1.payment_methods.retrieve,
            "subscription": v1.subscriptions.retrieve,
            "invoice": v1.invoices.retrieve,
            "charge": v1.charges.retrieve,
            "coupon": v1.coupons.retrieve,
            "promotion_code": v1.promotion_codes.retrieve,
            "price": v1.prices.retrieve,
            "product": v1.products.retrieve,
            "checkout.session": v1.checkout.sessions.retrieve,
            "entitlements.active_entitlement_summary": self._entitlement_summary,
        }
        return _to_dict(self._call(retrievers[object_type], object_id))

    def _entitlement_summary(self, customer_id: str) -> Any:
        """Stripe has no endpoint for the summary object its webhook sends: it
        is the customer's active entitlements, which are listed."""
        listed = self._client.v1.entitlements.active_entitlements.list({"customer": customer_id, "limit": 100})
        entitlements = [_to_dict(e) for e in listed.auto_paging_iter()]
        return _Plain({"object": "entitlements.active_entitlement_summary", "customer": customer_id,
                       "livemode": bool(entitlements and entitlements[0].get("livemode")),
                       "entitlements": {"object": "list", "data": entitlements, "has_more": False,
                                        "url": "/v1/entitlements/active_entitlements"}})

    # -- coupons and promotion codes --------------------------------------------------

    def create_coupon(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        coupon = self._call(
            self._client.v1.coupons.create,
            cast("CouponCreateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(coupon)

    def create_promotion_code(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        promo = self._call(
            self._client.v1.promotion_codes.create,
            cast("PromotionCodeCreateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(promo)

    def update_promotion_code(
        self, promotion_code_id: str, *, params: JSONDict, idempotency_key: str | None = None
    ) -> JSONDict:
        promo = self._call(
            self._client.v1.promotion_codes.update,
            promotion_code_id,
            cast("PromotionCodeUpdateParams", _unset_nones(params)),
            {"idempotency_key": idempotency_key} if idempotency_key else None,
        )
        return _to_dict(promo)


    # -- subscriptions, Checkout and the customer portal -----------------------------

    def create_subscription(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        subscription = self._call(
            self._client.v1.subscriptions.create,
            cast("SubscriptionCreateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(subscription)

    def update_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        subscription = self._call(
            self._client.v1.subscriptions.update,
            subscription_id,
            cast("SubscriptionUpdateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(subscription)

    def cancel_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        subscription = self._call(
            self._client.v1.subscriptions.cancel,
            subscription_id,
            cast("SubscriptionCancelParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(subscription)

    def list_subscriptions(self, *, customer_id: str) -> list[JSONDict]:
        listed = self._call(self._client.v1.subscriptions.list, {"customer": customer_id, "status": "all",
                                                                 "limit": 100})
        return [_to_dict(s) for s in self._call(lambda: list(listed.auto_paging_iter()))]

    def list_payment_methods(self, *, customer_id: str) -> list[JSONDict]:
        listed = self._call(self._client.v1.payment_methods.list, {"customer": customer_id, "limit": 100})
        return [_to_dict(p) for p in self._call(lambda: list(listed.auto_paging_iter()))]

    def list_objects(self, object_type: str, *, limit: int = MAX_LIST_LIMIT, starting_after: str | None = None,
                     ending_before: str | None = None, params: JSONDict | None = None) -> JSONDict:
        check_list_type(object_type, limit, params)
        v1 = self._client.v1
        listers: dict[str, Callable[[Any], Any]] = {
            "customer": v1.customers.list, "payment_method": v1.payment_methods.list,
            "subscription": v1.subscriptions.list, "invoice": v1.invoices.list, "charge": v1.charges.list,
            "coupon": v1.coupons.list, "promotion_code": v1.promotion_codes.list, "price": v1.prices.list,
            "product": v1.products.list, "event": v1.events.list, "invoice_payment": v1.invoice_payments.list,
        }
        query: JSONDict = {**(params or {}), "limit": limit}
        if object_type == "subscription":
            query.setdefault("status", "all")  # Stripe's default leaves canceled ones out
        if starting_after:
            query["starting_after"] = starting_after
        if ending_before:
            query["ending_before"] = ending_before
        page = self._call(listers[object_type], query)
        return {"object": "list", "data": [_to_dict(o) for o in page.data], "has_more": bool(page.has_more),
                "url": str(getattr(page, "url", "") or "")}

    def create_checkout_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        session = self._call(
            self._client.v1.checkout.sessions.create,
            cast("SessionCreateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(session)

    def create_portal_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        session = self._call(
            self._client.v1.billing_portal.sessions.create,
            cast("PortalSessionCreateParams", params),
            {"idempotency_key": idempotency_key},
        )
        return _to_dict(session)


class _Plain:
    """A dict answered where the SDK would answer a StripeObject (to_dict)."""

    def __init__(self, data: JSONDict) -> None:
        self.data = data

    def to_dict(self, recursive: bool = True, for_json: bool = True) -> JSONDict:
        return self.data


def _to_dict(obj: Any) -> JSONDict:
    """A StripeObject as plain JSON-able data (nested objects and lists too)."""
    data = obj.to_dict(recursive=True, for_json=True)
    return cast(JSONDict, data)


def _unset_nones(value: Any) -> Any:
    """None -> "" inside update parameters: the SDK drops None values, while ""
    is how Stripe's API unsets a field or removes a metadata key."""
    if isinstance(value, dict):
        return {key: "" if item is None else _unset_nones(item) for key, item in value.items()}
    return value


def _stream_event(event: JSONDict) -> JSONDict:
    """One v2 stream event: string payload values, RFC 3339 timestamp."""
    out: JSONDict = {
        "event_name": event["event_name"],
        "payload": {str(k): str(v) for k, v in (event.get("payload") or {}).items()},
    }
    if event.get("identifier"):
        out["identifier"] = event["identifier"]
    timestamp = event.get("timestamp")
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool):
        out["timestamp"] = rfc3339(timestamp)
    elif timestamp is not None:
        out["timestamp"] = str(timestamp)
    return out
