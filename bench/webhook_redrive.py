"""What the stuck-event re-drive costs (DESIGN.md section 4: no event stays
`received`), in the capacity units DynamoDB Local reports (bench.proxy):

1. N signed customer.updated deliveries, webhook_processor's stream paused:
   write units per delivery, by table and index (the ack's one PutItem also
   keys the row into the lean by_received index);
2. the schedule, once every row has been `received` longer than
   WebhookStuckAfterSeconds: units per re-driven row (the rows stand in for
   runs whose processor died);
3. the stream resumed: units the by_received index takes per processed event
   (the outcome write removes the row from it).

`python -m bench.webhook_redrive` (DynamoDB Local as bench.metering starts it).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import requests

from bench.metering import dynamodb_local
from bench.proxy import CountingProxy
from devstack.stack import LocalStack, Settings
from devstack.trigger import build, signature_header

EVENTS = 50
CUSTOMERS = 5
SECRET = "whsec_bench"  # noqa: S105 - a local stack's signing secret
STUCK_AFTER_SECONDS = 2
SCHEDULE = "WebhookProcessorFunction.RedriveDeferred"
STREAM = "WebhookProcessorFunction.Stream"


def _units(counter: CountingProxy) -> dict[str, float]:
    return {f"{table.rsplit('-', 1)[-1]}{'/' + index if index else ''}": round(units, 2)
            for (table, index), units in sorted(counter.capacity_units("write").items())}


def run() -> list[dict[str, Any]]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with dynamodb_local() as endpoint:
        counter = CountingProxy(endpoint, capacity=True)
        settings = Settings(port=0, concurrency=2, dynamodb_endpoint=counter.url, webhook_secrets=SECRET,
                            stack_name=f"bench-redrive-{uuid.uuid4().hex[:6]}",
                            parameters={"WebhookStuckAfterSeconds": str(STUCK_AFTER_SECONDS)},
                            extra_env={"POWERTOOLS_LOG_LEVEL": "WARNING"})
        stack = LocalStack(settings).start()
        try:
            base = stack.url
            ids = [requests.put(f"{base}/v1/owners/Bench/{uuid.uuid4()}/customer", json={}, timeout=30)
                   .json()["processor_id"] for _ in range(CUSTOMERS)]
            assert stack.streams is not None and stack.schedules is not None
            stack.settle(60)
            poller = stack.streams.poller(STREAM)
            poller.stop()
            now = int(time.time()) + 1
            events = [build("customer.updated", created=now + i,
                            sets=[("data.object.id", ids[i % CUSTOMERS]), ("data.object.name", f"bench {i}")])
                      for i in range(EVENTS)]
            counter.reset()
            for event in events:
                payload = json.dumps(event).encode()
                requests.post(f"{base}/v1/webhooks/stripe", data=payload, timeout=30, headers={
                    "Content-Type": "application/json", "Stripe-Signature": signature_header(payload, SECRET)}
                              ).raise_for_status()
            ack = _units(counter)
            time.sleep(STUCK_AFTER_SECONDS + 1.5)
            counter.reset()
            result = stack.schedules.trigger(SCHEDULE)
            redrive = _units(counter)
            reads = sum(counter.capacity_units("read").values())
            counter.reset()
            poller.start()
            stack.drain(300)
            processed = _units(counter)
        finally:
            stack.stop()
            counter.stop()
    n = len(events)
    per = lambda units: {k: round(v / n, 2) for k, v in units.items()}  # noqa: E731
    name = "webhook_redrive"
    return [
        {"benchmark": name, "metric": "ack: write units per delivery, by table/index",
         "value": round(sum(ack.values()) / n, 2), "unit": json.dumps(per(ack))},
        {"benchmark": name, "metric": f"re-drive: rows re-driven (of {n} stuck)",
         "value": result.get("stuck_redriven") if isinstance(result, dict) else result, "unit": "rows"},
        {"benchmark": name, "metric": "re-drive: write units per re-driven row",
         "value": round(sum(redrive.values()) / n, 2), "unit": json.dumps(per(redrive))},
        {"benchmark": name, "metric": "re-drive: read units per re-driven row (the index query)",
         "value": round(reads / n, 3), "unit": "RCU"},
        {"benchmark": name, "metric": "processing: write units per event, by table/index",
         "value": round(sum(processed.values()) / n, 2), "unit": json.dumps(per(processed))},
    ]


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']:<60} {row['value']:>8} {row['unit']}")
