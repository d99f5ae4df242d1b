"""Settings: what each function reads from the environment template.yaml
gives it, declared once as typed, frozen dataclasses and checked at cold
start.

A function's handler module calls `load(ItsSettings)` at import, so a
deployment missing a table or a parameter fails its cold start with one
line naming every missing or malformed variable, before any request
arrives. Domain code asks for the slice it needs (`load(StripeSettings)`,
`load(DeliverySettings)`): parsed once per process and cached. No pydantic:
the webhook function must start without it.
"""

from __future__ import annotations

import dataclasses
import os
from functools import cache
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

from billing.core.errors import ConfigurationError

# The tables' variables, as template.yaml names them.
CUSTOMERS_TABLE: Final = "CUSTOMERS_TABLE"
PAYMENT_METHODS_TABLE: Final = "PAYMENT_METHODS_TABLE"
SUBSCRIPTIONS_TABLE: Final = "SUBSCRIPTIONS_TABLE"
INVOICES_TABLE: Final = "INVOICES_TABLE"
CHARGES_TABLE: Final = "CHARGES_TABLE"
EVENTS_TABLE: Final = "EVENTS_TABLE"
METER_EVENTS_TABLE: Final = "METER_EVENTS_TABLE"
WEBHOOK_EVENTS_TABLE: Final = "WEBHOOK_EVENTS_TABLE"
COUPONS_TABLE: Final = "COUPONS_TABLE"
PROMOTION_CODES_TABLE: Final = "PROMOTION_CODES_TABLE"
PRICES_TABLE: Final = "PRICES_TABLE"
PRODUCTS_TABLE: Final = "PRODUCTS_TABLE"
ENTITLEMENTS_TABLE: Final = "ENTITLEMENTS_TABLE"
IDEMPOTENCY_TABLE: Final = "IDEMPOTENCY_TABLE"
SYNC_TABLE: Final = "SYNC_TABLE"


def env(name: str, default: Any = dataclasses.MISSING) -> Any:
    """A setting read from the variable `name`; without a default it is required."""
    return dataclasses.field(default=default, metadata={"env": name})


