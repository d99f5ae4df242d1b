"""GET /v1/health."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayRouter

from billing.api import http
from billing.api.models import ResponseModel

router = APIGatewayRouter()


class Health(ResponseModel):
    status: Literal["ok"]


@router.get("/v1/health", summary="Liveness", tags=["operations"])
def health() -> Response[Health]:
    return http.respond(Health, 200, {"status": "ok"})

