"""DynamoDB stream event source mappings, run locally.

One `StreamPoller` per StreamMapping reads the table's stream through the
dynamodbstreams API (moto's server or DynamoDB Local), turns records into the
event Lambda delivers, applies the mapping's FilterCriteria, batches, invokes
the function and follows Lambda's rules for what a failure means:

- records that do not match the filters are never delivered, but their
  position is checkpointed like a processed record's;
- with ReportBatchItemFailures, `{"batchItemFailures": [{"itemIdentifier":
  seq}]}` checkpoints before the lowest failed record and retries from it;
  the records before it are not delivered again. A malformed response fails
  the whole batch. Without ReportBatchItemFailures the response is ignored;
- a function error (exception, timeout, crash) fails the whole batch; with
  BisectBatchOnFunctionError the batch is split in half and each half
  retried, without consuming retry attempts;
- after MaximumRetryAttempts retries the batch (or what remains of it) goes
  to the OnFailure destination as Lambda's invocation record, and the shard
  moves on. -1 (retry until the record expires) is bounded locally.

Everything is in memory: checkpoints do not survive a restart, like a
freshly created event source mapping.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from devstack.dynamodb import client
from devstack.filters import matches_any, validate_pattern
from devstack.runtime import FunctionError
from devstack.template import ACCOUNT, REGION, FunctionSpec, StreamMapping

log = logging.getLogger("devstack.streams")

Invoke = Callable[[dict[str, Any]], Any]

__all__ = [
    "Invoke",
    "OnFailureLog",
    "PollerOptions",
    "PollerStats",
    "StreamPoller",
    "StreamSupervisor",
    "to_lambda_record",
]


# -- the on-failure destination ------------------------------------------------------


class OnFailureLog:
    """Every on-failure invocation record the pollers produced, in order.

    Shared by the pollers of a stack so a test or a control route can read
    what would have gone to the OnFailure destinations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)


# -- options and counters ------------------------------------------------------------


@dataclass(frozen=True)
class PollerOptions:
    """Local timings. Lambda's own are slower (4 polls a second, retries
    backing off to minutes); these keep a laptop responsive and tests fast."""

    poll_interval_s: float = 0.1
    # Polling backs off to this while the stream is quiet: moto keeps every
    # shard iterator it ever issued (~3.6 kB per poll), so a fast idle poll
    # would grow the embedded server by hundreds of MB a day.
    idle_poll_interval_s: float = 1.0
    retry_base_s: float = 0.05
    retry_cap_s: float = 2.0
    # Stand-ins for the stream's 24 h retention when MaximumRetryAttempts is
    # -1: a poisoned batch must not block a shard for a day on a laptop.
    max_record_age_s: float = 24 * 3600.0
    unlimited_retry_cap: int = 1000
    read_limit: int = 1000
    shard_refresh_s: float = 2.0


@dataclass(frozen=True)
class PollerStats:
    batches_invoked: int = 0  # invocations, retries included
    records_delivered: int = 0  # records the function processed successfully (each once)
    records_filtered: int = 0  # records dropped by FilterCriteria
    records_failed: int = 0  # records sent to the on-failure destination
    function_errors: int = 0
    partial_failures: int = 0
    retries: int = 0
    bisections: int = 0


# -- record shape ----------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """boto3 decodes B/BS attribute values to bytes; Lambda's JSON event carries
    them base64-encoded."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.timestamp()
    return value


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return datetime.fromisoformat(value).timestamp()
    return time.time()


_DDB_KEYS = ("Keys", "NewImage", "OldImage", "SequenceNumber", "SizeBytes", "StreamViewType")


