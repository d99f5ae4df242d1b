"""GET /v1/health."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel

router = APIGatewayRouter()


class Health(BaseModel):
    status: Literal["ok"]


@router.get("/v1/health", summary="Liveness", tags=["operations"])
def health() -> Health:
    return Health(status="ok")

