"""The sweep that finds every usage row left pending and re-drives it.

A row is found in one of two places:
- flagged: a pending row off the happy path (retried, or found by an earlier
  sweep) carries `status_key = pending#<shard>` in by_status;
- fresh: every row has one by_accepted entry (its lane, its acceptance
  time). Per lane, the sweeper keeps a position (UsageSweepRow): every row
  accepted before it was looked at once, after min_age, and was then either
  no longer pending or got flagged. Each run reads on from there, oldest
  first, reads the rows' status (an eventually consistent BatchGetItem: a
  stale answer can only be an older "pending", and the flag is conditional
  on the row still being pending), flags the pending ones and moves on.

Flagging and touching are one conditional UpdateItem (the new image is
pending again, so the stream delivers the row to the reporter); a row the
reporter settled meanwhile is left alone. The happy path pays nothing for
this: only rows still pending after min_age get an index entry.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.update import Action

from billing.core import clock, settings
from billing.core.observability import logger, metrics
from billing.data.conditional import refused
from billing.data.usage_tables import MeterEventRow, UsageSweepRow
from billing.metering.outbox import PENDING, STATUS_SHARDS, all_lanes, status_key

# Rows read per lane per run, at most; a lane further behind catches up on the next runs.
SCAN_ROWS_PER_LANE: Final = 20_000
# An index entry can show up a moment after its row (GSIs are eventually
# consistent): a lane's position never passes rows younger than this.
INDEX_LAG_SECONDS: Final = 10.0
BATCH_GET: Final = 100


Position = tuple[str, str | None]  # (inserted_at, identifier or None): see UsageSweepRow


def position_key(lane_: str) -> str:
    return f"#sweep#{lane_}"


def positions() -> dict[str, Position]:
    """Each lane's position (("", None) before the first sweep)."""
    keys = [position_key(n) for n in all_lanes()]
    found = {row.pk: (row.position, row.position_pk) for row in UsageSweepRow.batch_get(keys)}
    return {n: found.get(position_key(n), ("", None)) for n in all_lanes()}


def _iso_ago(seconds: float) -> str:
    return clock.iso(datetime.fromtimestamp(time.time() - seconds, UTC))


def _touch(row: MeterEventRow, *, flag: bool) -> bool:
    """Re-drive a pending row (flag it first if it is fresh); False if it moved meanwhile."""
    at = clock.iso()
    actions: list[Action] = [MeterEventRow.sweeps.add(1), MeterEventRow.updated_at.set(at),
                             MeterEventRow.lock_version.add(1)]
    if flag:
        condition = (MeterEventRow.stripe_status == PENDING) & MeterEventRow.status_key.does_not_exist()
        actions.append(MeterEventRow.status_key.set(status_key(PENDING, row.pk)))
    else:
        condition = (MeterEventRow.stripe_status == PENDING) & (MeterEventRow.updated_at == row.updated_at)
    try:
        MeterEventRow(pk=row.pk).update(actions=actions, condition=condition)
    except UpdateError as exc:
        if not refused(exc):
            raise
        return False
    return True


def _statuses(keys: list[str]) -> dict[str, MeterEventRow]:
    rows: dict[str, MeterEventRow] = {}
    for start in range(0, len(keys), BATCH_GET):
        for row in MeterEventRow.batch_get(keys[start:start + BATCH_GET],
                                           attributes_to_get=["pk", "stripe_status", "status_key", "updated_at"]):
            rows[row.pk] = row
    return rows


def _lane_rows(lane_: str, after: Position, before: str, limit: int) -> list[MeterEventRow]:
    """Up to `limit` rows of the lane after the position, accepted at or before `before`, oldest first."""
    at, pk = after
    if pk:  # right after one row: rows accepted in the same millisecond may follow it
        start = {"pk": {"S": pk}, "lane": {"S": lane_}, "inserted_at": {"S": at}}
        found = MeterEventRow.by_accepted.query(lane_, MeterEventRow.inserted_at <= before, scan_index_forward=True,
                                                limit=limit, page_size=min(limit, 1000), last_evaluated_key=start)
        return list(found)
    # Strictly after `at`: acceptance times all have one length
    # (2026-01-01T00:00:00.000Z), so every later one sorts after `at` with
    # anything appended, and `at` itself before it.
    condition = MeterEventRow.inserted_at.between(at + "~", before) if at else MeterEventRow.inserted_at <= before
    found = MeterEventRow.by_accepted.query(lane_, condition, scan_index_forward=True, limit=limit,
                                            page_size=min(limit, 1000))
    return list(found)


