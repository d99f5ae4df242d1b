"""The Fake processor, hosted by the local stack for every function.

Functions run in their own processes, so they reach the one FakeProcessor
through `POST /_local/fake-stripe/rpc` (billing.processor.remote); the other
routes are the control surface of DESIGN.md section 6.
"""

from __future__ import annotations

import sys
from typing import Any

from devstack.gateway import LocalRequest, Router
from devstack.template import ROOT_LAYER

# The Fake lives in the layer's package, which the stack itself imports.
if str(ROOT_LAYER) not in sys.path:
    sys.path.insert(0, str(ROOT_LAYER))

from billing.processor import rpc
from billing.processor.fake import FakeProcessor

RPC_PATH = "/_local/fake-stripe/rpc"


class FakeStripe:
    def __init__(self) -> None:
        self.fake = FakeProcessor()

    def register(self, router: Router) -> None:
        router.add_local("POST", RPC_PATH, self._rpc)
        router.add_local("POST", "/_local/fake-stripe/faults", self._fault)
        router.add_local("GET", "/_local/fake-stripe/meter-events", self._meter_events)
        router.add_local("GET", "/_local/fake-stripe/calls", self._calls)
        router.add_local("GET", "/_local/fake-stripe/state", self._state)
        router.add_local("POST", "/_local/fake-stripe/reset", self._reset)

    def _rpc(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        status, body = rpc.dispatch(self.fake, request.json())
        return int(status), body

    def _fault(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("operation"), str):
            raise ValueError('give {"operation": ..., "status": ..., "code": ..., "times": N}')
        self.fake.add_fault(body["operation"], int(body.get("status", 500)), body.get("code"),
                            int(body.get("times", 1)), body.get("message"), after=bool(body.get("after", False)))
        return 200, {"pending_faults": self.fake.snapshot()["pending_faults"]}

    def _meter_events(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        snap = self.fake.snapshot()
        return 200, {"data": snap["meter_events"], "duplicates": snap["meter_event_duplicates"],
                     "count": snap["meter_event_count"], "duplicate_count": snap["duplicate_count"]}

    def _calls(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        return 200, {"data": self.fake.calls}

    def _state(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        snap = self.fake.snapshot()
        snap.pop("calls")
        return 200, snap

    def _reset(self, request: LocalRequest, params: dict[str, str]) -> tuple[int, Any]:
        self.fake.reset()
        return 200, {"reset": True}
