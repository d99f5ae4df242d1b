"""DynamoDB for the local stack: moto's server (or DYNAMODB_ENDPOINT_URL) with
every table created from template.yaml's own resource definitions."""

from __future__ import annotations

import socket
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devstack.template import REGION, TableSpec

_CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=50)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedMoto:
    """moto's server in a thread of this process, on a free loopback port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


def client(endpoint_url: str, service: str = "dynamodb") -> Any:
    # The service name is a runtime string; the stubs type one overload per literal.
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=endpoint_url, region_name=REGION,
        aws_access_key_id="local", aws_secret_access_key="local", config=_CLIENT_CONFIG,
    )


def create_table_request(spec: TableSpec) -> dict[str, Any]:
    """Translate CloudFormation table properties into a CreateTable request."""
    p = spec.properties
    req: dict[str, Any] = {
        "TableName": spec.name,
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "BillingMode": p.get("BillingMode", "PROVISIONED"),
    }
    if req["BillingMode"] == "PROVISIONED":
        req["ProvisionedThroughput"] = p.get("ProvisionedThroughput") or {
            "ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if p.get(key):
            wanted = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
            req[key] = [{k: v for k, v in ix.items() if k in wanted} for ix in p[key]]
    stream = p.get("StreamSpecification")
    if stream:
        req["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return req


def create_tables(endpoint_url: str, tables: list[TableSpec]) -> dict[str, str]:
    """Create every table (replacing a same-named leftover); return stream ARNs by logical id."""
    ddb = client(endpoint_url)
    streams: dict[str, str] = {}
    try:
        existing = set(ddb.list_tables().get("TableNames", []))
    except (BotoCoreError, ClientError) as exc:
        raise RuntimeError(f"DynamoDB at {endpoint_url} is not reachable: {type(exc).__name__}") from None
    for spec in tables:
        if spec.name in existing:
            ddb.delete_table(TableName=spec.name)
            ddb.get_waiter("table_not_exists").wait(TableName=spec.name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        desc = ddb.create_table(**create_table_request(spec))["TableDescription"]
        ddb.get_waiter("table_exists").wait(TableName=spec.name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        ttl = spec.properties.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(TableName=spec.name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": True})
        if desc.get("LatestStreamArn"):
            streams[spec.logical_id] = desc["LatestStreamArn"]
        else:
            arn = ddb.describe_table(TableName=spec.name)["Table"].get("LatestStreamArn")
            if arn:
                streams[spec.logical_id] = arn
    return streams
