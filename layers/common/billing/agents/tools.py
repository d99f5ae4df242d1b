"""The MCP tools (DESIGN.md section 11): the read tools `describe`, `find`,
`get` and `billing`, and the write tools, each a thin call of the domain
function its REST route calls, answering the REST route's object.

A domain error (not found, invalid filter, a state that forbids the action)
is a tool error whose text is the contract's error body, so an agent reads
the same `{"error": {"type", "message", "details"}}` a REST caller does.
Arguments the schema refuses (an unknown type or include, an oversized
value) are the SDK's own tool errors, naming the field. Nothing is written
on either path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from pydantic import Field

from billing.agents import calls, listing, objects
from billing.agents.objects import IncludeName, TypeName
from billing.core.errors import DomainError, ValidationFailed
from billing.data.pagination import MAX_CURSOR_LENGTH

Id = Annotated[str, Field(min_length=1, max_length=255, description="The object's id (as REST names it)")]
OwnerPart = Annotated[str, Field(min_length=1, max_length=255)]
Limit = Annotated[int, Field(ge=1, le=100, description="How many objects, 1 to 100")]
Cursor = Annotated[str | None, Field(max_length=MAX_CURSOR_LENGTH, description="next_cursor of the page before")]
Filter = Annotated[dict[str, Any], Field(max_length=20, description="The REST list's query parameters for this type "
                                                                    "(describe lists them)")]
Includes = Annotated[list[IncludeName], Field(max_length=len(objects.INCLUDES),
                                              description="Customer only: embed these (each one read)")]


@contextmanager
def domain_errors() -> Iterator[None]:
    """A domain error as the tool's error: the contract's error body."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except DomainError as exc:
        raise ToolError(json.dumps(exc.to_body())) from None


def describe() -> dict[str, Any]:
    """Every object type agents can read: its fields (the REST object), the
    filters `find` takes (the REST list's) and the includes `get` takes."""
    with domain_errors():
        return objects.describe()


# The argument names are the headless.ly query shape agents send ({"type", "filter", "id"}).
def find(type: TypeName, filter: Filter | None = None,  # noqa: A002
         limit: Limit = 20, cursor: Cursor = None) -> dict[str, Any]:
    """A page of objects of one type, newest first, narrowed by the type's
    filters (see describe); page on with `cursor` = the answer's next_cursor."""
    with domain_errors():
        kind = objects.object_type(type)
        filters = objects.parse_filter(type, filter or {})
        answer = kind.lister()(**filters, limit=limit, cursor=cursor)
        body = getattr(answer, "body", answer)  # a REST route answers a Response; its body is the page
        model = kind.response_model()
        return {"data": [objects.serialise(model, item) for item in body["data"]],
                "next_cursor": body["next_cursor"]}


def get(type: TypeName, id: Id, include: Includes | None = None) -> dict[str, Any]:  # noqa: A002
    """One object by id; a Customer may embed its subscriptions, invoices,
    payments, payment_methods, entitlements and usage (each one read)."""
    with domain_errors():
        kind = objects.object_type(type)
        names = list(dict.fromkeys(include or ()))
        refused = [name for name in names if name not in kind.includes]
        if refused:
            raise ValidationFailed.of_fields(
                f"{type} takes no include", {f"include.{name}": f"{type} includes: "
                                             f"{', '.join(kind.includes) or 'none'}" for name in refused})
        body = objects.serialise(kind.response_model(), kind.get(id))
        for name in names:
            body[name] = listing.include(name, body)
        return body


def billing(owner_type: OwnerPart, owner_id: OwnerPart) -> dict[str, Any]:
    """What the host app reads on each request for one owner (its customer,
    current subscriptions, entitlements, delinquent): two reads."""
    from billing.api.routes.billing import Billing
    from billing.subscriptions import summary

    with domain_errors():
        return objects.serialise(Billing, summary.billing(owner_type, owner_id))


READ_TOOLS: tuple[Callable[..., Any], ...] = (describe, find, get, billing)


# -- write tools (McpWriteTools=true) -------------------------------------------------

IdempotencyKey = Annotated[str | None, Field(
    min_length=1, max_length=255, pattern=r"^[!-~]+$",
    description="Stripe's convention: the first answer under a key is kept 24 h and returned to a retry. "
                "Without one, the key is derived from the tool and its arguments")]


def replay_webhook_event(event_id: Id, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Run a stored Stripe event again through the webhook processor (as
    POST /v1/webhook-events/{id}/replay)."""
    from billing.api.routes.webhook_events import WebhookEvent
    from billing.webhooks import store

    with domain_errors():
        return calls.once("replay_webhook_event", {"event_id": event_id}, idempotency_key,
                          lambda _actor: objects.serialise(WebhookEvent, store.replay(event_id)))


def retry_usage(identifier: Id, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Send a failed usage event to Stripe again (as POST /v1/usage/{identifier}/retry)."""
    from billing.api.routes.usage import MeterEvent
    from billing.metering import lifecycle

    with domain_errors():
        return calls.once("retry_usage", {"identifier": identifier}, idempotency_key,
                          lambda actor: objects.serialise(MeterEvent, lifecycle.retry(identifier, actor)))


def cancel_usage(identifier: Id, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Cancel a usage event: pending ones never reach Stripe, reported ones are
    cancelled through Stripe's meter event adjustment within 24 h (as POST
    /v1/usage/{identifier}/cancel)."""
    from billing.api.routes.usage import MeterEvent
    from billing.metering import cancel

    with domain_errors():
        return calls.once("cancel_usage", {"identifier": identifier}, idempotency_key,
                          lambda actor: objects.serialise(MeterEvent, cancel.cancel(identifier, actor)))


def cancel_subscription(subscription_id: Id, at_period_end: bool = True,
                        idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Cancel a subscription at its period end (default) or now (as POST
    /v1/subscriptions/{id}/cancel)."""
    from billing.api.routes.subscriptions import Subscription
    from billing.subscriptions import actions

    with domain_errors():
        return calls.once("cancel_subscription", {"subscription_id": subscription_id, "at_period_end": at_period_end},
                          idempotency_key, lambda actor: objects.serialise(Subscription, actions.cancel(
                              subscription_id, at_period_end=at_period_end, actor=actor)))


def sync_customer(customer_id: Id, idempotency_key: IdempotencyKey = None) -> dict[str, Any]:
    """Re-fetch a customer, its payment methods and subscriptions from Stripe
    now, through the reconcile path (as POST /v1/customers/{id}/sync)."""
    from billing.api.models import Customer
    from billing.webhooks import fetched

    with domain_errors():
        return calls.once("sync_customer", {"customer_id": customer_id}, idempotency_key,
                          lambda actor: objects.serialise(Customer, fetched.sync_customer(customer_id, actor)))


# (tool, destructive): a destructive tool may undo what it touches.
WRITE_TOOLS: tuple[tuple[Callable[..., Any], bool], ...] = (
    (replay_webhook_event, False), (retry_usage, False), (cancel_usage, True), (cancel_subscription, True),
    (sync_customer, False),
)
