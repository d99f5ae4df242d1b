"""Meter events in the Fake: v1 billing.meter_events (deduplicated by
identifier, which is also the idempotency key), v2 meter event sessions that
expire and the meter_event_stream, and the meter error reports Stripe raises
after accepting events, as thin `v1.billing.meter.error_report_triggered`
events whose full body comes from retrieve_v2_event."""

from __future__ import annotations

import copy
from typing import Final, cast

from billing.processor.base import MAX_STREAM_EVENTS, JSONDict, rfc3339, unix_seconds
from billing.processor.errors import SESSION_EXPIRED
from devstack.fake_stripe.core import FakeCore, shape

# Stripe's windows for a meter event's timestamp.
METER_PAST_WINDOW_SECONDS: Final = 35 * 24 * 3600
METER_FUTURE_WINDOW_SECONDS: Final = 5 * 60
# Stripe dedupes an identifier for about 24 hours: a resend after that counts again.
METER_DEDUPE_SECONDS: Final = 24 * 3600
# A v2 meter event session lasts 15 minutes.
METER_SESSION_SECONDS: Final = 15 * 60

# What Stripe says in the sample errors of a meter error report, by code.
_METER_ERROR_MESSAGES: Final = {
    "meter_event_customer_not_found": "Customer {customer} not found.",
    "meter_event_no_customer_defined": "Customer mapping key stripe_customer_id not found in payload.",
    "meter_event_invalid_value": "Value must be a non-negative number.",
    "timestamp_too_far_in_past": "Timestamp must be within the past 35 days.",
    "timestamp_in_future": "Timestamp must not be more than 5 minutes in the future.",
    "no_meter": "No active meter found for event name {event_name}.",
    "archived_meter": "The meter for event name {event_name} is archived.",
}


