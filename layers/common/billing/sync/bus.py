"""PutEvents in order per subject, at least once.

A stream batch holds the records of several subjects, each subject's in
order. They are put in rounds: each round sends the head of every subject
still going, at most one entry per subject per PutEvents call (10 entries,
256 KB a call). An entry EventBridge accepts lets its subject's next record
go in the next round; an entry it refuses (a failed entry, or the whole call
failing) stops its subject for this batch: that record and every later
record of the subject are returned as failed, so the stream retries them in
their order and no later event of a subject is ever put before an earlier
one. Other subjects carry on.

Why one entry per subject per call: EventBridge accepts or refuses each
entry of a call on its own, so two entries of one subject in one call could
end with the later one published and the earlier one refused.

EventBridge itself does not promise to deliver in the order events were put;
consumers that need the order compare `inserted_at` and the id (a ULID,
time-sortable) within a subject (README, "Domain events").
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from billing.sync.domain_events import SOURCE, DomainEvent

MAX_ENTRIES: Final = 10
MAX_REQUEST_BYTES: Final = 256 * 1024


@dataclass(frozen=True)
class Outgoing:
    """A stream record's event; `record_id` is what the batch reports if it fails."""

    record_id: str
    event: DomainEvent


# Entries in, one bool per entry out (accepted or not), in order.
PutEntries = Callable[[list[dict[str, Any]]], list[bool]]


def entry(event: DomainEvent, bus_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {"Source": SOURCE, "DetailType": event.detail_type, "EventBusName": bus_name,
                           "Detail": json.dumps(event.detail, separators=(",", ":"), ensure_ascii=False),
                           "Resources": []}
    if event.time:
        # Unreadable: EventBridge stamps the time of arrival instead.
        with contextlib.suppress(ValueError):
            out["Time"] = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    return out


def entry_size(item: dict[str, Any]) -> int:
    """EventBridge's own accounting of a PutEvents entry's size."""
    size = 14 if "Time" in item else 0
    size += len(item["Source"].encode()) + len(item["DetailType"].encode()) + len(item["Detail"].encode())
    return size + sum(len(r.encode()) for r in item.get("Resources") or [])


def _calls(heads: list[tuple[Outgoing, dict[str, Any]]]) -> list[list[tuple[Outgoing, dict[str, Any]]]]:
    calls: list[list[tuple[Outgoing, dict[str, Any]]]] = []
    current: list[tuple[Outgoing, dict[str, Any]]] = []
    size = 0
    for head in heads:
        n = entry_size(head[1])
        if current and (len(current) == MAX_ENTRIES or size + n > MAX_REQUEST_BYTES):
            calls.append(current)
            current, size = [], 0
        current.append(head)
        size += n
    if current:
        calls.append(current)
    return calls


@dataclass
class Result:
    published: list[Outgoing]
    failed: list[Outgoing]  # refused, and every later record of a refused subject
    calls: int = 0


def publish(items: Sequence[Outgoing], bus_name: str, put: PutEntries) -> Result:
    """Put every item, in order per subject; see the module's docstring."""
    queues: OrderedDict[str, deque[Outgoing]] = OrderedDict()
    for item in items:
        queues.setdefault(item.event.subject, deque()).append(item)
    stopped: set[str] = set()
    result = Result(published=[], failed=[])
    while True:
        heads = [(queue[0], entry(queue[0].event, bus_name))
                 for subject, queue in queues.items() if queue and subject not in stopped]
        if not heads:
            break
        for call in _calls(heads):
            accepted = put([e for _, e in call])
            result.calls += 1
            for (item, _), ok in zip(call, accepted, strict=True):
                if ok:
                    queues[item.event.subject].popleft()
                    result.published.append(item)
                else:
                    stopped.add(item.event.subject)
    position = {id(item): i for i, item in enumerate(items)}
    result.failed = sorted((item for subject in stopped for item in queues[subject]), key=lambda i: position[id(i)])
    return result
