"""Reconciliation runs as stored and shown (DESIGN.md section 10): starting
one (by the API or the schedule), reading one with its drift page by page,
listing the newest, and the checkpoint the worker writes.

The run's insert, and each checkpoint after it, is a stream record of the
sync table that the reconciler processes (the backfill's pattern): a run
that timed out or crashed is carried on from its last checkpoint by the
stream's retry of the same record.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.core import clock, ids
from billing.core.errors import NotFound, ValidationFailed
from billing.customers import records as customers
from billing.data import pagination
from billing.data.cancellation import condition_failed
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.reconciliation_tables import ReconDriftRow, ReconRunListRow, ReconRunRow
from billing.data.tables import connection
from billing.data.transactions import retry_on_conflict
from billing.metering.reconciliation.window import Window, check
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.processor.mapping import raise_for_processor

RUNNING, DONE = "running", "done"
LIST_KEY: Final = "usage_reconciliation#runs"
LIST_CAP: Final = 1000  # runs the list keeps (24 hourly + 1 daily a day: about 40 days)
MAX_PAGE: Final = 100


def _iso(unix: int) -> str:
    return clock.iso(datetime.fromtimestamp(unix, UTC))


def drift_key(run_id: str, seq: int) -> str:
    return f"{run_id}#drift#{seq:07d}"


def to_api(row: ReconRunRow, drift: list[dict[str, Any]] | None = None, next_cursor: str | None = None
           ) -> dict[str, Any]:
    return {
        "id": row.pk, "status": row.status, "start": int(row.start), "end": int(row.end),
        "start_at": _iso(int(row.start)), "end_at": _iso(int(row.end)),
        "event_name": row.event_name, "customer_id": row.customer_id,
        "buckets": int(row.buckets), "drifted": int(row.drifted), "drift_value": float(row.drift_value),
        "drift": drift if drift is not None else [], "next_cursor": next_cursor,
        "stripe_requests": int(row.stripe_requests), "rows_read": int(row.rows_read),
        "checkpoints": int(row.step), "requested_by": row.requested_by, "started_at": row.started_at,
        "updated_at": row.updated_at, "finished_at": row.finished_at,
        "repaired_at": row.repaired_at, "repaired_by": row.repaired_by,
    }


def load(run_id: str) -> ReconRunRow:
    row = find(ReconRunRow, run_id) if run_id.startswith("ur_") else None
    if row is None or row.kind != "usage_reconciliation":
        raise NotFound(f"usage reconciliation {run_id} not found")
    return row


def drift_page(row: ReconRunRow, *, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Drift entries in the order found, `limit` from the cursor's position."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed.of_fields("limit", {"limit": f"1..{MAX_PAGE}"})
    scope = f"usage-reconciliation:{row.pk}"
    state = pagination.decode(cursor, scope=scope)
    first = 1 if state is None else state
    if not isinstance(first, int) or first < 1:
        raise ValidationFailed("cursor is not one this list issued", {"cursor": "invalid"})
    last = min(int(row.drifted), first + limit - 1)
    keys = [drift_key(row.pk, seq) for seq in range(first, last + 1)]
    found = {r.pk: r.entry for r in ReconDriftRow.batch_get(keys)} if keys else {}
    entries = [found[k] for k in keys if k in found]
    more = last < int(row.drifted)
    return entries, pagination.encode(last + 1, scope=scope) if more else None


def get(run_id: str, *, limit: int = MAX_PAGE, cursor: str | None = None) -> dict[str, Any]:
    row = load(run_id)
    entries, next_cursor = drift_page(row, limit=limit, cursor=cursor)
    return to_api(row, entries, next_cursor)


def list_runs(*, limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed.of_fields("limit", {"limit": f"1..{MAX_PAGE}"})
    state = pagination.decode(cursor, scope="usage-reconciliations")
    offset = 0 if state is None else state
    if not isinstance(offset, int) or offset < 0:
        raise ValidationFailed("cursor is not one this list issued", {"cursor": "invalid"})
    listed = find(ReconRunListRow, LIST_KEY, consistent=False)
    run_ids = list(listed.run_ids) if listed is not None else []
    chosen = run_ids[offset:offset + limit]
    rows = {r.pk: r for r in ReconRunRow.batch_get(chosen)} if chosen else {}
    data = [to_api(rows[i]) for i in chosen if i in rows]
    more = offset + limit < len(run_ids)
    return data, pagination.encode(offset + limit, scope="usage-reconciliations") if more else None


def _check_scope(event_name: object, customer_id: object) -> tuple[str | None, str | None]:
    problems: dict[str, str] = {}
    if event_name is not None and (not isinstance(event_name, str) or not 1 <= len(event_name) <= 100):
        problems["event_name"] = "1 to 100 characters"
    if customer_id is not None and (not isinstance(customer_id, str) or not customer_id):
        problems["customer_id"] = "a customer id"
    if problems:
        raise ValidationFailed.of_fields("the run's scope", problems)
    name, customer = (str(event_name) if event_name is not None else None,
                      str(customer_id) if customer_id is not None else None)
    if customer is not None:
        row = customers.load(customer)  # 404 for an unknown customer
        if row.deleted_at or not row.processor_id:
            raise NotFound(f"customer {customer} has no Stripe customer")
    if name is not None:
        try:
            get_processor().find_meter(name)
        except ProcessorFailure as failure:
            if failure.status == 404:
                raise NotFound(f"no active Stripe meter has the event name {name}",
                               {"event_name": "no such meter"}) from None
            raise_for_processor(failure)
    return name, customer


def _remember(run_id: str) -> None:
    def attempt() -> None:
        listed = find(ReconRunListRow, LIST_KEY) or ReconRunListRow(pk=LIST_KEY, run_ids=[])
        listed.run_ids = [run_id, *[i for i in listed.run_ids if i != run_id]][:LIST_CAP]
        listed.save()  # conditional on the version read

    retry_on_conflict(attempt, subject=LIST_KEY)


def start(actor: Actor, *, start: object, end: object, event_name: object = None, customer_id: object = None,
          run_id: str | None = None, now: float | None = None) -> tuple[dict[str, Any], bool]:
    """A new run over the window (every check before anything is written),
    and whether it is new. A scheduled run has a name of its own
    (`run_id`): the schedule firing twice starts it once."""
    window: Window = check(start, end, now=now)
    name, customer = _check_scope(event_name, customer_id)
    at = clock.iso()
    row = ReconRunRow(pk=run_id or ids.new_id("ur"), status=RUNNING, start=window.start, end=window.end,
                      event_name=name, customer_id=customer, requested_by=actor.id or actor.type, started_at=at,
                      updated_at=at)
    try:
        row.save(condition=ReconRunRow.pk.does_not_exist())
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return to_api(load(row.pk)), False
    _remember(row.pk)
    return to_api(row), True


def checkpoint(row: ReconRunRow, *, position: list[str] | None, buckets: int, drift: list[dict[str, Any]],
               drift_value: float, stripe_requests: int, rows_read: int, done: bool) -> bool:
    """Record the pairs compared since the last checkpoint: their drift rows,
    then the run's position and totals in one write conditional on the
    version read. The drift rows are keyed by their number, so a redone
    step writes the same rows again. False if the run moved on meanwhile."""
    first = int(row.drifted) + 1
    for begin in range(0, len(drift), 25):
        with ReconDriftRow.batch_write() as batch:
            for offset, entry in enumerate(drift[begin:begin + 25]):
                batch.save(ReconDriftRow(pk=drift_key(row.pk, first + begin + offset), entry=entry))
    row.position = position
    row.buckets = int(row.buckets) + buckets
    row.drifted = int(row.drifted) + len(drift)
    row.drift_value = float(row.drift_value) + drift_value
    row.stripe_requests = int(row.stripe_requests) + stripe_requests
    row.rows_read = int(row.rows_read) + rows_read
    row.step = int(row.step) + 1
    row.updated_at = clock.iso()
    if done:
        row.status, row.finished_at = DONE, row.updated_at
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.save(row)
    except TransactWriteError as exc:
        if condition_failed(exc):
            return False
        raise
    return True
