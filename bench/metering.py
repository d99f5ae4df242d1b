"""Usage metering through the local stack: the cost model (DESIGN.md section 7).

For each delivery mode (v1, v2), on a fresh local stack on DynamoDB Local:
1. with the meter_reporter's stream poller paused, EVENTS usage events from
   20 customers, accepted one PUT each (and, where the API has it, again
   through POST /v1/usage/batch, 100 a request);
2. the poller resumed, until every event is reported;
3. one run of the sweeper (every row it has not looked at yet, min age 0):
   what finding the rows left pending costs, per event;
4. one customer's burst (BURST events, the batch route where there is one),
   accepted and reported, with the writes each partition key took.

Per accepted and per reported event it prints the write and read capacity
units DynamoDB consumed (from its own ConsumedCapacity, by table and index,
see bench.proxy), the DynamoDB, API Gateway, Lambda and Stripe requests,
the Lambda GB-seconds (handler time in the local stack times the function's
memory: this machine, not Lambda's arm64, so an estimate), and the dollars
per million events end to end at the dated prices of bench.costs.

The stack runs on DynamoDB Local (DYNAMODB_ENDPOINT_URL, or one started here
as `make test-dynamodb-local` does): moto reports no consumed capacity, and
snapshots a whole table for every TransactWriteItems.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench import costs, partitions
from bench.proxy import WRITE_OPERATIONS, CountingProxy
from devstack.stack import LocalStack, Settings

__all__ = ["WRITE_OPERATIONS", "CountingProxy", "run"]

EVENTS = int(os.environ.get("BENCH_USAGE_EVENTS", "1000"))
BURST = int(os.environ.get("BENCH_USAGE_BURST", "2000"))
CLIENT_THREADS = int(os.environ.get("BENCH_USAGE_THREADS", "16"))
BATCH_SIZE = 100
CUSTOMERS = 20
# The rate issue 12 names for one big customer, against DynamoDB's 1,000 write units per key per second.
BURST_RATE = 2000
KEY_LIMIT = 1000
STRIPE_METER_OPERATIONS = frozenset({"create_meter_event", "create_meter_event_session", "send_meter_events"})
REPORTER_STREAM = "MeterReporterFunction.Stream"
SWEEPER_SCHEDULE = "MeterSweeperFunction.Sweep"
API, REPORTER = "ApiFunction", "MeterReporterFunction"


@contextmanager
def dynamodb_local() -> Iterator[str]:
    """DYNAMODB_ENDPOINT_URL, or an in-memory DynamoDB Local started for the run."""
    given = os.environ.get("DYNAMODB_ENDPOINT_URL")
    if given:
        yield given
        return
    from devstack.dynamodb_local.__main__ import running

    with running() as url:
        yield url


@dataclass
class Phase:
    """What one phase (accepting, or reporting) consumed."""

    events: int = 0
    seconds: float = 0.0
    api_requests: int = 0
    invocations: dict[str, int] = field(default_factory=dict)
    gb_seconds: float = 0.0
    write_requests: int = 0
    refused_writes: int = 0
    approximated: int = 0
    write_units: dict[tuple[str, str], float] = field(default_factory=dict)
    read_units: dict[tuple[str, str], float] = field(default_factory=dict)
    stripe_requests: int = 0

    @property
    def writes(self) -> float:
        return sum(self.write_units.values())

    @property
    def reads(self) -> float:
        return sum(self.read_units.values())


class Meter:
    """Measures a phase: the proxy's counts, the functions' invocations and handler time, Stripe's calls."""

    def __init__(self, stack: LocalStack, proxy: CountingProxy) -> None:
        self.stack, self.proxy = stack, proxy

    def _snapshot(self) -> tuple[dict[str, int], dict[str, float], int]:
        runtimes = self.stack.runtimes
        assert self.stack.fake_stripe is not None
        stripe = sum(1 for c in self.stack.fake_stripe.fake.calls if c["operation"] in STRIPE_METER_OPERATIONS)
        return ({k: r.invocations for k, r in runtimes.items()},
                {k: r.busy_seconds * r.spec.memory / 1024 for k, r in runtimes.items()}, stripe)

    def measure(self, action: Callable[[], tuple[int, int]]) -> Phase:
        """Run `action` (returns events, API requests) and what it consumed."""
        self.proxy.reset()
        calls, gbs, stripe = self._snapshot()
        started = time.monotonic()
        events, api_requests = action()
        seconds = time.monotonic() - started
        calls_after, gbs_after, stripe_after = self._snapshot()
        return Phase(
            events=events, seconds=seconds, api_requests=api_requests,
            invocations={k: calls_after[k] - calls[k] for k in calls if calls_after[k] - calls[k]},
            gb_seconds=sum(gbs_after[k] - gbs[k] for k in gbs), write_requests=self.proxy.writes(),
            refused_writes=sum(self.proxy.refused.values()), approximated=self.proxy.approximated,
            write_units=self.proxy.capacity_units("write"), read_units=self.proxy.capacity_units("read"),
            stripe_requests=stripe_after - stripe)


