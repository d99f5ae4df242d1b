"""The append-only event ledger: rows are only ever put, in the same
TransactWriteItems as the change they record, and read newest first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pynamodb.transactions import TransactWrite

from billing.core import clock, idempotency, ids
from billing.data.tables import LedgerRow


@dataclass(frozen=True)
class Actor:
    """Who caused a change: `api` (with the IAM caller), `webhook`, `system`."""

    type: str
    id: str | None = None
    webhook_event_id: str | None = None

    @classmethod
    def webhook(cls, event_id: str) -> Actor:
        return cls("webhook", event_id, event_id)


SYSTEM = Actor("system")


def _trace_id() -> str | None:
    # Lambda sets _X_AMZN_TRACE_ID per invocation: "Root=1-...;Parent=...;Sampled=1".
    header = os.environ.get("_X_AMZN_TRACE_ID", "")
    for part in header.split(";"):
        if part.startswith("Root="):
            return part[5:]
    return None


def append(tw: TransactWrite, *, type_: str, subject_type: str, subject_id: str, actor: Actor,
           data: dict[str, Any] | None = None, idempotency_key: str | None = None) -> LedgerRow:
    """Add the ledger row for a change to the transaction that makes the change
    (with the request's Idempotency-Key unless the caller names a key)."""
    at = clock.iso()
    idempotency_key = idempotency_key or idempotency.header()
    row_id = ids.new_id("evt")
    row = LedgerRow(
        pk=f"{subject_type}#{subject_id}", sk=f"{at}#{row_id}", id=row_id, type=type_,
        subject_type=subject_type, subject_id=subject_id, actor_type=actor.type, actor_id=actor.id,
        data=data or {}, trace_id=_trace_id(), idempotency_key=idempotency_key,
        caused_by_webhook_event_id=actor.webhook_event_id, inserted_at=at,
    )
    tw.save(row, condition=LedgerRow.pk.does_not_exist())
    return row


def for_subject(subject_type: str, subject_id: str, *, limit: int, cursor: dict[str, Any] | None
                ) -> tuple[list[LedgerRow], dict[str, Any] | None]:
    result = LedgerRow.query(f"{subject_type}#{subject_id}", scan_index_forward=False, limit=limit,
                             last_evaluated_key=cursor)
    rows = list(result)
    return rows, result.last_evaluated_key
