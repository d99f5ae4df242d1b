"""The reads the MCP tools need beyond the REST routes: a customer with the
includes an agent asks for (each one read: a query by the customer's index,
or the owner's summary item), and the payment methods list, which REST
serves under its customer's path."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query

from billing.core.errors import NotFound
from billing.customers import payment_methods as customer_payment_methods
from billing.customers import records
from billing.metering import queries as usage
from billing.subscriptions import listing, summary

# An embedded list is one page of the REST list it comes from (its cursor
# pages on through `find` with filter customer_id).
EMBEDDED_PAGE = 100


def customer(customer_id: str) -> dict[str, Any]:
    return records.get(customer_id, [])


def payment_methods(customer_id: Annotated[str, Query(min_length=1, max_length=255)],
                    limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
    # REST lists them whole (GET /v1/customers/{id}/payment-methods): one page.
    return {"data": customer_payment_methods.list_for(customer_id)[:limit], "next_cursor": None}


def _page(data: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"data": data, "next_cursor": next_cursor}


def include(name: str, body: dict[str, Any]) -> Any:
    """One include of a customer (its REST body), from one read."""
    customer_id = body["id"]
    match name:
        case "subscriptions":
            return _page(*listing.list_subscriptions(customer_id=customer_id, status=None, price=None,
                                                     limit=EMBEDDED_PAGE, cursor=None))
        case "invoices":
            return _page(*listing.list_invoices(customer_id=customer_id, status=None, subscription=None,
                                                limit=EMBEDDED_PAGE, cursor=None))
        case "payments":
            return _page(*listing.list_charges(customer_id=customer_id, subscription=None, limit=EMBEDDED_PAGE,
                                               cursor=None))
        case "payment_methods":
            return _page(customer_payment_methods.list_active(customer_id), None)
        case "entitlements":
            # The owner's summary item (one read); an owner without one has none.
            if not (body.get("owner_type") and body.get("owner_id")):
                return {"features": []}
            try:
                return summary.entitlements(body["owner_type"], body["owner_id"])
            except NotFound:
                return {"features": []}
        case "usage":
            return _page(*usage.list_usage(status=None, customer_id=customer_id, limit=EMBEDDED_PAGE, cursor=None))
    raise AssertionError(name)  # the tool's schema enumerates the names
