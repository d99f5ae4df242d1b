"""The backfill worker: imports the Stripe account one page at a time,
through the same reconcile path and watermarks as webhooks.

The run's row (billing.sync.backfill_runs) is the trigger: its insert and
every checkpoint of a running run are records of the sync table's stream,
filtered to running backfills, that invoke this worker. A record whose step
is the row's processes the next page of the current object type and writes
the next checkpoint, which is the next record. A crash or a timeout leaves
the checkpoint where it was, so the stream retries the same record: the page
is fetched again from the same cursor and applied again, and its counts
are recorded once, with the checkpoint. After the mapping's retries the
record goes to the dead-letter queue (alarmed); `POST
/v1/sync/backfill/{id}/resume` runs the checkpoint again.

Each object is applied as the webhook path would have applied its event:
the fetch time as `created`, through billing.webhooks' handlers (customers,
objects), with the run as the actor. Older than the row's watermark: stale,
nothing changes (a webhook got there first with newer state); the same
second: the fetched object is Stripe's current state; newer: applied, with
its ledger row. An object that changes nothing on its row writes nothing,
so a second run, or a page redone after a crash, changes nothing. A customer
with owner_type/owner_id metadata is linked to that owner, as a webhook's
would be, and the events deferred for want of it are re-driven.

Payment methods are listed per customer (Stripe lists no account-wide
payment methods for payments): their pages walk the customers, and each
customer's payment methods are read whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pynamodb.transactions import TransactWrite

from billing.core.errors import DomainError
from billing.core.observability import logger
from billing.data.ledger import Actor
from billing.data.sync_tables import BackfillRow
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure
from billing.sync import backfill_runs
from billing.webhooks import customers, objects, store
from billing.webhooks.context import Context, Deferred, Malformed
from billing.webhooks.fetched import Fetched

# The event each object type is applied as.
EVENT_TYPES: Final = {
    "customer": "customer.updated", "payment_method": "payment_method.updated",
    "subscription": "customer.subscription.updated", "invoice": "invoice.updated", "charge": "charge.updated",
    "coupon": "coupon.updated", "promotion_code": "promotion_code.updated", "price": "price.updated",
    "product": "product.updated",
}


class Imported(Fetched):
    """A fetched object applied by a backfill: unchanged rows are left alone
    (no write, no ledger row), and whether it wrote is what it counts."""

    def __init__(self, event_type: str, obj: dict[str, Any], at: int, actor: Actor, fetch_id: str) -> None:
        super().__init__(event_type, obj, at, actor, fetch_id)
        self.wrote = False

    def skip_unchanged(self, last_event_id: str | None) -> bool:
        return True

    def refetch(self, object_type: str, object_id: str, fallback: dict[str, Any]) -> dict[str, Any]:
        # A page was read over a walk that takes time: in the watermark's second
        # Stripe's current object decides, as for a webhook's same-second event.
        return Context.refetch(self, object_type, object_id, fallback)

    @contextmanager
    def transaction(self) -> Iterator[TransactWrite]:
        with super().transaction() as tw:
            yield tw
        self.wrote = True  # committed


def _handler(object_type: str) -> Callable[[Context], str]:
    if object_type == "customer":
        return customers.apply
    spec = objects.SPEC_BY_TYPE[object_type]
    return lambda ctx: objects.apply(ctx, spec)


def apply_one(object_type: str, obj: dict[str, Any], *, at: int, actor: Actor, fetch_id: str
              ) -> tuple[str, dict[str, Any] | None]:
    """Apply one fetched object: (applied | unchanged | stale | failed, the
    failure's safe error). An object that cannot be applied (its customer is
    not in the projection, or it is malformed) is failed and the run goes
    on; anything else (DynamoDB, a bug) is raised, so the page is retried."""
    ctx = Imported(EVENT_TYPES[object_type], obj, at, actor, fetch_id)
    object_id = str(obj.get("id"))
    try:
        outcome = _handler(object_type)(ctx)
    except Deferred as missing:
        return "failed", {"object_id": object_id, "type": "parent_missing",
                          "message": f"{missing.parent_kind} {missing.parent_id} is not in the projection"}
    except Malformed as bad:
        return "failed", {"object_id": object_id, "type": "malformed", "message": str(bad)[:512]}
    except DomainError as exc:
        return "failed", {"object_id": object_id, "type": exc.error_type, "message": exc.message[:512]}
    if outcome == store.STALE:
        return "stale", None
    return ("applied" if ctx.wrote else "unchanged"), None


def _page(object_type: str, size: int, cursor: str | None) -> tuple[list[dict[str, Any]], bool, str | None]:
    """One page of Stripe's objects of the type after the cursor: (objects,
    more to come, the next cursor). Payment methods: a page of customers,
    each one's payment methods whole."""
    processor = get_processor()
    listed = processor.list_objects("customer" if object_type == "payment_method" else object_type,
                                    limit=size, starting_after=cursor)
    page = [o for o in listed.get("data") or [] if isinstance(o, dict) and isinstance(o.get("id"), str)]
    more = bool(listed.get("has_more")) and bool(page)
    next_cursor = str(page[-1]["id"]) if page else cursor
    if object_type != "payment_method":
        return page, more, next_cursor
    methods: list[dict[str, Any]] = []
    for customer in page:
        after: str | None = None
        while True:
            found = processor.list_objects("payment_method", starting_after=after,
                                           params={"customer": customer["id"]})
            batch = [pm for pm in found.get("data") or [] if isinstance(pm, dict) and pm.get("id")]
            methods += batch
            if not (found.get("has_more") and batch):
                break
            after = str(batch[-1]["id"])
    return methods, more, next_cursor


