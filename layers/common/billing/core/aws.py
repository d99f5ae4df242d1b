"""boto3 clients built on first use, one per process, and again after a
SnapStart restore (a client's connections and credentials belong to the
process that built it, not to every environment restored from a snapshot).

The endpoint comes from boto3's own configuration: AWS_ENDPOINT_URL_<SERVICE>
points a client at the local stack's stand-in."""

from __future__ import annotations

import threading
from typing import Any

import boto3

from billing.core import snapstart


class LazyClient:
    """`client()` is the service's client; `drop()` forgets it (tests that
    start a new moto mock, and the SnapStart restore hook)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._client: Any = None
        snapstart.after_restore(self.drop)

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = boto3.client(self.service)  # type: ignore[call-overload]
            return self._client

    def drop(self) -> None:
        with self._lock:
            self._client = None
