"""A rejected Stripe key (401, 403) is the deployment's fault, not the
event's (issue 19): a webhook whose re-fetch Stripe refuses waits, deferred,
and is applied once the key works again, with no manual replay."""

from __future__ import annotations

from typing import Any

from devstack.dynamodb import client
from devstack.stack import LocalStack
from tests.conftest import Client
from tests.faults.invariants import pending_faults, quiet
from tests.integration.webhook_helpers import FINISHED, accepted, customer_object, event, fake, settle, settled, uid

REDRIVE = "/_local/schedules/WebhookProcessorFunction.RedriveDeferred/trigger"


def api_customer(api: Client) -> dict[str, Any]:
    """A customer made through the API (so the Fake holds it), settled."""
    resp = api.put(f"/v1/owners/User/{uid()}/customer", {"email": "ada@example.com"})
    assert resp.status_code == 201, resp.text
    settled(api)
    found = api.get(f"/v1/customers/{resp.json()['id']}")
    assert found.status_code == 200, found.text
    return dict(found.json())


def test_a_webhook_whose_refetch_gets_403_is_processed_once_the_key_is_fixed(stack: LocalStack,
                                                                             api: Client) -> None:
    quiet(stack, api)
    row = api_customer(api)
    fake(stack).add_fault("retrieve_object", 403, times=10_000)
    # In the watermark's second: the processor re-fetches the customer from Stripe.
    updated = event("customer.updated", customer_object(row["processor_id"], metadata={}),
                    created=int(row["last_stripe_event_ts"]))
    accepted(api, updated)
    (waiting,) = settle(stack, api, updated["id"], until=("deferred", "failed", *FINISHED))
    assert waiting["status"] == "deferred", waiting
    assert waiting["error"]["type"] == "permission_error" and waiting["next_attempt_at"] is not None

    fake(stack).clear_faults()  # the key has its permission again
    table = client(stack.ddb_endpoint)
    name = stack.runtimes["WebhookProcessorFunction"].env["WEBHOOK_EVENTS_TABLE"]
    table.update_item(TableName=name, Key={"pk": {"S": updated["id"]}}, UpdateExpression="SET next_attempt_at = :p",
                      ExpressionAttributeValues={":p": {"N": "1"}})  # its backoff is over
    assert api.post(REDRIVE).status_code == 200
    (done,) = settle(stack, api, updated["id"])
    assert done["status"] == "processed" and done["error"] is None, done
    assert pending_faults(stack, api) == {}
