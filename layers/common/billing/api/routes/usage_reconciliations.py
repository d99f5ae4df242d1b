"""Usage reconciliation routes (DESIGN.md section 10): start a run over a
window (202), read it with its drift page by page, list runs newest first,
and repair a run's drift (a dry run unless `apply` is true)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from billing.api import http
from billing.api.fields import Cursor, PageSize
from billing.api.models import ResponseModel
from billing.api.schemas import error_responses, success
from billing.metering.reconciliation import repair, runs

router = APIGatewayRouter()

Classification = Literal["rejected_unsampled", "pending", "cancel_pending", "overcount", "late"]


class LocalFigures(ResponseModel):
    reported: int
    pending: int
    failed: int
    canceled: int


class Drift(ResponseModel):
    bucket: str = Field(description="<hour start>-<hash of customer and meter>: the repair identifiers' stem")
    customer_id: str
    stripe_customer_id: str
    event_name: str
    start: str
    end: str
    local: LocalFigures = Field(description="Sums of the values of our rows of the hour, by status")
    stripe: float = Field(description="Stripe's meter event summary of the hour")
    difference: float = Field(description="stripe minus local reported")
    classification: Classification
    identifiers: list[str] = Field(description="Our events of the hour (at most 20), as Stripe knows them")


class Reconciliation(ResponseModel):
    id: str = Field(examples=["ur_01JDQ5ZC9Y8W1H3M4N5P6Q7R8S"])
    status: Literal["running", "done"]
    start: int
    end: int
    start_at: str
    end_at: str
    event_name: str | None
    customer_id: str | None
    buckets: int = Field(description="Buckets (customer, meter, hour) compared so far")
    drifted: int
    drift_value: float = Field(description="Sum of |difference| over the drifted buckets")
    drift: list[Drift]
    next_cursor: str | None
    stripe_requests: int
    rows_read: int
    checkpoints: int
    requested_by: str | None
    started_at: str
    updated_at: str
    finished_at: str | None
    repaired_at: str | None
    repaired_by: str | None


class ReconciliationList(ResponseModel):
    data: list[Reconciliation]
    next_cursor: str | None


class StartReconciliation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: StrictInt = Field(description="Unix seconds, on an hour boundary, at most 35 days ago")
    end: StrictInt = Field(description="Unix seconds, on an hour boundary, in the past; at most 31 days after start")
    event_name: StrictStr | None = Field(None, min_length=1, max_length=100)
    customer_id: StrictStr | None = Field(None, min_length=1, max_length=100)


class RepairRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apply: StrictBool = Field(False, description="false: say what would be done, send nothing")


class RepairAction(ResponseModel):
    bucket: str
    customer_id: str
    event_name: str
    start: str
    classification: Classification
    difference: float
    action: Literal["send", "cancel", "wait", "flag"]
    status: Literal["planned", "sent", "failed", "already_applied"] | None = None
    value: float | None = None
    identifiers: list[str] | None = None
    timestamp: int | None = None
    n: int | None = None
    reason: str | None = None
    error: dict[str, Any] | None = None


class RepairCounts(ResponseModel):
    send: int
    cancel: int
    wait: int
    flag: int


class RepairResult(ResponseModel):
    run_id: str
    apply: bool
    actions: list[RepairAction]
    counts: RepairCounts
    sent: int = Field(description="Actions sent to Stripe by this request")


@router.post("/v1/usage/reconciliations", summary="Start a usage reconciliation over an hour-aligned window",
             tags=["usage"], responses={202: success("Started"), **error_responses(400, 404, 422, 502)})
def start_reconciliation(body: Annotated[StartReconciliation, Body()]) -> Response[Reconciliation]:
    run, _ = runs.start(http.actor(router), start=body.start, end=body.end, event_name=body.event_name,
                        customer_id=body.customer_id)
    return http.respond(Reconciliation, 202, run)


@router.get("/v1/usage/reconciliations", summary="Usage reconciliations, newest first", tags=["usage"],
            responses={200: success("A page of runs"), **error_responses(422)})
def list_reconciliations(limit: PageSize = 20, cursor: Cursor = None) -> Response[ReconciliationList]:
    data, next_cursor = runs.list_runs(limit=limit, cursor=cursor)
    return http.respond(ReconciliationList, 200, {"data": data, "next_cursor": next_cursor})


@router.get("/v1/usage/reconciliations/<run_id>", summary="A usage reconciliation and a page of its drift",
            tags=["usage"], responses={200: success("The run"), **error_responses(404, 422)})
def get_reconciliation(run_id: str, limit: PageSize = 100, cursor: Cursor = None) -> Response[Reconciliation]:
    run_id = http.path_param(router, "run_id", run_id)
    return http.respond(Reconciliation, 200, runs.get(run_id, limit=limit, cursor=cursor))


@router.post("/v1/usage/reconciliations/<run_id>/repair", tags=["usage"],
             summary="Repair a run's drift within Stripe's limits (a dry run unless apply is true)",
             responses={200: success("What was (or would be) done"), **error_responses(404, 409, 422, 502)})
def repair_reconciliation(run_id: str, body: Annotated[RepairRequest | None, Body()] = None
                          ) -> Response[RepairResult]:
    run_id = http.path_param(router, "run_id", run_id)
    result = repair.repair(run_id, http.actor(router), apply=(body or RepairRequest()).apply)
    return http.respond(RepairResult, 200, result)
