"""Amazon EventBridge, as far as the local stack needs it.

Two halves, both served by the stack's gateway:

- The stack's own buses (AWS::Events::EventBus in the template): the
  PutEvents API at `POST /_local/eventbridge` (the AWS JSON protocol, so the
  functions' boto3 reaches it through AWS_ENDPOINT_URL_EVENTBRIDGE unchanged).
  Every accepted entry is kept, in arrival order, and listed at
  `GET /_local/events/published` (DELETE empties it). Faults are scripted
  at `POST /_local/events/faults`: `{"times": N, "error": "InternalException"}`
  fails whole calls (botocore retries 5xx itself, so a fault must outlast
  its retries to reach the function), `{"times": N, "entry_error":
  "ThrottlingException", "detail_type": "customer.updated"?}` refuses N
  matching entries inside otherwise successful calls (FailedEntryCount).
  Rules on these buses are not emulated: what other services would receive
  is what the bus received.
- A partner event source (Stripe's event destination): `POST
  /_local/events/partner` takes one EventBridge event, finds the rules on
  the partner bus its `source` names whose pattern matches (the same
  event-ruler semantics as the stream filters, devstack.filters), and
  invokes each rule's function as EventBridge does (asynchronously: a
  function error is retried per its EventInvokeConfig, then the
  invocation record goes to the on-failure log).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devstack.filters import matches
from devstack.gateway import LocalRequest, Router
from devstack.runtime import FunctionError
from devstack.streams import OnFailureLog
from devstack.template import ACCOUNT, REGION, RuleSpec

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
API_PATH = "/_local/eventbridge"

Invoke = Callable[[str, dict[str, Any]], Any]


class ApiError(Exception):
    """An error answer of the PutEvents API: (status, __type, message)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _iso(value: Any) -> str:
    """PutEvents' Time (epoch seconds in the JSON protocol) as ISO 8601; now if absent."""
    moment = datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else datetime.now(UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry_size(entry: dict[str, Any]) -> int:
    size = 14 if entry.get("Time") is not None else 0
    for key in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(key) or "").encode())
    return size + sum(len(str(r).encode()) for r in entry.get("Resources") or [])


