"""template.yaml against the design contract (DESIGN.md sections 1, 2 and 4).

Each rule is a small checker that takes a template (as devstack.cfn.load_template
returns it: short-form tags as their long `Fn::` forms, nothing resolved) and
returns the list of violations, one readable line each. Every checker runs on
the real template, where it must find nothing, and on a bad synthetic fragment,
where it must find exactly what is wrong: a check that cannot fail checks
nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import load_template

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]

Template = dict[str, Any]

# The design's roles, by logical id.
METER_EVENTS_TABLE = "MeterEventsTable"
WEBHOOK_EVENTS_TABLE = "WebhookEventsTable"
EVENTS_TABLE = "EventsTable"
SYNC_TABLE = "SyncTable"
OPEN_ROUTES = frozenset({("GET", "/v1/health"), ("POST", "/v1/webhooks/stripe")})

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


# ------------------------------------------------------------------- helpers


def resources(tpl: Template, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for lid, res in (tpl.get("Resources") or {}).items():
        if isinstance(res, dict) and res.get("Type") in types:
            yield lid, res


def props(res: dict[str, Any]) -> dict[str, Any]:
    value = res.get("Properties") or {}
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def is_true(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _sub_names(text: str) -> set[str]:
    """The names a `Fn::Sub` string refers to: `${X}` and `${X.Attr}` give X."""
    return {m.group(1).split(".", 1)[0] for m in re.finditer(r"\$\{([^}!][^}]*)\}", text)}


def refers_to(value: Any, lid: str) -> bool:
    """Whether a (possibly nested) value refers to logical id `lid`."""
    if isinstance(value, list):
        return any(refers_to(v, lid) for v in value)
    if not isinstance(value, dict):
        return False
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return arg == lid
        if key == "Fn::GetAtt":
            target = arg.split(".", 1)[0] if isinstance(arg, str) else (arg[0] if arg else None)
            return target == lid
        if key == "Fn::Sub":
            text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
            return lid in _sub_names(str(text)) or refers_to(variables, lid)
    return any(refers_to(v, lid) for v in value.values())


def scalars(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every scalar in a value, with a readable path to it."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from scalars(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from scalars(v, f"{path}[{i}]")
    else:
        yield path, value


# ------------------------------------------------------------------ tables


def table_violations(tpl: Template) -> list[str]:
    """Every table: on-demand, point-in-time recovery, server-side encryption."""
    out = [f"{lid}: AWS::Serverless::SimpleTable cannot enable point-in-time recovery; use AWS::DynamoDB::Table"
           for lid, _ in resources(tpl, "AWS::Serverless::SimpleTable")]
    for lid, res in resources(tpl, "AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
        p = props(res)
        if p.get("BillingMode") != "PAY_PER_REQUEST":
            out.append(f"{lid}: BillingMode is {p.get('BillingMode')!r}, not PAY_PER_REQUEST")
        if not is_true((p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")):
            out.append(f"{lid}: point-in-time recovery is not enabled")
        if not is_true((p.get("SSESpecification") or {}).get("SSEEnabled")):
            out.append(f"{lid}: SSESpecification.SSEEnabled is not true")
    return out


def stream_violations(tpl: Template) -> list[str]:
    """The outbox and the webhook inbox stream both images; processed webhook rows expire."""
    out = []
    tables = dict(resources(tpl, "AWS::DynamoDB::Table"))
    for lid in (METER_EVENTS_TABLE, WEBHOOK_EVENTS_TABLE):
        if lid not in tables:
            out.append(f"{lid}: missing")
            continue
        view = (props(tables[lid]).get("StreamSpecification") or {}).get("StreamViewType")
        if view != "NEW_AND_OLD_IMAGES":
            out.append(f"{lid}: StreamViewType is {view!r}, not NEW_AND_OLD_IMAGES")
    if WEBHOOK_EVENTS_TABLE in tables:
        ttl = props(tables[WEBHOOK_EVENTS_TABLE]).get("TimeToLiveSpecification") or {}
        if not (is_true(ttl.get("Enabled")) and ttl.get("AttributeName")):
            out.append(f"{WEBHOOK_EVENTS_TABLE}: no TTL (TimeToLiveSpecification with Enabled and AttributeName)")
    return out


def test_every_table_is_on_demand_with_pitr_and_encryption(template: Template) -> None:
    assert len(dict(resources(template, "AWS::DynamoDB::Table"))) >= 3
    assert table_violations(template) == []


def test_table_checker_rejects_a_bad_table() -> None:
    bad = {"Resources": {
        "T": {"Type": "AWS::DynamoDB::Table", "Properties": {
            "BillingMode": "PROVISIONED",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": False}}},
        "S": {"Type": "AWS::Serverless::SimpleTable"},
    }}
    assert table_violations(bad) == [
        "S: AWS::Serverless::SimpleTable cannot enable point-in-time recovery; use AWS::DynamoDB::Table",
        "T: BillingMode is 'PROVISIONED', not PAY_PER_REQUEST",
        "T: point-in-time recovery is not enabled",
        "T: SSESpecification.SSEEnabled is not true",
    ]


def test_outbox_and_webhook_tables_stream_and_webhook_rows_expire(template: Template) -> None:
    assert stream_violations(template) == []


def test_stream_checker_rejects_missing_streams_and_ttl() -> None:
    bad = {"Resources": {
        METER_EVENTS_TABLE: {"Type": "AWS::DynamoDB::Table", "Properties": {
            "StreamSpecification": {"StreamViewType": "KEYS_ONLY"}}},
        WEBHOOK_EVENTS_TABLE: {"Type": "AWS::DynamoDB::Table", "Properties": {
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": False}}},
    }}
    assert stream_violations(bad) == [
        f"{METER_EVENTS_TABLE}: StreamViewType is 'KEYS_ONLY', not NEW_AND_OLD_IMAGES",
        f"{WEBHOOK_EVENTS_TABLE}: StreamViewType is None, not NEW_AND_OLD_IMAGES",
        f"{WEBHOOK_EVENTS_TABLE}: no TTL (TimeToLiveSpecification with Enabled and AttributeName)",
    ]
    assert stream_violations({"Resources": {}}) == [
        f"{METER_EVENTS_TABLE}: missing",
        f"{WEBHOOK_EVENTS_TABLE}: missing",
    ]


# --------------------------------------------------- stream event mappings


@dataclass(frozen=True)
class StreamMapping:
    name: str
    properties: dict[str, Any]


def stream_mappings(tpl: Template) -> list[StreamMapping]:
    """Every DynamoDB stream mapping: SAM `DynamoDB` events and raw event source mappings."""
    tables = [lid for lid, _ in resources(tpl, "AWS::DynamoDB::Table")]
    out = []
    for lid, res in resources(tpl, "AWS::Serverless::Function"):
        for ev_name, ev in (props(res).get("Events") or {}).items():
            if isinstance(ev, dict) and ev.get("Type") == "DynamoDB":
                out.append(StreamMapping(f"{lid}.{ev_name}", ev.get("Properties") or {}))
    for lid, res in resources(tpl, "AWS::Lambda::EventSourceMapping"):
        p = props(res)
        arn = p.get("EventSourceArn")
        if any(refers_to(arn, t) for t in tables) or ":dynamodb:" in str(arn):
            out.append(StreamMapping(lid, p))
    return out


def mapping_violations(mappings: list[StreamMapping]) -> list[str]:
    """Partial batch failure, and somewhere for a poison record to go."""
    out = []
    for m in mappings:
        if as_list(m.properties.get("FunctionResponseTypes")) != ["ReportBatchItemFailures"]:
            out.append(f"{m.name}: FunctionResponseTypes is not [ReportBatchItemFailures]")
        if not ((m.properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"):
            out.append(f"{m.name}: no DestinationConfig.OnFailure.Destination")
    return out


def test_every_stream_mapping_reports_item_failures_and_has_an_on_failure_destination(template: Template) -> None:
    mappings = stream_mappings(template)
    # Each mapping found is checked; the count is printed by -ra on failure.
    assert mapping_violations(mappings) == [], [m.name for m in mappings]
    for m in mappings:
        stream = m.properties.get("Stream", m.properties.get("EventSourceArn"))
        # The outbox, the webhook inbox and (DESIGN.md section 8) the ledger, which feeds the bus,
        # and the sync table, whose backfill checkpoints drive the backfill worker.
        assert any(refers_to(stream, t)
                   for t in (METER_EVENTS_TABLE, WEBHOOK_EVENTS_TABLE, EVENTS_TABLE, SYNC_TABLE)), \
            f"{m.name}: reads the stream of a table the design gives none ({stream})"


SYNTHETIC_MAPPINGS: Template = {"Resources": {
    "Events": {"Type": "AWS::DynamoDB::Table"},
    "Good": {"Type": "AWS::Serverless::Function", "Properties": {"Events": {
        "S": {"Type": "DynamoDB", "Properties": {
            "Stream": {"Fn::GetAtt": ["Events", "StreamArn"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Dlq", "Arn"]}}}}},
        "Web": {"Type": "Api", "Properties": {"Path": "/x", "Method": "GET"}}}}},
    "Bad": {"Type": "AWS::Serverless::Function", "Properties": {"Events": {
        "S": {"Type": "DynamoDB", "Properties": {"Stream": {"Fn::GetAtt": ["Events", "StreamArn"]}}}}}},
    "Raw": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
        "EventSourceArn": {"Fn::GetAtt": ["Events", "StreamArn"]},
        "FunctionResponseTypes": ["ReportBatchItemFailures"]}},
    "Queue": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
        "EventSourceArn": {"Fn::GetAtt": ["Dlq", "Arn"]}}},
}}


def test_mapping_collector_finds_sam_events_and_raw_mappings_of_table_streams_only() -> None:
    assert [m.name for m in stream_mappings(SYNTHETIC_MAPPINGS)] == ["Good.S", "Bad.S", "Raw"]


def test_mapping_checker_rejects_a_mapping_without_partial_failure_or_destination() -> None:
    assert mapping_violations(stream_mappings(SYNTHETIC_MAPPINGS)) == [
        "Bad.S: FunctionResponseTypes is not [ReportBatchItemFailures]",
        "Bad.S: no DestinationConfig.OnFailure.Destination",
        "Raw: no DestinationConfig.OnFailure.Destination",
    ]


# --------------------------------------------------------------------- IAM


@dataclass(frozen=True)
class Grant:
    """One policy item of one principal: a statement, a SAM policy template,
    a connector, or a managed policy name/ARN."""

    where: str
    kind: str  # statement | template | connector | managed
    body: Any


# SAM policy templates that grant item writes on their TableName.
WRITE_POLICY_TEMPLATES = frozenset({"DynamoDBCrudPolicy", "DynamoDBWritePolicy", "DynamoDBRestoreFromBackupPolicy"})
# Item-level mutations the append-only ledger must never allow.
LEDGER_FORBIDDEN_ACTIONS = ("dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                            "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete")
BROAD_MANAGED_POLICY = re.compile(r"(^|[/:])(AdministratorAccess|PowerUserAccess|[A-Za-z0-9]*FullAccess)$")


def _policy_items(where: str, policies: Any) -> Iterator[Grant]:
    """SAM `Policies` (one item or a list) or an IAM policy document."""
    if isinstance(policies, list):
        for i, item in enumerate(policies):
            yield from _policy_item(f"{where}[{i}]", item)
    elif policies is not None:
        yield from _policy_item(where, policies)


def _policy_item(at: str, item: Any) -> Iterator[Grant]:
    if item == {"Ref": "AWS::NoValue"}:
        return  # the empty branch of a conditional policy: grants nothing
    if isinstance(item, dict) and set(item) == {"Fn::If"} and isinstance(item["Fn::If"], list):
        for branch in item["Fn::If"][1:]:
            yield from _policy_items(at, branch)
    elif isinstance(item, dict) and "Statement" in item:
        for j, st in enumerate(as_list(item["Statement"])):
            yield Grant(f"{at}.Statement[{j}]", "statement", st)
    elif isinstance(item, dict) and len(item) == 1:
        yield Grant(at, "template", item)
    else:
        yield Grant(at, "managed", item)


def grants(tpl: Template) -> list[Grant]:
    """Everything in the template that gives a function (or any role) permissions."""
    out: list[Grant] = []
    for lid, res in resources(tpl, "AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
        p = props(res)
        out.extend(_policy_items(f"{lid}.Policies", p.get("Policies")))
        for name, conn in (p.get("Connectors") or {}).items():
            out.append(Grant(f"{lid}.Connectors.{name}", "connector", conn.get("Properties") or {}))
    for lid, res in resources(tpl, "AWS::Serverless::Connector"):
        out.append(Grant(lid, "connector", props(res)))
    for lid, res in resources(tpl, "AWS::IAM::Role"):
        p = props(res)
        for i, pol in enumerate(as_list(p.get("Policies"))):
            doc = pol.get("PolicyDocument") if isinstance(pol, dict) else None
            out.extend(_policy_items(f"{lid}.Policies[{i}]", doc))
        out.extend(Grant(f"{lid}.ManagedPolicyArns", "managed", arn) for arn in as_list(p.get("ManagedPolicyArns")))
    for lid, res in resources(tpl, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
        out.extend(_policy_items(lid, props(res).get("PolicyDocument")))
    return out


def _allows(pattern: Any, action: str) -> bool:
    return isinstance(pattern, str) and fnmatch.fnmatchcase(action.lower(), pattern.lower())


def ledger_write_violations(tpl: Template, table: str = EVENTS_TABLE) -> list[str]:
    """No grant lets anything update or delete rows of the append-only ledger."""
    out = []
    for g in grants(tpl):
        if g.kind == "template":
            ((name, args),) = g.body.items()
            if name in WRITE_POLICY_TEMPLATES and refers_to(args, table):
                out.append(f"{g.where}: {name} on {table}")
        elif g.kind == "connector":
            perms = {str(p) for p in as_list(g.body.get("Permissions"))}
            dest = g.body.get("Destination") or {}
            names_table = (isinstance(dest, dict) and dest.get("Id") == table) or refers_to(dest, table)
            if "Write" in perms and names_table:
                out.append(f"{g.where}: Write connector to {table}")
        elif g.kind == "statement" and isinstance(g.body, dict) and g.body.get("Effect") == "Allow":
            st = g.body
            on_table = "NotResource" in st or any(
                r == "*" or refers_to(r, table) for r in as_list(st.get("Resource")))
            if not on_table:
                continue
            if "NotAction" in st:
                out.append(f"{g.where}: Allow with NotAction on {table}")
                continue
            hits = [a for a in LEDGER_FORBIDDEN_ACTIONS if any(_allows(p, a) for p in as_list(st.get("Action")))]
            if hits:
                out.append(f"{g.where}: allows {', '.join(hits)} on {table}")
        elif g.kind == "managed" and isinstance(g.body, str) and BROAD_MANAGED_POLICY.search(g.body):
            out.append(f"{g.where}: managed policy {g.body} covers {table}")
    return out


def wildcard_action_violations(tpl: Template) -> list[str]:
    """No statement allows "*" or "service:*"; no NotAction allows; no admin-style managed policy."""
    out = []
    for g in grants(tpl):
        if g.kind == "statement" and isinstance(g.body, dict) and g.body.get("Effect") == "Allow":
            if "NotAction" in g.body:
                out.append(f"{g.where}: Allow with NotAction")
            for action in as_list(g.body.get("Action")):
                if not isinstance(action, str) or action == "*" or action.endswith(":*"):
                    out.append(f"{g.where}: wildcard action {action!r}")
        elif g.kind == "managed" and isinstance(g.body, str) and BROAD_MANAGED_POLICY.search(g.body):
            out.append(f"{g.where}: broad managed policy {g.body}")
    return out


def test_no_grant_lets_a_function_update_or_delete_the_ledger(template: Template) -> None:
    assert EVENTS_TABLE in dict(resources(template, "AWS::DynamoDB::Table"))
    assert ledger_write_violations(template) == []


def test_no_policy_statement_has_a_wildcard_action(template: Template) -> None:
    assert wildcard_action_violations(template) == []


BAD_POLICIES: Template = {"Resources": {
    EVENTS_TABLE: {"Type": "AWS::DynamoDB::Table"},
    "Other": {"Type": "AWS::DynamoDB::Table"},
    "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Policies": [
        "AWSXRayDaemonWriteAccess",
        {"DynamoDBReadPolicy": {"TableName": {"Ref": EVENTS_TABLE}}},
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": EVENTS_TABLE}}},
        {"DynamoDBWritePolicy": {"TableName": {"Ref": "Other"}}},
        {"Statement": [
            {"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:Query"],
             "Resource": [{"Fn::GetAtt": [EVENTS_TABLE, "Arn"]}]},
            {"Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": {"Fn::GetAtt": ["Other", "Arn"]}},
            {"Effect": "Allow", "Action": ["dynamodb:Update*", "dynamodb:DeleteItem"],
             "Resource": {"Fn::Sub": "${EventsTable.Arn}"}},
            {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
        ]},
    ]}},
    "Role": {"Type": "AWS::IAM::Role", "Properties": {
        "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess"],
        "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": {"Fn::GetAtt": ["Other", "Arn"]}}]}}]}},
    "Conn": {"Type": "AWS::Serverless::Connector", "Properties": {
        "Source": {"Id": "Fn"}, "Destination": {"Id": EVENTS_TABLE}, "Permissions": ["Read", "Write"]}},
}}


def test_ledger_checker_rejects_every_way_of_granting_writes_on_the_ledger() -> None:
    assert ledger_write_violations(BAD_POLICIES) == [
        f"Fn.Policies[2]: DynamoDBCrudPolicy on {EVENTS_TABLE}",
        f"Fn.Policies[4].Statement[2]: allows dynamodb:UpdateItem, dynamodb:DeleteItem on {EVENTS_TABLE}",
        f"Fn.Policies[4].Statement[3]: allows {', '.join(LEDGER_FORBIDDEN_ACTIONS)} on {EVENTS_TABLE}",
        f"Conn: Write connector to {EVENTS_TABLE}",
        "Role.ManagedPolicyArns: managed policy arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess"
        f" covers {EVENTS_TABLE}",
    ]


def test_ledger_checker_sees_a_role_whose_statement_names_the_ledger_by_ref() -> None:
    tpl = {"Resources": {"R": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument": {"Statement": {
        "Effect": "Allow", "Action": "dynamodb:BatchWriteItem",
        "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": [EVENTS_TABLE, "Arn"]}, "/*"]]}}}}}}}
    assert ledger_write_violations(tpl) == [f"R.Statement[0]: allows dynamodb:BatchWriteItem on {EVENTS_TABLE}"]


def test_wildcard_checker_rejects_star_and_service_star() -> None:
    assert wildcard_action_violations(BAD_POLICIES) == [
        "Fn.Policies[4].Statement[3]: wildcard action 'dynamodb:*'",
        "Role.Policies[0].Statement[0]: wildcard action '*'",
        "Role.ManagedPolicyArns: broad managed policy arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess",
    ]


# --------------------------------------------------------------------- API


@dataclass(frozen=True)
class Route:
    function: str
    method: str
    path: str
    auth: str


def _default_authorizer(tpl: Template, event_props: dict[str, Any], api_type: str) -> str:
    globals_auth = ((tpl.get("Globals") or {}).get("Api" if api_type == "Api" else "HttpApi") or {}).get("Auth") or {}
    api_ref = event_props.get("RestApiId" if api_type == "Api" else "ApiId")
    api_lid = api_ref.get("Ref") if isinstance(api_ref, dict) else None
    api = (tpl.get("Resources") or {}).get(api_lid) if api_lid else None
    auth = {**globals_auth, **((props(api).get("Auth") or {}) if isinstance(api, dict) else {})}
    return str(auth.get("DefaultAuthorizer", "NONE"))


def api_routes(tpl: Template) -> list[Route]:
    out = []
    for lid, res in resources(tpl, "AWS::Serverless::Function"):
        for ev in (props(res).get("Events") or {}).values():
            if not isinstance(ev, dict) or ev.get("Type") not in ("Api", "HttpApi"):
                continue
            ep = ev.get("Properties") or {}
            auth = (ep.get("Auth") or {}).get("Authorizer") or _default_authorizer(tpl, ep, ev["Type"])
            out.append(Route(lid, str(ep.get("Method", "ANY")).upper(), str(ep.get("Path", "/$default")), str(auth)))
    return out


def auth_violations(tpl: Template) -> list[str]:
    """AWS_IAM everywhere but the two open routes, which are NONE."""
    out = []
    for r in api_routes(tpl):
        want = "NONE" if (r.method, r.path) in OPEN_ROUTES else "AWS_IAM"
        if r.auth != want:
            out.append(f"{r.function}: {r.method} {r.path} has auth {r.auth}, not {want}")
    return out


def test_every_route_signs_with_iam_except_health_and_the_webhook(template: Template) -> None:
    routes = api_routes(template)
    assert ("GET", "/v1/health") in {(r.method, r.path) for r in routes}
    assert auth_violations(template) == []


def test_the_api_defaults_to_iam(template: Template) -> None:
    apis = dict(resources(template, "AWS::Serverless::Api"))
    assert apis
    for lid, api in apis.items():
        assert (props(api).get("Auth") or {}).get("DefaultAuthorizer") == "AWS_IAM", lid


def test_auth_checker_rejects_open_private_routes_and_signed_open_ones() -> None:
    def event(path: str, method: str, authorizer: str | None = None) -> dict[str, Any]:
        p: dict[str, Any] = {"RestApiId": {"Ref": "Api"}, "Path": path, "Method": method}
        if authorizer:
            p["Auth"] = {"Authorizer": authorizer}
        return {"Type": "Api", "Properties": p}

    tpl = {"Resources": {
        "Api": {"Type": "AWS::Serverless::Api", "Properties": {"Auth": {"DefaultAuthorizer": "AWS_IAM"}}},
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Events": {
            "Health": event("/v1/health", "get", "NONE"),
            "Hook": event("/v1/webhooks/stripe", "post"),
            "Customers": event("/v1/customers", "get"),
            "Usage": event("/v1/usage/{identifier}", "put", "NONE"),
            "Implicit": {"Type": "Api", "Properties": {"Path": "/v1/owners", "Method": "get"}},
        }}},
    }}
    assert auth_violations(tpl) == [
        "Fn: POST /v1/webhooks/stripe has auth AWS_IAM, not NONE",
        "Fn: PUT /v1/usage/{identifier} has auth NONE, not AWS_IAM",
        "Fn: GET /v1/owners has auth NONE, not AWS_IAM",
    ]


# -------------------------------------------------------------------- logs


def log_group_function(name: Any) -> str | None:
    """The function a LogGroupName of the form /aws/lambda/<function> names."""
    if isinstance(name, dict) and "Fn::Sub" in name:
        arg = name["Fn::Sub"]
        text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})
        m = re.fullmatch(r"/aws/lambda/\$\{([A-Za-z0-9]+)\}", str(text))
        if m is None:
            return None
        if m.group(1) not in variables:
            return m.group(1)
        ref = variables[m.group(1)]
        return ref.get("Ref") if isinstance(ref, dict) else None
    if isinstance(name, dict) and "Fn::Join" in name:
        sep, parts = name["Fn::Join"]
        if sep == "" and len(parts) == 2 and parts[0] == "/aws/lambda/" and isinstance(parts[1], dict):
            ref = parts[1].get("Ref")
            return ref if isinstance(ref, str) else None
    return None


def log_group_violations(tpl: Template) -> list[str]:
    """Every function has /aws/lambda/<its name> as a LogGroup with a retention."""
    groups: dict[str, list[str]] = {}
    out = []
    for lid, res in resources(tpl, "AWS::Logs::LogGroup"):
        p = props(res)
        fn = log_group_function(p.get("LogGroupName"))
        if fn is None:
            continue
        groups.setdefault(fn, []).append(lid)
        if p.get("RetentionInDays") in (None, ""):
            out.append(f"{lid}: no RetentionInDays")
    for lid, _ in resources(tpl, *FUNCTION_TYPES):
        if lid not in groups:
            out.append(f"{lid}: no AWS::Logs::LogGroup named /aws/lambda/${{{lid}}}")
    return out


def test_every_function_has_a_log_group_with_retention(template: Template) -> None:
    assert list(resources(template, *FUNCTION_TYPES))
    assert log_group_violations(template) == []


def test_log_group_checker_rejects_missing_groups_and_retention() -> None:
    tpl = {"Resources": {
        "A": {"Type": "AWS::Serverless::Function"},
        "B": {"Type": "AWS::Serverless::Function"},
        "C": {"Type": "AWS::Lambda::Function"},
        "D": {"Type": "AWS::Serverless::Function"},
        "ALogs": {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": {"Fn::Sub": "/aws/lambda/${A}"}, "RetentionInDays": {"Ref": "Days"}}},
        "BLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": {"Fn::Sub": "/aws/lambda/${B}"}}},
        "DLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {
            "LogGroupName": {"Fn::Join": ["", ["/aws/lambda/", {"Ref": "D"}]]}, "RetentionInDays": 7}},
        "Other": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/aws/lambda/C"}},
    }}
    assert log_group_violations(tpl) == [
        "BLogs: no RetentionInDays",
        "C: no AWS::Logs::LogGroup named /aws/lambda/${C}",
    ]


# ----------------------------------------------------------------- globals

RUNTIME = {"Runtime": "python3.13", "Architectures": ["arm64"], "Tracing": "Active"}


def runtime_violations(tpl: Template) -> list[str]:
    """Globals set python3.13 on arm64 with active tracing, and no function differs."""
    out = []
    g = (tpl.get("Globals") or {}).get("Function") or {}
    for key, want in RUNTIME.items():
        if g.get(key) != want:
            out.append(f"Globals.Function.{key} is {g.get(key)!r}, not {want!r}")
    for lid, res in resources(tpl, "AWS::Serverless::Function"):
        p = props(res)
        for key, want in RUNTIME.items():
            if key in p and p[key] != want:
                out.append(f"{lid}.{key} is {p[key]!r}, not {want!r}")
    return out


def test_functions_run_python313_on_arm64_with_tracing(template: Template) -> None:
    assert runtime_violations(template) == []


def test_runtime_checker_rejects_other_runtimes_and_overrides() -> None:
    tpl = {"Globals": {"Function": {"Runtime": "python3.12", "Architectures": ["arm64"]}}, "Resources": {
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Architectures": ["x86_64"], "Tracing": "Active"}}}}
    assert runtime_violations(tpl) == [
        "Globals.Function.Runtime is 'python3.12', not 'python3.13'",
        "Globals.Function.Tracing is None, not 'Active'",
        "Fn.Architectures is ['x86_64'], not ['arm64']",
    ]


# ----------------------------------------------------------------- outputs


def output_violations(tpl: Template) -> list[str]:
    outputs = tpl.get("Outputs") or {}
    out = [f"Outputs.{name} is missing" for name in ("ApiUrl", "WebhookUrl") if name not in outputs]
    hook = (outputs.get("WebhookUrl") or {}).get("Value")
    if hook is not None and not any(
            isinstance(v, str) and v.endswith("/v1/webhooks/stripe") for _, v in scalars(hook)):
        out.append("Outputs.WebhookUrl does not end with /v1/webhooks/stripe")
    return out


def test_outputs_give_the_api_and_webhook_urls(template: Template) -> None:
    assert output_violations(template) == []


def test_output_checker_rejects_missing_and_wrong_urls() -> None:
    assert output_violations({"Outputs": {}}) == ["Outputs.ApiUrl is missing", "Outputs.WebhookUrl is missing"]
    assert output_violations({"Outputs": {"ApiUrl": {"Value": "x"}, "WebhookUrl": {"Value": {"Fn::Sub": "x/v1"}}}}) \
        == ["Outputs.WebhookUrl does not end with /v1/webhooks/stripe"]


# ----------------------------------------------------------------- secrets

SECRET_VALUE = re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{8,}|\bwhsec_[A-Za-z0-9]{8,}")
SSM_NAME = re.compile(r"^/[A-Za-z0-9_./-]+$")
SECRET_ENV = re.compile(r"^STRIPE_(API_KEY|SECRET_KEY|WEBHOOK_SECRETS?)$")
# Stripe parameters that name no secret, so need not default to an SSM name:
# the partner event source's name is public (every event carries it as its
# `source`). Their values are still scanned for secret-looking text.
NOT_SECRET_PARAMETERS = frozenset({"StripeEventSourceName"})


def secret_violations(tpl: Template) -> list[str]:
    """Stripe secrets only as SSM parameter names: no secret-looking value anywhere,
    Stripe parameters default to an SSM name and are never resolved to values."""
    out = [f"{path}: looks like a Stripe secret" for path, v in scalars(tpl)
           if isinstance(v, str) and SECRET_VALUE.search(v)]
    for name, spec in (tpl.get("Parameters") or {}).items():
        if "stripe" not in name.lower() or name in NOT_SECRET_PARAMETERS or not isinstance(spec, dict):
            continue
        if str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
            out.append(f"Parameters.{name}: resolves the SSM value into the stack; take the name (String)")
        default = spec.get("Default")
        if default is not None and not SSM_NAME.match(str(default)):
            out.append(f"Parameters.{name}: default {default!r} is not an SSM parameter name")
    env_sources = [("Globals.Function", (tpl.get("Globals") or {}).get("Function") or {})]
    env_sources += [(lid, props(res)) for lid, res in resources(tpl, *FUNCTION_TYPES)]
    for where, p in env_sources:
        variables = (p.get("Environment") or {}).get("Variables") or {}
        for key, value in variables.items():
            if SECRET_ENV.match(key):
                out.append(f"{where}: environment variable {key} carries a secret; pass its SSM name (*_PARAM)")
            if any(isinstance(v, str) and re.search(r"\{\{resolve:(ssm-secure|secretsmanager):", v)
                   for _, v in scalars(value)):
                out.append(f"{where}: environment variable {key} resolves a secret into the function configuration")
    return out


def test_stripe_secrets_appear_only_as_ssm_parameter_names(template: Template) -> None:
    stripe_params = [n for n in (template.get("Parameters") or {}) if "stripe" in n.lower()]
    assert stripe_params
    assert secret_violations(template) == []


def test_secret_checker_rejects_values_and_resolved_secrets() -> None:
    tpl = {
        "Parameters": {
            "StripeApiKey": {"Type": "String", "Default": "sk_test_51Habcdefghijkl"},
            "StripeWebhookSecret": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/ok/name"},
            "StripeKeyName": {"Type": "String", "Default": "/billing/stripe/api-key"},
        },
        "Globals": {"Function": {"Environment": {"Variables": {"STRIPE_API_KEY": {"Ref": "StripeApiKey"}}}}},
        "Resources": {"Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Environment": {"Variables": {
            "HOOK": "{{resolve:ssm-secure:/billing/stripe/webhook-secrets}}",
            "NOTE": "whsec_abcdefghijklmnop",
        }}}}},
    }
    assert secret_violations(tpl) == [
        "Parameters.StripeApiKey.Default: looks like a Stripe secret",
        "Resources.Fn.Properties.Environment.Variables.NOTE: looks like a Stripe secret",
        "Parameters.StripeApiKey: default 'sk_test_51Habcdefghijkl' is not an SSM parameter name",
        "Parameters.StripeWebhookSecret: resolves the SSM value into the stack; take the name (String)",
        "Globals.Function: environment variable STRIPE_API_KEY carries a secret; pass its SSM name (*_PARAM)",
        "Fn: environment variable HOOK resolves a secret into the function configuration",
    ]
