"""Runs the webhook path's put_data against the local stack's DynamoDB, in a
process of its own with the API function's environment (so PynamoDB models
bind to the stack's tables), racing the PATCHes a test sends over HTTP."""

from __future__ import annotations

import random
import sys
import time

from billing.customers import update as customers
from billing.data.ledger import Actor


def main(customer_id: str, times: int) -> None:
    for i in range(times):
        customers.put_data(customer_id, {"id": "cus_x", "object": "customer", "balance": i}, Actor.webhook(f"evt_{i}"))
        time.sleep(random.uniform(0, 0.02))  # noqa: S311 - deliveries arrive spread out, not in lockstep


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
