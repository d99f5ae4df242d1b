"""The tables of the catalog (prices, products), the entitlements projection
and the owner's billing summary (DESIGN.md section 2), beside the models of
billing.data.tables they share their bases with."""

from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import IncludeProjection
from pynamodb.models import Model

from billing.core.settings import CUSTOMERS_TABLE, ENTITLEMENTS_TABLE, PRICES_TABLE, PRODUCTS_TABLE
from billing.data.tables import _index, _Meta, _Projection, _ProjectionAttributes, _table


class EntitlementRow(_ProjectionAttributes):
    """A customer's active entitlement summary (Stripe Entitlements), keyed by
    the processor customer id: the summary object has no id of its own."""

    class Meta(_Meta):
        table_name = _table(ENTITLEMENTS_TABLE)

    features = JSONAttribute(default=list)  # the active features' lookup keys, sorted


class OwnerSummaryRow(Model):
    """What the hot path (GET /v1/owners/{type}/{id}/billing and
    /entitlements) needs, denormalised onto the owner's guard item
    (`guard#owner#...` in the customers table, GuardRow): the owner's
    customer id, its current subscriptions and its active feature lookup
    keys. One GetItem answers /entitlements; the customer row is the second
    read of /billing.

    Written only by conditional updates in the transaction that applies a
    subscription or an entitlement summary (billing.subscriptions.summary),
    on condition that the guard still names that customer and that
    `summary_version` is the one read. A new claim of the guard (a new
    customer for the owner) is a whole put that starts the summary afresh."""

    class Meta(_Meta):
        table_name = _table(CUSTOMERS_TABLE)

    pk = UnicodeAttribute(hash_key=True)
    customer_id = UnicodeAttribute(null=True)
    subscriptions = JSONAttribute(null=True)  # {subscription id: its summary entry}
    features = JSONAttribute(null=True)  # sorted lookup keys
    summary_version = NumberAttribute(null=True)


class _CatalogRow(_Projection):
    """A catalog object (price, product): listed for pricing pages."""

    class Meta(_Meta):
        table_name = "abstract"

    processor_id = UnicodeAttribute(null=True)
    list_key = UnicodeAttribute(null=True)
    sort_key = UnicodeAttribute(null=True)
    active = BooleanAttribute(null=True)
    metadata = JSONAttribute(default=dict)
    deleted_at = UnicodeAttribute(null=True)


class PriceRow(_CatalogRow):
    class Meta(_Meta):
        table_name = _table(PRICES_TABLE)

    # GET /v1/prices: one index per filter (active, product, lookup_key) and one for all;
    # the two with a constant key are laned (billing.data.lanes).
    by_list_lane = _index("by_list_lane", "list_lane", "sort_key", laned=True,
                          projection=IncludeProjection(["deleted_at"]))
    by_product = _index("by_product", "product_id", "sort_key")
    by_lookup_key = _index("by_lookup_key", "lookup_key", "sort_key")
    by_active_lane = _index("by_active_lane", "active_lane", "sort_key", laned=True,
                            projection=IncludeProjection(["deleted_at"]))

    product_id = UnicodeAttribute(null=True)
    active_key = UnicodeAttribute(null=True)  # "active" | "inactive"
    list_lane = UnicodeAttribute(null=True)
    active_lane = UnicodeAttribute(null=True)  # laned("active" | "inactive", id)
    lookup_key = UnicodeAttribute(null=True)
    currency = UnicodeAttribute(null=True)
    unit_amount = NumberAttribute(null=True)
    type = UnicodeAttribute(null=True)
    recurring_interval = UnicodeAttribute(null=True)
    recurring_interval_count = NumberAttribute(null=True)
    nickname = UnicodeAttribute(null=True)


class ProductRow(_CatalogRow):
    class Meta(_Meta):
        table_name = _table(PRODUCTS_TABLE)

    name = UnicodeAttribute(null=True)
    description = UnicodeAttribute(null=True)
    default_price_id = UnicodeAttribute(null=True)
    features = JSONAttribute(default=list)  # marketing feature names, for pricing pages
