"""The operator console (DESIGN.md section 12) in a real browser: headless
Chromium against the local stack's /console/, each write asked before it is
made and sent with an Idempotency-Key, and the API's own error messages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration import usage_helpers
from tests.integration.browser import chromium, screenshot, until
from tests.integration.webhook_helpers import accepted, customer_object, event, fake, settle, settled

pytestmark = pytest.mark.integration

# Records each write the page makes (method, path, Idempotency-Key) before it leaves.
RECORD_WRITES = """
window.__writes = [];
if (!window.__recording) {
  window.__recording = true;
  const original = window.fetch;
  window.fetch = function (url, options) {
    const o = options || {};
    if (o.method && o.method !== "GET") {
      window.__writes.push({url: String(url), method: o.method, key: (o.headers || {})["Idempotency-Key"] || null});
    }
    return original.apply(this, arguments);
  };
}
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    yield from chromium(tmp_path_factory.mktemp("chromium-profile"))


def open_console(browser: Any, stack: LocalStack, fragment: str) -> None:
    browser.get("about:blank")  # a fresh page load even when only the fragment differs
    browser.get(f"{stack.url}/console/#{fragment}")
    until(lambda: browser.execute_script("return document.querySelector('#view h2') !== null"), what="the console")
    browser.execute_script(RECORD_WRITES)


def text(browser: Any, selector: str = "#view") -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def click(browser: Any, xpath: str) -> None:
    from selenium.webdriver.common.by import By

    until(lambda: browser.find_element(By.XPATH, xpath), what=xpath).click()


def dialog_open(browser: Any) -> bool:
    return bool(browser.execute_script("return document.getElementById('confirm').open"))


def answer_dialog(browser: Any, confirm: bool) -> None:
    until(lambda: dialog_open(browser), what="the confirmation dialog")
    click(browser, "//button[@id='confirm-ok']" if confirm else "//button[@id='confirm-cancel']")
    until(lambda: not dialog_open(browser), what="the dialog to close")


def writes(browser: Any) -> list[dict[str, Any]]:
    return list(browser.execute_script("return window.__writes || []"))


def no_script_errors(browser: Any) -> None:
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and "favicon" not in e["message"] and "Failed to load resource" not in e["message"]]
    assert not severe, severe


def failed_webhook(api: Client, stack: LocalStack) -> dict[str, Any]:
    """A customer.updated that fails for good: the same second as the
    watermark (a re-fetch), and Stripe failing the first try and each retry."""
    made = api.put(f"/v1/owners/User/{uuid.uuid4().hex}/customer").json()
    settled(api)
    customer = api.get(f"/v1/customers/{made['id']}").json()
    now = customer["last_stripe_event_ts"] + 1
    first = event("customer.updated", customer_object(customer["processor_id"], name="One"), created=now)
    accepted(api, first)
    settle(stack, api, first["id"])
    fake(stack).add_fault("retrieve_object", 500, code="api_error", times=4)
    second = event("customer.updated", customer_object(customer["processor_id"], name="Two"), created=now)
    accepted(api, second)
    (failed,) = settle(stack, api, second["id"])
    assert failed["status"] == "failed", failed
    return dict(failed)


# -- serving ----------------------------------------------------------------------------------