class EventBridgeStandIn:
    def __init__(self, buses: dict[str, str], rules: list[RuleSpec], invoke: Invoke,
                 on_failure: OnFailureLog | None = None) -> None:
        """`buses`: name -> logical id of the stack's buses; `rules`: every
        EventBridgeRule of the functions; `invoke(function, event)` runs one."""
        self.buses = dict(buses)
        self.rules = list(rules)
        self.invoke = invoke
        self.on_failure = on_failure if on_failure is not None else OnFailureLog()
        self._lock = threading.Lock()
        self._published: list[dict[str, Any]] = []
        self._call_faults: list[dict[str, Any]] = []
        self._entry_faults: list[dict[str, Any]] = []
        self.put_events_calls = 0
        self.refused_entries = 0

    def register(self, router: Router) -> None:
        router.add_local("POST", API_PATH, self._api)
        router.add_local("GET", "/_local/events/published", self._list)
        router.add_local("DELETE", "/_local/events/published", self._clear)
        router.add_local("POST", "/_local/events/faults", self._fault)
        router.add_local("GET", "/_local/events/faults", self._faults)
        router.add_local("DELETE", "/_local/events/faults", self._clear_faults)
        router.add_local("POST", "/_local/events/partner", self._partner)

    # -- what the buses received ------------------------------------------------------

    def published(self, bus: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._published if bus is None or e["event_bus_name"] == bus]

    def clear(self) -> None:
        with self._lock:
            self._published.clear()

    def add_fault(self, *, times: int = 1, error: str | None = None, entry_error: str | None = None,
                  detail_type: str | None = None) -> None:
        if times < 1 or (error is None) == (entry_error is None):
            raise ValueError('give {"times": N, "error": "InternalException"} (the whole call) or '
                             '{"times": N, "entry_error": "ThrottlingException", "detail_type"?: ...} (entries)')
        with self._lock:
            if error is not None:
                self._call_faults.append({"error": error, "times": times})
            else:
                self._entry_faults.append({"entry_error": entry_error, "detail_type": detail_type, "times": times})

    def pending_faults(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": copy.deepcopy(self._call_faults), "entries": copy.deepcopy(self._entry_faults)}

    def clear_faults(self) -> None:
        with self._lock:
            self._call_faults.clear()
            self._entry_faults.clear()

    # -- PutEvents --------------------------------------------------------------------

    def put_events(self, request: dict[str, Any]) -> dict[str, Any]:
        entries = request.get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            raise ApiError(400, "ValidationException", f"Entries must hold 1 to {MAX_ENTRIES} entries")
        if sum(_entry_size(e) for e in entries if isinstance(e, dict)) > MAX_REQUEST_BYTES:
            raise ApiError(400, "ValidationException", "Total size of the entries in the request is over the limit.")
        with self._lock:
            self.put_events_calls += 1
            if self._call_faults:
                fault = self._call_faults[0]
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self._call_faults.pop(0)
                raise ApiError(500 if fault["error"].endswith("InternalException") else 400, fault["error"],
                               "scripted fault (devstack)")
            results = [self._accept(entry) for entry in entries]
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedEntryCount": failed, "Entries": results}

    def _accept(self, entry: Any) -> dict[str, Any]:
        """One entry (under the lock): an EventId, or an entry error."""
        if not isinstance(entry, dict):
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Entry is not an object."}
        bus = str(entry.get("EventBusName") or "default")
        bus_name = bus.rsplit("event-bus/", 1)[-1] if bus.startswith("arn:") else bus
        if bus_name not in self.buses:
            return {"ErrorCode": "ResourceNotFoundException", "ErrorMessage": f"Event bus {bus_name} does not exist."}
        for field in ("Source", "DetailType", "Detail"):
            if not isinstance(entry.get(field), str) or not entry[field]:
                return {"ErrorCode": "InvalidArgument", "ErrorMessage": f"Parameter {field} is not valid."}
        try:
            detail = json.loads(entry["Detail"])
        except ValueError:
            detail = None
        if not isinstance(detail, dict):
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}
        for fault in self._entry_faults:
            if fault["detail_type"] in (None, entry["DetailType"]):
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self._entry_faults.remove(fault)
                self.refused_entries += 1
                return {"ErrorCode": fault["entry_error"], "ErrorMessage": "scripted fault (devstack)"}
        event_id = str(uuid.uuid4())
        self._published.append({
            "id": event_id, "event_bus_name": bus_name, "source": entry["Source"],
            "detail-type": entry["DetailType"], "time": _iso(entry.get("Time")),
            "resources": list(entry.get("Resources") or []), "detail": detail, "received_at": time.time(),
        })
        return {"EventId": event_id}

    def _api(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        target = request.headers.get("X-Amz-Target") or request.headers.get("x-amz-target") or ""
        try:
            if target != "AWSEvents.PutEvents":
                raise ApiError(400, "UnknownOperationException", f"{target or 'this operation'} is not emulated")
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                raise ApiError(400, "SerializationException", "the request is not JSON") from None
            return 200, self.put_events(body if isinstance(body, dict) else {})
        except ApiError as exc:
            return exc.status, {"__type": exc.error_type, "message": exc.message}

    # -- control routes ---------------------------------------------------------------

    def _list(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        buses = request.query.get("bus")
        bus = buses[-1] if buses else None
        data = self.published(bus)
        return 200, {"data": data, "count": len(data), "put_events_calls": self.put_events_calls,
                     "refused_entries": self.refused_entries}

    def _clear(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        self.clear()
        return 200, {"cleared": True}

    def _fault(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise ValueError('give {"times": N, "error": ...} or {"times": N, "entry_error": ...}')
        self.add_fault(times=int(body.get("times", 1)), error=body.get("error"), entry_error=body.get("entry_error"),
                       detail_type=body.get("detail_type"))
        return 200, self.pending_faults()

    def _faults(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        return 200, self.pending_faults()

    def _clear_faults(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        self.clear_faults()
        return 200, self.pending_faults()

    # -- a partner event source -------------------------------------------------------

    def deliver(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """An event from a partner source: every matching rule on its bus
        invokes its function; one report per rule."""
        source = event.get("source")
        if not isinstance(source, str) or not source.startswith("aws.partner/"):
            raise ValueError("a partner event needs a source aws.partner/...")
        event = {"version": "0", "id": str(uuid.uuid4()), "account": ACCOUNT, "region": REGION,
                 "time": _iso(None), "resources": [], **event}
        reports = []
        for rule in self.rules:
            if rule.event_bus != source or not matches(rule.pattern, event):
                continue
            reports.append(self._invoke_async(rule, event))
        return reports

    def _invoke_async(self, rule: RuleSpec, event: dict[str, Any]) -> dict[str, Any]:
        attempts = 0
        error: FunctionError | None = None
        while attempts <= rule.maximum_retry_attempts:
            attempts += 1
            try:
                result = self.invoke(rule.function, event)
            except FunctionError as exc:
                error = exc
                continue
            return {"rule": rule.name, "function": rule.function, "attempts": attempts, "result": result}
        assert error is not None
        self.on_failure.append({
            "version": "1.0", "timestamp": _iso(None),
            "requestContext": {"requestId": str(uuid.uuid4()), "condition": "RetriesExhausted",
                               "approximateInvokeCount": attempts,
                               "functionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{rule.function}"},
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": error.error_type, "errorMessage": error.message},
            "destination": rule.on_failure,
        })
        return {"rule": rule.name, "function": rule.function, "attempts": attempts,
                "error": {"type": error.error_type, "message": error.message}}

    def _partner(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise ValueError("give one EventBridge event: {source, detail-type, detail}")
        reports = self.deliver(body)
        if not reports:
            return 404, {"error": {"type": "not_found", "details": {},
                                   "message": f"no rule on a partner bus {body.get('source')!r} matches the event "
                                              "(is StripeEventSourceName set for the stack?)"}}
        return 200, {"delivered": reports}
