"""The MCP function's reads through the local stack (DESIGN.md section 11):
DynamoDB requests per `get` of a Customer, bare and with each include, and
per `billing`, counted where they arrive (the counting proxy in front of the
stack's moto), not timed. Target: the customer's one read, then one query
(or one item read) per include, never a scan. The owner has a customer, a
card, an active Pro subscription (its invoice and charge) and usage.
"""

from __future__ import annotations

import json
import os
from typing import Any

import requests

from bench.billing import READ_OPERATIONS, STREAM_OPERATIONS, subscribed_owner
from bench.proxy import CountingProxy, counted_stack

CALLS = int(os.environ.get("BENCH_MCP_CALLS", "10"))
INCLUDES = ("subscriptions", "invoices", "payments", "payment_methods", "entitlements", "usage")
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def _tool(url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                      "params": {"name": name, "arguments": arguments}}, headers=HEADERS, timeout=30)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()["result"]
    assert not result.get("isError"), result
    return result


def _counted(counter: CountingProxy, url: str, name: str, arguments: dict[str, Any]) -> dict[str, int]:
    counter.reset()
    for _ in range(CALLS):
        _tool(url, name, arguments)
    return {op: n for op, n in counter.counts.items() if op not in STREAM_OPERATIONS}


def run() -> list[dict[str, Any]]:
    with counted_stack(concurrency=2) as (stack, counter):
        base, mcp = stack.url, f"{stack.url}/v1/mcp"
        owner, customer = subscribed_owner(base)
        usage = requests.put(f"{base}/v1/usage/bench-mcp-{owner}", timeout=30, json={
            "event_name": "api_requests", "value": 1, "customer_id": customer["id"]})
        assert usage.status_code in (200, 202), usage.text
        assert stack.settle(60), "the Fake's webhooks did not settle"
        cases: list[tuple[str, str, dict[str, Any]]] = [("get Customer", "get", {"type": "Customer",
                                                                                  "id": customer["id"]})]
        cases += [(f"get Customer include {name}", "get", {"type": "Customer", "id": customer["id"],
                                                           "include": [name]}) for name in INCLUDES]
        cases.append(("get Customer, every include", "get", {"type": "Customer", "id": customer["id"],
                                                             "include": list(INCLUDES)}))
        cases.append(("billing", "billing", {"owner_type": "Bench", "owner_id": owner}))
        counted = [(label, _counted(counter, mcp, name, arguments)) for label, name, arguments in cases]
    rows = []
    for label, counts in counted:
        reads = sum(n for op, n in counts.items() if op in READ_OPERATIONS)
        rows.append({"benchmark": "mcp", "metric": f"DynamoDB reads per {label}", "value": round(reads / CALLS, 2),
                     "unit": json.dumps(counts, sort_keys=True)})
        rows.append({"benchmark": "mcp", "metric": f"scans per {label} (target 0)",
                     "value": counts.get("Scan", 0) / CALLS, "unit": "Scan"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(f"{row['metric']:<60} {row['value']:>8} {row['unit']}")
