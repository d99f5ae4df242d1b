"""The MCP function in template.yaml (DESIGN.md section 11): POST /v1/mcp on
its own function, signed with IAM, and a role that can only read unless
McpWriteTools is true. Each checker runs on the real template and on a bad
fragment, where it must find what is wrong."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import load_template
from tests.template.test_template_contract import api_routes, props

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
READ_ACTIONS = frozenset({"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "kms:Decrypt"})
WRITE_CONDITION = "McpWriteToolsOn"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def _statements(policies: Any, condition: str | None = None) -> list[tuple[str | None, dict[str, Any]]]:
    """Every statement with the condition it is granted under (None: always)."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    for item in policies if isinstance(policies, list) else [policies]:
        if isinstance(item, dict) and "Fn::If" in item:
            name, when_true, _ = item["Fn::If"]
            out += _statements(when_true, name)
        elif isinstance(item, dict) and "Statement" in item:
            out += [(condition, s) for s in item["Statement"]]
    return out


def write_violations(tpl: dict[str, Any]) -> list[str]:
    """Outside McpWriteToolsOn (or the KMS key's branch), the role only reads."""
    out = []
    fn = tpl["Resources"].get("McpFunction")
    if fn is None:
        return ["McpFunction is missing"]
    for condition, statement in _statements(props(fn).get("Policies")):
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        extra = sorted(a for a in actions if a not in READ_ACTIONS)
        if extra and condition != WRITE_CONDITION:
            out.append(f"{statement.get('Sid')}: {', '.join(extra)} granted without {WRITE_CONDITION}")
    return out


def route_violations(tpl: dict[str, Any]) -> list[str]:
    routes = [r for r in api_routes(tpl) if r.path == "/v1/mcp"]
    if [(r.function, r.method, r.auth) for r in routes] != [("McpFunction", "POST", "AWS_IAM")]:
        return [f"/v1/mcp must be POST on McpFunction with AWS_IAM, not {routes}"]
    return []


def test_the_mcp_route_is_its_own_function_signed_with_iam(template: dict[str, Any]) -> None:
    assert route_violations(template) == []
    env = props(template["Resources"]["McpFunction"])["Environment"]["Variables"]
    assert env["MCP_WRITE_TOOLS"] == {"Ref": "McpWriteTools"}
    assert template["Parameters"]["McpWriteTools"]["Default"] == "false"
    assert template["Conditions"][WRITE_CONDITION] == {"Fn::Equals": [{"Ref": "McpWriteTools"}, "true"]}


def test_the_mcp_role_reads_only_unless_write_tools_are_on(template: dict[str, Any]) -> None:
    assert write_violations(template) == []
    granted = {(c, s.get("Sid")) for c, s in _statements(props(template["Resources"]["McpFunction"])["Policies"])}
    assert (WRITE_CONDITION, "McpWriteTools") in granted and (None, "BillingRead") in granted


def test_the_checkers_find_a_write_granted_always_and_an_open_route(template: dict[str, Any]) -> None:
    bad = copy.deepcopy(template)
    policies = props(bad["Resources"]["McpFunction"])["Policies"]
    policies[0]["Statement"].append({"Sid": "Oops", "Effect": "Allow", "Action": ["dynamodb:PutItem"],
                                     "Resource": "*"})
    assert write_violations(bad) == [f"Oops: dynamodb:PutItem granted without {WRITE_CONDITION}"]
    props(bad["Resources"]["McpFunction"])["Events"]["Mcp"]["Properties"]["Auth"] = {"Authorizer": "NONE"}
    assert route_violations(bad) and "AWS_IAM" in route_violations(bad)[0]