def _session(local: threading.local) -> requests.Session:
    session = getattr(local, "session", None)
    if session is None:
        session = local.session = requests.Session()
    return session


def _body(customer_id: str, i: int) -> dict[str, Any]:
    return {"event_name": "bench_calls", "value": 1 + i % 7, "customer_id": customer_id}


def put_all(base: str, customer_ids: list[str], prefix: str, count: int) -> tuple[int, int]:
    """One PUT per event; (accepted, requests)."""
    local = threading.local()

    def put(i: int) -> int:
        resp = _session(local).put(f"{base}/v1/usage/{prefix}-{i}", json=_body(customer_ids[i % len(customer_ids)], i),
                                   timeout=60)
        return int(resp.status_code)

    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        statuses = list(pool.map(put, range(count)))
    return sum(1 for s in statuses if s == 202), count


def post_batches(base: str, customer_ids: list[str], prefix: str, count: int) -> tuple[int, int]:
    """POST /v1/usage/batch, BATCH_SIZE events a request; (accepted, requests)."""
    local = threading.local()
    starts = list(range(0, count, BATCH_SIZE))

    def post(start: int) -> int:
        events = [{"identifier": f"{prefix}-{i}", **_body(customer_ids[i % len(customer_ids)], i)}
                  for i in range(start, min(count, start + BATCH_SIZE))]
        resp = _session(local).post(f"{base}/v1/usage/batch", json={"events": events}, timeout=60)
        if resp.status_code != 207:
            return 0
        return sum(1 for r in resp.json()["data"] if r["status"] == 202)

    with ThreadPoolExecutor(max_workers=max(1, min(CLIENT_THREADS, len(starts)))) as pool:
        accepted = sum(pool.map(post, starts))
    return accepted, len(starts)


def has_batch_route(base: str) -> bool:
    return "/v1/usage/batch" in requests.get(f"{base}/v1/openapi.json", timeout=30).json()["paths"]


def pending_left(base: str) -> bool:
    """Whether any usage is pending (every page of the list, which may come in short pages)."""
    cursor: str | None = None
    while True:
        params = {"status": "pending", "limit": "100", **({"cursor": cursor} if cursor else {})}
        body = requests.get(f"{base}/v1/usage", params=params, timeout=60).json()
        if body["data"]:
            return True
        cursor = body["next_cursor"]
        if cursor is None:
            return False


def wait_reported(stack: LocalStack, base: str, timeout: float = 900) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.drain(timeout=max(1.0, deadline - time.monotonic()))
        if not pending_left(base):
            return True
    return False


def wait_billed(stack: LocalStack, prefix: str, expected: int, timeout: float = 900) -> None:
    """Until Stripe (the Fake) holds `expected` events of this run: read from the
    Fake, not the API, so the waiting adds no request to what is measured."""
    assert stack.fake_stripe is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        billed = sum(1 for e in stack.fake_stripe.fake.meter_events if e["identifier"].startswith(f"{prefix}-"))
        if billed >= expected:
            return
        stack.drain(timeout=1.0)


