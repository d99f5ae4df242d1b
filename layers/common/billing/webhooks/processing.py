"""The webhook processor's entry points: a batch of stream records, or the
schedule that re-drives deferred events whose backoff has elapsed and
events stuck `received` (their processor died before recording an outcome).

Each record is one event run (its key and the `run` of its new image); the
outcome lives on the event's row, so the record handler needs nothing else.
A record that raises is reported in batchItemFailures: the stream retries
from it (records after it come again and find nothing to do) and, after the
mapping's MaximumRetryAttempts, sends it to the on-failure queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing.core.settings import WebhookProcessorSettings, load
from billing.webhooks import reconcile, store

# A batch where every record failed is still answered with its failures (not
# raised): the rows already say failed, and the retry is per record either way.
_batch = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def record_handler(record: DynamoDBRecord) -> str | None:
    stream = record.dynamodb
    if stream is None:
        raise ValueError("a DynamoDB stream record without its dynamodb section")
    event_id = stream.keys["pk"]
    run = int((stream.new_image or {}).get("run", 0))
    return reconcile.process(str(event_id), run)


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        return dict(process_partial_response(event=event, record_handler=record_handler, processor=_batch,
                                             context=context))
    # The schedule (an EventBridge "Scheduled Event").
    stuck_after = load(WebhookProcessorSettings).webhook_stuck_after_seconds
    return {"redriven": store.redrive_due(), "stuck_redriven": store.redrive_stuck(stuck_after)}
