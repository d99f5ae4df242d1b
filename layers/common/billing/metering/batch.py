"""POST /v1/usage/batch: up to 100 usage events in one request, each under
exactly the rules of PUT /v1/usage/{identifier} (intake.accept_event: the
identifier is its idempotency key, 409 on another body, Stripe's time
window, unknown customers), each accepted or refused on its own.

Every event is its own conditional PutItem, several at once: not one
transaction, which would cost twice the write units and fail every event
for one bad one. The results come back in request order.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError
from pynamodb.exceptions import PynamoDBException

from billing.core.errors import DomainError, PayloadTooLarge, Unavailable, ValidationFailed
from billing.core.observability import logger, metrics
from billing.data.cancellation import retryable_dynamodb_code
from billing.data.ledger import Actor
from billing.metering.intake import UsageInput, accept_event

MAX_EVENTS: Final = 100
# Puts in flight at once (botocore's connection pool holds 10 by default).
WRITERS: Final = 8


@dataclass(frozen=True)
class Entry:
    """One event of the request: its identifier as sent (None if it gave
    none), and either the usage it asks for or why its shape was refused."""

    identifier: str | None
    usage: UsageInput | None = None
    refused: DomainError | None = None


def check_size(count: int) -> None:
    if count > MAX_EVENTS:
        raise PayloadTooLarge(f"a batch holds at most {MAX_EVENTS} events; this one has {count}",
                              {"max_events": MAX_EVENTS, "events": count})
    if count == 0:
        raise ValidationFailed("a batch needs at least one event", {"events": "empty"})


def _error(identifier: str | None, exc: DomainError) -> dict[str, Any]:
    return {"identifier": identifier, "status": exc.status,
            "error": {"type": exc.error_type, "message": exc.message, "details": exc.details}}


def _one(entry: Entry) -> dict[str, Any]:
    if entry.refused is not None or entry.usage is None or entry.identifier is None:
        return _error(entry.identifier, entry.refused or ValidationFailed("identifier is required",
                                                                          {"identifier": "missing"}))
    try:
        row, created = accept_event(entry.identifier, entry.usage)
    except DomainError as exc:
        return _error(entry.identifier, exc)
    except (PynamoDBException, ClientError) as exc:
        # Throttled past the SDK's retries: this event was not written, and
        # sending it again (the same identifier) is safe. Anything else is ours.
        if retryable_dynamodb_code(exc) is None:
            raise
        return _error(entry.identifier, Unavailable("the service is busy; send this event again shortly"))
    return {"identifier": entry.identifier, "status": 202 if created else 200, "event": row}


def accept_all(entries: list[Entry], actor: Actor) -> list[dict[str, Any]]:
    """Each event accepted or refused on its own; the results in request order."""
    check_size(len(entries))
    with ThreadPoolExecutor(max_workers=min(WRITERS, len(entries))) as pool:
        results = list(pool.map(_one, entries))
    accepted = sum(1 for r in results if r["status"] == 202)
    if accepted:
        metrics.add_metric(name="UsageAccepted", unit=MetricUnit.Count, value=accepted)
    logger.info("usage batch", extra={"events": len(entries), "accepted": accepted, "actor": actor.type,
                                      "replayed": sum(1 for r in results if r["status"] == 200),
                                      "refused": sum(1 for r in results if r["status"] >= 400)})
    return results
