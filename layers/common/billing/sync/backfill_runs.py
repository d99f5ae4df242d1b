"""Backfill runs as stored and shown: starting one, reading its progress,
asking a stalled one to resume, and the checkpoint the worker writes after
each page (billing.sync.backfill).

A run imports the object types in TYPES order: the catalog and promotions
first, then customers, then what hangs off a customer, so a child rarely
meets a customer that is not there yet. Per type the row keeps what the
worker counted (seen = applied + unchanged + stale + failed), Stripe's
cursor (the last object id of the last page applied) and whether the type
is done. The counts move only with a checkpoint, in the same conditional
write as the cursor: a page that is redone after a crash is counted once.
"""

from __future__ import annotations

from typing import Any, Final

from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from billing.core import clock, ids
from billing.core.errors import Conflict, NotFound, ValidationFailed
from billing.data.cancellation import condition_failed
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.sync_tables import BackfillGuardRow, BackfillRow
from billing.data.tables import connection

RUNNING, COMPLETED = "running", "completed"
TYPES: Final = ("product", "price", "coupon", "promotion_code", "customer", "payment_method", "subscription",
                "invoice", "charge")
COUNTS: Final = ("seen", "applied", "unchanged", "stale", "failed")
DEFAULT_PAGE_SIZE: Final = 100
RUNNING_GUARD: Final = "backfill#running"


def _progress(object_type: str) -> dict[str, Any]:
    return {"type": object_type, **dict.fromkeys(COUNTS, 0), "cursor": None, "done": False, "pages": 0,
            "last_error": None}


def to_api(row: BackfillRow) -> dict[str, Any]:
    progress = [dict(p) for p in row.progress or []]
    current = next((p["type"] for p in progress if not p["done"]), None)
    return {
        "id": row.pk, "status": row.status, "current_type": current if row.status == RUNNING else None,
        "page_size": int(row.page_size), "checkpoints": int(row.step),
        "types": progress, "totals": {name: sum(int(p[name]) for p in progress) for name in COUNTS},
        "requested_by": row.requested_by, "started_at": row.started_at, "updated_at": row.updated_at,
        "finished_at": row.finished_at,
    }


def load(run_id: str) -> BackfillRow | None:
    row = find(BackfillRow, run_id)
    return row if row is not None and row.kind == "backfill" else None


def get(run_id: str) -> dict[str, Any]:
    row = load(run_id)
    if row is None:
        raise NotFound(f"backfill {run_id} not found")
    return to_api(row)


def start(actor: Actor, *, types: list[str] | None = None, page_size: int = DEFAULT_PAGE_SIZE) -> dict[str, Any]:
    """A new run, running from its first type: the insert is the worker's
    first stream record. Types keep TYPES order whatever order they come in.
    One run at a time (a guard item claimed with the insert, released by the
    last checkpoint): while one runs, 409 naming it."""
    chosen = list(TYPES) if not types else [t for t in TYPES if t in set(types)]
    unknown = sorted(set(types or []) - set(TYPES))
    if unknown or not chosen:
        raise ValidationFailed(f"unknown object types: {', '.join(unknown) or 'none given'}",
                               {"types": f"any of {', '.join(TYPES)}"})
    if not 1 <= page_size <= DEFAULT_PAGE_SIZE:
        raise ValidationFailed("page_size must be between 1 and 100", {"page_size": "1..100"})
    now = clock.iso()
    row = BackfillRow(pk=ids.new_id("bf"), status=RUNNING, step=0, page_size=page_size,
                      progress=[_progress(t) for t in chosen], requested_by=actor.id, started_at=now,
                      updated_at=now)
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.save(row, condition=BackfillRow.pk.does_not_exist())
            tw.save(BackfillGuardRow(pk=RUNNING_GUARD, run_id=row.pk), condition=BackfillGuardRow.pk.does_not_exist())
    except TransactWriteError as exc:
        if not condition_failed(exc):
            raise
        running = find(BackfillGuardRow, RUNNING_GUARD)
        raise Conflict(f"backfill {running.run_id if running else ''} is running; watch or resume it",
                       {"running": running.run_id if running else None}) from None
    return to_api(row)


def resume(run_id: str) -> dict[str, Any]:
    """Process the run's current checkpoint again (its stream record went to
    the dead-letter queue after its retries, say): the update is a new
    record at the same step. A finished run is a 409."""
    row = load(run_id)
    if row is None:
        raise NotFound(f"backfill {run_id} not found")
    if row.status != RUNNING:
        raise Conflict(f"backfill {run_id} is {row.status}", {"status": row.status})
    try:
        row.update(actions=[BackfillRow.nudges.add(1), BackfillRow.updated_at.set(clock.iso())],
                   condition=BackfillRow.status == RUNNING)
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            raise Conflict(f"backfill {run_id} changed meanwhile; read it again") from None
        raise
    return to_api(row)


def checkpoint(row: BackfillRow, object_type: str, counts: dict[str, int], *, cursor: str | None, done: bool,
               last_error: dict[str, Any] | None) -> bool:
    """Record one page of `object_type`: counts added, cursor moved, done or
    not; the run completes with its last type. One write, conditional on the
    version read. False if the row moved on meanwhile (another worker wrote
    this step's checkpoint, or a resume asked for it again): nothing is
    counted twice, and whoever holds the current step carries on."""
    progress = [dict(p) for p in row.progress]
    entry = next(p for p in progress if p["type"] == object_type)
    for name in COUNTS:
        entry[name] = int(entry[name]) + int(counts.get(name, 0))
    entry["cursor"] = cursor
    entry["done"] = done
    entry["pages"] = int(entry["pages"]) + 1
    if last_error is not None:
        entry["last_error"] = last_error
    row.progress = progress
    row.step = int(row.step) + 1
    row.updated_at = clock.iso()
    completed = all(p["done"] for p in progress)
    if completed:
        row.status, row.finished_at = COMPLETED, row.updated_at
    try:
        with TransactWrite(connection=connection()) as tw:
            tw.save(row)  # conditional on the lock_version read
            if completed:  # the next run may start
                tw.delete(BackfillGuardRow(pk=RUNNING_GUARD),
                          condition=(BackfillGuardRow.run_id == row.pk) | BackfillGuardRow.pk.does_not_exist())
    except TransactWriteError as exc:
        if condition_failed(exc):
            return False
        raise
    return True