@contextmanager
def stack_on(endpoint: str, mode: str) -> Iterator[tuple[LocalStack, CountingProxy]]:
    probe = LocalStack(Settings(port=0, meter_api=mode, stack_name=f"bench-metering-{mode}"))
    keys = {t.name: tuple(k["AttributeName"] for k in t.properties["KeySchema"]) for t in probe.stack.tables()}
    proxy = CountingProxy(endpoint, capacity=True, key_names=keys)
    # Function output (logs, and the EMF lines Powertools prints) goes to a
    # file, as it would to CloudWatch, not into the table.
    log = Path(tempfile.mkdtemp(prefix="bench-metering-")) / "functions.log"
    stack = LocalStack(Settings(port=0, meter_api=mode, concurrency=4, dynamodb_endpoint=proxy.url,
                                stack_name=f"bench-metering-{mode}", function_log=log,
                                # The sweeper looks at every row it has not seen yet, however young.
                                extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING", "SWEEP_MIN_AGE_SECONDS": "0"})).start()
    try:
        yield stack, proxy
    finally:
        stack.stop()
        proxy.stop()


def _phases(stack: LocalStack, meter: Meter, base: str, prefix: str, ingest: Callable[[], tuple[int, int]]
            ) -> tuple[Phase, Phase, Phase, bool]:
    assert stack.streams is not None
    poller = stack.streams.poller(REPORTER_STREAM)
    poller.stop()  # accept first, deliver after: each phase's consumption is its own
    accepted = meter.measure(ingest)

    def deliver() -> tuple[int, int]:
        poller.start()
        wait_billed(stack, prefix, accepted.events)
        stack.drain(timeout=120)  # and the outcomes written back
        return accepted.events, 0

    reported = meter.measure(deliver)
    drained = wait_reported(stack, base)

    def sweep() -> tuple[int, int]:
        assert stack.schedules is not None
        stack.schedules.trigger(SWEEPER_SCHEDULE)
        return accepted.events, 0

    return accepted, reported, meter.measure(sweep), drained


def _where(table: str, index: str, stack_name: str) -> str:
    name = table.removeprefix(f"{stack_name}-")
    return f"{name}.{index}" if index else name


def cost_rows(name: str, stack: LocalStack, accepted: Phase, reported: Phase, swept: Phase, drained: bool
              ) -> list[dict[str, Any]]:
    n_in, n_out = max(accepted.events, 1), max(accepted.events, 1)
    rows: list[dict[str, Any]] = [
        {"benchmark": name, "metric": "events accepted", "value": accepted.events, "unit": "events"},
        {"benchmark": name, "metric": "accepted per second", "value": round(accepted.events / accepted.seconds, 1),
         "unit": "/s"},
        {"benchmark": name, "metric": "seconds to report them all" + ("" if drained else " TIMED OUT"),
         "value": round(reported.seconds, 2), "unit": "s"},
    ]
    for label, phase, per in (("accepted", accepted, n_in), ("reported", reported, n_out)):
        for (table, index), units in sorted((phase.write_units or {}).items()):
            if units:
                rows.append({"benchmark": name, "metric": f"write units per {label} event: "
                             f"{_where(table, index, stack.stack.stack_name)}",
                             "value": round(units / per, 3), "unit": "WCU"})
        rows += [
            {"benchmark": name, "metric": f"write units per {label} event", "value": round(phase.writes / per, 3),
             "unit": "WCU (ConsumedCapacity)"},
            {"benchmark": name, "metric": f"read units per {label} event", "value": round(phase.reads / per, 3),
             "unit": "RCU (ConsumedCapacity)"},
            {"benchmark": name, "metric": f"DynamoDB write requests per {label} event",
             "value": round(phase.write_requests / per, 3), "unit": "requests"},
            {"benchmark": name, "metric": f"Lambda invocations per {label} event",
             "value": round(sum(phase.invocations.values()) / per, 4),
             "unit": ", ".join(f"{k} {v}" for k, v in sorted(phase.invocations.items())) or "-"},
        ]
        if phase.approximated:
            rows.append({"benchmark": name, "metric": f"transactions of unlike items while {label} (scaled)",
                         "value": phase.approximated, "unit": "requests (see bench.proxy)"})
        if phase.refused_writes:
            rows.append({"benchmark": name, "metric": f"refused conditional writes while {label}",
                         "value": phase.refused_writes, "unit": "requests (1 WCU each, not in ConsumedCapacity)"})
    rows += [
        {"benchmark": name, "metric": "sweeper: read units per event it looked at",
         "value": round(swept.reads / n_in, 3), "unit": "RCU (ConsumedCapacity)"},
        {"benchmark": name, "metric": "sweeper: write units per event it looked at",
         "value": round(swept.writes / n_in, 3), "unit": "WCU (none pending: expect 0 but its positions)"},
        {"benchmark": name, "metric": "API requests per event", "value": round(accepted.api_requests / n_in, 4),
         "unit": "requests"},
        {"benchmark": name, "metric": "Stripe requests per reported event",
         "value": round(reported.stripe_requests / n_out, 4), "unit": f"{reported.stripe_requests} for {n_out}"},
    ]
    per_event = costs.PerEvent(
        write_units=accepted.writes / n_in + reported.writes / n_out,
        # The sweeper looks at each row once: its reads are the event's too.
        read_units=accepted.reads / n_in + reported.reads / n_out + swept.reads / n_in,
        api_requests=accepted.api_requests / n_in,
        lambda_invocations=sum(accepted.invocations.values()) / n_in + sum(reported.invocations.values()) / n_out,
        lambda_gb_seconds=accepted.gb_seconds / n_in + reported.gb_seconds / n_out)
    rows.append({"benchmark": name, "metric": "write units per event, end to end",
                 "value": round(per_event.write_units, 3), "unit": "WCU (target: at most 3)"})
    rows.append({"benchmark": name, "metric": "Lambda GB-seconds per event (local handler time, estimate)",
                 "value": f"{per_event.lambda_gb_seconds:.2e}", "unit": "GB-s"})
    for part, dollars in per_event.dollars_per_million().items():
        rows.append({"benchmark": name, "metric": f"$ per million events: {part}", "value": f"{dollars:.3f}",
                     "unit": f"USD, prices of {costs.PRICES_READ_ON}"})
    return rows


def burst_rows(name: str, stack: LocalStack, proxy: CountingProxy, endpoint: str, mode: str,
               ingest: Callable[[str, list[str], str, int], tuple[int, int]]) -> list[dict[str, Any]]:
    """One customer's burst, accepted and reported: the writes on each partition key."""
    base = stack.url
    customer = requests.put(f"{base}/v1/owners/Bench/{uuid.uuid4()}/customer", json={}, timeout=30).json()["id"]
    stack.settle(60)  # its customer.created webhook, applied before anything is counted
    prefix = f"burst-{uuid.uuid4().hex[:8]}"
    proxy.reset()
    accepted, _ = ingest(base, [customer], prefix, BURST)
    drained = wait_reported(stack, base)
    writes: Counter[tuple[str, str]] = Counter()
    for (table, key), count in proxy.key_writes.items():
        writes[(_where(table, "", stack.stack.stack_name), key)] += count
    meter_table = next(t for t in stack.stack.tables() if t.logical_id == "MeterEventsTable")
    records = partitions.stream_records(endpoint, stack.stream_arns["MeterEventsTable"])
    for (index, key), count in partitions.index_writes(
            meter_table, records, lambda r: str(r["dynamodb"]["Keys"]["pk"]["S"]).startswith(prefix)).items():
        writes[(f"MeterEventsTable.{index}", key)] += count
    rows: list[dict[str, Any]] = [{"benchmark": name, "metric": f"one customer's burst ({mode}): events accepted"
                                   + ("" if drained else " (NOT all reported)"), "value": accepted, "unit": "events"}]
    for where, (key, count) in sorted(partitions.hottest(writes).items()):
        per_event = count / max(accepted, 1)
        rate = per_event * BURST_RATE
        verdict = "over" if rate > KEY_LIMIT else "under"
        rows.append({"benchmark": name, "metric": f"hottest key of {where}: {key[:40]}",
                     "value": f"{per_event:.3f}",
                     "unit": f"writes/event; {rate:,.0f}/s at {BURST_RATE:,} events/s ({verdict} {KEY_LIMIT:,})"})
    return rows


def _run_mode(mode: str, endpoint: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with stack_on(endpoint, mode) as (stack, proxy):
        base = stack.url
        meter = Meter(stack, proxy)
        customer_ids = [requests.put(f"{base}/v1/owners/Bench/{uuid.uuid4()}/customer", json={}, timeout=30)
                        .json()["id"] for _ in range(CUSTOMERS)]
        # Stripe's customer.created webhooks for them, applied before anything is counted.
        stack.settle(60)
        ways: list[tuple[str, Callable[[str, list[str], str, int], tuple[int, int]]]] = [("PUT", put_all)]
        if has_batch_route(base):
            ways.append(("batch", post_batches))
        for label, ingest in ways:
            run_id = uuid.uuid4().hex[:8]
            accepted, reported, swept, drained = _phases(stack, meter, base, run_id,
                                                         partial(ingest, base, customer_ids, run_id, EVENTS))
            rows += cost_rows(f"metering {mode} {label}", stack, accepted, reported, swept, drained)
        assert stack.fake_stripe is not None
        rows.append({"benchmark": f"metering {mode}", "metric": "events Stripe received twice (deduplicated)",
                     "value": sum(stack.fake_stripe.fake.meter_event_duplicates.values()), "unit": "events"})
        rows += burst_rows(f"metering {mode}", stack, proxy, endpoint, mode, ways[-1][1])
    return rows


def run() -> list[dict[str, Any]]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with dynamodb_local() as endpoint:
        return [*costs.price_rows(), *(row for mode in ("v1", "v2") for row in _run_mode(mode, endpoint))]


if __name__ == "__main__":
    for row in run():
        print(f"{row['benchmark']:<12} {row['metric']:<55} {row['value']:>10} {row['unit']}")