def to_lambda_record(raw: Mapping[str, Any], stream_arn: str, region: str = REGION) -> dict[str, Any]:
    """A GetRecords record as Lambda delivers it in a DynamoDB event.

    moto says eventVersion "1.0" and boto3 hands back a datetime; Lambda's
    records are version "1.1", carry ApproximateCreationDateTime as epoch
    seconds and add eventSourceARN."""
    ddb = raw.get("dynamodb") or {}
    created = ddb.get("ApproximateCreationDateTime")
    dynamodb: dict[str, Any] = {
        # Lambda delivers whole seconds, as a JSON number (1479499740.0).
        "ApproximateCreationDateTime": float(int(_epoch(created))) if created is not None else float(int(time.time())),
    }
    for key in _DDB_KEYS:
        if key in ddb:
            dynamodb[key] = _jsonable(ddb[key])
    record: dict[str, Any] = {
        "eventID": raw.get("eventID") or uuid.uuid4().hex,
        "eventName": raw.get("eventName"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": raw.get("awsRegion") or region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if raw.get("userIdentity"):
        # TTL deletions say who removed the item.
        record["userIdentity"] = _jsonable(raw["userIdentity"])
    return record


@dataclass(frozen=True)
class _Rec:
    seq: str
    created: float
    record: dict[str, Any]


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    start_seq: int
    end_seq: int | None  # set once the shard is closed
    checkpoint: str | None = None  # the last sequence number fully handled
    finished: bool = False
    pending_since: float | None = None  # batching window start

    def checkpoint_int(self) -> int:
        return int(self.checkpoint) if self.checkpoint is not None else -1


@dataclass
class _Attempt:
    """A batch (or a bisected part, or the remainder after a partial failure)
    and what it has cost so far."""

    records: list[_Rec]
    retries: int = 0
    invokes: int = 0


@dataclass
class _Outcome:
    ok: bool
    failed_index: int | None = None  # partial failure: first record to retry
    function_error: bool = False
    reason: str = ""


# -- the poller --------------------------------------------------------------------------


class StreamPoller:
    """Runs one event source mapping: `start()`, `stop()`, `drain()`.

    `invoke(event)` is called from the poller's thread, one batch at a time
    (Lambda processes a shard strictly in order); it returns the function's
    result or raises devstack.runtime.FunctionError for a function error.
    """

    def __init__(
        self,
        mapping: StreamMapping,
        stream_arn: str,
        endpoint_url: str,
        invoke: Invoke,
        *,
        function_arn: str | None = None,
        on_failure_log: OnFailureLog | None = None,
        sqs_endpoint_url: str | None = None,
        options: PollerOptions | None = None,
    ) -> None:
        for pattern in mapping.filters:
            validate_pattern(pattern)
        if mapping.batch_size < 1:
            raise ValueError(f"{mapping.name}: BatchSize must be at least 1")
        self.mapping = mapping
        self.stream_arn = stream_arn
        self.endpoint_url = endpoint_url
        self.invoke = invoke
        self.function_arn = function_arn or f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{mapping.function}"
        self.on_failure_log = on_failure_log if on_failure_log is not None else OnFailureLog()
        self.sqs_endpoint_url = sqs_endpoint_url
        self.options = options or PollerOptions()
        # On-failure records of this mapping only (the shared log has them all).
        self.on_failure_records: list[dict[str, Any]] = []

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._shards: dict[str, _Shard] = {}
        self._shards_refreshed = 0.0
        self._stats = PollerStats()
        self._busy = False
        self._caught_up = False
        self._last_error: str | None = None
        self._streams: Any = None
        self._drain_client: Any = None
        self._queue_urls: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.mapping.name

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> StreamPoller:
        if self._thread is not None:
            return self
        self._stop.clear()
        self._streams = client(self.endpoint_url, "dynamodbstreams")
        try:
            self._refresh_shards()
            if self.mapping.starting_position.upper() == "LATEST":
                # LATEST means "what is written from now on": done here, before
                # start() returns, so a write that follows start() is delivered.
                self._skip_to_latest()
        except (BotoCoreError, ClientError) as exc:
            # RuntimeError is what the stack's startup reports as one line.
            raise RuntimeError(f"{self.name}: cannot read stream {self.stream_arn}: {exc}") from None
        self._thread = threading.Thread(target=self._run, name=f"stream:{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; a batch being invoked finishes first (it cannot be
        interrupted), retries waiting for their backoff are abandoned."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("%s: poller did not stop within %.0f s (an invocation is still running)",
                            self.name, timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poke(self) -> None:
        """Poll now instead of at the next (possibly idle-slowed) interval."""
        self._wake.set()

    def stats(self) -> PollerStats:
        with self._lock:
            return self._stats

    def idle(self) -> bool:
        """True when the last poll found nothing new and no batch is in flight."""
        with self._lock:
            return self._caught_up and not self._busy

    def checkpoints(self) -> dict[str, str | None]:
        with self._lock:
            return {s.shard_id: s.checkpoint for s in self._shards.values()}

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every record in the stream now has been delivered, filtered
        out or sent to the on-failure destination. False on timeout."""
        if not self.running:
            raise RuntimeError(f"{self.name}: the poller is not running")
        deadline = time.monotonic() + timeout
        heads = self._stream_heads()
        while True:
            self._wake.set()  # skip any idle back-off: the records are there now
            with self._lock:
                done = all(
                    shard_id in self._shards and self._shards[shard_id].checkpoint_int() >= head
                    for shard_id, head in heads.items()
                )
            if done:
                return True
            if not self.running:
                raise RuntimeError(f"{self.name}: the poller stopped while draining")
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    # -- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        interval = self.options.poll_interval_s
        while not self._stop.is_set():
            progressed = found = False
            try:
                progressed, found = self._poll_once()
                if self._last_error is not None:
                    log.info("%s: stream readable again", self.name)
                    self._last_error = None
            except (BotoCoreError, ClientError) as exc:
                self._report_poll_error(exc)
            except Exception:  # the poller must outlive any one bad poll (logged with its traceback)
                log.exception("%s: poll failed", self.name)
            if progressed:
                interval = self.options.poll_interval_s
                continue
            if found:
                # Records are waiting (a batching window is open): keep the pace.
                interval = self.options.poll_interval_s
            self._wake.wait(interval)
            self._wake.clear()
            interval = min(interval * 2, self.options.idle_poll_interval_s)

    def _report_poll_error(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message != self._last_error:
            log.warning("%s: cannot read stream %s: %s", self.name, self.stream_arn, message)
        self._last_error = message

    def _poll_once(self) -> tuple[bool, bool]:
        now = time.monotonic()
        if now - self._shards_refreshed >= self.options.shard_refresh_s:
            self._refresh_shards()
        progressed = False
        found_any = False
        for shard in self._ready_shards():
            if self._stop.is_set():
                break
            moved, found = self._poll_shard(shard)
            progressed |= moved
            found_any |= found
        with self._lock:
            self._caught_up = not found_any
        return progressed, found_any

    # -- shards ----------------------------------------------------------------------

    def _refresh_shards(self) -> None:
        """Learn new shards (DynamoDB rolls them over; a table may have several)."""
        shards: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            desc = self._streams.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(desc.get("Shards") or [])
            last = desc.get("LastEvaluatedShardId")
            if not last:
                break
            kwargs["ExclusiveStartShardId"] = last
        with self._lock:
            for raw in shards:
                rng = raw.get("SequenceNumberRange") or {}
                end = rng.get("EndingSequenceNumber")
                known = self._shards.get(raw["ShardId"])
                if known is None:
                    self._shards[raw["ShardId"]] = _Shard(
                        shard_id=raw["ShardId"],
                        parent_id=raw.get("ParentShardId"),
                        start_seq=int(rng.get("StartingSequenceNumber", "0")),
                        end_seq=int(end) if end else None,
                    )
                elif end and known.end_seq is None:
                    known.end_seq = int(end)
        self._shards_refreshed = time.monotonic()

    def _ready_shards(self) -> list[_Shard]:
        """Shards to read now, oldest first: a child waits for its parent to be
        read to the end, as Lambda keeps a key's records in order across a split."""
        with self._lock:
            shards = dict(self._shards)
        ready = []
        for shard in shards.values():
            if shard.finished:
                continue
            parent = shards.get(shard.parent_id) if shard.parent_id else None
            if parent is not None and not parent.finished:
                continue
            ready.append(shard)
        return sorted(ready, key=lambda s: s.start_seq)

    def _iterator(self, shard: _Shard, streams: Any) -> str | None:
        # A fresh iterator on every poll: moto 5.2.5 replaces a table's shard
        # object when a TransactWriteItems is cancelled, and an iterator taken
        # before that keeps reading the old object, which never sees another
        # record. Positioning by sequence number is immune to that.
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
        if shard.checkpoint is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = shard.checkpoint
        try:
            iterator = streams.get_shard_iterator(**kwargs).get("ShardIterator")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TrimmedDataAccessException":
                raise
            # The checkpoint is older than the stream's retention: the records
            # after it are gone, so carry on from the oldest one left.
            log.warning("%s: records after %s were trimmed from %s; resuming at the oldest record",
                        self.name, shard.checkpoint, shard.shard_id)
            kwargs.pop("SequenceNumber", None)
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
            iterator = streams.get_shard_iterator(**kwargs).get("ShardIterator")
        return str(iterator) if iterator else None

    def _read(self, shard: _Shard) -> tuple[list[_Rec], bool]:
        """Records after the shard's checkpoint, and whether a closed shard is done."""
        iterator = self._iterator(shard, self._streams)
        if iterator is None:
            return [], shard.end_seq is not None
        resp = self._streams.get_records(ShardIterator=iterator, Limit=self.options.read_limit)
        raw_records = resp.get("Records") or []
        # A closed shard read to its end returns no next iterator.
        exhausted = not raw_records and resp.get("NextShardIterator") is None
        return [self._rec(raw) for raw in raw_records], exhausted

    def _rec(self, raw: Mapping[str, Any]) -> _Rec:
        record = to_lambda_record(raw, self.stream_arn)
        created = _epoch((raw.get("dynamodb") or {}).get("ApproximateCreationDateTime"))
        return _Rec(seq=str(record["dynamodb"]["SequenceNumber"]), created=created, record=record)

    def _skip_to_latest(self) -> None:
        with self._lock:
            shards = list(self._shards.values())
        for shard in shards:
            if shard.end_seq is not None:
                shard.finished = True  # closed: nothing new will ever arrive there
                continue
            while True:
                records, _ = self._read(shard)
                if not records:
                    break
                self._commit(shard, records[-1].seq)

    def _stream_heads(self) -> dict[str, int]:
        """The last sequence number in each shard right now (for drain)."""
        with self._lock:
            if self._drain_client is None:
                self._drain_client = client(self.endpoint_url, "dynamodbstreams")
            streams = self._drain_client
        self._refresh_shards()
        heads: dict[str, int] = {}
        with self._lock:
            shards = list(self._shards.values())
        for shard in shards:
            if shard.finished:
                continue
            iterator = self._iterator(shard, streams)
            head = shard.checkpoint_int()
            for _ in range(10_000):
                if iterator is None:
                    break
                resp = streams.get_records(ShardIterator=iterator, Limit=1000)
                records = resp.get("Records") or []
                if not records:
                    break
                head = max(head, int(records[-1]["dynamodb"]["SequenceNumber"]))
                iterator = resp.get("NextShardIterator")
            if head >= 0:
                heads[shard.shard_id] = head
        return heads

    def _commit(self, shard: _Shard, seq: str) -> None:
        with self._lock:
            if shard.checkpoint is None or int(seq) > int(shard.checkpoint):
                shard.checkpoint = seq

    def _count(self, **deltas: int) -> None:
        with self._lock:
            values = {name: getattr(self._stats, name) + delta for name, delta in deltas.items()}
            self._stats = replace(self._stats, **values)

    # -- one shard, one batch ----------------------------------------------------------

    def _poll_shard(self, shard: _Shard) -> tuple[bool, bool]:
        """(progressed, found records). Reads, filters, invokes one batch."""
        records, exhausted = self._read(shard)
        if not records:
            if exhausted:
                # A closed shard read to its end: its children may start.
                with self._lock:
                    shard.finished = True
                self._shards_refreshed = 0.0
                return True, False
            return False, False

        batch: list[_Rec] = []
        span: list[_Rec] = []  # the records this batch accounts for, filtered ones included
        for rec in records:
            if len(batch) == self.mapping.batch_size:
                break
            span.append(rec)
            if matches_any(self.mapping.filters, rec.record):
                batch.append(rec)
        filtered = len(span) - len(batch)

        if batch and len(batch) < self.mapping.batch_size and self.mapping.batching_window_s > 0:
            # MaximumBatchingWindowInSeconds: wait for a fuller batch, at most
            # the window after the first record was seen.
            now = time.monotonic()
            if shard.pending_since is None:
                shard.pending_since = now
            if now - shard.pending_since < self.mapping.batching_window_s:
                return False, True
        shard.pending_since = None

        if batch:
            with self._lock:
                self._busy = True
            try:
                completed = self._deliver(shard, batch)
            finally:
                with self._lock:
                    self._busy = False
            if not completed:
                return False, True  # stopping mid-batch: nothing more to checkpoint
        self._count(records_filtered=filtered)
        self._commit(shard, span[-1].seq)
        return True, True

    def _event(self, records: list[_Rec]) -> dict[str, Any]:
        # A deep copy per invocation: an in-process invoke that mutates its
        # event must not change what a retry delivers.
        return {"Records": [copy.deepcopy(r.record) for r in records]}

    def _deliver(self, shard: _Shard, batch: list[_Rec]) -> bool:
        """Invoke until the batch is processed or dead-lettered; False if stopped."""
        pending: deque[_Attempt] = deque([_Attempt(batch)])
        while pending:
            if self._stop.is_set():
                return False
            attempt = pending.popleft()
            outcome = self._invoke_once(attempt)
            if outcome.ok:
                self._succeeded(shard, attempt.records)
                continue
            if outcome.failed_index is not None and outcome.failed_index > 0:
                # Partial batch response: everything before the lowest failed
                # record is done and is not delivered again.
                self._succeeded(shard, attempt.records[:outcome.failed_index])
                attempt.records = attempt.records[outcome.failed_index:]
            elif outcome.function_error and self.mapping.bisect_on_error and len(attempt.records) > 1:
                # Bisection is free: the halves keep the retries used so far.
                mid = len(attempt.records) // 2
                self._count(bisections=1)
                log.info("%s: function error on %d records (%s); bisecting",
                         self.name, len(attempt.records), outcome.reason)
                pending.extendleft([
                    _Attempt(attempt.records[mid:], attempt.retries),
                    _Attempt(attempt.records[:mid], attempt.retries),
                ])
                continue
            if self._exhausted(attempt):
                self._dead_letter(shard, attempt, outcome)
                continue
            attempt.retries += 1
            delay = min(self.options.retry_cap_s, self.options.retry_base_s * 2 ** (attempt.retries - 1))
            self._count(retries=1)
            log.info("%s: batch of %d records failed (%s); retry %d in %.2f s",
                     self.name, len(attempt.records), outcome.reason, attempt.retries, delay)
            if self._stop.wait(delay):
                return False
            pending.appendleft(attempt)
        return True

    def _invoke_once(self, attempt: _Attempt) -> _Outcome:
        attempt.invokes += 1
        self._count(batches_invoked=1)
        try:
            result = self.invoke(self._event(attempt.records))
        except FunctionError as exc:
            self._count(function_errors=1)
            return _Outcome(ok=False, function_error=True, reason=f"{exc.error_type}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - an invoker's own failure counts as a function error
            self._count(function_errors=1)
            return _Outcome(ok=False, function_error=True, reason=f"{type(exc).__name__}: {exc}")
        if not self.mapping.report_batch_item_failures:
            return _Outcome(ok=True)
        outcome = self._batch_item_failures(result, attempt.records)
        if not outcome.ok:
            self._count(partial_failures=1)
        return outcome

    def _batch_item_failures(self, result: Any, records: list[_Rec]) -> _Outcome:
        """Lambda's rules for a partial batch response."""
        # Success: no response, an empty response, a null or empty list. A
        # response that is not an object has no batchItemFailures either.
        if not isinstance(result, Mapping):
            return _Outcome(ok=True)
        failures = result.get("batchItemFailures")
        if failures is None or (isinstance(failures, list) and not failures):
            return _Outcome(ok=True)
        if not isinstance(failures, list):
            return _Outcome(ok=False, reason="malformed response: batchItemFailures is not a list")
        index = {r.seq: i for i, r in enumerate(records)}
        lowest: int | None = None
        for item in failures:
            identifier = item.get("itemIdentifier") if isinstance(item, Mapping) else None
            if not isinstance(identifier, str) or not identifier or identifier not in index:
                # An empty, null, missing or unknown identifier fails the whole batch.
                return _Outcome(ok=False, failed_index=0,
                                reason=f"malformed response: itemIdentifier {identifier!r} is not in the batch")
            lowest = index[identifier] if lowest is None else min(lowest, index[identifier])
        assert lowest is not None
        return _Outcome(ok=False, failed_index=lowest,
                        reason=f"batchItemFailures from {records[lowest].seq}")

    def _succeeded(self, shard: _Shard, records: list[_Rec]) -> None:
        if not records:
            return
        self._count(records_delivered=len(records))
        self._commit(shard, records[-1].seq)

    def _exhausted(self, attempt: _Attempt) -> bool:
        limit = self.mapping.maximum_retry_attempts
        if limit < 0:
            limit = self.options.unlimited_retry_cap
        if attempt.retries >= limit:
            return True
        oldest = min(r.created for r in attempt.records)
        return time.time() - oldest > self.options.max_record_age_s

    # -- on failure --------------------------------------------------------------------

    def _dead_letter(self, shard: _Shard, attempt: _Attempt, outcome: _Outcome) -> None:
        first, last = attempt.records[0], attempt.records[-1]
        record: dict[str, Any] = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempt.invokes,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if outcome.function_error else None,
            },
            "version": "1.0",
            "timestamp": _iso(time.time(), millis=True),
            "DDBStreamBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": first.seq,
                "endSequenceNumber": last.seq,
                "approximateArrivalOfFirstRecord": _iso(first.created),
                "approximateArrivalOfLastRecord": _iso(last.created),
                "batchSize": len(attempt.records),
                "streamArn": self.stream_arn,
            },
        }
        with self._lock:
            self.on_failure_records.append(record)
        self.on_failure_log.append(record)
        self._count(records_failed=len(attempt.records))
        destination = self.mapping.on_failure or "(no destination configured)"
        log.warning("%s: %d record(s) %s..%s failed after %d invocation(s) (%s); on-failure record sent to %s",
                    self.name, len(attempt.records), first.seq, last.seq, attempt.invokes, outcome.reason,
                    destination)
        self._send_to_destination(record)
        self._commit(shard, last.seq)

    def _send_to_destination(self, record: dict[str, Any]) -> None:
        arn = self.mapping.on_failure
        if not arn or not arn.startswith("arn:aws:sqs:") or not self.sqs_endpoint_url:
            return
        queue_name = arn.split(":")[5]
        try:
            sqs = client(self.sqs_endpoint_url, "sqs")
            url = self._queue_urls.get(queue_name)
            if url is None:
                # The local stack does not create queues; the destination is
                # created on first use so its messages can be read.
                try:
                    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
                except ClientError:
                    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
                self._queue_urls[queue_name] = str(url)
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
        except (BotoCoreError, ClientError) as exc:
            log.warning("%s: could not send the on-failure record to %s: %s", self.name, arn, exc)


