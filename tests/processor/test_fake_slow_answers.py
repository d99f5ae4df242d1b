"""The Fake's slow answers (a fault with a delay and no failure) and clearing
the faults no call met."""

from __future__ import annotations

import threading
import time

import pytest

from devstack.fake_stripe import FakeProcessor
from devstack.fake_stripe.faults import SLOW


def test_a_slow_answer_runs_late_and_other_calls_go_on_meanwhile() -> None:
    fake = FakeProcessor()
    customer = fake.create_customer(idempotency_key="slow-1", email=None, name=None, metadata={})
    fake.add_fault("update_customer", SLOW, delay=0.3)
    started = time.monotonic()
    other: dict[str, float] = {}

    def meanwhile() -> None:
        time.sleep(0.05)
        fake.retrieve_customer(customer["id"])
        other["at"] = time.monotonic() - started

    thread = threading.Thread(target=meanwhile)
    thread.start()
    updated = fake.update_customer(customer["id"], idempotency_key="slow-2", fields={"name": "Late"})
    thread.join()
    assert updated["name"] == "Late"
    assert time.monotonic() - started >= 0.3
    assert other["at"] < 0.3  # the Fake was not held while the slow call waited
    assert fake.snapshot()["pending_faults"] == {}


def test_faults_no_call_met_can_be_cleared() -> None:
    fake = FakeProcessor()
    fake.add_fault("update_customer", 500, times=3)
    fake.clear_faults()
    assert fake.snapshot()["pending_faults"] == {}


def test_a_slow_answer_needs_a_delay() -> None:
    with pytest.raises(ValueError, match="delay"):
        FakeProcessor().add_fault("update_customer", SLOW)


def test_an_answer_held_after_the_call_took_effect_comes_when_the_faults_are_cleared() -> None:
    fake = FakeProcessor()
    fake.add_fault("create_customer", SLOW, delay=30, after=True)
    answers: list[dict[str, object]] = []
    thread = threading.Thread(target=lambda: answers.append(
        fake.create_customer(idempotency_key="held-1", email=None, name=None, metadata={})))
    thread.start()
    deadline = time.monotonic() + 5
    while fake.snapshot()["customers"] == 0:  # it took effect while its answer waits
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not answers
    fake.clear_faults()
    thread.join(timeout=5)
    assert answers and str(answers[0]["id"]).startswith("cus_fake_")
