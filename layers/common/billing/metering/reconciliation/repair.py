"""Repairing a run's drift (DESIGN.md section 10), within what Stripe allows.

Per drifted bucket, by classification:
- rejected_unsampled (Stripe counts less): one meter event for exactly the
  missing value, identifier `repair:<bucket>:<n>` (n: the bucket's repairs
  so far, plus one), its timestamp inside the hour and inside Stripe's
  35-day window; an hour already out of it is flagged for a person.
- overcount (Stripe counts more): the events that make the excess, canceled
  through meter event adjustments, while Stripe still takes a cancel (24 h
  after it received them). Only events whose identifiers we know can be
  named: this deployment's own repair events of the bucket. Anything else
  (a resend after the dedupe window, usage sent by something else) is
  flagged for a person, never guessed.
- pending, cancel_pending, late: nothing to do yet (delivery, Stripe's
  adjustment or its aggregation will settle them); a later run tells.

`apply: false` says what it would do and sends nothing. `apply: true`
records each action on the bucket's RepairRow before sending (status
`sending`), then its outcome: a repeat of the same run's apply resends only
what was left `sending` (same identifier: Stripe dedupes it) and sends
nothing else. Repairs are not usage rows: they never count as local usage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Final

from billing.core import clock
from billing.core.errors import Conflict
from billing.data.ledger import Actor
from billing.data.reads import find
from billing.data.reconciliation_tables import RepairRow
from billing.data.transactions import retry_on_conflict
from billing.metering.outbox import safe_error
from billing.metering.reconciliation import drift, runs
from billing.metering.reconciliation.window import HOUR, MAX_AGE_SECONDS
from billing.processor import get_processor
from billing.processor.errors import ProcessorFailure

CANCEL_WINDOW_SECONDS: Final = 24 * 3600  # Stripe takes a cancel within 24 h of receiving the event
# A repair event's timestamp stays this far inside Stripe's 35-day window.
WINDOW_MARGIN_SECONDS: Final = 600
SEND, CANCEL, WAIT, FLAG = "send", "cancel", "wait", "flag"

WAIT_REASONS: Final = {
    drift.PENDING_CLASS: "rows of the hour are still pending: their delivery settles the difference",
    drift.CANCEL_PENDING: "a cancel of the hour is still being applied by Stripe",
    drift.LATE: "the hour closed inside the settle delay: Stripe may still be aggregating it",
}


def _key(bucket: str) -> str:
    return f"usage_repair#{bucket}"


def _hour(entry: dict[str, Any]) -> int:
    return int(datetime.fromisoformat(str(entry["start"]).replace("Z", "+00:00")).astimezone(UTC).timestamp())


def _exact(candidates: list[dict[str, Any]], excess: float) -> list[dict[str, Any]] | None:
    """Candidates whose values add up to exactly `excess` (small sets: a
    bucket has few repair events), or None."""
    best: dict[float, list[dict[str, Any]]] = {0.0: []}
    for candidate in candidates:
        for total, chosen in list(best.items()):
            best.setdefault(total + float(candidate["value"]), [*chosen, candidate])
    return best.get(float(excess))


def _plan(entry: dict[str, Any], record: RepairRow | None, run_id: str, now: float) -> dict[str, Any]:
    hour = _hour(entry)
    base = {"bucket": entry["bucket"], "customer_id": entry["customer_id"], "event_name": entry["event_name"],
            "start": entry["start"], "classification": entry["classification"], "difference": entry["difference"]}
    done = [a for a in (record.actions if record else []) if a["run_id"] == run_id]
    # Left `sending` (a crash) or `failed` (Stripe refused or was down): the next apply sends it again.
    if done and all(a["status"] not in ("sending", "failed") for a in done):
        return {**base, "action": done[0]["action"], "status": "already_applied",
                "identifiers": [a["identifier"] for a in done], "value": sum(float(a["value"]) for a in done)}
    classification = entry["classification"]
    if classification in WAIT_REASONS:
        return {**base, "action": WAIT, "reason": WAIT_REASONS[classification]}
    difference = float(entry["difference"])
    actions = list(record.actions) if record else []
    if classification == drift.REJECTED_UNSAMPLED and difference < 0:
        timestamp = max(hour + HOUR // 2, int(now) - MAX_AGE_SECONDS + WINDOW_MARGIN_SECONDS)
        if timestamp >= hour + HOUR:
            return {**base, "action": FLAG, "reason": "the hour is outside Stripe's 35-day meter event window: "
                                                       "credit the customer on the invoice"}
        resend = next((a for a in done if a["action"] == SEND and a["status"] in ("sending", "failed")), None)
        n = resend["n"] if resend else 1 + sum(1 for a in actions if a["action"] == SEND)
        return {**base, "action": SEND, "value": -difference, "timestamp": min(timestamp, int(now)),
                "identifiers": [f"repair:{entry['bucket']}:{n}"], "n": n}
    if classification == drift.OVERCOUNT and difference > 0:
        ours = [a for a in actions if a["action"] == SEND and a["status"] == "sent" and not a.get("canceled")
                and now - float(a.get("received", 0)) < CANCEL_WINDOW_SECONDS]
        chosen = _exact(ours, difference)
        if chosen:
            return {**base, "action": CANCEL, "value": difference,
                    "identifiers": [a["identifier"] for a in chosen]}
        return {**base, "action": FLAG, "reason": "Stripe counts more and no event this deployment can name "
                                                   "makes the excess (a resend after Stripe's 24 h dedupe window, "
                                                   "or usage sent by something else): cancel them in Stripe within "
                                                   "24 h of receipt, or credit the customer"}
    return {**base, "action": FLAG, "reason": "no repair applies to this drift"}


def _entries(run_id: str) -> Iterator[dict[str, Any]]:
    row = runs.load(run_id)
    cursor: str | None = None
    while True:
        page, cursor = runs.drift_page(row, limit=runs.MAX_PAGE, cursor=cursor)
        yield from page
        if cursor is None:
            return


def _record(entry: dict[str, Any], change: Any) -> RepairRow:
    """Apply `change(actions)` to the bucket's row, conditional on its version."""
    def attempt() -> RepairRow:
        row = find(RepairRow, _key(entry["bucket"])) or RepairRow(
            pk=_key(entry["bucket"]), customer_id=entry["customer_id"], event_name=entry["event_name"],
            hour=_hour(entry), actions=[])
        row.actions = change([dict(a) for a in row.actions])
        row.save()
        return row

    return retry_on_conflict(attempt, subject=_key(entry["bucket"]))