def test_the_gateway_serves_the_console_and_nothing_outside_it(stack: LocalStack) -> None:
    page = requests.get(f"{stack.url}/console/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    script = requests.get(f"{stack.url}/console/js/app.js", timeout=10)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith("text/javascript")
    redirect = requests.get(f"{stack.url}/console", timeout=10, allow_redirects=False)
    assert (redirect.status_code, redirect.headers["Location"]) == (301, "/console/")
    for escape in ("/console/../devstack/stack.py", "/console/%2e%2e/template.yaml", "/console/missing.js"):
        assert requests.get(f"{stack.url}{escape}", timeout=10).status_code == 404, escape
    assert requests.post(f"{stack.url}/console/", timeout=10).status_code == 405


# -- customers --------------------------------------------------------------------------------


def test_search_by_email_owner_and_stripe_id_and_the_customer_page(browser: Any, stack: LocalStack,
                                                                   api: Client) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    owner = uuid.uuid4().hex
    email = f"console-{owner[:8]}@example.com"
    made = api.put(f"/v1/owners/Team/{owner}/customer", {"email": email, "name": "Console Tester"})
    assert made.status_code == 201, made.text
    customer = made.json()
    settled(api)
    identifier = usage_helpers.uid("console")
    usage_helpers.put_usage(api, identifier, usage_helpers.usage_body(customer, value=7))

    open_console(browser, stack, "/customers")
    box = browser.find_element(By.ID, "q")
    assert box.accessible_name == "Find a customer"
    box.send_keys(email, Keys.ENTER)  # the keyboard alone: type, Enter
    until(lambda: customer["id"] in text(browser, "#results"), what="the search result")
    assert browser.current_url.endswith(f"#/customers?q={email.replace('@', '%40')}")
    for q in (f"Team:{owner}", customer["processor_id"], customer["id"]):
        open_console(browser, stack, f"/customers?q={q}")  # a link to share finds the same one
        until(lambda: customer["id"] in text(browser, "#results"), what=f"the result for {q}")

    click(browser, f"//a[text()='{customer['id']}']")
    until(lambda: text(browser, "#view h2") == f"Customer {customer['id']}" and email in text(browser),
          what="the customer page")
    shown = (email, f"Team:{owner}", customer["processor_id"], "customer.created", identifier)
    until(lambda: all(s in text(browser) for s in shown), what=f"{shown} on the customer page")
    for heading in ("Subscriptions", "Entitlements", "Invoices", "Charges", "Payment methods", "Ledger", "Usage",
                    "Failed usage"):
        assert browser.find_element(By.XPATH, f"//h3[text()='{heading}']")
    assert browser.current_url.endswith(f"#/customers/{customer['id']}")
    no_script_errors(browser)
    screenshot(browser, "console-customer.png")


def test_an_unknown_customer_shows_the_apis_own_message(browser: Any, stack: LocalStack, api: Client) -> None:
    expected = api.get("/v1/customers/cust_not_there").json()["error"]
    open_console(browser, stack, "/customers/cust_not_there")
    until(lambda: text(browser, "#view [role=alert] .api-message") == expected["message"], what="the API's message")
    assert expected["type"] in text(browser, "#view [role=alert]")


def test_reads_on_a_phone_screen(browser: Any, stack: LocalStack) -> None:
    browser.set_window_size(390, 844)
    try:
        for fragment in ("/customers", "/webhook-events?status=failed", "/usage?status=failed"):
            open_console(browser, stack, fragment)
            # Wide tables scroll inside their own box; the page itself never scrolls sideways.
            assert browser.execute_script(
                "return document.documentElement.scrollWidth <= window.innerWidth"), fragment
    finally:
        browser.set_window_size(1280, 1000)


# -- webhook events ---------------------------------------------------------------------------


def test_replaying_a_failed_webhook_asks_first_then_the_event_shows_processed(browser: Any, stack: LocalStack,
                                                                              api: Client) -> None:
    failed = failed_webhook(api, stack)
    open_console(browser, stack, "/webhook-events?status=failed")
    until(lambda: failed["id"] in text(browser), what="the failed event in the list")
    until(lambda: text(browser, "[data-count='webhooks-failed']") not in ("", "0"), what="the failed count badge")
    screenshot(browser, "console-failed-webhooks.png")

    click(browser, f"//input[@type='checkbox' and @value='{failed['id']}']")
    click(browser, "//button[starts-with(text(), 'Replay selected')]")
    answer_dialog(browser, confirm=False)
    assert writes(browser) == []  # declined: nothing was sent
    assert api.get(f"/v1/webhook-events/{failed['id']}").json()["replays"] == 0

    click(browser, "//button[starts-with(text(), 'Replay selected')]")
    answer_dialog(browser, confirm=True)
    until(lambda: "Replayed 1 of 1" in text(browser), what="the replay's outcome")
    (sent,) = writes(browser)
    assert sent["method"] == "POST" and sent["url"].endswith(f"/v1/webhook-events/{failed['id']}/replay")
    assert sent["key"] and sent["key"].startswith("console-")
    (replayed,) = settle(stack, api, failed["id"])
    assert (replayed["status"], replayed["replays"]) == ("processed", 1)

    open_console(browser, stack, f"/webhook-events/{failed['id']}")
    until(lambda: "processed" in text(browser, "dl.fields"), what="the event's page to say processed")
    no_script_errors(browser)


def test_replay_from_the_event_page_asks_first(browser: Any, stack: LocalStack, api: Client) -> None:
    failed = failed_webhook(api, stack)
    open_console(browser, stack, f"/webhook-events/{failed['id']}")
    until(lambda: "failed" in text(browser, "dl.fields") and "api_error" in text(browser), what="the failed event")
    click(browser, "//button[text()='Replay']")
    answer_dialog(browser, confirm=False)
    assert writes(browser) == [] and api.get(f"/v1/webhook-events/{failed['id']}").json()["replays"] == 0
    click(browser, "//button[text()='Replay']")
    answer_dialog(browser, confirm=True)
    until(lambda: "Replay requested" in text(browser), what="the replay's outcome")
    (sent,) = writes(browser)
    assert sent["url"].endswith(f"/v1/webhook-events/{failed['id']}/replay") and sent["key"]
    assert settle(stack, api, failed["id"])[0]["status"] == "processed"


def test_an_unknown_webhook_event_shows_the_apis_message(browser: Any, stack: LocalStack,
                                                                  api: Client) -> None:
    expected = api.get("/v1/webhook-events/evt_console_never_sent").json()["error"]["message"]
    open_console(browser, stack, "/webhook-events/evt_console_never_sent")
    until(lambda: text(browser, "#view [role=alert] .api-message") == expected, what="the API's 404 message")


# -- usage ------------------------------------------------------------------------------------


def test_retrying_failed_usage_asks_first_then_it_is_reported(browser: Any, stack: LocalStack, api: Client) -> None:
    customer = usage_helpers.new_customer(api)
    identifier = usage_helpers.uid("console-retry")
    assert api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": 400,
                                                   "times": 1}).status_code == 200
    usage_helpers.put_usage(api, identifier, usage_helpers.usage_body(customer, value=3))
    row = usage_helpers.settle(stack, api, [identifier])[identifier]
    assert row["stripe_status"] == "failed", row

    open_console(browser, stack, "/usage?status=failed")
    until(lambda: identifier in text(browser), what="the failed usage row")
    assert row["stripe_error"]["message"] in text(browser)  # Stripe's error, as stored
    click(browser, f"//button[@aria-label='Retry {identifier}']")
    answer_dialog(browser, confirm=False)
    assert writes(browser) == [] and usage_helpers.get_usage(api, identifier)["stripe_status"] == "failed"

    click(browser, f"//button[@aria-label='Retry {identifier}']")
    answer_dialog(browser, confirm=True)
    until(lambda: f"{identifier} is pending again" in text(browser), what="the retry's outcome")
    (sent,) = writes(browser)
    assert sent["url"].endswith(f"/v1/usage/{identifier}/retry") and sent["key"]
    assert usage_helpers.settle(stack, api, [identifier])[identifier]["stripe_status"] == "reported"
    assert identifier in usage_helpers.billed(stack, [identifier])
    no_script_errors(browser)


