"""The Fake's event log: every change it makes to an object records the
Stripe event that change causes, in order, as Stripe's Events API keeps them.

A plain ordered store: events are appended (never changed or removed) and
read by position, so the local stack's delivery loop (control.py) can post
them to the webhook endpoint in order, and a reader can page through them
(`page`, oldest first, from an event id). An event's `created` is the wall
clock, as on Stripe, where a test clock moves the objects' own times
(periods, trials) but not when their events were sent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Final

from billing.processor.base import JSONDict

# The API version the Fake's events say they were rendered with.
API_VERSION: Final = "2025-09-30.clover"


class EventLog:
    """Events in the order they happened. Not locked: FakeCore's lock guards it."""

    def __init__(self) -> None:
        self._events: list[JSONDict] = []
        self._positions: dict[str, int] = {}
        # Called (under the Fake's lock) after each append: the delivery loop's wake-up.
        self.on_append: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._events)

    def append(self, event: JSONDict) -> None:
        self._positions[str(event["id"])] = len(self._events)
        self._events.append(event)
        if self.on_append is not None:
            self.on_append()

    def since(self, position: int) -> list[JSONDict]:
        """Deep copies of the events from `position` (0-based) on."""
        return copy.deepcopy(self._events[position:])

    def oldest_first(self) -> list[JSONDict]:
        """Every event, oldest first: the log itself, not copies (the caller copies what it answers)."""
        return list(self._events)

    def page(self, *, starting_after: str | None = None, limit: int = 100,
             types: frozenset[str] | None = None) -> tuple[list[JSONDict], bool]:
        """Up to `limit` events after the one with id `starting_after` (oldest
        first), optionally of the given types; and whether more follow."""
        start = 0
        if starting_after is not None:
            if starting_after not in self._positions:
                raise KeyError(starting_after)
            start = self._positions[starting_after] + 1
        chosen = [e for e in self._events[start:] if types is None or e["type"] in types]
        return copy.deepcopy(chosen[:limit]), len(chosen) > limit


def event(event_id: str, type_: str, obj: JSONDict, created: int, *, previous: JSONDict | None = None,
          request: JSONDict | None = None) -> JSONDict:
    """A Stripe event as its webhook carries it (data.object a snapshot)."""
    data: JSONDict = {"object": copy.deepcopy(obj)}
    if previous is not None:
        data["previous_attributes"] = copy.deepcopy(previous)
    return {
        "id": event_id, "object": "event", "api_version": API_VERSION, "created": created, "data": data,
        "livemode": False, "pending_webhooks": 1,
        "request": dict(request) if request is not None else {"id": None, "idempotency_key": None},
        "type": type_,
    }


def changed(before: JSONDict, after: JSONDict) -> JSONDict:
    """Stripe's previous_attributes: the top-level fields that changed, as they were."""
    return {key: copy.deepcopy(before.get(key)) for key in after if before.get(key) != after.get(key)}
