"""Backfill routes (DESIGN.md sections 4 and 8): start a resumable import of
the Stripe account, watch its progress per object type while it runs, and
run a stalled run's checkpoint again."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from billing.api import http
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.sync import backfill_runs

router = APIGatewayRouter()

ObjectType = Literal["product", "price", "coupon", "promotion_code", "customer", "payment_method", "subscription",
                     "invoice", "charge"]


class BackfillError(ResponseModel):
    object_id: str | None = Field(description="The object that failed; null when the whole type could not be "
                                               "listed (the key may not read it)")
    type: str
    message: str = Field(max_length=512)


class BackfillTypeProgress(ResponseModel):
    type: ObjectType
    seen: int = Field(description="Objects read from Stripe (applied + unchanged + stale + failed)")
    applied: int = Field(description="Written to the projection, with their ledger rows")
    unchanged: int = Field(description="Already what Stripe holds: nothing written")
    stale: int = Field(description="The row already holds newer state (a webhook came first): nothing written")
    failed: int = Field(description="Could not be applied (e.g. its customer is not in the projection)")
    cursor: str | None = Field(description="Stripe's id of the last object applied: the run resumes after it")
    done: bool
    pages: int
    last_error: BackfillError | None


class BackfillTotals(ResponseModel):
    seen: int
    applied: int
    unchanged: int
    stale: int
    failed: int


class Backfill(ResponseModel):
    id: str = Field(examples=["bf_01JDQ5ZC9Y8W1H3M4N5P6Q7R8S"])
    status: Literal["running", "completed"]
    current_type: ObjectType | None = Field(description="The type being imported now")
    page_size: int
    checkpoints: int = Field(description="Pages checkpointed so far")
    types: list[BackfillTypeProgress] = Field(description="In import order")
    totals: BackfillTotals
    requested_by: str | None
    started_at: str
    updated_at: str
    finished_at: str | None


class StartBackfill(BaseModel):
    model_config = ConfigDict(extra="forbid")

    types: list[ObjectType] | None = Field(None, min_length=1, max_length=9,
                                           description="Default: every type, imported in dependency order")
    page_size: StrictInt = Field(100, ge=1, le=100, description="Objects per Stripe page (and per checkpoint)")


@router.post("/v1/sync/backfill", summary="Start importing the Stripe account (resumable)", tags=["sync"],
             responses={202: success("Started"), **error_responses(400, 409, 422)})
def start_backfill(body: Annotated[StartBackfill | None, Body()] = None) -> Response[Backfill]:
    request = body or StartBackfill()
    run = backfill_runs.start(http.actor(router), types=list(request.types or []) or None,
                              page_size=request.page_size)
    return http.respond(Backfill, 202, run)


@router.get("/v1/sync/backfill/<run_id>", summary="A backfill's progress per object type", tags=["sync"],
            responses={200: success("The run"), **error_responses(404)})
def get_backfill(run_id: str) -> Response[Backfill]:
    return http.respond(Backfill, 200, backfill_runs.get(http.path_param(router, "run_id", run_id)))


@router.post("/v1/sync/backfill/<run_id>/resume", summary="Run a stalled backfill's checkpoint again",
             tags=["sync"], responses={202: success("Resumed"), **error_responses(404, 409)})
def resume_backfill(run_id: str) -> Response[Backfill]:
    return http.respond(Backfill, 202, backfill_runs.resume(http.path_param(router, "run_id", run_id)))
