"""The scripted crash (add_fault(..., crash=True)): the call takes effect,
then its caller dies. In-process it is a ProcessCrash (a BaseException no
handler catches); over the local stack's RPC it is an answer that makes the
calling worker exit, and only a local stack worker (BILLING_LOCAL_STACK=1).
The real exit is exercised end to end in tests/faults/test_stripe_faults.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing.processor.errors import NETWORK, ProcessorFailure
from devstack.fake_stripe import FakeProcessor, FakeProcessorServer, ProcessCrash, dispatch
from devstack.fake_stripe.remote import CRASH_EXIT_CODE, LOCAL_STACK_ENV, RemoteFakeProcessor

ROOT = Path(__file__).resolve().parents[2]


def test_in_process_the_call_takes_effect_then_raises_a_crash_no_handler_catches(fake: FakeProcessor) -> None:
    fake.add_fault("report_meter_event", 0, crash=True)
    assert not issubclass(ProcessCrash, Exception)  # what billing code catches: never this
    with pytest.raises(ProcessCrash):
        fake.create_meter_event(event_name="api_requests", identifier="crash-1", timestamp=int(fake._now()),
                                payload={"stripe_customer_id": "cus_1", "value": "1"})
    assert [e["identifier"] for e in fake.meter_events] == ["crash-1"]  # Stripe took it
    assert fake.calls[-1]["error"] == {"crash": True}
    assert fake.snapshot()["pending_faults"] == {}


def test_over_rpc_the_answer_is_a_crash_after_the_call_took_effect(fake: FakeProcessor) -> None:
    fake.add_fault("create_customer", 0, crash=True)
    status, body = dispatch(fake, {"method": "create_customer", "kwargs": {
        "idempotency_key": "k1", "email": None, "name": None, "metadata": {}}})
    assert (status, body) == (200, {"crash": True})
    assert fake.snapshot()["customers"] == 1


def test_outside_the_local_stack_a_crash_answer_is_a_lost_response_not_an_exit(
        fake: FakeProcessor, fake_server: FakeProcessorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOCAL_STACK_ENV, raising=False)
    fake.add_fault("create_customer", 0, crash=True)
    with pytest.raises(ProcessorFailure) as failure:
        RemoteFakeProcessor(fake_server.url).create_customer(idempotency_key="k2", email=None, name=None,
                                                             metadata={})
    assert failure.value.type == NETWORK and failure.value.transient


def test_a_local_stack_worker_exits_on_the_spot(fake: FakeProcessor, fake_server: FakeProcessorServer) -> None:
    fake.add_fault("create_customer", 0, crash=True)
    code = ("from devstack.fake_stripe.remote import RemoteFakeProcessor; "
            f"RemoteFakeProcessor({fake_server.url!r}).create_customer("
            "idempotency_key='k3', email=None, name=None, metadata={}); print('survived')")
    env = {**os.environ, LOCAL_STACK_ENV: "1", "PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{ROOT}"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,  # noqa: S603
                            timeout=60, check=False)
    assert result.returncode == CRASH_EXIT_CODE, result.stderr
    assert "survived" not in result.stdout
    assert fake.snapshot()["customers"] == 1  # the call had taken effect
