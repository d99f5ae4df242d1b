"""`make run` against a Stripe-compatible server (stripe-mock, localstripe):
with STRIPE_API_KEY set, STRIPE_API_BASE reaches every function, so the
API's real StripeProcessor calls that server, not api.stripe.com. A local
stand-in for Stripe records what arrives."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack, Settings, StartupError
from tests.conftest import WEBHOOK_SECRETS, Client, running, stack_settings
from tests.processor.conftest import load_fixtures
from tests.processor.test_stripe_requests import StripeStub, serve

pytestmark = pytest.mark.integration
API_KEY = "sk_test_local_server"


@pytest.fixture(scope="module")
def server() -> Iterator[StripeStub]:
    yield from serve(StripeStub())


@pytest.fixture(scope="module")
def compatible_stack(server: StripeStub, function_log: Path) -> Iterator[LocalStack]:
    env = {"PORT": "0", "STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": server.url + "/",
           "STRIPE_WEBHOOK_SECRET": ",".join(WEBHOOK_SECRETS)}
    yield from running(stack_settings(function_log, Settings.from_env(env), stack_name="billing-local-compat",
                                     concurrency=1))


def test_every_function_is_pointed_at_the_server(compatible_stack: LocalStack, server: StripeStub) -> None:
    assert compatible_stack.fake_stripe is None  # a key: no Fake
    env = compatible_stack.function_env()
    assert env["STRIPE_API_BASE"] == env["STRIPE_METER_EVENTS_BASE"] == server.url


def test_the_api_calls_the_server_with_the_key(compatible_stack: LocalStack, server: StripeStub) -> None:
    customer: dict[str, Any] = load_fixtures()["customer"] | {"id": "cus_compat_1", "email": "c@example.com"}
    server.reply(200, customer)
    api = Client(compatible_stack.url)
    resp = api.put(f"/v1/owners/User/{uuid.uuid4().hex[:8]}/customer", {"email": "c@example.com"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["processor"] == "stripe" and resp.json()["processor_id"] == "cus_compat_1"
    (request,) = [r for r in server.requests if r.path == "/v1/customers"]
    assert request.method == "POST" and request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.form["email"] == "c@example.com"


def test_a_base_that_is_not_a_url_fails_at_start() -> None:
    with pytest.raises(StartupError, match="STRIPE_API_BASE must be an http"):
        Settings.from_env({"STRIPE_API_KEY": API_KEY, "STRIPE_API_BASE": "localhost:12111"})
