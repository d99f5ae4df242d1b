"""Walking `by_accepted` newest first, across its lanes, for the usage lists
that are not served by a key of their own (DESIGN.md section 7: the happy
path writes one index entry per event, so the status and customer lists
read the accept index and the rows' status, instead of an index entry per
status that the report would have to move).

Each lane is read one DynamoDB page at a time (a customer or event name is
a filter on the projected attributes), the lanes are merged by acceptance
time, and the candidates' rows are read in batches (eventually consistent)
to keep those a list wants. A request reads at most `budget` index entries:
a page may come back short, even empty, with a cursor to go on with, as a
DynamoDB Query with a filter does. The cursor holds, per lane, the last
entry handed out or passed over (or that the lane is done), so no row is
skipped or repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from pynamodb.expressions.condition import Condition

from billing.data import lanes as data_lanes
from billing.data import pagination
from billing.data.usage_tables import MeterEventRow
from billing.metering.outbox import all_lanes

PAGE_ENTRIES: Final = 200
DEFAULT_BUDGET: Final = 2000
BATCH_GET: Final = 100
_DONE: Final = "done"

Position = list[str] | str | None  # [inserted_at, identifier], "done", or None (from the top)


def scope_of(kind: str, **filters: str | None) -> str:
    """A short scope naming the list and its filters (cursors carry it)."""
    text = "|".join(f"{k}={v}" for k, v in sorted(filters.items()) if v is not None)
    return f"usage:{kind}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def top() -> dict[str, Position]:
    """Positions at the newest entry of every lane."""
    return dict.fromkeys(all_lanes())


def decode_positions(cursor: str | None, scope: str) -> dict[str, Position]:
    state = pagination.decode(cursor, scope=scope)
    return top() if state is None else check_positions(state)


@dataclass
class _Lane:
    name: str
    start: Position
    buffer: list[MeterEventRow] = field(default_factory=list)
    more: bool = True  # DynamoDB has entries past what was fetched
    fetched_to: Position = None  # where the next fetch starts

    def __post_init__(self) -> None:
        self.more = self.start != _DONE
        self.fetched_to = self.start


def _fetch(lane: _Lane, floor: str | None, filters: Condition | None) -> int:
    """One page of the lane into its buffer; returns the entries DynamoDB read."""
    # Inclusive: rows accepted in the floor's own millisecond may not have been swept.
    condition = MeterEventRow.inserted_at >= floor if floor else None
    start = None
    if isinstance(lane.fetched_to, list):
        start = {"pk": {"S": lane.fetched_to[1]}, "lane": {"S": lane.name}, "inserted_at": {"S": lane.fetched_to[0]}}
    page = MeterEventRow._get_connection().query(
        lane.name, range_key_condition=condition, filter_condition=filters, index_name="by_accepted",
        exclusive_start_key=start, limit=PAGE_ENTRIES, scan_index_forward=False)
    lane.buffer.extend(MeterEventRow.from_raw_data(item) for item in page.get("Items") or [])
    last = page.get("LastEvaluatedKey")
    lane.more = bool(last)
    if last:
        lane.fetched_to = [last["inserted_at"]["S"], last["pk"]["S"]]
    return int(page.get("ScannedCount") or 0)


def newest_first(*, scope: str, cursor: str | None, limit: int, keep: Callable[[MeterEventRow], bool],
                 filters: Condition | None = None, floors: dict[str, str] | None = None,
                 budget: int = DEFAULT_BUDGET) -> tuple[list[MeterEventRow], str | None]:
    """A page of whole rows `keep` accepts, newest accepted first, and the next cursor."""
    rows, state = walk(decode_positions(cursor, scope), limit=limit, keep=keep, filters=filters, floors=floors,
                       budget=budget)
    return rows, None if state is None else pagination.encode(state, scope=scope)


def check_positions(state: object) -> dict[str, Position]:
    """A walk's positions as a cursor held them (422 if they are not a walk's):
    the same positions as every laned list's (billing.data.lanes)."""
    return data_lanes.check_positions(state, all_lanes())


def walk(positions: dict[str, Position], *, limit: int, keep: Callable[[MeterEventRow], bool],
         filters: Condition | None = None, floors: dict[str, str] | None = None, budget: int = DEFAULT_BUDGET
         ) -> tuple[list[MeterEventRow], dict[str, Position] | None]:
    """The page, and the positions to go on from (None: every lane is done)."""
    lanes = [_Lane(name, start) for name, start in positions.items()]
    floors = floors or {}
    handed: dict[str, Position] = {lane.name: lane.start for lane in lanes}
    page: list[MeterEventRow] = []
    leftover: set[str] = set()  # lanes with fetched entries not handed out
    read = 0
    while len(page) < limit:
        # Fill every lane that ran dry (a page may be all filtered out).
        dry = [lane for lane in lanes if not lane.buffer and lane.more]
        while dry and read < budget:
            for lane in dry:
                read += _fetch(lane, floors.get(lane.name) or None, filters)
            dry = [lane for lane in lanes if not lane.buffer and lane.more]
        # The candidates of this round, in merged order, up to a batch. A lane
        # that ran dry but has more must be fetched before the order is known.
        candidates: list[tuple[_Lane, MeterEventRow]] = []
        while len(candidates) < min(BATCH_GET, 2 * (limit - len(page)) + 10):
            live = [lane for lane in lanes if lane.buffer]
            if not live or any(not lane.buffer and lane.more for lane in lanes):
                break
            lane = max(live, key=lambda ln: (ln.buffer[0].inserted_at, ln.buffer[0].pk))
            candidates.append((lane, lane.buffer.pop(0)))
        if not candidates:
            break  # every lane done, or the read budget is spent
        rows = {r.pk: r for r in MeterEventRow.batch_get([c.pk for _, c in candidates])}
        for lane, candidate in candidates:
            if len(page) >= limit:
                leftover.add(lane.name)  # not handed out: read again next time
                continue
            handed[lane.name] = [candidate.inserted_at, candidate.pk]
            row = rows.get(candidate.pk)
            if row is not None and keep(row):
                page.append(row)
    return page, data_lanes.resume_positions(
        ((lane.name, bool(lane.buffer) or lane.name in leftover, lane.more, lane.fetched_to) for lane in lanes),
        handed)

