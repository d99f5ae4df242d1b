"""The object types agents read over MCP (DESIGN.md section 11), described
from the REST API itself so the two never drift: each type's fields are its
REST response model, its filters are the query parameters of its REST list
route (the route function's own signature, constraints included), and a
`find` calls that list route's function, so a filter means over MCP exactly
what it means over HTTP.

Route modules are imported on first use (as billing.api.lazy does for the
API): `tools/list` needs only the names below, not the routes.

Adding a type is one entry in TYPES: its route module, response model,
list route and getter.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from billing.core.errors import ValidationFailed

# The names a tool's schema enumerates (kept literal here so `tools/list` is
# exact without importing a route module); tests hold them equal to TYPES.
TypeName = Literal["Customer", "Subscription", "Invoice", "Charge", "PaymentMethod", "Price", "PromotionCode",
                   "MeterEvent", "WebhookEvent", "UsageReconciliation"]
IncludeName = Literal["subscriptions", "invoices", "payments", "payment_methods", "entitlements", "usage"]
INCLUDES: tuple[str, ...] = get_args(IncludeName)

# Page parameters every list route takes; the rest of its parameters are filters.
PAGE_PARAMETERS = ("limit", "cursor")


@dataclass(frozen=True)
class ObjectType:
    name: str
    module: str  # billing.api.routes.<module>, or billing.api.models
    model: str  # the REST response model of one object
    list_route: str  # the REST list route function (billing.agents.listing for the few without one)
    getter: str  # "module:function" returning one object's REST body by id
    description: str
    includes: tuple[str, ...] = ()

    def response_model(self) -> type[BaseModel]:
        model: type[BaseModel] = getattr(importlib.import_module(self.module), self.model)
        return model

    def lister(self) -> Callable[..., Any]:
        module, _, name = self.list_route.rpartition(":")
        fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return fn

    def get(self, object_id: str) -> dict[str, Any]:
        module, _, name = self.getter.partition(":")
        body: dict[str, Any] = getattr(importlib.import_module(module), name)(object_id)
        return body


_ROUTES = "billing.api.routes"
TYPES: dict[str, ObjectType] = {t.name: t for t in (
    ObjectType("Customer", "billing.api.models", "Customer", f"{_ROUTES}.customers:list_customers",
               "billing.agents.listing:customer", "A billable owner's processor customer (the app's view)",
               includes=INCLUDES),
    ObjectType("Subscription", f"{_ROUTES}.subscriptions", "Subscription",
               f"{_ROUTES}.subscriptions:list_subscriptions",
               "billing.subscriptions.listing:get_subscription", "A Stripe subscription as projected"),
    ObjectType("Invoice", f"{_ROUTES}.invoices", "Invoice", f"{_ROUTES}.invoices:list_invoices",
               "billing.subscriptions.listing:get_invoice", "A Stripe invoice as projected"),
    ObjectType("Charge", f"{_ROUTES}.invoices", "Charge", f"{_ROUTES}.invoices:list_charges",
               "billing.subscriptions.listing:get_charge", "A payment (Stripe charge) as projected"),
    ObjectType("PaymentMethod", "billing.api.models", "PaymentMethod", "billing.agents.listing:payment_methods",
               "billing.customers.payment_methods:get", "A payment method attached to a customer"),
    ObjectType("Price", f"{_ROUTES}.catalog", "Price", f"{_ROUTES}.catalog:list_prices",
               "billing.catalog.queries:get_price", "A catalog price"),
    ObjectType("PromotionCode", f"{_ROUTES}.promotions", "PromotionCode", f"{_ROUTES}.promotions:list_promotion_codes",
               "billing.promotions.codes:get", "A promotion code (by its id)"),
    ObjectType("MeterEvent", f"{_ROUTES}.usage", "MeterEvent", f"{_ROUTES}.usage:list_usage",
               "billing.metering.outbox:get", "A usage event (by its identifier) and its delivery to Stripe"),
    ObjectType("WebhookEvent", f"{_ROUTES}.webhook_events", "WebhookEvent",
               f"{_ROUTES}.webhook_events:list_webhook_events", "billing.webhooks.store:get",
               "A Stripe event as received and processed (never its payload)"),
    ObjectType("UsageReconciliation", f"{_ROUTES}.usage_reconciliations", "Reconciliation",
               f"{_ROUTES}.usage_reconciliations:list_reconciliations", "billing.metering.reconciliation.runs:get",
               "A usage reconciliation run (DESIGN.md section 10): Stripe's hourly meter summaries against the "
               "usage reported, and the first page of its drift"),
)}


def object_type(name: str) -> ObjectType:
    found = TYPES.get(name)
    if found is None:
        raise ValidationFailed(f"unknown type: {name}", {"type": f"one of {', '.join(TYPES)}"})
    return found


@cache
def filter_model(name: str) -> type[BaseModel]:
    """The type's filters as a model: the list route's query parameters, with
    their types, defaults and constraints, and nothing else (extra: forbid)."""
    fn = object_type(name).lister()
    fields: dict[str, Any] = {}
    for parameter in inspect.signature(fn, eval_str=True).parameters.values():
        if parameter.name in PAGE_PARAMETERS:
            continue
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[parameter.name] = (parameter.annotation, default)
    model: type[BaseModel] = create_model(f"{name}Filter", __config__=ConfigDict(extra="forbid"), **fields)
    return model


def parse_filter(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The filter as the list route takes it; every offending field named."""
    try:
        return filter_model(name).model_validate(raw).model_dump(exclude_unset=True)
    except ValidationError as exc:
        problems = {"filter." + ".".join(str(p) for p in e["loc"]): _problem(name, e) for e in exc.errors()}
        raise ValidationFailed.of_fields(f"invalid filter for {name}", problems) from None


def _problem(name: str, error: Any) -> str:
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(filter_model(name).model_fields) or "none"
        return f"not a filter of {name} (filters: {allowed})"
    return str(error["msg"])


def serialise(model: type[BaseModel], body: Any) -> dict[str, Any]:
    """The body as the REST route answers it: through its response model."""
    return model.model_validate(body).model_dump(mode="json")


def describe() -> dict[str, Any]:
    """Every type: its fields (the REST model's JSON schema), filters and includes."""
    types = []
    for kind in TYPES.values():
        filters = filter_model(kind.name).model_json_schema()
        types.append({"type": kind.name, "description": kind.description,
                      "fields": kind.response_model().model_json_schema(),
                      "filters": filters.get("properties", {}), "required_filters": filters.get("required", []),
                      "includes": list(kind.includes)})
    return {"types": types}
