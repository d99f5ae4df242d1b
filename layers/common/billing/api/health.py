"""GET /v1/health and GET /v1/openapi.json."""

from __future__ import annotations

from typing import Literal

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import BaseModel

router = APIGatewayRouter()


class Health(BaseModel):
    status: Literal["ok"]


@router.get("/v1/health", summary="Liveness", tags=["operations"])
def health() -> Health:
    return Health(status="ok")


@router.get("/v1/openapi.json", summary="This API's OpenAPI document", tags=["operations"],
            response_description="OpenAPI 3 document")
def openapi_document() -> Response[str]:
    from billing.api.app import openapi_json

    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json())
