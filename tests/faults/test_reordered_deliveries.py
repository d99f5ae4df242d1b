"""Reordered deliveries: the events of several customers and their payment
methods, delivered in a shuffled order (seeded), some twice, end with every
projection at its newest event.

tests/integration/test_webhook_reconcile.py checks every order of a few
updates of one customer (hypothesis); this is the mixed stream: several
customers and payment methods interleaved, same-second ties included, with
the suite's invariants at the end.
"""

from __future__ import annotations

import random
from typing import Any

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.invariants import Delivered, check_webhooks, quiet
from tests.integration.usage_helpers import new_customer
from tests.integration.webhook_helpers import accepted, event, fake, stripe_object, uid

CUSTOMERS = 4
VERSIONS = 4


def timeline(rng: random.Random, start: int) -> list[int]:
    """`created` of successive versions: gaps of 0 to 2 seconds (0: a same-second tie)."""
    times = [start]
    for _ in range(VERSIONS - 1):
        times.append(times[-1] + rng.choice([0, 1, 2]))
    return times


def test_a_shuffled_stream_of_customer_and_payment_method_events_ends_at_the_newest(stack: LocalStack,
                                                                                  api: Client) -> None:
    quiet(stack, api)
    rng = random.Random(20_251_121)  # noqa: S311 - the same shuffle every run
    delivered: list[Delivered] = []
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for n in range(CUSTOMERS):
        customer = new_customer(api)
        current = fake(stack).retrieve_customer(customer["processor_id"])
        versions = [dict(current, name=f"customer {n} v{i}", metadata={**current["metadata"], "version": str(i)})
                    for i in range(VERSIONS)]
        times = timeline(rng, int(current["created"]) + 5)
        # Stripe holds the newest version: a same-second event re-fetches it.
        fake(stack).put_object(versions[-1])
        newest[("customer", customer["processor_id"])] = versions[-1]
        delivered += [Delivered(event("customer.updated", v, created=t), customer["id"], "customer",
                                customer["processor_id"]) for v, t in zip(versions, times, strict=True)]

        pm_id = f"pm_fault_{uid()}"
        methods = [stripe_object("payment_method", id=pm_id, customer=customer["processor_id"],
                                 metadata={"version": str(i)},
                                 card={**stripe_object("payment_method")["card"], "exp_month": 1 + i})
                   for i in range(VERSIONS)]
        fake(stack).put_object(methods[-1])
        newest[("payment_method", pm_id)] = methods[-1]
        pm_times = timeline(rng, int(current["created"]) + 5)
        delivered += [Delivered(event("payment_method.attached" if i == 0 else "payment_method.updated", m,
                                      created=t), customer["id"], "payment_method", pm_id)
                      for i, (m, t) in enumerate(zip(methods, pm_times, strict=True))]

    order = delivered + rng.sample(delivered, k=len(delivered) // 4)  # a quarter delivered twice
    rng.shuffle(order)
    seen: set[str] = set()
    for d in order:
        ack = accepted(api, d.event)
        assert ack == {"received": True, "duplicate": d.id in seen}
        seen.add(d.id)

    stored = check_webhooks(stack, api, delivered, newest=newest)
    # The shuffle really put older events after newer ones: some were stale.
    assert {s["status"] for s in stored.values()} == {"processed", "stale"}
