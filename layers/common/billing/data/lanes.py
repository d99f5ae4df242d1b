"""Lanes: one index partition key spread over LANES keys, so no key of a list
index takes every write (DynamoDB takes 1,000 write units a second per
partition key; a renewal burst or a backfill would throttle one key and back
the pressure onto the table).

A row's lane comes from its own id (`laned("invoice", "in_1")` is
"invoice#07"), so it never moves. A list reads every lane of its key newest
(or oldest) first and merges them by the index's sort key, then the row's id:
one order whatever the lane count. The cursor holds, per lane, the last entry
handed out (or where the lane's read stopped, or that it is done), so a page
never skips or repeats an entry.

The laned list indexes project keys (and the attributes a list filters on),
not whole rows: a row's update that changes no projected attribute writes no
index entry. The page's rows are then read whole, in one batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from billing.core.errors import ValidationFailed

# One lane rule for every laned index, re-exported for the lists here.
from billing.core.lanes import LANES as LANES
from billing.core.lanes import all_lanes as all_lanes
from billing.core.lanes import lane_of as lane_of
from billing.core.lanes import laned as laned
from billing.data.tables import hash_key_name

DEFAULT_BUDGET: Final = 2000  # index entries one request may read
SCOPE_SUFFIX: Final = "|lanes"
_DONE: Final = "done"

Position = list[str] | str | None  # [sort key value, row id], "done", or None (from the top)


def check_positions(state: object, lanes: list[str] | None = None) -> dict[str, Position]:
    """A merged walk's positions as a cursor held them (422 if they are not a walk's)."""
    lanes = all_lanes() if lanes is None else lanes
    if not isinstance(state, dict) or set(state) != set(lanes) or not all(
            value is None or value == _DONE or (isinstance(value, list) and len(value) == 2
                                               and all(isinstance(v, str) and v for v in value))
            for value in state.values()):
        raise ValidationFailed("cursor is not one this list issued", {"cursor": "invalid"})
    return state


@dataclass
class _Lane:
    name: str
    start: Position
    buffer: list[tuple[str, str]] = field(default_factory=list)  # (sort key value, row id)
    more: bool = True
    fetched_to: Position = None

    def __post_init__(self) -> None:
        self.more = self.start != _DONE
        self.fetched_to = self.start


@dataclass(frozen=True)
class LaneRead:
    """What a merge reads: the laned `index` of `model` at `base` (every lane of it)."""

    model: type[Model]
    index: GlobalSecondaryIndex[Any]
    base: str
    condition: Any
    newest_first: bool
    page_entries: int

    @property
    def names(self) -> tuple[str, str, str]:
        """The row id's attribute, the index's partition and sort key attributes."""
        sort = next(a.attr_name for a in vars(type(self.index)).values()
                    if getattr(a, "is_range_key", False))
        return str(self.model._hash_keyname), hash_key_name(self.index), str(sort)

    def fetch(self, lane: _Lane) -> int:
        """One DynamoDB page of the lane into its buffer; returns the entries read."""
        row_id, partition, sort = self.names
        key = f"{self.base}#{lane.name}"
        start = None
        if isinstance(lane.fetched_to, list):
            start = {row_id: {"S": lane.fetched_to[1]}, partition: {"S": key}, sort: {"S": lane.fetched_to[0]}}
        page = self.model._get_connection().query(
            key, filter_condition=self.condition, index_name=self.index.Meta.index_name,
            exclusive_start_key=start, limit=self.page_entries, scan_index_forward=not self.newest_first)
        lane.buffer.extend((item[sort]["S"], item[row_id]["S"]) for item in page.get("Items") or [])
        last = page.get("LastEvaluatedKey")
        lane.more = bool(last)
        if last:
            lane.fetched_to = [last[sort]["S"], last[row_id]["S"]]
        return int(page.get("ScannedCount") or 0)


def merge(positions: Mapping[str, Position], read: LaneRead, *, limit: int, budget: int
          ) -> tuple[list[tuple[str, str]], dict[str, Position] | None]:
    """Up to `limit` entries (sort key value, row id) merged across the lanes
    from `positions`, and the positions to go on from (None: all done). A
    page may come back short when the read budget is spent, with positions."""
    lanes = [_Lane(name, start) for name, start in positions.items()]
    handed: dict[str, Position] = {lane.name: lane.start for lane in lanes}
    pick = max if read.newest_first else min
    entries: list[tuple[str, str]] = []
    spent = 0
    while len(entries) < limit:
        # A lane whose buffer ran dry but has more must be read before the order is known.
        dry = [lane for lane in lanes if not lane.buffer and lane.more]
        while dry and spent < budget:
            for lane in dry:
                spent += read.fetch(lane)
            dry = [lane for lane in lanes if not lane.buffer and lane.more]
        live = [lane for lane in lanes if lane.buffer]
        if dry or not live:
            break
        lane = pick(live, key=lambda ln: ln.buffer[0])
        entry = lane.buffer.pop(0)
        handed[lane.name] = list(entry)
        entries.append(entry)
    return entries, resume_positions(((lane.name, bool(lane.buffer), lane.more, lane.fetched_to) for lane in lanes),
                                     handed)


def resume_positions(lanes: Iterable[tuple[str, bool, bool, Position]], handed: Mapping[str, Position]
                     ) -> dict[str, Position] | None:
    """Where a merged walk goes on from, per lane (name, entries read but not
    handed out, more to read, read up to): after the last entry handed out
    while some are left over, after the last read otherwise, or done. None:
    every lane is done."""
    state: dict[str, Position] = {}
    for name, left_over, more, fetched_to in lanes:
        state[name] = handed[name] if left_over else fetched_to if more else _DONE
    return None if all(value == _DONE for value in state.values()) else state
