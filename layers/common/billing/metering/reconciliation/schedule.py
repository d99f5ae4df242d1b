"""The usage_reconciler function (DESIGN.md section 10): its schedule starts
a run for each closed hour once the settle delay has passed (and the two
hours before it, in case a tick was missed) and one for the whole previous
day; its stream mapping (the sync table, filtered to running runs) carries
each run on from its last checkpoint.

Scheduled runs are named by their window (`ur_h_<start>`, `ur_d_<start>`):
a tick that fires twice, or late, starts each run once.
"""

from __future__ import annotations

import time
from typing import Any, Final

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.observability import logger
from billing.core.settings import UsageReconcilerSettings, load
from billing.data.ledger import Actor
from billing.metering.reconciliation import runs, worker
from billing.metering.reconciliation.window import DAY, HOUR

SCHEDULER: Final = Actor("system", "usage_reconciler")
CATCH_UP_HOURS: Final = 3


def due(now: float, settle_seconds: int) -> list[tuple[str, int, int]]:
    """(run id, start, end) of the runs the clock asks for now."""
    settled = int(now) - settle_seconds  # every hour ending at or before this has settled
    last_hour = settled // HOUR * HOUR - HOUR
    wanted = [(f"ur_h_{start}", start, start + HOUR) for start in range(last_hour, last_hour - CATCH_UP_HOURS * HOUR,
                                                                          -HOUR)]
    day = settled // DAY * DAY - DAY
    wanted.append((f"ur_d_{day}", day, day + DAY))
    return wanted


def start_due(now: float | None = None, *, settle_seconds: int) -> list[str]:
    moment = time.time() if now is None else now
    started = []
    for run_id, start, end in due(moment, settle_seconds):
        _, new = runs.start(SCHEDULER, start=start, end=end, run_id=run_id, now=moment)
        if new:
            started.append(run_id)
    if started:
        logger.info("usage reconciliations started", extra={"run_ids": started})
    return started


def _policy() -> worker.Policy:
    settings = load(UsageReconcilerSettings)
    return worker.Policy(settle_seconds=settings.usage_settle_seconds,
                         requests_per_second=settings.usage_reconcile_requests_per_second)


_batch = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A batch of the sync table's stream (running runs), or a schedule tick."""
    policy = _policy()
    if "Records" not in event:
        return {"started": start_due(settle_seconds=policy.settle_seconds)}

    def record_handler(record: DynamoDBRecord) -> str:
        stream = record.dynamodb
        if stream is None:
            raise ValueError("a DynamoDB stream record without its dynamodb section")
        image = stream.new_image or {}
        outcome = worker.advance(str(stream.keys["pk"]), step=int(image.get("step", 0)), policy=policy,
                                 remaining_ms=context.get_remaining_time_in_millis)
        logger.info("usage reconciliation step", extra={"run_id": str(stream.keys["pk"]), "outcome": outcome})
        return outcome

    return dict(process_partial_response(event=event, record_handler=record_handler, processor=_batch,
                                         context=context))