def _iso(epoch: float, millis: bool = False) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- every mapping of a stack ------------------------------------------------------------


class StreamSupervisor:
    """One StreamPoller per DynamoDB event of the given functions.

    `stream_arns` maps table logical ids to their stream ARNs (create_tables'
    result); `invokers` maps function logical ids to `invoke(event)` callables
    (FunctionRuntime.invoke)."""

    def __init__(
        self,
        functions: Iterable[FunctionSpec],
        stream_arns: Mapping[str, str],
        invokers: Mapping[str, Invoke],
        endpoint_url: str,
        *,
        sqs_endpoint_url: str | None = None,
        function_arns: Mapping[str, str] | None = None,
        on_failure_log: OnFailureLog | None = None,
        options: PollerOptions | None = None,
    ) -> None:
        self.on_failure_log = on_failure_log if on_failure_log is not None else OnFailureLog()
        self.pollers: list[StreamPoller] = []
        for spec in functions:
            for mapping in spec.streams:
                if mapping.table not in stream_arns:
                    raise ValueError(f"{mapping.name}: table {mapping.table} has no stream")
                if mapping.function not in invokers:
                    raise ValueError(f"{mapping.name}: no invoker for function {mapping.function}")
                self.pollers.append(StreamPoller(
                    mapping, stream_arns[mapping.table], endpoint_url, invokers[mapping.function],
                    function_arn=(function_arns or {}).get(mapping.function),
                    on_failure_log=self.on_failure_log,
                    sqs_endpoint_url=sqs_endpoint_url,
                    options=options,
                ))

    def poller(self, name: str) -> StreamPoller:
        for poller in self.pollers:
            if poller.name == name:
                return poller
        raise KeyError(name)

    def start(self) -> StreamSupervisor:
        started: list[StreamPoller] = []
        try:
            for poller in self.pollers:
                started.append(poller.start())
        except BaseException:
            for poller in started:
                poller.stop()
            raise
        return self

    def stop(self) -> None:
        for poller in self.pollers:
            poller.stop()

    def drain_all(self, timeout: float = 10.0) -> bool:
        """drain() every poller within one overall timeout."""
        deadline = time.monotonic() + timeout
        return all(p.drain(max(0.0, deadline - time.monotonic())) for p in self.pollers)

    def stats(self) -> dict[str, PollerStats]:
        return {p.name: p.stats() for p in self.pollers}

    def __enter__(self) -> StreamSupervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

