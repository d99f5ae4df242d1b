"""Usage reconciliation on the local stack (issue 20, DESIGN.md section 10):
runs started over HTTP and by the schedule, carried on by the reconciler
from the sync table's stream, their drift per customer, meter and hour
classified, repaired within Stripe's limits and gone on the next run.

Faults: Stripe rejecting accepted events with and without naming them in
its error report, an answer lost after Stripe took the event, a resend
after Stripe's dedupe window, usage sent to Stripe by something else."""

from __future__ import annotations

import time
from typing import Any

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.invariants import quiet
from tests.integration.usage_helpers import delivery_paused, fake, new_customer, put_many, settle, uid, usage_body

HOUR = 3600
# An hour that closed two hours ago: past the default settle delay (1 h).
HOUR_START = int(time.time()) // HOUR * HOUR - 3 * HOUR


def at(minute: int) -> int:
    return HOUR_START + 60 * minute


def reconcile(stack: LocalStack, api: Client, timeout: float = 60.0, **body: Any) -> dict[str, Any]:
    """Start a run over the hour (or `body`'s window), wait until it is done, read all of its drift."""
    resp = api.post("/v1/usage/reconciliations", {"start": HOUR_START, "end": HOUR_START + HOUR, **body})
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "running"
    return wait_done(stack, api, resp.json()["id"], timeout)


