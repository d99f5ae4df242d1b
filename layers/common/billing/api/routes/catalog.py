"""The catalog, for pricing pages (DESIGN.md section 4): prices listed by
index and read by id, products read by id."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import Field

from billing.api import http
from billing.api.fields import Cursor, PageSize
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.catalog import queries

router = APIGatewayRouter()


class Price(ResponseModel):
    id: str
    processor_id: str = Field(description="The processor's price id (price_...)")
    product_id: str | None
    active: bool
    currency: str | None
    unit_amount: int | None = Field(description="In the currency's minor unit")
    type: str | None = Field(description="recurring or one_time")
    recurring_interval: str | None = Field(description="day, week, month or year")
    recurring_interval_count: int | None
    lookup_key: str | None
    nickname: str | None
    metadata: dict[str, str]
    data: dict[str, Any] = Field(description="The processor's price")
    lock_version: int | None
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str
    deleted_at: str | None


class PriceList(ResponseModel):
    data: list[Price]
    next_cursor: str | None


class Product(ResponseModel):
    id: str
    processor_id: str = Field(description="The processor's product id (prod_...)")
    name: str | None
    description: str | None
    active: bool
    default_price_id: str | None
    features: list[str] = Field(description="Marketing feature names, for pricing pages")
    metadata: dict[str, str]
    data: dict[str, Any] = Field(description="The processor's product")
    lock_version: int | None
    last_stripe_event_ts: int | None
    last_stripe_event_id: str | None
    inserted_at: str
    updated_at: str
    deleted_at: str | None


@router.get("/v1/prices", summary="List prices (the catalog, for pricing pages)", tags=["catalog"],
            responses={200: success("A page of prices, newest first"), **error_responses(422)})
def list_prices(
    active: Annotated[bool | None, Query()] = None,
    product: Annotated[str | None, Query(min_length=1, max_length=255, description="A product id")] = None,
    lookup_key: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: PageSize = 20,
    cursor: Cursor = None,
) -> Response[PriceList]:
    data, next_cursor = queries.list_prices(active=active, product=product, lookup_key=lookup_key, limit=limit,
                                            cursor=cursor)
    return http.respond(PriceList, 200, {"data": data, "next_cursor": next_cursor})


@router.get("/v1/prices/<price_id>", summary="A price", tags=["catalog"],
            responses={200: success("The price"), **error_responses(404)})
def get_price(price_id: str) -> Response[Price]:
    return http.respond(Price, 200, queries.get_price(http.path_param(router, "price_id", price_id)))


@router.get("/v1/products/<product_id>", summary="A product", tags=["catalog"],
            responses={200: success("The product"), **error_responses(404)})
def get_product(product_id: str) -> Response[Product]:
    return http.respond(Product, 200, queries.get_product(http.path_param(router, "product_id", product_id)))
