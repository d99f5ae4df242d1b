"""The CloudFormation-aware loader and resolver that read template.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import Resolver, TemplateError, load_template
from devstack.template import Stack

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = """
Parameters:
  Stage: {Type: String, Default: live}
  Env: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
Mappings:
  Sizes: {dev: {mem: 128}, prod: {mem: 1024}}
Resources:
  T:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-t-${Stage}"
      Extra: !If [IsProd, big, !Ref AWS::NoValue]
      Mem: !FindInMap [Sizes, !Ref Env, mem]
      Arn: !GetAtt T.Arn
      Joined: !Join ["-", [a, !Ref Stage, !Select [1, [x, y, z]]]]
      Parts: !Split [",", "a,b"]
      Escaped: !Sub "${!Literal}"
      Both: !And [!Condition NotProd, !Or [!Equals [1, 1], !Equals [1, 2]]]
"""


def test_short_tags_load_as_long_forms(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE)
    doc = load_template(path)
    props = doc["Resources"]["T"]["Properties"]
    assert props["Arn"] == {"Fn::GetAtt": ["T", "Arn"]}
    assert props["TableName"] == {"Fn::Sub": "${AWS::StackName}-t-${Stage}"}


@pytest.mark.parametrize("env, extra, mem, both", [("dev", None, 128, True), ("prod", "big", 1024, False)])
def test_resolver_evaluates_intrinsics(tmp_path: Path, env: str, extra: str | None, mem: int, both: bool) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE)
    doc = load_template(path)
    r = Resolver(doc, {"Env": env}, attrs={("T", "Arn"): "arn:t"}, stack_name="s")
    props = r.resolve(doc["Resources"]["T"]["Properties"])
    assert props["TableName"] == "s-t-live"
    assert props.get("Extra") == extra
    assert props["Mem"] == mem
    assert props["Arn"] == "arn:t"
    assert props["Joined"] == "a-live-y"
    assert props["Parts"] == ["a", "b"]
    assert props["Escaped"] == "${Literal}"
    assert props["Both"] is both


def test_unknown_reference_is_one_clear_error(tmp_path: Path) -> None:
    r = Resolver({"Resources": {}})
    with pytest.raises(TemplateError, match="!Ref Missing"):
        r.resolve({"Ref": "Missing"})


@pytest.mark.parametrize("content, message", [
    (None, "cannot read template"),
    ("Resources: [unclosed", "not valid YAML at line"),
    ("Description: nothing\n", "no Resources section"),
])
def test_bad_templates_fail_with_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "t.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TemplateError, match=message) as info:
        load_template(path)
    assert "\n" not in str(info.value)


def test_project_template_resolves_routes_tables_and_environment() -> None:
    stack = Stack(ROOT / "template.yaml", stack_name="x")
    tables = {t.logical_id: t for t in stack.tables()}
    assert {"CustomersTable", "MeterEventsTable", "WebhookEventsTable", "EventsTable"} <= set(tables)
    assert tables["CustomersTable"].name == "x-CustomersTable"
    functions = {f.logical_id: f for f in stack.functions()}
    api = functions["ApiFunction"]
    assert api.code_dir == ROOT / "functions" / "api"
    assert api.layer_dirs == [ROOT / "layers" / "common"]
    # Globals and the function's own variables are merged, as SAM does.
    assert api.environment["POWERTOOLS_SERVICE_NAME"] == "api"
    assert api.environment["POWERTOOLS_METRICS_NAMESPACE"] == "BillingFunctions"
    routes = {(r.method, r.path): r.auth for r in api.routes}
    assert routes[("GET", "/v1/health")] == "NONE"
    assert routes[("GET", "/v1/openapi.json")] == "AWS_IAM"


KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize("key", ["", KEY])
def test_project_template_resolves_its_kms_conditions_both_ways(key: str) -> None:
    """KmsKeyArn drives Fn::If/AWS::NoValue throughout template.yaml: the local
    stack resolves both, and starts with the default (no key)."""
    stack = Stack(ROOT / "template.yaml", stack_name="x", parameters={"KmsKeyArn": key} if key else None)
    resolver = stack.resolver()
    for table in stack.tables():
        sse = table.properties["SSESpecification"]
        assert sse.get("KMSMasterKeyId") == (key or None), table.logical_id
    kinds: dict[str, list[dict[str, Any]]] = {}
    for res in stack.resources.values():
        kinds.setdefault(res["Type"], []).append(resolver.resolve(res.get("Properties") or {}))
    for queue in kinds["AWS::SQS::Queue"]:
        encrypted = (queue.get("KmsMasterKeyId"), queue.get("SqsManagedSseEnabled"))
        assert encrypted == ((key, None) if key else (None, True))
    for group in kinds["AWS::Logs::LogGroup"]:
        assert group.get("KmsKeyId") == (key or None)
    for function in kinds["AWS::Serverless::Function"]:
        kms = [st for item in function["Policies"] for st in item["Statement"] if st.get("Sid") == "CustomerManagedKey"]
        assert [st["Resource"] for st in kms] == ([key] if key else [])
    globals_ = resolver.resolve(stack.doc["Globals"]["Function"])
    assert globals_.get("KmsKeyArn") == (key or None)
    assert {f.logical_id for f in stack.functions()} >= {"ApiFunction", "MeterReporterFunction", "WebhookFunction"}


def test_project_template_reads_the_same_with_snapstart_and_detailed_tracing_on() -> None:
    # AutoPublishAlias, VersionDescription and SnapStart's !If are read (or
    # ignored) by the local stack; turning both parameters on changes only
    # the tracing switch in each function's environment.
    off = {f.logical_id: f for f in Stack(ROOT / "template.yaml", stack_name="x").functions()}
    on = {f.logical_id: f for f in Stack(ROOT / "template.yaml", stack_name="x",
                                         parameters={"SnapStart": "true", "DetailedTracing": "true"}).functions()}
    assert set(on) == set(off) and len(on) >= 5
    for lid, spec in on.items():
        assert spec.environment == {**off[lid].environment, "DETAILED_TRACING": "true"}, lid
        assert off[lid].environment["DETAILED_TRACING"] == "false", lid
        assert (spec.routes, spec.streams, spec.schedules) == (off[lid].routes, off[lid].streams, off[lid].schedules)