def _apply(plan: dict[str, Any], entry: dict[str, Any], run_id: str, actor: Actor) -> dict[str, Any]:
    processor = get_processor()
    at = clock.iso()
    if plan["action"] == SEND:
        identifier = plan["identifiers"][0]

        def claim(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not any(a["identifier"] == identifier for a in actions):
                actions.append({"n": plan["n"], "action": SEND, "identifier": identifier, "value": plan["value"],
                                "timestamp": plan["timestamp"], "run_id": run_id, "by": actor.id or actor.type,
                                "at": at, "status": "sending"})
            return actions

        _record(entry, claim)
        outcome: dict[str, Any] = {"status": "sent"}
        try:
            value = plan["value"]
            processor.create_meter_event(
                event_name=entry["event_name"], identifier=identifier, timestamp=int(plan["timestamp"]),
                payload={"stripe_customer_id": entry["stripe_customer_id"],
                         "value": str(int(value) if float(value).is_integer() else value)})
        except ProcessorFailure as failure:
            outcome = {"status": "failed", "error": safe_error(failure.type or "api_error", failure.code,
                                                               failure.message)}

        def settle(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
            for a in actions:
                if a["identifier"] == identifier:
                    a.update(outcome, received=time.time() if outcome["status"] == "sent" else None)
            return actions

        _record(entry, settle)
        return {**plan, **outcome}
    # CANCEL: each of our repair events that makes the excess.
    failures: list[dict[str, Any]] = []
    for identifier in plan["identifiers"]:
        try:
            processor.cancel_meter_event(event_name=entry["event_name"], identifier=identifier,
                                         idempotency_key=f"usage-repair-cancel:{identifier}")
        except ProcessorFailure as failure:
            failures.append(safe_error(failure.type or "api_error", failure.code, failure.message))
            continue

        def canceled(actions: list[dict[str, Any]], identifier: str = identifier) -> list[dict[str, Any]]:
            for a in actions:
                if a["identifier"] == identifier:
                    a["canceled"] = at
            actions.append({"n": 0, "action": CANCEL, "identifier": identifier, "value": 0, "run_id": run_id,
                            "by": actor.id or actor.type, "at": at, "status": "sent"})
            return actions

        _record(entry, canceled)
    return {**plan, "status": "failed" if failures else "sent", **({"error": failures[0]} if failures else {})}


def repair(run_id: str, actor: Actor, *, apply: bool = False, now: float | None = None) -> dict[str, Any]:
    row = runs.load(run_id)
    if row.status != runs.DONE:
        raise Conflict(f"usage reconciliation {run_id} is still running; repair it once it is done",
                       {"status": row.status})
    moment = time.time() if now is None else now
    actions: list[dict[str, Any]] = []
    for entry in _entries(run_id):
        plan = _plan(entry, find(RepairRow, _key(entry["bucket"])), run_id, moment)
        if apply and plan["action"] in (SEND, CANCEL) and plan.get("status") != "already_applied":
            plan = _apply(plan, entry, run_id, actor)
        elif plan["action"] in (SEND, CANCEL) and plan.get("status") != "already_applied":
            plan = {**plan, "status": "planned"}
        actions.append(plan)
    if apply:
        row.update(actions=[type(row).repaired_at.set(clock.iso()), type(row).repaired_by.set(actor.id or actor.type)])
    counts = {kind: sum(1 for a in actions if a["action"] == kind) for kind in (SEND, CANCEL, WAIT, FLAG)}
    sent = sum(1 for a in actions if a.get("status") == "sent")
    return {"run_id": run_id, "apply": apply, "actions": actions, "counts": counts, "sent": sent}