# -- slices: what one part of the code reads -------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class StripeSettings:
    """The processor: the SSM parameter holding the secret key, and optional
    base URLs (a Stripe-compatible server such as stripe-mock)."""

    stripe_api_key_param: str = env("STRIPE_API_KEY_PARAM")
    stripe_api_base: str | None = env("STRIPE_API_BASE", None)
    stripe_meter_events_base: str | None = env("STRIPE_METER_EVENTS_BASE", None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ObservabilitySettings:
    """Every function: the DetailedTracing parameter (core.tracing)."""

    detailed_tracing: bool = env("DETAILED_TRACING", False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebhookIngestSettings:
    webhook_events_table: str = env(WEBHOOK_EVENTS_TABLE)
    stripe_webhook_secrets_param: str = env("STRIPE_WEBHOOK_SECRETS_PARAM")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliverySettings:
    """How the reporter delivers usage to Stripe (metering.delivery)."""

    meter_api: Literal["v1", "v2"] = env("METER_API", "v1")
    meter_transient_tries: int = env("METER_TRANSIENT_TRIES", 4)
    meter_backoff_base_ms: int = env("METER_BACKOFF_BASE_MS", 100)
    meter_backoff_cap_ms: int = env("METER_BACKOFF_CAP_MS", 2000)
    meter_v1_concurrency: int = env("METER_V1_CONCURRENCY", 8)
    # Stripe deduplicates an identifier for 24 hours only (metering.delivery).
    meter_max_pending_seconds: float = env("METER_MAX_PENDING_SECONDS", 23 * 3600.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSettings:
    sweep_min_age_seconds: float = env("SWEEP_MIN_AGE_SECONDS", 900.0)
    sweep_max_rows: int = env("SWEEP_MAX_ROWS", 500)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CustomerTables:
    customers_table: str = env(CUSTOMERS_TABLE)
    payment_methods_table: str = env(PAYMENT_METHODS_TABLE)
    subscriptions_table: str = env(SUBSCRIPTIONS_TABLE)
    invoices_table: str = env(INVOICES_TABLE)
    charges_table: str = env(CHARGES_TABLE)
    events_table: str = env(EVENTS_TABLE)
    coupons_table: str = env(COUPONS_TABLE)
    promotion_codes_table: str = env(PROMOTION_CODES_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BillingTables:
    """The catalog (prices, products) and the entitlements projection."""

    prices_table: str = env(PRICES_TABLE)
    products_table: str = env(PRODUCTS_TABLE)
    entitlements_table: str = env(ENTITLEMENTS_TABLE)


# -- per function: the union its handler checks at cold start ---------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class ApiSettings(CustomerTables, BillingTables, StripeSettings):
    meter_events_table: str = env(METER_EVENTS_TABLE)
    webhook_events_table: str = env(WEBHOOK_EVENTS_TABLE)
    # Responses kept for Idempotency-Key replays (billing.api.idempotency).
    idempotency_table: str = env(IDEMPOTENCY_TABLE)
    # Backfill runs: started and watched through the API (billing.sync.backfill_runs).
    sync_table: str = env(SYNC_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebhookSettings(WebhookIngestSettings):
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class WebhookProcessorSettings(CustomerTables, BillingTables, StripeSettings):
    webhook_events_table: str = env(WEBHOOK_EVENTS_TABLE)
    # A row still `received` this long after its run was requested is re-driven
    # (the WebhookStuckAfterSeconds parameter; billing.webhooks.store.redrive_stuck).
    webhook_stuck_after_seconds: float = env("WEBHOOK_STUCK_AFTER_SECONDS", 900.0)
    # Meter error events move usage rows (metering.meter_errors).
    meter_events_table: str = env(METER_EVENTS_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeterReporterSettings(DeliverySettings, StripeSettings):
    meter_events_table: str = env(METER_EVENTS_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MeterSweeperSettings(SweepSettings):
    meter_events_table: str = env(METER_EVENTS_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StripeEventsSettings:
    """The inbound EventBridge function (billing.sync.inbound): the webhook store."""

    webhook_events_table: str = env(WEBHOOK_EVENTS_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EventPublisherSettings:
    """The domain event publisher (billing.sync.publisher): the stack's bus,
    and the two tables whose streams feed it (told apart by stream ARN)."""

    event_bus_name: str = env("EVENT_BUS_NAME")
    events_table: str = env(EVENTS_TABLE)
    meter_events_table: str = env(METER_EVENTS_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackfillSettings(CustomerTables, BillingTables, StripeSettings):
    """The backfill worker (billing.sync.backfill): Stripe's lists through the
    reconcile path into every projection, its runs' checkpoints, and the
    webhook events deferred for want of a customer it brings."""

    sync_table: str = env(SYNC_TABLE)
    webhook_events_table: str = env(WEBHOOK_EVENTS_TABLE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EventsPollSettings(StripeSettings):
    """The events poll (billing.sync.events_poll): Stripe's Events API from the
    cursor in the sync table into the webhook store (the once-only put)."""

    sync_table: str = env(SYNC_TABLE)
    webhook_events_table: str = env(WEBHOOK_EVENTS_TABLE)
    # An event younger than this is left to its webhook (Stripe sends at once).
    events_poll_min_age_seconds: int = env("EVENTS_POLL_MIN_AGE_SECONDS", 60)
    # Pages of 100 events read per run at most (a long outage is caught up over runs).
    events_poll_max_pages: int = env("EVENTS_POLL_MAX_PAGES", 20)


@dataclasses.dataclass(frozen=True, kw_only=True)
class McpSettings(CustomerTables, BillingTables, StripeSettings):
    """The MCP function (billing.agents): every projection read, usage and
    webhook events, reconciliation runs, the write tools' idempotency records, and whether the
    write tools exist (the McpWriteTools parameter)."""

    meter_events_table: str = env(METER_EVENTS_TABLE)
    webhook_events_table: str = env(WEBHOOK_EVENTS_TABLE)
    sync_table: str = env(SYNC_TABLE)  # the usage reconciliation runs
    idempotency_table: str = env(IDEMPOTENCY_TABLE)
    mcp_write_tools: bool = env("MCP_WRITE_TOOLS", False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UsageReconcilerSettings(StripeSettings):
    """The usage reconciler (billing.metering.reconciliation): the usage rows
    it reads, its runs in the sync table, the ledger its drift is published
    through, the settle delay and its Stripe request budget."""

    meter_events_table: str = env(METER_EVENTS_TABLE)
    sync_table: str = env(SYNC_TABLE)
    events_table: str = env(EVENTS_TABLE)
    customers_table: str = env(CUSTOMERS_TABLE)
    # An hour is compared once this long after it closed (Stripe aggregates asynchronously).
    usage_settle_seconds: int = env("USAGE_SETTLE_SECONDS", 3600)
    usage_reconcile_requests_per_second: float = env("USAGE_RECONCILE_REQUESTS_PER_SECOND", 20.0)


# -- reading ---------------------------------------------------------------------------


def _parse(kind: Any, raw: str) -> Any:
    """`raw` as the field's type; ValueError names what was expected."""
    if get_origin(kind) is Literal:
        if raw not in get_args(kind):
            raise ValueError(f"one of {', '.join(map(str, get_args(kind)))}")
        return raw
    base = next((a for a in get_args(kind) if a is not type(None)), kind)  # X | None -> X
    if base is bool:
        # The template's spelling of a boolean parameter.
        if raw.lower() not in ("true", "false"):
            raise ValueError("one of true, false")
        return raw.lower() == "true"
    if base is int:
        return int(raw)
    if base is float:
        return float(raw)
    return raw


@cache
def load[T](model: type[T]) -> T:
    """`model` read from the environment: every missing or malformed variable
    named in one ConfigurationError. Cached: one parse per process."""
    hints = get_type_hints(model)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for spec in dataclasses.fields(model):  # type: ignore[arg-type]
        name = spec.metadata["env"]
        raw = os.environ.get(name, "").strip()
        if not raw:
            if spec.default is dataclasses.MISSING:
                problems.append(f"{name} is not set")
            continue
        try:
            values[spec.name] = _parse(hints[spec.name], raw)
        except ValueError as exc:
            problems.append(f"{name} must be {exc}" if "one of" in str(exc) else f"{name} is not a number")
    if problems:
        raise ConfigurationError("environment: " + "; ".join(problems))
    return model(**values)
