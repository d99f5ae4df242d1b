"""The lane merge behind every laned list (billing.data.lanes): paged with
its own positions, it hands out every entry a filter keeps exactly once, in
one order (the sort key, then the row id) across lanes, whatever the page
size, the DynamoDB page size, the filter or the read budget."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.data import lanes

LANES = lanes.all_lanes()


class _MemoryRead:
    """A lane read as DynamoDB answers a Query with a filter: `page_entries`
    entries evaluated per call, those the filter drops are not returned, and
    a LastEvaluatedKey whenever the lane has more past the evaluated ones."""

    def __init__(self, entries: dict[str, list[tuple[str, str]]], dropped: set[str], *, newest_first: bool,
                 page_entries: int) -> None:
        self.newest_first = newest_first
        self.page_entries = page_entries
        self.dropped = dropped
        self.lanes = {name: sorted(found, reverse=newest_first) for name, found in entries.items()}

    def fetch(self, lane: Any) -> int:
        ordered = self.lanes.get(lane.name, [])
        start = 0
        if isinstance(lane.fetched_to, list):
            start = ordered.index(tuple(lane.fetched_to)) + 1
        evaluated = ordered[start:start + self.page_entries]
        lane.buffer.extend(e for e in evaluated if e[1] not in self.dropped)
        lane.more = start + len(evaluated) < len(ordered)
        if lane.more:
            lane.fetched_to = list(evaluated[-1])
        return len(evaluated)


entry_sets = st.lists(
    st.tuples(st.sampled_from(LANES), st.integers(0, 40)), max_size=90, unique_by=lambda t: t).map(
    lambda found: [(lane, f"2026-01-01T00:00:{second:02d}.000Z", f"row_{lane}_{second}") for lane, second in found])


@settings(max_examples=150, deadline=None)
@given(found=entry_sets, limit=st.integers(1, 12), page_entries=st.integers(1, 15), newest_first=st.booleans(),
       budget=st.integers(1, 60), drop=st.sets(st.integers(0, 89), max_size=40))
def test_pages_hand_out_every_kept_entry_once_in_order(found: list[tuple[str, str, str]], limit: int,
                                                        page_entries: int, newest_first: bool, budget: int,
                                                        drop: set[int]) -> None:
    dropped = {row for n, (_, _, row) in enumerate(found) if n in drop}
    by_lane: dict[str, list[tuple[str, str]]] = {}
    for lane, at, row in found:
        by_lane.setdefault(lane, []).append((at, row))
    read = _MemoryRead(by_lane, dropped, newest_first=newest_first, page_entries=page_entries)
    expected = sorted(((at, row) for _, at, row in found if row not in dropped), reverse=newest_first)

    seen: list[tuple[str, str]] = []
    positions: dict[str, lanes.Position] | None = dict.fromkeys(LANES)
    for _ in range(10_000):
        assert positions is not None
        page, positions = lanes.merge(positions, read, limit=limit, budget=budget)  # type: ignore[arg-type]
        assert len(page) <= limit
        seen.extend(page)
        if positions is None:
            break
        # What a cursor carries survives JSON and the cursor check.
        positions = lanes.check_positions(json.loads(json.dumps(positions)))
    assert positions is None, "the walk never finished"
    assert seen == expected


def test_a_full_budget_page_is_full_and_lanes_mix_by_sort_key_then_id() -> None:
    by_lane = {"00": [("2026-01-02", "b"), ("2026-01-01", "a")], "07": [("2026-01-02", "c"), ("2026-01-03", "d")]}
    read = _MemoryRead(by_lane, set(), newest_first=True, page_entries=1)
    page, positions = lanes.merge(dict.fromkeys(LANES), read, limit=3, budget=100)  # type: ignore[arg-type]
    assert page == [("2026-01-03", "d"), ("2026-01-02", "c"), ("2026-01-02", "b")]
    assert positions is not None
    rest, after = lanes.merge(positions, read, limit=3, budget=100)  # type: ignore[arg-type]
    assert rest == [("2026-01-01", "a")] and after is None


def test_lanes_spread_ids_and_keep_them_put() -> None:
    ids = [f"in_{n:06d}" for n in range(16_000)]
    counts: dict[str, int] = {}
    for identifier in ids:
        counts[lanes.lane_of(identifier)] = counts.get(lanes.lane_of(identifier), 0) + 1
    assert set(counts) == set(LANES)
    assert max(counts.values()) < 1.2 * len(ids) / lanes.LANES
    assert lanes.laned("paid", "in_000001") == lanes.laned("paid", "in_000001")
    assert lanes.laned("paid", "in_000001").startswith("paid#")
