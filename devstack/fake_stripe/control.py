"""The Fake processor, hosted by the local stack for every function.

Functions run in their own processes, so they reach the one FakeProcessor
through `POST /_local/fake-stripe/rpc` (remote.py, installed in each worker by
devstack/runtime.py); the other routes are the control surface of DESIGN.md
section 6.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from devstack.fake_stripe import rpc
from devstack.fake_stripe.processor import FakeProcessor
from devstack.gateway import LocalRequest, Router

RPC_PATH = "/_local/fake-stripe/rpc"


class FakeStripe:
    def __init__(self) -> None:
        self.fake = FakeProcessor()
        # Where the Fake delivers the events it raises, signed like Stripe.
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None

    def deliver_webhooks_to(self, url: str, secret: str) -> None:
        self.webhook_url, self.webhook_secret = url, secret

    def register(self, router: Router) -> None:
        router.add_local("POST", RPC_PATH, self._rpc)
        router.add_local("POST", "/_local/fake-stripe/faults", self._fault)
        router.add_local("GET", "/_local/fake-stripe/meter-events", self._meter_events)
        router.add_local("GET", "/_local/fake-stripe/calls", self._calls)
        router.add_local("GET", "/_local/fake-stripe/state", self._state)
        router.add_local("POST", "/_local/fake-stripe/reset", self._reset)
        router.add_local("POST", "/_local/fake-stripe/meter-error", self._meter_error)

    def _rpc(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        status, body = rpc.dispatch(self.fake, request.json())
        return int(status), body

    def _fault(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
            raise ValueError('give {"operation": ..., "status": ..., "code": ..., "times": N}')
        self.fake.add_fault(body["operation"], int(body.get("status", 500)), body.get("code"),
                            int(body.get("times", 1)), body.get("message"), after=bool(body.get("after", False)),
                            crash=bool(body.get("crash", False)))
        return 200, {"pending_faults": self.fake.snapshot()["pending_faults"]}

    def _meter_events(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        snap = self.fake.snapshot()
        return 200, {"data": snap["meter_events"], "duplicates": snap["meter_event_duplicates"],
                     "count": snap["meter_event_count"], "duplicate_count": snap["duplicate_count"],
                     "canceled_count": snap["canceled_meter_event_count"]}

    def _calls(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"data": self.fake.calls}

    def _state(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        snap = self.fake.snapshot()
        snap.pop("calls")
        return 200, snap

    def _reset(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        self.fake.reset()
        return 200, {"reset": True}

    def _meter_error(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        """Stripe found accepted meter events invalid: raise the report and
        deliver its thin event to the stack's webhook endpoint."""
        body = request.json()
        identifiers = body.get("identifiers") if isinstance(body, dict) else None
        if not isinstance(identifiers, list) or not identifiers or \
                not all(isinstance(i, str) and i for i in identifiers):
            raise ValueError('give {"identifiers": ["...", ...]} (and optionally "code", "message")')
        code = str(body.get("code") or "meter_event_customer_not_found")
        message = body.get("message")
        thin = self.fake.raise_meter_error(identifiers, code=code, message=str(message) if message else None)
        return 200, {"event": thin, "delivery": self.deliver_event(thin)}

    def deliver_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST an event to the webhook endpoint with a Stripe-Signature
        (t=<unix>,v1=HMAC-SHA256 of "<t>.<body>"), as Stripe sends it."""
        if self.webhook_url is None or self.webhook_secret is None:
            return {"status": None, "body": "no webhook endpoint configured"}
        raw = json.dumps(event).encode()
        timestamp = int(time.time())
        signature = hmac.new(self.webhook_secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
        delivery = urllib.request.Request(  # noqa: S310 - the stack's own http:// gateway
            self.webhook_url, data=raw, method="POST",
            headers={"Content-Type": "application/json", "Stripe-Signature": f"t={timestamp},v1={signature}"})
        try:
            with urllib.request.urlopen(delivery, timeout=30) as response:  # noqa: S310
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
        try:
            parsed: Any = json.loads(answer)
        except ValueError:
            parsed = answer.decode("utf-8", "replace")
        return {"status": status, "body": parsed}
