"""A resolver whose route groups are imported on first use.

A cold start of the API function imports the resolver, the error mapping and
the routes that need no group (health, the OpenAPI document). A route group
(a module of billing.api.routes, with its request models and the domain code
it calls) is imported by the first request whose path is under one of its
prefixes, so a cold start pays for its own request's group only (measured:
bench/imports.py, README's Performance section). The OpenAPI document loads
every group first, so it still covers every route; a path no group claims
reaches Powertools' matching unchanged (the contract's 404).

Each group must declare every prefix its routes live under (tests/api/
test_lazy_routes.py holds each group's routes to its prefixes); groups'
dynamic routes must not overlap, since groups are included in the order
requests first reach them.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from billing.api.bodies import StrictResolver

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.router import APIGatewayRouter
    from aws_lambda_powertools.utilities.typing import LambdaContext

ROUTES_PACKAGE = "billing.api.routes"


@dataclass(frozen=True)
class RouteGroup:
    """A module of billing.api.routes (its `router`) and the path prefixes it serves."""

    module: str
    prefixes: tuple[str, ...]

    def claims(self, path: str) -> bool:
        """Whether `path` is one of the prefixes or under one (whole segments; a
        `*` segment of a prefix matches any one segment, e.g. /v1/customers/*/sync)."""
        segments = path.split("/")
        for prefix in self.prefixes:
            wanted = prefix.split("/")
            if len(segments) >= len(wanted) and all(w in ("*", s) for w, s in zip(wanted, segments, strict=False)):
                return True
        return False

    def router(self) -> APIGatewayRouter:
        router: APIGatewayRouter = importlib.import_module(f"{ROUTES_PACKAGE}.{self.module}").router
        return router


def group(module: str, *prefixes: str) -> RouteGroup:
    """`group("customers", "/v1/customers", "/v1/owners")`: one line of the registry."""
    return RouteGroup(module, prefixes)


class LazyResolver(StrictResolver):
    """Powertools' REST resolver (reading bodies strictly, billing.api.bodies),
    including each route group when a request first needs it."""

    def __init__(self, *args: Any, groups: Sequence[RouteGroup] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.groups = tuple(groups)
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def load(self, path: str | None = None) -> None:
        """Include every group that claims `path` (every group when None), once each."""
        wanted = [g for g in self.groups if g.module not in self._loaded and (path is None or g.claims(path))]
        if not wanted:
            return
        with self._lock:
            for route_group in wanted:
                if route_group.module not in self._loaded:
                    self.include_router(route_group.router())
                    self._loaded.add(route_group.module)

    def loaded(self) -> frozenset[str]:
        return frozenset(self._loaded)

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        path = event.get("path")
        if isinstance(path, str):
            # The path as Powertools matches it (API Gateway's, still percent-encoded).
            self.load(path)
        return super().resolve(event, context)

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        self.load()
        return super().get_openapi_schema(*args, **kwargs)
