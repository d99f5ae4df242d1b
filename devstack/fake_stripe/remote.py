"""RemoteFakeProcessor: the Processor interface over HTTP to a shared Fake.

The local stack's functions run in separate processes; each uses this client
to reach the one FakeProcessor the stack serves (see rpc.py): the stack's
runtime installs it in every worker with billing.processor.set_processor
before the handler is imported (devstack/runtime.py). Only the standard
library is used, so a worker needs nothing the layer does not have.
A ProcessorFailure raised by the Fake is raised again here with the same
fields, so callers cannot tell the hop is there; not reaching the Fake at all
is a transient network failure, as not reaching Stripe would be.

A scripted crash (FakeProcessor.add_fault(..., crash=True)) arrives as
`{"crash": true}` and ends this process at once with CRASH_EXIT_CODE: the
local stack turns the dead worker into a function error and the event
source retries, which is how a real crash between the Stripe call and the
DynamoDB write plays out on Lambda. This can only happen in the local stack:
this module is not in the deployed layer, and the exit also requires
BILLING_LOCAL_STACK=1, which only the local stack's runtime sets (elsewhere
the answer is a lost response).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, cast
from urllib.parse import urlsplit

from billing.processor.base import MAX_LIST_LIMIT, JSONDict, check_list_type, check_object_type
from billing.processor.errors import API_ERROR, INVALID_REQUEST, NETWORK, TIMEOUT, ProcessorFailure

DEFAULT_TIMEOUT_SECONDS = 10.0
# The exit status of a worker killed by a scripted crash (EX_SOFTWARE).
CRASH_EXIT_CODE = 70
LOCAL_STACK_ENV = "BILLING_LOCAL_STACK"


def _crash() -> None:
    """Die now, as a process killed mid-invocation does: no cleanup, no
    flush, no exception for any handler to catch."""
    if os.environ.get(LOCAL_STACK_ENV) != "1":
        # Not the local stack's worker: never exit a process we do not own.
        raise ProcessorFailure("the fake processor's answer was lost", error_type=NETWORK)
    os._exit(CRASH_EXIT_CODE)


class RemoteFakeProcessor:
    name = "fake"

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            # urlopen would also open file:// and others; this is an HTTP client.
            raise ValueError(f"RemoteFakeProcessor needs an http(s) URL, got {url!r}")
        self.url = url
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"RemoteFakeProcessor({self.url!r})"

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        body = json.dumps({"method": method, "args": list(args), "kwargs": kwargs}).encode()
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:  # 4xx/5xx from the RPC server: still a JSON answer
            status, raw = exc.code, exc.read()
        except TimeoutError:
            raise ProcessorFailure("timed out waiting for the fake processor", error_type=TIMEOUT) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error_type = TIMEOUT if isinstance(reason, TimeoutError) else NETWORK
            raise ProcessorFailure(f"could not reach the fake processor: {reason}", error_type=error_type) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ProcessorFailure(f"fake processor answered HTTP {status} without JSON", status=status)
        if status == 200 and answer.get("crash") is True:
            _crash()
        if "result" in answer and status == 200:
            return answer["result"]
        error = answer.get("error")
        if not isinstance(error, dict):
            raise ProcessorFailure(f"fake processor answered HTTP {status} without a result", status=status)
        if status == 200:
            raise ProcessorFailure.from_dict(error)
        # The request never reached the interface (bad call) or the Fake
        # crashed: a bug to fix, not a condition to retry.
        raise ProcessorFailure(
            str(error.get("message") or "fake processor error"),
            status=status,
            error_type=INVALID_REQUEST if status < 500 else API_ERROR,
            transient=False,
        )

    def _dict(self, method: str, *args: Any, **kwargs: Any) -> JSONDict:
        return cast(JSONDict, self._call(method, *args, **kwargs))

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
        return self._dict(
            "create_customer",
            idempotency_key=idempotency_key,
            email=email,
            name=name,
            metadata=metadata,
            preferred_locales=preferred_locales,
            tax_exempt=tax_exempt,
        )

    def retrieve_customer(self, customer_id: str) -> JSONDict:
        return self._dict("retrieve_customer", customer_id)

    def update_customer(self, customer_id: str, *, idempotency_key: str | None = None, fields: JSONDict) -> JSONDict:
        return self._dict("update_customer", customer_id, idempotency_key=idempotency_key, fields=fields)

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> JSONDict:
        return self._dict("delete_customer", customer_id, idempotency_key=idempotency_key)

    def update_tax_location(self, customer_id: str, *, address: JSONDict, idempotency_key: str) -> JSONDict:
        return self._dict("update_tax_location", customer_id, address=address, idempotency_key=idempotency_key)

    def attach_payment_method(self, payment_method_id: str, *, customer_id: str, idempotency_key: str) -> JSONDict:
        return self._dict(
            "attach_payment_method", payment_method_id, customer_id=customer_id, idempotency_key=idempotency_key
        )

    def detach_payment_method(self, payment_method_id: str, *, idempotency_key: str) -> JSONDict:
        return self._dict("detach_payment_method", payment_method_id, idempotency_key=idempotency_key)

    def retrieve_payment_method(self, payment_method_id: str) -> JSONDict:
        return self._dict("retrieve_payment_method", payment_method_id)

    def create_meter_event(
        self, *, event_name: str, identifier: str, timestamp: int, payload: dict[str, str]
    ) -> JSONDict:
        return self._dict(
            "create_meter_event", event_name=event_name, identifier=identifier, timestamp=timestamp, payload=payload
        )

    def create_meter_event_session(self) -> JSONDict:
        return self._dict("create_meter_event_session")

    def send_meter_events(self, *, session_token: str, events: list[JSONDict]) -> None:
        self._call("send_meter_events", session_token=session_token, events=events)

    def retrieve_v2_event(self, event_id: str) -> JSONDict:
        return self._dict("retrieve_v2_event", event_id)

    def list_v2_events(self, *, types: list[str], created_gte: int, created_lte: int, limit: int) -> JSONDict:
        return self._dict("list_v2_events", types=types, created_gte=created_gte, created_lte=created_lte,
                          limit=limit)

    def cancel_meter_event(self, *, event_name: str, identifier: str, idempotency_key: str) -> JSONDict:
        return self._dict("cancel_meter_event", event_name=event_name, identifier=identifier,
                          idempotency_key=idempotency_key)

    def meter_event_summaries(
        self, *, event_name: str, customer_id: str, start_time: int, end_time: int,
        value_grouping_window: str | None = None,
    ) -> JSONDict:
        return self._dict("meter_event_summaries", event_name=event_name, customer_id=customer_id,
                          start_time=start_time, end_time=end_time, value_grouping_window=value_grouping_window)

    def find_meter(self, event_name: str) -> JSONDict:
        return self._dict("find_meter", event_name)

    def retrieve_object(self, object_type: str, object_id: str) -> JSONDict:
        check_object_type(object_type)  # the same ValueError as the other implementations
        return self._dict("retrieve_object", object_type, object_id)

    def create_coupon(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._dict("create_coupon", idempotency_key=idempotency_key, params=params)

    def create_promotion_code(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._dict("create_promotion_code", idempotency_key=idempotency_key, params=params)

    def update_promotion_code(
        self, promotion_code_id: str, *, params: JSONDict, idempotency_key: str | None = None
    ) -> JSONDict:
        return self._dict("update_promotion_code", promotion_code_id, params=params, idempotency_key=idempotency_key)

    def create_subscription(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._dict("create_subscription", idempotency_key=idempotency_key, params=params)

    def update_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._dict("update_subscription", subscription_id, idempotency_key=idempotency_key, params=params)

    def cancel_subscription(self, subscription_id: str, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._dict("cancel_subscription", subscription_id, idempotency_key=idempotency_key, params=params)

    def list_subscriptions(self, *, customer_id: str) -> list[JSONDict]:
        return cast(list[JSONDict], self._call("list_subscriptions", customer_id=customer_id))

    def list_payment_methods(self, *, customer_id: str) -> list[JSONDict]:
        return cast(list[JSONDict], self._call("list_payment_methods", customer_id=customer_id))

    def list_objects(self, object_type: str, *, limit: int = MAX_LIST_LIMIT, starting_after: str | None = None,
                     ending_before: str | None = None, params: JSONDict | None = None) -> JSONDict:
        check_list_type(object_type, limit, params)  # the same ValueError as the other implementations
        return self._dict("list_objects", object_type, limit=limit, starting_after=starting_after,
                          ending_before=ending_before, params=params)

    def create_checkout_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._dict("create_checkout_session", idempotency_key=idempotency_key, params=params)

    def create_portal_session(self, *, idempotency_key: str, params: JSONDict) -> JSONDict:
        return self._dict("create_portal_session", idempotency_key=idempotency_key, params=params)
