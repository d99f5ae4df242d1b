"""The Fake processor, hosted by the local stack for every function.

Functions run in their own processes, so they reach the one FakeProcessor
through `POST /_local/fake-stripe/rpc` (remote.py, installed in each worker by
devstack/runtime.py); the other routes are the control surface of DESIGN.md
section 6.

Like Stripe, the Fake sends the events its changes cause: a delivery loop
posts each event of its log (events.py), in order, signed, to the stack's
webhook route, asynchronously and a moment after the change (Stripe's
webhooks trail its API answers), retrying an event the endpoint does not
acknowledge (with backoff, as Stripe does, for a few seconds here).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from billing.processor.errors import ProcessorFailure
from devstack.fake_stripe import rpc
from devstack.fake_stripe.faults import SLOW
from devstack.fake_stripe.processor import FakeProcessor
from devstack.gateway import LocalRequest, Router

RPC_PATH = "/_local/fake-stripe/rpc"
# An event the webhook route does not acknowledge is sent again after 0.05, 0.1, ... s (capped), then dropped.
DELIVERY_TRIES = 10
# How long an event waits before it is sent: Stripe's webhooks trail the API
# answer of the change that caused them (a test that needs the other order
# holds them, POST /_local/fake-stripe/delivery).
DELIVERY_DELAY_SECONDS = 0.5
DELIVERY_BACKOFF_CAP_SECONDS = 2.0
log = logging.getLogger("devstack.fake_stripe")


class FakeStripe:
    def __init__(self) -> None:
        self.fake = FakeProcessor()
        # Where the Fake delivers the events it raises, signed like Stripe.
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        # The delivery loop: how many events of the log were delivered (or given up on).
        self._delivered = 0
        self._generation = 0  # bumped by a reset, which starts a new log
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._held = threading.Event()  # set: events wait in the log (a test's control)
        self._thread: threading.Thread | None = None
        self.fake.on_event(self._wake.set)

    def deliver_webhooks_to(self, url: str, secret: str) -> None:
        self.webhook_url, self.webhook_secret = url, secret

    # -- the event delivery loop -------------------------------------------------------

    def start_delivery(self) -> None:
        """Deliver the log's events from now on (those recorded so far first)."""
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._deliver_loop, name="fake-stripe-events", daemon=True)
            self._thread.start()
            self._wake.set()

    def stop_delivery(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def hold(self, held: bool) -> None:
        """Hold the events in the log (a test that wants to see the API's own
        writes before the webhooks they cause), or deliver them again."""
        if held:
            self._held.set()
        else:
            self._held.clear()
            self._wake.set()

    def wait_delivered(self, timeout: float = 30.0) -> bool:
        """Wait until every event recorded so far was delivered (or given up on)."""
        if self._held.is_set():
            return False
        deadline = time.monotonic() + timeout
        target = self.fake.event_count()
        with self._progress:
            while self._delivered < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._progress.wait(min(left, 0.1))
                target = min(target, self.fake.event_count())  # a reset shortens the log
        return True

    def _deliver_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while not self._stopping.is_set() and not self._held.is_set():
                with self._progress:
                    generation, position = self._generation, self._delivered
                batch = self.fake.events_since(position)
                if not batch:
                    break
                self._stopping.wait(DELIVERY_DELAY_SECONDS)
                for index, event in enumerate(batch, start=position + 1):
                    if self._stopping.is_set():
                        return
                    if self._held.is_set():
                        break
                    self._deliver_with_retries(event)
                    with self._progress:
                        if generation != self._generation:
                            break  # reset meanwhile: start over on the new log
                        # (max: events skipped meanwhile stay skipped)
                        self._delivered = max(self._delivered, index)
                        self._progress.notify_all()

    def _deliver_with_retries(self, event: dict[str, Any]) -> None:
        for attempt in range(DELIVERY_TRIES):
            outcome = self.deliver_event(event)
            status = outcome.get("status")
            if status is None or 200 <= int(status) < 300:
                return
            if self._stopping.is_set():
                return
            time.sleep(min(DELIVERY_BACKOFF_CAP_SECONDS, 0.05 * 2**attempt))
        log.warning("fake stripe gave up delivering %s (%s)", event.get("id"), event.get("type"))

    def register(self, router: Router) -> None:
        router.add_local("POST", RPC_PATH, self._rpc)
        router.add_local("POST", "/_local/fake-stripe/faults", self._fault)
        router.add_local("DELETE", "/_local/fake-stripe/faults", self._clear_faults)
        router.add_local("GET", "/_local/fake-stripe/meter-events", self._meter_events)
        router.add_local("GET", "/_local/fake-stripe/calls", self._calls)
        router.add_local("GET", "/_local/fake-stripe/state", self._state)
        router.add_local("POST", "/_local/fake-stripe/reset", self._reset)
        router.add_local("POST", "/_local/fake-stripe/meter-error", self._meter_error)
        router.add_local("POST", "/_local/fake-stripe/advance", self._advance)
        router.add_local("POST", "/_local/fake-stripe/delivery", self._delivery)
        router.add_local("GET", "/_local/fake-stripe/events", self._events)
        router.add_local("POST", "/_local/fake-stripe/products", self._add_product)
        router.add_local("POST", "/_local/fake-stripe/checkout-sessions/{session_id}/complete",
                         self._complete_checkout)
        router.add_local("POST", "/_local/fake-stripe/dashboard/{object_type}/{object_id}", self._dashboard)

    def _rpc(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        status, body = rpc.dispatch(self.fake, request.json())
        return int(status), body

    def _fault(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
            raise ValueError('give {"operation": ..., "status": ..., "code": ..., "times": N}')
        delay = float(body.get("delay", 0))
        # {"delay": s} alone is a slow answer, not a failure.
        status = int(body.get("status", SLOW if delay and "status" not in body else 500))
        self.fake.add_fault(body["operation"], status, body.get("code"),
                            int(body.get("times", 1)), body.get("message"), after=bool(body.get("after", False)),
                            crash=bool(body.get("crash", False)), skip=int(body.get("skip", 0)), delay=delay)
        return 200, {"pending_faults": self.fake.snapshot()["pending_faults"]}

    def _clear_faults(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        self.fake.clear_faults()
        return 200, {"pending_faults": {}}

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
        with self._progress:
            self.fake.reset()
            self._generation += 1
            self._delivered = 0
            self._progress.notify_all()
        self._wake.set()
        return 200, {"reset": True}

    def skip_pending(self) -> int:
        """Take every event recorded so far as delivered without sending it: the
        history of an account from before this deployment existed (what a
        backfill imports). How many were skipped."""
        with self._progress:
            count = self.fake.event_count()
            skipped = max(0, count - self._delivered)
            self._delivered = count
            self._progress.notify_all()
        return skipped

    def _delivery(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        """{"hold": true}: events wait in the log; {"hold": false}: they are delivered (in order);
        {"skip": true} with either: the events waiting are never sent (an account's history)."""
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("hold"), bool):
            raise ValueError('give {"hold": true} or {"hold": false} (and optionally "skip": true)')
        if body.get("skip") is True:
            self.hold(True)
            self.skip_pending()
        self.hold(body["hold"])
        with self._progress:
            delivered = self._delivered
        return 200, {"held": body["hold"], "delivered": delivered, "count": self.fake.event_count()}

    def _advance(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        """Stripe's test clock: billing time moves on; what came due runs and its events are delivered."""
        body = request.json()
        if not isinstance(body, dict) or "seconds" not in body:
            raise ValueError('give {"seconds": N}')
        return 200, self.fake.advance(body["seconds"])

    def _events(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        """The event log, oldest first, a page at a time (?starting_after=evt_...&limit=&type=)."""
        limit = int((request.query.get("limit") or ["100"])[-1])
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        after = (request.query.get("starting_after") or [""])[-1] or None
        types = frozenset(request.query.get("type") or []) or None
        try:
            data, more = self.fake.event_page(starting_after=after, limit=limit, types=types)
        except KeyError:
            return 404, {"error": {"type": "not_found", "message": f"no event {after}", "details": {}}}
        with self._progress:
            delivered = self._delivered
        return 200, {"object": "list", "data": data, "has_more": more, "delivered": delivered,
                     "count": self.fake.event_count()}

    def _add_product(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise ValueError('give {"name", "features": [...], "prices": [{"unit_amount", "interval", "lookup_key"}]}')
        made = self.fake.add_product(str(body.get("name") or ""), features=list(body.get("features") or []),
                                     prices=body.get("prices") or [], description=body.get("description"))
        return 201, made

    def _complete_checkout(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        """The customer pays on the Checkout page with a test card (default pm_card_visa)."""
        body = request.json() if request.body else {}
        payment_method = str((body or {}).get("payment_method") or "pm_card_visa")
        try:
            return 200, self.fake.complete_checkout_session(params["session_id"], payment_method)
        except ProcessorFailure as failure:
            return int(failure.status or 400), {"error": failure.to_dict()}

    def _dashboard(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        """Change an object as the Stripe Dashboard would (body: the fields to set;
        metadata merges): the object changes and its updated event is sent."""
        body = request.json()
        if not isinstance(body, dict) or not body:
            raise ValueError('give the fields to change, e.g. {"email": "new@example.com"}')
        try:
            return 200, self.fake.dashboard_update(params["object_type"], params["object_id"], body)
        except ProcessorFailure as failure:
            return int(failure.status or 400), {"error": failure.to_dict()}

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
        sampled = body.get("sampled")
        if sampled is not None and (isinstance(sampled, bool) or not isinstance(sampled, int) or sampled < 0):
            raise ValueError('"sampled" is how many of the identifiers the report names: an integer >= 0')
        thin = self.fake.raise_meter_error(identifiers, code=code, message=str(message) if message else None,
                                           sampled=sampled)
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