def wait_done(stack: LocalStack, api: Client, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    assert stack.streams is not None
    reconciler = stack.streams.poller("UsageReconcilerFunction.Checkpoints")
    while True:
        reconciler.drain(timeout=max(1.0, deadline - time.monotonic()))  # the reporter's may be paused
        run = api.get(f"/v1/usage/reconciliations/{run_id}", params={"limit": "2"})
        assert run.status_code == 200, run.text
        body = run.json()
        if body["status"] == "done":
            drift, cursor = list(body["drift"]), body["next_cursor"]
            while cursor:  # every page of the drift
                page = api.get(f"/v1/usage/reconciliations/{run_id}", params={"limit": "2", "cursor": cursor}).json()
                drift += page["drift"]
                cursor = page["next_cursor"]
            return {**body, "drift": drift}
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def mine(run: dict[str, Any], customers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The run's drift of these customers (other tests share the stack), by customer id."""
    ids = {c["id"] for c in customers}
    return {d["customer_id"]: d for d in run["drift"] if d["customer_id"] in ids}


def repair(api: Client, run_id: str, apply: bool | None = None) -> dict[str, Any]:
    resp = api.post(f"/v1/usage/reconciliations/{run_id}/repair", None if apply is None else {"apply": apply})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def accepted(api: Client, stack: LocalStack, customer: dict[str, Any], values: list[int]) -> list[str]:
    ids = [uid("rc") for _ in values]
    put_many(api, {i: usage_body(customer, v, timestamp=at(5 + n)) for n, (i, v) in enumerate(zip(ids, values,
                                                                                                  strict=True))})
    settle(stack, api, ids)
    return ids


def meter_error(api: Client, identifiers: list[str], sampled: int) -> None:
    resp = api.post("/_local/fake-stripe/meter-error", {"identifiers": identifiers, "sampled": sampled})
    assert resp.status_code == 200, resp.text


def test_silent_rejections_are_found_repaired_once_and_gone_on_the_next_run(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    unsampled, sampled = new_customer(api), new_customer(api)
    a = accepted(api, stack, unsampled, [2, 3, 5])
    b = accepted(api, stack, sampled, [7, 11])
    meter_error(api, a[:2], sampled=0)  # Stripe stops counting 2 + 3 and names neither
    meter_error(api, b, sampled=1)  # stops counting 7 + 11, names only the first: its row turns failed
    assert stack.settle(timeout=60)
    run = reconcile(stack, api)
    drift = mine(run, [unsampled, sampled])
    assert drift[unsampled["id"]]["classification"] == "rejected_unsampled"
    assert (drift[unsampled["id"]]["local"], drift[unsampled["id"]]["stripe"]) == (
        {"reported": 10, "pending": 0, "failed": 0, "canceled": 0}, 5)
    assert drift[unsampled["id"]]["difference"] == -5 and set(drift[unsampled["id"]]["identifiers"]) == set(a)
    assert (drift[sampled["id"]]["local"]["failed"], drift[sampled["id"]]["difference"]) == (7, -11)

    received = len(fake(stack).meter_events)
    dry = repair(api, run["id"])
    planned = {x["customer_id"]: x for x in dry["actions"] if x["customer_id"] in drift}
    assert {x["action"] for x in planned.values()} == {"send"} and dry["sent"] == 0
    assert len(fake(stack).meter_events) == received  # a dry run sends nothing
    applied = repair(api, run["id"], apply=True)
    sent = {x["customer_id"]: x for x in applied["actions"] if x["customer_id"] in drift}
    assert {(c, x["status"], x["value"]) for c, x in sent.items()} == {
        (unsampled["id"], "sent", 5), (sampled["id"], "sent", 11)}
    bucket = drift[unsampled["id"]]["bucket"]
    repairs = {e["identifier"]: e for e in fake(stack).meter_events if e["identifier"].startswith("repair:")}
    assert repairs[f"repair:{bucket}:1"]["payload"] == {"stripe_customer_id": unsampled["processor_id"],
                                                       "value": "5"}
    assert HOUR_START <= repairs[f"repair:{bucket}:1"]["timestamp"] < HOUR_START + HOUR
    again = repair(api, run["id"], apply=True)
    assert again["sent"] == 0
    assert {x["status"] for x in again["actions"] if x["customer_id"] in drift} == {"already_applied"}
    assert len(fake(stack).meter_events) == received + 2
    # Repairs are not usage: the rows are as they were, and the next run finds nothing.
    assert mine(reconcile(stack, api), [unsampled, sampled]) == {}
    # Each drifted bucket was published to the bus as usage.drift_detected.
    published = api.get("/_local/events/published").json()["data"]
    found = [e for e in published if e.get("detail-type") == "usage.drift_detected"
             and e["detail"]["data"].get("run_id") == run["id"]]
    assert {e["detail"]["subject_id"] for e in found} >= {unsampled["id"], sampled["id"]}


def test_a_lost_answer_is_pending_then_settles_and_outside_usage_is_flagged(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    lost, other = new_customer(api), new_customer(api)
    identifier = uid("lost")
    with delivery_paused(stack):
        put_many(api, {identifier: usage_body(lost, 4, timestamp=at(10))})
        # Stripe took the event; the reporter's answer never came back (row still pending).
        fake(stack).create_meter_event(event_name="api_requests", identifier=identifier, timestamp=at(10),
                                       payload={"stripe_customer_id": lost["processor_id"], "value": "4"})
        accepted_other = uid("other")
        put_many(api, {accepted_other: usage_body(other, 1, timestamp=at(11))})
        # Usage for `other` sent by something else than this stack.
        fake(stack).create_meter_event(event_name="api_requests", identifier=uid("elsewhere"), timestamp=at(12),
                                       payload={"stripe_customer_id": other["processor_id"], "value": "6"})
        run = reconcile(stack, api, customer_id=lost["id"], event_name="api_requests")
        (entry,) = run["drift"]
        assert (entry["classification"], entry["local"]["pending"], entry["difference"]) == ("pending", 4, 4)
        (wait,) = repair(api, run["id"], apply=True)["actions"]
        assert wait["action"] == "wait"
    settle(stack, api, [identifier, accepted_other])  # the resend is deduplicated by Stripe: counted once
    assert mine(reconcile(stack, api, customer_id=lost["id"]), [lost]) == {}
    run = reconcile(stack, api, customer_id=other["id"])
    entry = mine(run, [other])[other["id"]]
    assert (entry["classification"], entry["difference"]) == ("overcount", 6)
    (flag,) = repair(api, run["id"], apply=True)["actions"]
    assert flag["action"] == "flag" and "something else" in flag["reason"]


def test_a_resend_after_the_dedupe_window_is_an_overcount_for_a_person(stack: LocalStack, api: Client) -> None:
    quiet(stack, api)
    customer = new_customer(api)
    (identifier,) = accepted(api, stack, customer, [3])
    fake(stack).age_meter_events(25 * HOUR)  # Stripe received it a day ago: its identifier no longer dedupes
    fake(stack).create_meter_event(event_name="api_requests", identifier=identifier, timestamp=at(5),
                                   payload={"stripe_customer_id": customer["processor_id"], "value": "3"})
    run = reconcile(stack, api, customer_id=customer["id"])
    entry = mine(run, [customer])[customer["id"]]
    assert (entry["classification"], entry["difference"], entry["identifiers"]) == ("overcount", 3, [identifier])
    (flag,) = repair(api, run["id"], apply=True)["actions"]
    assert flag["action"] == "flag"


def test_bad_windows_and_unknown_scopes_are_4xx_and_start_nothing(stack: LocalStack, api: Client) -> None:
    before = api.get("/v1/usage/reconciliations", params={"limit": "100"}).json()["data"]
    now = int(time.time()) // HOUR * HOUR
    customer = new_customer(api)
    cases = [({"start": now - HOUR + 1, "end": now}, 422), ({"start": now, "end": now + HOUR}, 422),
             ({"start": now - 36 * 86400, "end": now - 35 * 86400}, 422),
             ({"start": now - 33 * 86400, "end": now}, 422), ({"start": now, "end": now - HOUR}, 422),
             ({"start": str(now - HOUR), "end": now}, 422), ({"start": now - HOUR}, 422),
             ({"start": now - HOUR, "end": now, "surprise": 1}, 422),
             ({"start": now - HOUR, "end": now, "customer_id": "cus_nope"}, 404),
             ({"start": now - HOUR, "end": now, "customer_id": customer["id"], "event_name": "no_such_meter"}, 404)]
    for body, status in cases:
        resp = api.post("/v1/usage/reconciliations", body)
        assert resp.status_code == status, (body, resp.text)
        assert set(resp.json()["error"]) == {"type", "message", "details"}
    assert api.post("/v1/usage/reconciliations", data=b"{not json",
                    headers={"Content-Type": "application/json"}).status_code == 400
    assert api.get("/v1/usage/reconciliations/ur_nope").status_code == 404
    assert api.post("/v1/usage/reconciliations/ur_nope/repair").status_code == 404
    after = api.get("/v1/usage/reconciliations", params={"limit": "100"}).json()["data"]
    assert [r["id"] for r in after] == [r["id"] for r in before]


def test_the_schedule_starts_each_settled_hour_and_the_previous_day_once(stack: LocalStack, api: Client) -> None:
    first = stack.schedules.trigger("UsageReconcilerFunction.Clock") if stack.schedules else None
    again = stack.schedules.trigger("UsageReconcilerFunction.Clock") if stack.schedules else None
    assert first is not None and again is not None
    settled = int(time.time()) - 3600
    last_hour = settled // HOUR * HOUR - HOUR
    assert f"ur_h_{last_hour}" in first["started"] or f"ur_h_{last_hour}" not in again["started"]
    assert again["started"] == []  # named by their windows: started once
    listed = {r["id"]: r for r in api.get("/v1/usage/reconciliations", params={"limit": "100"}).json()["data"]}
    assert f"ur_h_{last_hour}" in listed and f"ur_d_{settled // 86400 * 86400 - 86400}" in listed
    done = wait_done(stack, api, f"ur_h_{last_hour}", timeout=90)
    assert (done["start"], done["end"]) == (last_hour, last_hour + HOUR)