def run_step(run_id: str, record_step: int) -> dict[str, Any] | None:
    """Process the checkpoint a stream record names: the next page of the
    current type, then the next checkpoint. None when the record has nothing
    left to do (an older step, a finished run)."""
    row = backfill_runs.load(run_id)
    if row is None or row.status != backfill_runs.RUNNING or int(row.step) != record_step:
        logger.info("backfill record has nothing to do", extra={"run_id": run_id, "step": record_step})
        return None
    entry = next((p for p in row.progress if not p["done"]), None)
    if entry is None:  # every type done but not marked: mark it
        return _finish(row)
    object_type = str(entry["type"])
    # A Stripe failure here (down, rate limited, a bad key) raises: the stream
    # retries the record from the same cursor, then dead-letters it (a bad
    # key, 401, too: every type would fail alike). A type the server refuses
    # to list otherwise (403: this key may not read it; 404 or 400: a
    # Stripe-compatible server without that list) ends with that error on
    # its progress, and the run goes on with the next type.
    # The watermark is taken before the walk (up to 100 list calls for payment
    # methods): a change Stripe makes meanwhile, and its webhook, are then newer
    # than what the walk read, or in its second (re-fetched), never older.
    at = int(time.time())
    try:
        page, more, cursor = _page(object_type, int(row.page_size), entry["cursor"])
    except ProcessorFailure as failure:
        refused = failure.status is not None and 400 <= failure.status < 500 and failure.status != 401
        if failure.transient or not refused or failure.code == "resource_missing":
            raise
        logger.warning("backfill cannot list a type: it is skipped",
                       extra={"run_id": run_id, "object_type": object_type, "status": failure.status})
        refusal: dict[str, Any] = {"object_id": None, "type": failure.type, "message": failure.message}
        written = backfill_runs.checkpoint(row, object_type, {}, cursor=entry["cursor"], done=True,
                                           last_error=refusal)
        return {"object_type": object_type, "skipped": True, "checkpointed": written}
    actor = Actor("system", run_id)
    fetch_id = f"{run_id}.{record_step}"
    counts = dict.fromkeys(backfill_runs.COUNTS, 0)
    last_error: dict[str, Any] | None = None
    for obj in page:
        outcome, error = apply_one(object_type, obj, at=at, actor=actor, fetch_id=fetch_id)
        counts["seen"] += 1
        counts[outcome] += 1
        last_error = error or last_error
    written = backfill_runs.checkpoint(row, object_type, counts, cursor=cursor, done=not more, last_error=last_error)
    logger.info("backfill page applied", extra={"run_id": run_id, "step": record_step, "object_type": object_type,
                                                **counts, "done": not more, "checkpointed": written})
    return {"object_type": object_type, **counts, "checkpointed": written}


def _finish(row: BackfillRow) -> dict[str, Any] | None:
    last = row.progress[-1]
    backfill_runs.checkpoint(row, str(last["type"]), {}, cursor=last["cursor"], done=True, last_error=None)
    return None


# -- the stream (the backfill function) --------------------------------------------------

_batch = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def record_handler(record: DynamoDBRecord) -> dict[str, Any] | None:
    stream = record.dynamodb
    if stream is None:
        raise ValueError("a DynamoDB stream record without its dynamodb section")
    image = stream.new_image or {}
    return run_step(str(stream.keys["pk"]), int(image.get("step", 0)))


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A batch of the sync table's stream (filtered to running backfills). A
    record that raises is reported as a batch item failure: the stream
    retries it from the same checkpoint."""
    return dict(process_partial_response(event=event, record_handler=record_handler, processor=_batch,
                                         context=context))