def test_cancel_asks_first_and_a_retry_the_api_refuses_shows_its_message(browser: Any, stack: LocalStack,
                                                                          api: Client) -> None:
    customer = usage_helpers.new_customer(api)
    ids = [usage_helpers.uid("console-cancel") for _ in range(2)]
    assert api.post("/_local/fake-stripe/faults", {"operation": "report_meter_event", "status": 400,
                                                   "times": 2}).status_code == 200
    for identifier in ids:
        usage_helpers.put_usage(api, identifier, usage_helpers.usage_body(customer))
    assert {r["stripe_status"] for r in usage_helpers.settle(stack, api, ids).values()} == {"failed"}

    open_console(browser, stack, "/usage?status=failed")
    until(lambda: all(i in text(browser) for i in ids), what="both failed rows")
    click(browser, f"//button[@aria-label='Cancel {ids[0]}']")
    answer_dialog(browser, confirm=True)
    until(lambda: f"{ids[0]} is canceled" in text(browser), what="the cancel's outcome")
    assert usage_helpers.get_usage(api, ids[0])["stripe_status"] == "canceled"
    until(lambda: ids[0] not in text(browser, ".paged") and ids[1] in text(browser, ".paged"),
          what="the list reloaded without the canceled row")

    # Canceled behind the page's back: the retry the page still offers is
    # refused by the API, and its message is shown as it came.
    assert api.post(f"/v1/usage/{ids[1]}/cancel").status_code == 200
    refused = api.post(f"/v1/usage/{ids[1]}/retry")
    assert refused.status_code == 409, refused.text
    click(browser, f"//button[@aria-label='Retry {ids[1]}']")
    answer_dialog(browser, confirm=True)
    until(lambda: text(browser, "#view [role=alert] .api-message") == refused.json()["error"]["message"],
          what="the API's 409 message")
    assert [w["url"].rsplit("/", 1)[-1] for w in writes(browser)] == ["cancel", "retry"]
    assert all(w["key"] for w in writes(browser))


