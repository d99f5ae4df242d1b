"""What a handler of one event type works with: the event being applied
(Context: its row, body, actor, the processed mark's transaction), the
watermark order, and the two ways an event can fail to apply (Deferred,
Malformed). Handlers (customers.py, objects.py) import this module;
reconcile.py imports the handlers, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core.observability import logger
from billing.data.ledger import Actor
from billing.data.tables import WebhookEventRow, connection
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.webhooks import store


class Deferred(Exception):
    """The event's parent (a customer) is not in the projection yet."""

    def __init__(self, parent_kind: str, parent_id: str) -> None:
        super().__init__(f"{parent_kind} {parent_id} not found")
        self.parent_kind = parent_kind
        self.parent_id = parent_id


class Malformed(Exception):
    """The event cannot be applied as it is: retrying would fail the same way.
    The message is ours (it names fields, never their values)."""

    def __init__(self, message: str, code: str = "malformed_event") -> None:
        super().__init__(message)
        self.code = code

    def to_error(self) -> dict[str, Any]:
        return {"type": "bad_request", "code": self.code, "message": str(self)[:512]}


def order(created: int, watermark: float | None) -> int:
    """1 if the event is newer than the watermark (or there is none), 0 same second, -1 older."""
    if watermark is None:
        return 1
    return (created > watermark) - (created < watermark)


@dataclass
class Context:
    """One event being applied: its row (as read), its parsed body, its actor."""

    row: WebhookEventRow
    event: dict[str, Any]
    refetched: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # The type the event is applied as, when not the row's own: a thin
    # `v1.customer.updated` is applied (and recorded) as `customer.updated`.
    applied_as: str | None = None

    @property
    def id(self) -> str:
        return str(self.row.pk)

    @property
    def type(self) -> str:
        return self.applied_as or str(self.row.type)

    @property
    def created(self) -> int:
        return int(self.row.created)

    @property
    def replay(self) -> bool:
        return self.row.run_reason == "replay"

    @property
    def actor(self) -> Actor:
        return Actor.webhook(self.id)

    def object(self, id_field: str = "id") -> dict[str, Any]:
        """`data.object`, with a string id (the ack path checked the shape of a
        present one; an event of a projected type must have one). An object
        keyed by another field (an entitlement summary, by its customer)
        names it."""
        data = self.event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        if not isinstance(obj, dict) or not isinstance(obj.get(id_field), str) or not obj[id_field]:
            raise Malformed(f"{self.type} needs data.object with {'an id' if id_field == 'id' else id_field}")
        return obj

    def already_applied(self, last_event_id: str | None) -> bool:
        """This very event set the watermark already (a redelivery); a replay re-applies."""
        return last_event_id == self.id and not self.replay

    def skip_unchanged(self, last_event_id: str | None) -> bool:
        """Whether an object that changes nothing on its row writes nothing:
        for an event, only when it set the row's watermark already (a
        redelivery or replay of what is there); a new event that changes
        nothing still moves the watermark and is recorded. An import
        (billing.sync.backfill) overrides it: an unchanged row is left alone."""
        return last_event_id == self.id

    def refetch(self, object_type: str, object_id: str, fallback: dict[str, Any]) -> dict[str, Any]:
        """The processor's current object (for an event in the watermark's second),
        fetched once per event even when a lock conflict makes us re-read."""
        if (object_type, object_id) in self.refetched:
            return self.refetched[(object_type, object_id)]
        try:
            found = get_processor().retrieve_object(object_type, object_id)
        except ProcessorFailure as failure:
            if failure.code == "resource_missing":
                # Gone at the processor (e.g. a deleted coupon): the event's
                # own object is the last state there will ever be.
                return fallback
            raise
        logger.info("same-second event: object re-fetched",
                    extra={"event_id": self.id, "object_type": object_type, "object_id": object_id})
        self.refetched[(object_type, object_id)] = found
        return found

    def finish(self, status: str) -> str:
        store.finish(self.row, status)
        return status

    @contextmanager
    def transaction(self) -> Iterator[TransactWrite]:
        """A TransactWrite that also marks this event processed, on condition
        that no newer run was requested since it was read."""
        try:
            with TransactWrite(connection=connection()) as tw:
                store.add_finish(tw, self.row)
                yield tw
        except TransactWriteError:
            # Cancellation reasons follow PynamoDB's item order (checks,
            # deletes, puts, updates), not the order items were added, so
            # which condition failed is read back rather than guessed: a newer
            # run means this one is superseded; otherwise the projection lost
            # a race and the caller re-reads and retries.
            current = store.load(self.id)
            if current is None or current.run != self.row.run:
                raise store.Superseded(self.id) from None
            raise


Handler = Callable[[Context], str]
