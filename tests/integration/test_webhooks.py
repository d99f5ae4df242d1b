"""POST /v1/webhooks/stripe and the webhook-event operations, against the
local stack: signatures, once-only storage, bad input, replay, the failed
view, the events/ samples, `make trigger`, and what reaches the logs."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack import trigger
from devstack.dynamodb import client
from devstack.runtime import FunctionRuntime
from devstack.stack import LocalStack
from tests.conftest import FIXTURES, WEBHOOK_SECRETS, Client
from tests.integration.test_health_and_openapi import assert_error
from tests.integration.webhook_helpers import (
    SECRET,
    WEBHOOK,
    accepted,
    customer_by_processor_id,
    customer_object,
    deliver,
    event,
    fake,
    ledger,
    settle,
    settled,
    sign,
    sign_bytes,
    uid,
    webhook_event,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def new_customer_event() -> dict[str, Any]:
    return event("customer.created", customer_object(f"cus_hook_{uid()}", email="jenny.rosen@example.com"))


def assert_not_stored(api: Client, event_id: str) -> None:
    assert_error(api.get(f"/v1/webhook-events/{event_id}"), 404, "not_found")


# -- signature --------------------------------------------------------------------------


def test_a_signed_event_is_acknowledged_stored_and_processed(api: Client, stack: LocalStack) -> None:
    body = new_customer_event()
    assert accepted(api, body) == {"received": True, "duplicate": False}
    (stored,) = settle(stack, api, body["id"])
    assert stored["status"] == "processed"
    assert stored["type"] == "customer.created"
    assert stored["created"] == body["created"]
    assert stored["object_id"] == body["data"]["object"]["id"]
    assert stored["attempts"] == 1 and stored["error"] is None
    # The raw body (with the customer's email) is never returned.
    assert "body" not in stored and "jenny.rosen" not in json.dumps(stored)


def test_tampered_body_is_rejected_and_nothing_is_stored(api: Client) -> None:
    body = new_customer_event()
    payload = json.dumps(body).encode()
    header = sign(payload)
    tampered = payload.replace(b"jenny.rosen", b"jenny.rosan")
    assert_error(deliver(api, tampered, header=header), 400, "invalid_signature")
    assert_not_stored(api, body["id"])


def test_expired_signature_is_rejected_and_one_inside_the_tolerance_is_not(api: Client) -> None:
    old = new_customer_event()
    assert_error(deliver(api, old, timestamp=int(time.time()) - 301), 400, "invalid_signature")
    assert_not_stored(api, old["id"])
    recent = new_customer_event()
    accepted(api, recent, timestamp=int(time.time()) - 240)


@pytest.mark.parametrize("header", [None, "", "t=abc,v1=deadbeef", "v1=deadbeef", "garbage"])
def test_missing_or_malformed_header_is_rejected(api: Client, header: str | None) -> None:
    body = new_customer_event()
    resp = deliver(api, body, header=header, sign_header=False)
    assert_error(resp, 400, "invalid_signature")
    assert_not_stored(api, body["id"])


def test_the_second_of_two_configured_secrets_verifies(api: Client) -> None:
    assert accepted(api, new_customer_event(), secret=WEBHOOK_SECRETS[1])["duplicate"] is False


def test_an_unknown_secret_is_rejected(api: Client) -> None:
    assert_error(deliver(api, new_customer_event(), secret="whsec_not_configured"), 400, "invalid_signature")


def test_several_v1_entries_verify_when_one_matches(api: Client) -> None:
    body = new_customer_event()
    payload = json.dumps(body).encode()
    now = int(time.time())
    good = sign(payload, SECRET, now).split(",v1=")[1]
    other = sign(payload, "whsec_retired", now).split(",v1=")[1]
    resp = deliver(api, payload, header=f"t={now},v1={other},v1={good},v0=ignored")
    assert resp.status_code == 200, resp.text


# -- once-only storage ----------------------------------------------------------------------


def test_a_redelivery_is_acknowledged_as_a_duplicate_and_writes_nothing(api: Client, stack: LocalStack) -> None:
    body = new_customer_event()
    accepted(api, body)
    (first,) = settle(stack, api, body["id"])
    # Stripe re-signs every retry: a new signature, the same event.
    assert accepted(api, body, timestamp=int(time.time()) + 1) == {"received": True, "duplicate": True}
    assert stack.drain(30)
    assert webhook_event(api, body["id"]) == first


def test_duplicate_storm_gives_one_row_one_ledger_entry_one_projection_change(api: Client, stack: LocalStack
                                                                              ) -> None:
    created = api.put(f"/v1/owners/User/{uid()}/customer", {"name": "Before"}).json()
    settled(api)  # Stripe's customer.created for it came first
    customer = api.get(f"/v1/customers/{created['id']}").json()
    update = event("customer.updated", customer_object(customer["processor_id"], name="After the storm"),
                   created=customer["last_stripe_event_ts"] + 1)
    payload = json.dumps(update).encode()
    header = sign(payload)
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: deliver(api, payload, header=header), range(10)))
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert sorted(r.json()["duplicate"] for r in responses) == [False] + [True] * 9
    (stored,) = settle(stack, api, update["id"])
    assert stored["status"] == "processed" and stored["attempts"] == 1
    after = api.get(f"/v1/customers/{customer['id']}").json()
    assert after["data"]["name"] == "After the storm"
    assert after["lock_version"] == customer["lock_version"] + 1
    caused = [e for e in ledger(api, customer["id"]) if e["caused_by_webhook_event_id"] == update["id"]]
    assert len(caused) == 1
    assert (caused[0]["actor_type"], caused[0]["type"]) == ("webhook", "customer.updated")


# -- bad input ---------------------------------------------------------------------------


def test_a_body_over_256_kib_is_413(api: Client) -> None:
    body = new_customer_event()
    body["data"]["object"]["metadata"] = {"padding": "x" * (256 * 1024)}
    assert_error(deliver(api, body), 413, "payload_too_large")
    assert_not_stored(api, body["id"])


@pytest.mark.parametrize(("name", "payload"), [
    ("not JSON", b"{not json"),
    ("not UTF-8", b"\xff\xfe{}"),
    ("a JSON array", b"[1, 2, 3]"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000),
    ("no id", json.dumps({"type": "customer.updated", "created": 1, "data": {"object": {}}}).encode()),
    ("no type", json.dumps({"id": "evt_no_type", "created": 1, "data": {"object": {}}}).encode()),
    ("created is not a time", json.dumps({"id": "evt_bad_created", "type": "customer.updated", "created": "soon",
                                          "data": {"object": {}}}).encode()),
    ("data.object is a list", json.dumps({"id": "evt_bad_object", "type": "customer.updated", "created": 1,
                                          "data": {"object": []}}).encode()),
    ("object id is a number", json.dumps({"id": "evt_bad_object_id", "type": "customer.updated", "created": 1,
                                          "data": {"object": {"id": 42}}}).encode()),
])
def test_bad_input_after_a_valid_signature_is_400_and_stores_nothing(api: Client, name: str, payload: bytes) -> None:
    resp = deliver(api, payload, header=sign_bytes(payload))
    body = assert_error(resp, 400, "bad_request")
    assert "the webhook body" in body["error"]["message"] or "malformed Stripe event" in body["error"]["message"]
    for event_id in ("evt_no_type", "evt_bad_created", "evt_bad_object", "evt_bad_object_id"):
        assert api.get(f"/v1/webhook-events/{event_id}").status_code == 404


def test_an_object_that_cannot_be_applied_fails_with_a_clear_error_and_is_kept(api: Client, stack: LocalStack
                                                                              ) -> None:
    body = event("customer.updated", {"object": "customer", "email": "kept@example.com"})
    accepted(api, body)
    (stored,) = settle(stack, api, body["id"])
    assert stored["status"] == "failed"
    assert stored["error"] == {"type": "bad_request", "code": "malformed_event",
                               "message": "customer.updated needs data.object with an id"}
    listed = api.get("/v1/webhook-events?status=failed&limit=100").json()["data"]
    assert body["id"] in {e["id"] for e in listed}


def test_an_event_type_we_do_not_project_is_ignored(api: Client, stack: LocalStack) -> None:
    plan_created = dict(FIXTURES["event"], id=f"evt_plan_{uid()}", created=int(time.time()))
    assert accepted(api, plan_created)["duplicate"] is False
    (stored,) = settle(stack, api, plan_created["id"])
    assert stored["status"] == "ignored"


# -- operations ------------------------------------------------------------------------


def test_unknown_event_is_404_and_replay_of_it_too(api: Client) -> None:
    assert_error(api.get("/v1/webhook-events/evt_never_sent"), 404, "not_found")
    assert_error(api.post("/v1/webhook-events/evt_never_sent/replay"), 404, "not_found")


def test_replay_runs_the_stored_event_again(api: Client, stack: LocalStack) -> None:
    made = api.put(f"/v1/owners/User/{uid()}/customer").json()
    settled(api)  # Stripe's customer.created for it, applied first: no re-fetch of its own below
    customer = api.get(f"/v1/customers/{made['id']}").json()
    update = event("customer.updated", customer_object(customer["processor_id"], name="Replayed"),
                   created=customer["last_stripe_event_ts"] + 1)
    accepted(api, update)
    (first,) = settle(stack, api, update["id"])
    assert first["status"] == "processed"
    calls_before = len(fake(stack).calls)
    resp = api.post(f"/v1/webhook-events/{update['id']}/replay")
    assert resp.status_code == 202, resp.text
    assert (resp.json()["status"], resp.json()["replays"]) == ("received", 1)
    (again,) = settle(stack, api, update["id"])
    assert (again["status"], again["attempts"], again["replays"]) == ("processed", 2, 1)
    # The event already set the watermark: a replay re-fetches the canonical object.
    fetched = [c for c in fake(stack).calls[calls_before:] if c["operation"] == "retrieve_object"]
    assert [c["args"]["object_id"] for c in fetched] == [customer["processor_id"]]


def test_failed_listing_is_paginated_from_the_index(api: Client, stack: LocalStack) -> None:
    bodies = [event("invoice.paid", {"object": "invoice"}) for _ in range(2)]
    for body in bodies:
        accepted(api, body)
    settle(stack, api, *(b["id"] for b in bodies))
    first = api.get("/v1/webhook-events", params={"status": "failed", "limit": 1})
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["data"]) == 1 and page["next_cursor"]
    assert page["data"][0]["id"] == bodies[-1]["id"]  # newest first
    second = api.get("/v1/webhook-events", params={"status": "failed", "limit": 1, "cursor": page["next_cursor"]})
    assert second.json()["data"][0]["id"] == bodies[0]["id"]
    assert_error(api.get("/v1/webhook-events", params={"status": "processed"}), 422, "validation_error")
    assert_error(api.get("/v1/webhook-events", params={"cursor": "not-ours"}), 422, "validation_error")


def test_a_record_that_keeps_failing_is_dead_lettered_and_its_row_says_failed(api: Client, stack: LocalStack
                                                                             ) -> None:
    made = api.put(f"/v1/owners/User/{uid()}/customer").json()
    settled(api)  # Stripe's customer.created for it came first (and must not meet this test's faults)
    customer = api.get(f"/v1/customers/{made['id']}").json()
    now = customer["last_stripe_event_ts"] + 1
    first = event("customer.updated", customer_object(customer["processor_id"], name="One"), created=now)
    accepted(api, first)
    settle(stack, api, first["id"])
    dead_before = len(stack.on_failure.records())
    # The same second: the processor must re-fetch, and Stripe keeps failing
    # for the first try and every retry (MaximumRetryAttempts: 3).
    fake(stack).add_fault("retrieve_object", 500, code="api_error", times=4)
    second = event("customer.updated", customer_object(customer["processor_id"], name="Two"), created=now)
    accepted(api, second)
    (failed,) = settle(stack, api, second["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == 4
    assert failed["error"]["type"] == "api_error"
    assert set(failed["error"]) == {"type", "code", "message"} and len(failed["error"]["message"]) <= 512
    assert len(stack.on_failure.records()) == dead_before + 1
    # Fixed (the faults are used up): a replay applies it.
    assert api.post(f"/v1/webhook-events/{second['id']}/replay").status_code == 202
    (replayed,) = settle(stack, api, second["id"])
    assert replayed["status"] == "processed" and replayed["error"] is None


# -- the events/ samples, make trigger ------------------------------------------------------------


def load_event(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / name).read_text()))


def resigned(proxy: dict[str, Any], body: dict[str, Any], *, base64_body: bool = False) -> dict[str, Any]:
    payload = json.dumps(body).encode()
    proxy["body"] = base64.b64encode(payload).decode() if base64_body else payload.decode()
    proxy["isBase64Encoded"] = base64_body
    proxy["headers"]["Stripe-Signature"] = sign(payload)
    proxy["multiValueHeaders"]["Stripe-Signature"] = [proxy["headers"]["Stripe-Signature"]]
    return proxy


def test_webhook_sample_event_plain_and_base64(stack: LocalStack, api: Client) -> None:
    proxy = load_event("webhooks/stripe_webhook.json")
    body = json.loads(proxy["body"])
    body["id"], body["created"] = f"evt_sample_{uid()}", int(time.time())
    body["data"]["object"]["id"] = f"cus_sample_{uid()}"
    first = stack.invoke("WebhookFunction", resigned(dict(proxy), body))
    assert first["statusCode"] == 200, first["body"]
    assert json.loads(first["body"]) == {"received": True, "duplicate": False}
    again = stack.invoke("WebhookFunction", resigned(load_event("webhooks/stripe_webhook.json"), body,
                                                     base64_body=True))
    assert json.loads(again["body"]) == {"received": True, "duplicate": True}
    (stored,) = settle(stack, api, body["id"])
    assert stored["status"] == "processed"


def test_the_sample_as_shipped_has_an_expired_signature(stack: LocalStack) -> None:
    result = stack.invoke("WebhookFunction", load_event("webhooks/stripe_webhook.json"))
    assert result["statusCode"] == 400
    assert json.loads(result["body"])["error"]["type"] == "invalid_signature"


def test_processor_sample_stream_event_redelivered_changes_nothing(stack: LocalStack, api: Client) -> None:
    body = new_customer_event()
    accepted(api, body)
    (processed,) = settle(stack, api, body["id"])
    record = load_event("webhooks/webhook_events_stream.json")
    record["Records"][0]["dynamodb"]["Keys"]["pk"]["S"] = body["id"]
    record["Records"][0]["dynamodb"]["NewImage"]["pk"]["S"] = body["id"]
    assert stack.invoke("WebhookProcessorFunction", record) == {"batchItemFailures": []}
    assert webhook_event(api, body["id"]) == processed


def test_make_trigger_signs_and_posts_a_sample(stack: LocalStack, api: Client) -> None:
    processor_id = f"cus_trigger_{uid()}"
    code = trigger.main(["customer.updated", "--url", stack.url + WEBHOOK, "--secret", SECRET,
                         "--set", f"data.object.id={processor_id}", "--set", 'data.object.metadata={}'])
    assert code == 0
    assert stack.drain(30)
    customer = customer_by_processor_id(api, processor_id)
    assert customer is not None
    assert (customer["owner_type"], customer["owner_id"]) == (None, None)
    assert customer["data"]["name"] == "Jenny Rosen-Smith"  # the sample's update
    assert trigger.main(["customer.updated", "--url", stack.url + WEBHOOK, "--secret", "whsec_wrong"]) == 1


# -- what reaches the logs --------------------------------------------------------------------


def test_logs_never_carry_the_secret_the_signature_or_the_body(stack: LocalStack, api: Client,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    # Fresh workers spawned inside this test write to the captured stdout/stderr.
    specs = {f.logical_id: f for f in stack.functions}
    hook = FunctionRuntime(specs["WebhookFunction"], stack.function_env(), concurrency=1,
                           fake_processor_url=stack.fake_processor_url)
    processor = FunctionRuntime(specs["WebhookProcessorFunction"], stack.function_env(), concurrency=1,
                                fake_processor_url=stack.fake_processor_url)
    marker = f"pii-marker-{uid()}@example.com"
    body = event("customer.updated", {"object": "customer", "email": marker, "name": marker})  # no id: fails
    payload = json.dumps(body).encode()
    good, bad = sign(payload), sign(payload, "whsec_attacker_guess")
    proxy = load_event("webhooks/stripe_webhook.json")
    try:
        for header in (good, bad, good):
            proxy["body"], proxy["headers"]["Stripe-Signature"] = payload.decode(), header
            hook.invoke(proxy)
        proxy["body"], proxy["headers"]["Stripe-Signature"] = "{" + marker, sign(("{" + marker).encode())
        hook.invoke(proxy)
        assert stack.drain(30)
        record = load_event("webhooks/webhook_events_stream.json")
        record["Records"][0]["dynamodb"]["Keys"]["pk"]["S"] = body["id"]
        api.post(f"/v1/webhook-events/{body['id']}/replay")
        record["Records"][0]["dynamodb"]["NewImage"]["run"]["N"] = "1"
        processor.invoke(record)
        assert stack.drain(30)
    finally:
        hook.close()
        processor.close()
    out = capfd.readouterr()
    logs = out.out + out.err
    assert body["id"] in logs and "webhook signature rejected" in logs  # the capture works
    for secret in (*WEBHOOK_SECRETS, "whsec_attacker_guess", good.split("v1=")[1], bad.split("v1=")[1], marker):
        assert secret not in logs
    stored = webhook_event(api, body["id"])
    assert stored["status"] == "failed" and marker not in json.dumps(stored)


def test_the_webhook_function_imports_neither_stripe_nor_pynamodb(stack: LocalStack) -> None:
    paths = [str(ROOT / "functions" / "webhook"), str(ROOT / "layers" / "common")]
    code = (f"import sys; sys.path[:0] = {paths!r}; import app; "
            "print(sorted(m for m in ('stripe', 'pynamodb', 'aws_lambda_powertools.event_handler') "
            "if m in sys.modules))")
    env = dict(stack.runtimes["WebhookFunction"].env)
    result = subprocess.run([sys.executable, "-c", code], env=env,  # noqa: S603 - our interpreter, fixed code
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_coupon_and_promotion_code_rows_are_thin_projections(stack: LocalStack, api: Client) -> None:
    coupon_id = f"CPN{uid()}".upper()
    coupon = event("coupon.created", dict(FIXTURES["coupon"], id=coupon_id))
    promo = dict(FIXTURES["promotion_code"], id=f"promo_{uid()}", code=f"fall{uid()}", active=True,
                 promotion={"coupon": coupon_id, "type": "coupon"})
    created = event("promotion_code.created", promo)
    accepted(api, coupon)
    accepted(api, created)
    assert [e["status"] for e in settle(stack, api, coupon["id"], created["id"])] == ["processed", "processed"]
    env = stack.runtimes["WebhookProcessorFunction"].env
    ddb = client(stack.ddb_endpoint)
    coupon_row = ddb.get_item(TableName=env["COUPONS_TABLE"], Key={"pk": {"S": coupon_id}})["Item"]
    assert coupon_row["percent_off"] == {"N": "25.5"} and coupon_row["valid"] == {"BOOL": True}
    promo_row = ddb.get_item(TableName=env["PROMOTION_CODES_TABLE"], Key={"pk": {"S": promo["id"]}})["Item"]
    assert promo_row["code_key"] == {"S": promo["code"].upper()}
    assert promo_row["coupon_id"] == {"S": coupon_id}
    assert promo_row["active"] == {"BOOL": True}
    assert promo_row["last_stripe_event_id"] == {"S": created["id"]}
    deleted = event("coupon.deleted", dict(FIXTURES["coupon"], id=coupon_id), created=coupon["created"] + 1)
    accepted(api, deleted)
    settle(stack, api, deleted["id"])
    coupon_row = ddb.get_item(TableName=env["COUPONS_TABLE"], Key={"pk": {"S": coupon_id}})["Item"]
    assert coupon_row["valid"] == {"BOOL": False} and "deleted_at" in coupon_row