# -- backfill ---------------------------------------------------------------------------------


def test_a_backfill_started_from_the_console_shows_its_progress_until_completed(browser: Any, stack: LocalStack,
                                                                                  api: Client) -> None:
    open_console(browser, stack, "/backfill")
    click(browser, "//button[text()='Start a backfill']")
    answer_dialog(browser, confirm=True)
    run_id = until(lambda: browser.execute_script(
        "const m = location.hash.match(/^#\\/backfill\\/(bf_\\w+)$/); return m && m[1]"), what="the run's page")
    (sent,) = writes(browser)
    assert sent["url"].endswith("/v1/sync/backfill") and sent["key"]
    # The page polls the run: it reaches completed without a reload.
    until(lambda: "completed" in text(browser, "dl.fields"), timeout=60, what="the run to show completed")
    assert api.get(f"/v1/sync/backfill/{run_id}").json()["status"] == "completed"
    assert "customer" in text(browser, "table")
    open_console(browser, stack, "/backfill")
    until(lambda: run_id in text(browser), what="the run remembered in this browser")


# -- reconciliation (DESIGN.md section 10) ---


def test_applying_a_repair_asks_first_and_sends_the_missing_usage(browser: Any, stack: LocalStack,
                                                                  api: Client) -> None:
    customer = usage_helpers.new_customer(api)
    identifiers = [usage_helpers.uid("console-drift") for _ in range(2)]
    # Only a closed hour can be reconciled: the usage happened three hours ago.
    start = int(time.time()) // 3600 * 3600 - 3 * 3600
    for n, identifier in enumerate(identifiers):
        usage_helpers.put_usage(api, identifier, usage_helpers.usage_body(customer, value=5, timestamp=start + 60 * n))
    usage_helpers.settle(stack, api, identifiers)
    # Stripe rejects both but samples none: a drift no local row explains.
    assert api.post("/_local/fake-stripe/meter-error", {"identifiers": identifiers, "sampled": 0}).status_code == 200
    run = api.post("/v1/usage/reconciliations", {"start": start, "end": start + 3600, "customer_id": customer["id"]})
    assert run.status_code == 202, run.text
    run_id = run.json()["id"]
    until(lambda: api.get(f"/v1/usage/reconciliations/{run_id}").json()["status"] == "done", timeout=60,
          what="the reconciliation run")

    open_console(browser, stack, f"/reconciliations/{run_id}")
    until(lambda: "rejected_unsampled" in text(browser), what="the drift")
    click(browser, "//button[text()='Dry-run repair']")
    until(lambda: "Dry run: nothing was sent." in text(browser), what="the dry run")
    assert not dialog_open(browser)
    click(browser, "//button[text()='Apply repair']")
    answer_dialog(browser, confirm=False)
    assert len(writes(browser)) == 1  # the dry run only: the declined apply sent nothing
    click(browser, "//button[text()='Apply repair']")
    answer_dialog(browser, confirm=True)
    until(lambda: "Repair applied." in text(browser), what="the repair")
    assert all(w["key"] for w in writes(browser))
    sent = requests.get(f"{stack.url}/_local/fake-stripe/meter-events", timeout=10).json()
    assert any(str(e.get("identifier", "")).startswith("repair:") for e in _events(sent))


def _events(payload: Any) -> list[dict[str, Any]]:
    return list(payload.get("data", payload) if isinstance(payload, dict) else payload)