def _sweep_lane(lane_: str, after: Position, cutoff: str, settle: str) -> tuple[int, int, Position]:
    """(read, flagged, new position) for one lane: rows accepted after `after`, up to `cutoff`."""
    rows = _lane_rows(lane_, after, cutoff, SCAN_ROWS_PER_LANE + 1)
    complete = len(rows) <= SCAN_ROWS_PER_LANE
    rows = rows[:SCAN_ROWS_PER_LANE]
    current = _statuses([r.pk for r in rows])
    flagged = 0
    for row in rows:
        found = current.get(row.pk)
        if found is not None and found.stripe_status == PENDING and not found.status_key and _touch(found, flag=True):
            flagged += 1
    if complete:
        # Every row up to the cutoff was read, but an index entry may show up
        # a moment after its row: settle at most INDEX_LAG_SECONDS ago.
        return len(rows), flagged, max((min(cutoff, settle), None), after, key=_order)
    last = rows[-1]
    if last.inserted_at > settle:
        return len(rows), flagged, max((settle, None), after, key=_order)
    return len(rows), flagged, (last.inserted_at, last.pk)


def _order(position: Position) -> tuple[str, int, str]:
    # (t, None) is past every row accepted at t; (t, pk) only past that one.
    at, pk = position
    return (at, 1 if pk is None else 0, pk or "")


def _sweep_flagged(cutoff: str, max_rows: int) -> tuple[int, int]:
    """Touch flagged pending rows untouched since `cutoff`, oldest first: (scanned, touched)."""
    per_shard = max(1, math.ceil(max_rows / STATUS_SHARDS))
    scanned = touched = 0
    for n in range(STATUS_SHARDS):
        budget = min(per_shard, max_rows - scanned)
        if budget <= 0:
            break
        for row in MeterEventRow.by_status.query(f"{PENDING}#{n}", MeterEventRow.updated_at < cutoff,
                                                 scan_index_forward=True, limit=budget, page_size=budget):
            scanned += 1
            touched += _touch(row, flag=False)
    return scanned, touched


def sweep(*, min_age_seconds: float, max_rows: int) -> dict[str, int]:
    """Re-drive rows pending for longer than `min_age_seconds`: the flagged ones
    (at most `max_rows` a run, oldest first), then every lane from its position."""
    cutoff = _iso_ago(min_age_seconds)
    settle = _iso_ago(max(min_age_seconds, INDEX_LAG_SECONDS))
    scanned, touched = _sweep_flagged(cutoff, max_rows)
    start = positions()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = dict(zip(start, pool.map(lambda n: _sweep_lane(n, start[n], cutoff, settle), start), strict=True))
    read = flagged = 0
    at = clock.iso()
    for lane_, (count, newly, position) in results.items():
        read += count
        flagged += newly
        if position != start[lane_]:
            UsageSweepRow(pk=position_key(lane_), position=position[0], position_pk=position[1],
                          updated_at=at).save()
    if touched or flagged:
        logger.info("pending usage re-driven", extra={"touched": touched, "flagged": flagged, "read": read})
    return {"scanned": scanned + read, "touched": touched + flagged}


def sweep_from_env() -> dict[str, int]:
    """sweep() with the age and bound the template gives the sweeper."""
    knobs = settings.load(settings.SweepSettings)
    result = sweep(min_age_seconds=knobs.sweep_min_age_seconds, max_rows=knobs.sweep_max_rows)
    if result["touched"]:
        metrics.add_metric(name="UsageSwept", unit=MetricUnit.Count, value=result["touched"])
    return result


def fresh_since() -> dict[str, str]:
    """Per lane, the acceptance time from which rows may be pending without a
    flag (the pending list and the summary read from there, inclusive)."""
    return {lane_: at for lane_, (at, _) in positions().items()}

