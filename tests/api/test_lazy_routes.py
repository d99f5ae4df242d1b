"""Route groups load on first use (billing.api.lazy), and nothing is lost by it.

- A cold start imports no route group, nor the Stripe SDK; a request loads
  its own group only; a path no group claims is still the contract's 404;
  the OpenAPI document loads every group and covers every route (fresh
  interpreters, the API function's template environment).
- Every route of a group lives under the prefixes the registry gives it,
  and every route the template sends to the API function is claimed by a
  group or served without one: no request can miss its route.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from billing.api.app import ROUTE_GROUPS, app
from billing.api.lazy import LazyResolver, RouteGroup, group
from devstack.template import Stack

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "common"
# Served by the resolver itself, not by a group.
WITHOUT_GROUP = {("GET", "/v1/health"), ("GET", "/v1/openapi.json")}
GROUP_MODULES = sorted(f"billing.api.routes.{g.module}" for g in ROUTE_GROUPS)

_PRELUDE = """
import json, sys
sys.path[:0] = [{code!r}, {layer!r}]
from types import SimpleNamespace
context = SimpleNamespace(function_name="ApiFunction", memory_limit_in_mb=512, aws_request_id="req-1",
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ApiFunction")
import app

def state():
    # app.app: the resolver the handler module imported from billing.api.app.
    return {{"loaded": sorted(app.app.loaded()),
             "modules": sorted(m for m in sys.modules if m.startswith("billing.api.routes.")
                               and m != "billing.api.routes.health"),
             "stripe": "stripe" in sys.modules}}

def call(event):
    response = app.handler(event, context)
    return {{"status": response["statusCode"], "body": json.loads(response["body"])}}
"""


def _api(script: str) -> dict[str, Any]:
    """`script` after a cold start of the API function, in a fresh interpreter."""
    spec = next(f for f in Stack(ROOT / "template.yaml").functions({}) if f.logical_id == "ApiFunction")
    env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction", "POWERTOOLS_METRICS_DISABLED": "true", **spec.environment}
    prelude = _PRELUDE.format(code=str(spec.code_dir), layer=str(LAYER))
    out = subprocess.run([sys.executable, "-c", prelude + script], env=env,  # noqa: S603 - this interpreter
                         capture_output=True, text=True, timeout=120, check=False, cwd=spec.code_dir)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _event(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    event.update(changes)
    return event


def test_a_cold_start_imports_no_route_group_and_no_stripe_sdk() -> None:
    assert _api("print(json.dumps(state()))") == {"loaded": [], "modules": [], "stripe": False}


def test_a_request_loads_its_own_group_only() -> None:
    refused = _event("usage/put_usage.json", body="{}")
    unknown = _event("api/health.json", path="/v1/no-such-thing", resource="/{proxy+}")
    result = _api(f"""
usage = call(json.loads({json.dumps(refused)!r}))
after_usage = state()
missing = call(json.loads({json.dumps(unknown)!r}))
print(json.dumps({{"usage": usage["status"], "after_usage": after_usage, "missing": missing,
                   "after_missing": state()}}))
""")
    assert result["usage"] == 422  # validated by the usage group's model, before any AWS call
    assert result["after_usage"] == {"loaded": ["usage"], "modules": ["billing.api.routes.usage"], "stripe": False}
    assert result["missing"]["status"] == 404
    assert result["missing"]["body"]["error"]["type"] == "not_found"
    assert result["after_missing"] == result["after_usage"]


def test_the_openapi_document_loads_every_group_and_covers_every_route() -> None:
    document = _event("api/health.json", path="/v1/openapi.json", resource="/v1/openapi.json")
    result = _api(f"""
response = call(json.loads({json.dumps(document)!r}))
print(json.dumps({{"status": response["status"], "paths": sorted(response["body"]["paths"]), "after": state()}}))
""")
    assert result["status"] == 200
    assert result["after"]["loaded"] == sorted(g.module for g in ROUTE_GROUPS)
    assert result["after"]["modules"] == GROUP_MODULES
    served = {(route.method, route.path) for route in _template_routes()}
    # The document's paths, in OpenAPI's {param} spelling as the template writes them.
    assert {path for _, path in served} <= set(result["paths"])


def _template_routes() -> list[Any]:
    spec = next(f for f in Stack(ROOT / "template.yaml").functions({}) if f.logical_id == "ApiFunction")
    return spec.routes


def _sample(path: str) -> str:
    """A concrete path for a template path: each {param} as a plausible value."""
    return "/".join("x1" if part.startswith("{") else part for part in path.split("/"))


def test_every_route_the_template_sends_here_is_claimed_by_a_group_or_served_without_one() -> None:
    unclaimed = [f"{route.method} {route.path}" for route in _template_routes()
                 if (route.method, route.path) not in WITHOUT_GROUP
                 and not any(g.claims(_sample(route.path)) for g in ROUTE_GROUPS)]
    assert unclaimed == []


@pytest.mark.parametrize("route_group", ROUTE_GROUPS, ids=lambda g: g.module)
def test_every_route_of_a_group_lives_under_its_prefixes(route_group: RouteGroup) -> None:
    resolver = LazyResolver(groups=[route_group])
    resolver.load()
    found = [route.path for route in [*resolver._static_routes, *resolver._dynamic_routes]]
    assert found, f"{route_group.module} has no routes"
    outside = [path for path in found if not route_group.claims(_sample(path.replace("<", "{").replace(">", "}")))]
    assert outside == [], f"{route_group.module}: add these routes' prefixes to its group in billing.api.app"


def test_the_prefix_check_is_by_whole_segments() -> None:
    usage = group("usage", "/v1/usage")
    assert usage.claims("/v1/usage") and usage.claims("/v1/usage/") and usage.claims("/v1/usage/x/retry")
    assert not usage.claims("/v1/usages") and not usage.claims("/v1") and not usage.claims("/v2/usage")


def test_the_resolver_this_process_uses_loads_each_group_once() -> None:
    app.load()
    before = len([*app._static_routes, *app._dynamic_routes])
    app.load()
    app.load("/v1/customers/x1")
    assert len([*app._static_routes, *app._dynamic_routes]) == before
    assert app.loaded() == {g.module for g in ROUTE_GROUPS}
