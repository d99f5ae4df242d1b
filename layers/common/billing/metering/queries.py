"""Listing usage, never by a scan (DESIGN.md section 4).

- failed: the dead-letter view, from by_status ("failed#<shard>", sparse),
  newest failure first;
- pending: rows that may still be pending without a flag (accepted after
  the sweeper's position in their lane: by_accepted, newest first), then the
  flagged ones (by_status "pending#<shard>": retried, or found by the sweeper);
- reported, canceled, and one customer's usage: by_accepted, newest accepted
  first, filtered (see billing.metering.lanes: pages may come back short,
  with a cursor to go on with).
"""

from __future__ import annotations

from typing import Any, Final

from pynamodb.indexes import GlobalSecondaryIndex

from billing.core.errors import ValidationFailed
from billing.data import pagination
from billing.data.tables import key_names
from billing.data.usage_tables import MeterEventRow
from billing.metering import lanes, sweeper
from billing.metering.outbox import CANCELED, FAILED, PENDING, REPORTED, STATUS_SHARDS, to_api

_DONE: Final = "done"


def _index_key(row: MeterEventRow, hash_name: str, range_name: str) -> dict[str, Any]:
    return {"pk": {"S": row.pk}, hash_name: {"S": getattr(row, hash_name)},
            range_name: {"S": getattr(row, range_name)}}


def _sharded_state(state: Any, index: GlobalSecondaryIndex[Any], keys: list[str], hash_name: str) -> dict[str, Any]:
    names = key_names(MeterEventRow, index)
    if not isinstance(state, dict) or not all(
            key in keys and (position == _DONE or pagination.is_key(position, names, {hash_name: key}))
            for key, position in state.items()):
        raise ValidationFailed("cursor is not one this list issued", {"cursor": "invalid"})
    return state


def _sharded_page(index: GlobalSecondaryIndex[Any], hash_name: str, range_name: str, prefix: str, *, limit: int,
                  state: Any) -> tuple[list[MeterEventRow], dict[str, Any] | None]:
    """One page of index entries, newest first, merged from every shard of `prefix`.

    Each shard is read in its own order and only ever consumed from the
    front (rows of one batch share a timestamp, and DynamoDB orders such ties
    its own way), so the state keeps, per shard, the key of the last row
    this list handed out (or "done"): no row is skipped or repeated.
    """
    keys = [f"{prefix}#{n}" for n in range(STATUS_SHARDS)]
    state = _sharded_state(state or {}, index, keys, hash_name)
    fetched: dict[str, list[MeterEventRow]] = {}
    more: dict[str, bool] = {}
    for key in keys:
        position = state.get(key)
        if position == _DONE:
            continue
        result = index.query(key, scan_index_forward=False, limit=limit, page_size=limit,
                             last_evaluated_key=position or None)
        fetched[key] = list(result)
        more[key] = result.last_evaluated_key is not None
    taken = dict.fromkeys(fetched, 0)
    page: list[MeterEventRow] = []
    while len(page) < limit:
        heads = [(getattr(rows[taken[key]], range_name), rows[taken[key]].pk, key)
                 for key, rows in fetched.items() if taken[key] < len(rows)]
        if not heads:
            break
        _, _, key = max(heads)
        page.append(fetched[key][taken[key]])
        taken[key] += 1
    for key, rows in fetched.items():
        if taken[key]:
            state[key] = _index_key(rows[taken[key] - 1], hash_name, range_name)
        if taken[key] == len(rows) and not more[key]:
            state[key] = _DONE
    return page, None if all(state.get(k) == _DONE for k in keys) else state


def _whole(entries: list[MeterEventRow], keep: str) -> list[MeterEventRow]:
    """The rows behind index entries, in the entries' order, still in status `keep`."""
    if not entries:
        return []
    rows = {r.pk: r for r in MeterEventRow.batch_get([e.pk for e in entries])}
    return [rows[e.pk] for e in entries if e.pk in rows and rows[e.pk].stripe_status == keep]


def _flagged(status: str, limit: int, state: Any) -> tuple[list[MeterEventRow], dict[str, Any] | None]:
    entries, nxt = _sharded_page(MeterEventRow.by_status, "status_key", "updated_at", status, limit=limit,
                                 state=state)
    return _whole(entries, status), nxt


def _pending(limit: int, cursor: str | None) -> tuple[list[MeterEventRow], str | None]:
    scope = "usage:pending"
    state = pagination.decode(cursor, scope=scope) or {"fresh": lanes.top(), "flagged": {}}
    if not isinstance(state, dict) or set(state) != {"fresh", "flagged"}:
        raise ValidationFailed("cursor is not one this list issued", {"cursor": "invalid"})
    page: list[MeterEventRow] = []
    fresh = state["fresh"]
    if fresh != _DONE:
        page, positions = lanes.walk(
            lanes.check_positions(fresh), limit=limit, floors=sweeper.fresh_since(),
            keep=lambda row: row.stripe_status == PENDING and not row.status_key)
        if positions is not None:
            return page, pagination.encode({"fresh": positions, "flagged": state["flagged"]}, scope=scope)
        state["fresh"] = _DONE
    if len(page) >= limit:
        return page, pagination.encode(state, scope=scope)
    more, flagged = _flagged(PENDING, limit - len(page), state["flagged"])
    page += more
    return page, None if flagged is None else pagination.encode({"fresh": _DONE, "flagged": flagged}, scope=scope)


def list_usage(*, status: str | None, customer_id: str | None, limit: int, cursor: str | None
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Served by an index for every filter: never a scan."""
    if customer_id is not None:
        rows, next_cursor = lanes.newest_first(
            scope=lanes.scope_of("customer", customer_id=customer_id, status=status), cursor=cursor, limit=limit,
            filters=MeterEventRow.customer_id == customer_id,
            keep=lambda row: status is None or row.stripe_status == status)
    elif status in (REPORTED, CANCELED):
        rows, next_cursor = lanes.newest_first(scope=lanes.scope_of(status), cursor=cursor, limit=limit,
                                               keep=lambda row: row.stripe_status == status)
    elif status == PENDING:
        rows, next_cursor = _pending(limit, cursor)
    elif status == FAILED:
        scope = "usage:failed"
        rows, state = _flagged(FAILED, limit, pagination.decode(cursor, scope=scope))
        next_cursor = None if state is None else pagination.encode(state, scope=scope)
    else:
        raise ValidationFailed("filter by status (pending, reported, failed, canceled) or customer_id",
                               {"status": "required without customer_id"})
    return [to_api(r) for r in rows], next_cursor
