"""In-process delivery of the Fake's events: what the local stack's
delivery loop, webhook function and stream poller do, without a stack.
Each event is stored as the webhook function stores it (a received row,
run 0) and processed as the stream's record would be."""

from __future__ import annotations

import json

from billing.core import clock
from billing.data.tables import WebhookEventRow
from billing.webhooks import reconcile, store
from devstack.fake_stripe import FakeProcessor


class Deliverer:
    def __init__(self, fake: FakeProcessor) -> None:
        self.fake = fake
        self.position = 0

    def skip(self) -> None:
        """Forget the events recorded so far (as if Stripe had not sent them yet)."""
        self.position = self.fake.event_count()

    def pending(self) -> list[dict]:
        return self.fake.events_since(self.position)

    def deliver(self, *, types: set[str] | None = None) -> dict[str, str | None]:
        """Store and process every event recorded since the last call (those
        of `types` only, the others skipped); event id -> outcome."""
        outcomes: dict[str, str | None] = {}
        for event in self.pending():
            self.position += 1
            if types is not None and event["type"] not in types:
                continue
            outcomes[event["id"]] = self.apply(event)
        # Deferred events re-driven by their parent are run again, as the stream would.
        for row in WebhookEventRow.scan(WebhookEventRow.run_reason.exists()):
            outcomes[row.pk] = reconcile.process(row.pk, int(row.run))
        return outcomes

    @staticmethod
    def apply(event: dict) -> str | None:
        WebhookEventRow(pk=event["id"], type=event["type"], created=event["created"], body=json.dumps(event),
                        received_at=clock.iso(), updated_at=clock.iso(), status=store.RECEIVED,
                        object_id=(event["data"]["object"] or {}).get("id")).save()
        return reconcile.process(event["id"], 0)
