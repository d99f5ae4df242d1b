"""Shared fixtures: the local stack (started once per test session, on a free
port) and a small HTTP client for it."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack, Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = json.loads((ROOT.parent / "shared" / "stripe-fixtures" / "objects.json").read_text()) \
    if (ROOT.parent / "shared" / "stripe-fixtures" / "objects.json").exists() else {}


class Client:
    """requests against the stack's base URL, JSON by default."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def request(self, method: str, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        if json_body is not None:
            kwargs["data"] = json.dumps(json_body)
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        return self.session.request(method, self.base_url + path, timeout=30, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, json_body, **kwargs)

    def put(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, json_body, **kwargs)

    def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, json_body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # DYNAMODB_ENDPOINT_URL runs the same suite against a real DynamoDB Local.
    endpoint = os.environ.get("DYNAMODB_ENDPOINT_URL") or None
    local = LocalStack(Settings(port=0, concurrency=4, dynamodb_endpoint=endpoint)).start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Client:
    return Client(stack.url)