class MetersMixin(FakeCore):
    """The Processor interface's meter calls, and the meter controls of tests and the stack."""

    # -- test and local-stack controls (not part of the Processor interface) --------

    def raise_meter_error(
        self,
        identifiers: list[str],
        code: str = "meter_event_customer_not_found",
        message: str | None = None,
        sampled: int | None = None,
    ) -> JSONDict:
        """Stripe found `identifiers` invalid after accepting them: they stop
        counting in the summaries, and the report counts them all
        (`error_count`) but names only the first `sampled` (default all) in
        `sample_errors`, as Stripe samples its errors.

        Stores the full v2 event (retrieve_v2_event returns it) and returns the
        thin payload Stripe POSTs to the event destination: no `data`, so the
        receiver must fetch the event to learn which identifiers failed.
        """
        if not identifiers:
            raise ValueError("raise_meter_error: at least one identifier")
        with self._lock:
            now = self._now()
            first = self._meter_events.get(identifiers[0])
            event_name = first["event"]["event_name"] if first else "unknown_event"
            meter_id = self._meters.setdefault(event_name, self._next_id("mtr_fake"))
            self._meter_rejected.update(identifiers)
            for identifier in identifiers:
                if identifier in self._meter_events:
                    # Rejected, sampled or not: Stripe bills it not, and drops a
                    # resend of its identifier as a duplicate (only a new one counts).
                    self._meter_events[identifier]["rejected"] = True
            samples = []
            for identifier in identifiers[: len(identifiers) if sampled is None else max(0, sampled)]:
                known = self._meter_events.get(identifier)
                template = message or _METER_ERROR_MESSAGES.get(code, "Meter event rejected ({code}).")
                text = template.format(
                    code=code,
                    customer=(known["event"]["payload"].get("stripe_customer_id") if known else None) or "unknown",
                    event_name=known["event"]["event_name"] if known else event_name,
                )
                samples.append({"error_message": text, "request": {"identifier": identifier}})
            count = len(identifiers)
            # The shape of GET /v2/core/events/{id} for this type, per Stripe's
            # API reference (docs.stripe.com/api/v2/core/events/object).
            event: JSONDict = {
                "id": self._next_id("evt_fake"),
                "object": "v2.core.event",
                "context": None,
                "created": rfc3339(now),
                "data": {
                    "developer_message_summary": (
                        "There is 1 invalid event" if count == 1 else f"There are {count} invalid events"
                    ),
                    "reason": {
                        "error_count": count,
                        "error_types": [{"code": code, "error_count": count, "sample_errors": samples}],
                    },
                    "validation_end": rfc3339(now),
                    "validation_start": rfc3339(now - 10),
                },
                "livemode": False,
                "reason": None,
                "related_object": {"id": meter_id, "type": "billing.meter", "url": f"/v1/billing/meters/{meter_id}"},
                "type": "v1.billing.meter.error_report_triggered",
            }
            self._v2_events[event["id"]] = event
            thin = {key: value for key, value in event.items() if key != "data"}
            return copy.deepcopy(thin)

    @property
    def meter_events(self) -> list[JSONDict]:
        """Unique meter events in arrival order (see snapshot for the shape)."""
        with self._lock:
            return self._meter_event_list()

    @property
    def meter_event_duplicates(self) -> dict[str, int]:
        """identifier -> how many times it arrived again after the first."""
        with self._lock:
            return dict(self._meter_duplicates)

    # -- the interface ------------------------------------------------------------------

    def create_meter_event(
        self, *, event_name: str, identifier: str, timestamp: int, payload: dict[str, str]
    ) -> JSONDict:
        args = {"event_name": event_name, "identifier": identifier, "timestamp": timestamp, "payload": payload}

        def create() -> JSONDict:
            self._check_meter_event(event_name, identifier, payload, v2=False)
            ts = self._check_meter_timestamp(timestamp)
            strings = {str(k): str(v) for k, v in payload.items()}
            known = self._meter_events.get(identifier)
            if known is not None:
                original: JSONDict = known["event"]
                changed = (original["event_name"], original["payload"], original["timestamp"]) != (
                    event_name,
                    strings,
                    ts,
                )
                if changed and known["api"] == "v1":
                    # The identifier was this request's idempotency key too
                    # (StripeProcessor sends it as one): Stripe refuses to
                    # reuse a key with other parameters. After a v2 send (no
                    # key) Stripe just drops the duplicate identifier.
                    raise self._idempotency_error(identifier)
                self._meter_duplicates[identifier] = self._meter_duplicates.get(identifier, 0) + 1
                self._recount_after_dedupe(identifier, original)
                return original
            event = self._store_meter_event(event_name, identifier, ts, strings, api="v1")
            return event

        return self._run("create_meter_event", args, create)

    def create_meter_event_session(self) -> JSONDict:
        def create() -> JSONDict:
            now = self._now()
            session_id = self._next_id("mes_fake")
            token = f"mes_tok_fake_{self._counters['mes_fake']:05d}"
            self._sessions[token] = now + METER_SESSION_SECONDS
            # Shape of POST /v2/billing/meter_event_session (Stripe API reference).
            return {
                "id": session_id,
                "object": "v2.billing.meter_event_session",
                "authentication_token": token,
                "created": rfc3339(now),
                "expires_at": rfc3339(now + METER_SESSION_SECONDS),
                "livemode": False,
            }

        return self._run("create_meter_event_session", {}, create)

    def send_meter_events(self, *, session_token: str, events: list[JSONDict]) -> None:
        def send() -> JSONDict:
            expires_at = self._sessions.get(session_token)
            if expires_at is None or expires_at <= self._now():
                raise self._error(
                    401,
                    "The meter event session has expired or is not valid. Create a new session.",
                    code="billing_meter_event_session_expired",
                    error_type=SESSION_EXPIRED,
                )
            if not isinstance(events, list) or not 1 <= len(events) <= MAX_STREAM_EVENTS:
                raise self._error(400, f"events must contain between 1 and {MAX_STREAM_EVENTS} items.", param="events")
            accepted: list[tuple[str, str, int, dict[str, str]]] = []
            for index, event in enumerate(events):
                if not isinstance(event, dict):
                    raise self._error(400, f"events[{index}] must be an object.", param=f"events[{index}]")
                event_name = event.get("event_name")
                identifier = event.get("identifier") or self._next_id("mtrevt_fake")
                payload = event.get("payload")
                self._check_meter_event(event_name, identifier, payload, v2=True, index=index)
                event_name, payload = cast(str, event_name), cast(JSONDict, payload)  # checked above
                raw_ts = event.get("timestamp")
                try:
                    ts = int(self._now()) if raw_ts is None else unix_seconds(raw_ts)
                except (TypeError, ValueError):
                    raise self._error(
                        400, "timestamp must be an RFC 3339 date-time.", param=f"events[{index}].timestamp"
                    ) from None
                accepted.append((event_name, str(identifier), ts, {str(k): str(v) for k, v in payload.items()}))
            # The stream validates the rest (customer, value, time window)
            # asynchronously and reports problems through meter error reports
            # (raise_meter_error); a duplicate identifier is dropped silently.
            for event_name, identifier, ts, strings in accepted:
                if identifier in self._meter_events:
                    self._meter_duplicates[identifier] = self._meter_duplicates.get(identifier, 0) + 1
                    self._recount_after_dedupe(identifier, self._meter_events[identifier]["event"])
                else:
                    self._store_meter_event(event_name, identifier, ts, strings, api="v2")
            return {}

        # The token is a credential: recorded only by its public prefix.
        args = {"session_token": session_token[:12] + "...", "events": events}
        self._run("send_meter_events", args, send)

    def retrieve_v2_event(self, event_id: str) -> JSONDict:
        def retrieve() -> JSONDict:
            event = self._v2_events.get(event_id)
            if event is None:
                raise self._missing("event", event_id)
            return event

        return self._run("retrieve_v2_event", {"event_id": event_id}, retrieve)

    def age_meter_events(self, seconds: int, identifiers: list[str] | None = None) -> None:
        """The received meter events (these identifiers, or all) as if Stripe
        had received them `seconds` earlier (a test's way past the dedupe and
        cancel windows)."""
        with self._lock:
            for identifier, record in self._meter_events.items():
                if identifiers is None or identifier in identifiers:
                    record["event"]["created"] = int(record["event"]["created"]) - seconds
            for event in self._meter_recounted:
                if identifiers is None or event["identifier"] in identifiers:
                    event["created"] = int(event["created"]) - seconds

    def list_v2_events(self, *, types: list[str], created_gte: int, created_lte: int, limit: int) -> JSONDict:
        """GET /v2/core/events as Stripe answers it: full events (with `data`), newest first."""
        args = {"types": list(types), "created_gte": created_gte, "created_lte": created_lte, "limit": limit}

        def listed() -> JSONDict:
            found = [e for e in reversed(self._v2_events.values()) if e["type"] in types
                     and created_gte <= unix_seconds(e["created"]) <= created_lte]
            return {"object": "list", "data": found[:limit], "has_more": len(found) >= limit}

        return self._run("list_v2_events", args, listed)

    # -- helpers ----------------------------------------------------------------------

    def _recount_after_dedupe(self, identifier: str, original: JSONDict) -> None:
        """A resend after the dedupe window (measured from the last time Stripe
        counted the identifier) is a new event to Stripe."""
        last = max([int(original["created"])] + [int(e["created"]) for e in self._meter_recounted
                                                  if e["identifier"] == identifier])
        if self._now() - last > METER_DEDUPE_SECONDS:
            again = copy.deepcopy(original)
            again["created"] = int(self._now())
            self._meter_recounted.append(again)

    def _store_meter_event(
        self, event_name: str, identifier: str, ts: int, payload: dict[str, str], *, api: str
    ) -> JSONDict:
        event = shape("billing.meter_event")
        event.update(
            created=int(self._now()),
            event_name=event_name,
            identifier=identifier,
            payload=payload,
            timestamp=ts,
        )
        self._meter_events[identifier] = {"api": api, "event": event}
        # Stripe takes events only for a meter it has: the Fake has one for
        # every event name it received, as if it had been configured.
        if event_name not in self._meters:
            self._meters[event_name] = self._next_id("mtr_fake")
        return event

    def _meter_event_list(self) -> list[JSONDict]:
        return [
            {
                "identifier": identifier,
                "event_name": record["event"]["event_name"],
                "payload": dict(record["event"]["payload"]),
                "timestamp": record["event"]["timestamp"],
                "api": record["api"],
                "received": 1 + self._meter_duplicates.get(identifier, 0),
                # Canceled by a meter event adjustment: received, no longer billed.
                "canceled": identifier in self._meter_adjustments,
                # Found invalid after it was taken (raise_meter_error): not billed.
                "rejected": bool(record.get("rejected")),
            }
            for identifier, record in self._meter_events.items()
        ]

    def _check_meter_event(
        self, event_name: object, identifier: object, payload: object, *, v2: bool, index: int | None = None
    ) -> None:
        where = "" if index is None else f"events[{index}]."
        if not isinstance(event_name, str) or not 1 <= len(event_name) <= 100:
            raise self._error(
                400,
                "event_name must be 1 to 100 characters.",
                param=f"{where}event_name",
                code="parameter_missing" if not event_name else None,
            )
        if not isinstance(identifier, str) or not 1 <= len(identifier) <= 100:
            raise self._error(400, "identifier must be 1 to 100 characters.", param=f"{where}identifier")
        if not isinstance(payload, dict) or not payload:
            raise self._error(
                400, "payload must be a non-empty object.", code="parameter_missing", param=f"{where}payload"
            )
        if v2:
            return  # the stream checks payload contents asynchronously
        if not payload.get("stripe_customer_id"):
            raise self._error(
                400,
                _METER_ERROR_MESSAGES["meter_event_no_customer_defined"],
                code="meter_event_no_customer_defined",
                param="payload[stripe_customer_id]",
            )
        try:
            value = float(str(payload.get("value")))
        except ValueError:
            value = -1.0
        if value < 0:
            raise self._error(
                400,
                _METER_ERROR_MESSAGES["meter_event_invalid_value"],
                code="meter_event_invalid_value",
                param="payload[value]",
            )

    def _check_meter_timestamp(self, timestamp: object) -> int:
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise self._error(400, "timestamp must be an integer (unix seconds).", param="timestamp")
        now = self._now()
        if timestamp < now - METER_PAST_WINDOW_SECONDS:
            raise self._error(
                400,
                _METER_ERROR_MESSAGES["timestamp_too_far_in_past"],
                code="timestamp_too_far_in_past",
                param="timestamp",
            )
        if timestamp > now + METER_FUTURE_WINDOW_SECONDS:
            raise self._error(
                400, _METER_ERROR_MESSAGES["timestamp_in_future"], code="timestamp_in_future", param="timestamp"
            )
        return timestamp
