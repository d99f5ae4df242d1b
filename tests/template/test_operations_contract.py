"""template.yaml against DESIGN.md section 9 (operations and security, issue 15).

Like test_template_contract.py: each rule is a checker over the loaded
template that returns one readable line per violation; it must find nothing
in the real template and exactly what is wrong in a bad fragment. Every rule
iterates whatever the template holds (functions, tables, queues, log groups,
stream mappings, APIs) and derives what each resource needs from the
template itself, so resources added later are held to the same rules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import load_template
from tests.template.test_template_contract import (
    FUNCTION_TYPES,
    Template,
    as_list,
    grants,
    is_true,
    props,
    refers_to,
    resources,
    scalars,
)

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]

NO_VALUE = {"Ref": "AWS::NoValue"}
KEY = {"Ref": "KmsKeyArn"}
WITH_KEY = {"Fn::If": ["HasKmsKey", KEY, NO_VALUE]}
NOTIFY = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], NO_VALUE]}
TABLES = ("AWS::DynamoDB::Table",)
# Findings that are never skipped: encryption, logging, and the concurrency
# limit of stream and schedule functions (checked by reserved_concurrency_violations).
NEVER_SKIPPED = frozenset({"CKV_AWS_27", "CKV_AWS_76", "CKV_AWS_119", "CKV_AWS_158", "CKV_AWS_173"})
SKIP_ID = re.compile(r"^CKV2?_AWS_\d+$")


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def events(res: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, str(ev.get("Type")), ev.get("Properties") or {})
            for name, ev in (props(res).get("Events") or {}).items() if isinstance(ev, dict)]


def lids(tpl: Template, *types: str) -> set[str]:
    return {lid for lid, _ in resources(tpl, *types)}


# ------------------------------------------------------------- checkov skips


def skip_violations(tpl: Template) -> list[str]:
    """Every checkov skip sits on its resource with a known id and a one-line reason."""
    out = []
    for lid, res in (tpl.get("Resources") or {}).items():
        for skip in as_list(((res.get("Metadata") or {}).get("checkov") or {}).get("skip")):
            cid, comment = str(skip.get("id", "")), skip.get("comment")
            if not SKIP_ID.match(cid):
                out.append(f"{lid}: skip {cid!r} is not a checkov id")
            if cid in NEVER_SKIPPED:
                out.append(f"{lid}: {cid} is never skipped; fix it")
            if not isinstance(comment, str) or len(comment.strip()) < 20 or "\n" in comment.strip():
                out.append(f"{lid}: skip {cid} has no one-line reason")
    return out


def test_every_checkov_skip_is_next_to_its_resource_with_a_reason(template: Template) -> None:
    skipped = [lid for lid, res in template["Resources"].items() if (res.get("Metadata") or {}).get("checkov")]
    assert skipped, "no skips found: did the Metadata move?"
    assert skip_violations(template) == []


def test_skip_checker_rejects_unknown_ids_forbidden_skips_and_missing_reasons() -> None:
    tpl = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Metadata": {"checkov": {"skip": [
        {"id": "CKV_AWS_27", "comment": "we do not feel like encrypting this queue"},
        {"id": "VPC", "comment": "short"},
        {"id": "CKV_AWS_117"}]}}}}}
    assert skip_violations(tpl) == [
        "Q: CKV_AWS_27 is never skipped; fix it",
        "Q: skip 'VPC' is not a checkov id",
        "Q: skip VPC has no one-line reason",
        "Q: skip CKV_AWS_117 has no one-line reason",
    ]


# ------------------------------------------------------------------- KMS


def encryption_violations(tpl: Template) -> list[str]:
    """KmsKeyArn (default empty) encrypts every table, queue, topic, log group and
    the functions' environment when set; queues are encrypted either way."""
    out = []
    param = (tpl.get("Parameters") or {}).get("KmsKeyArn")
    if not (isinstance(param, dict) and param.get("Default") == ""):
        out.append("Parameters.KmsKeyArn: missing, or its default is not empty")
    if (tpl.get("Conditions") or {}).get("HasKmsKey") != {"Fn::Not": [{"Fn::Equals": [KEY, ""]}]}:
        out.append("Conditions.HasKmsKey is not !Not [!Equals [!Ref KmsKeyArn, '']]")
    for lid, res in resources(tpl, *TABLES):
        sse = props(res).get("SSESpecification") or {}
        if not is_true(sse.get("SSEEnabled")) or sse.get("KMSMasterKeyId") != WITH_KEY:
            out.append(f"{lid}: SSESpecification does not use KmsKeyArn when set")
    for lid, res in resources(tpl, "AWS::SQS::Queue"):
        p = props(res)
        if p.get("KmsMasterKeyId") != WITH_KEY or p.get("SqsManagedSseEnabled") != {
                "Fn::If": ["HasKmsKey", NO_VALUE, True]}:
            out.append(f"{lid}: not encrypted with KmsKeyArn when set and SQS-managed otherwise")
    for lid, res in resources(tpl, "AWS::SNS::Topic"):
        if props(res).get("KmsMasterKeyId") != WITH_KEY:
            out.append(f"{lid}: KmsMasterKeyId does not use KmsKeyArn when set")
    for lid, res in resources(tpl, "AWS::Logs::LogGroup"):
        if props(res).get("KmsKeyId") != WITH_KEY:
            out.append(f"{lid}: KmsKeyId does not use KmsKeyArn when set")
    if ((tpl.get("Globals") or {}).get("Function") or {}).get("KmsKeyArn") != WITH_KEY:
        out.extend(f"{lid}: its environment does not use KmsKeyArn when set"
                   for lid, res in resources(tpl, *FUNCTION_TYPES) if props(res).get("KmsKeyArn") != WITH_KEY)
    return out


def kms_actions_needed(tpl: Template, lid: str) -> set[str]:
    """What the function's role must be able to do with the key, from what it touches:
    a table or a table's stream (DynamoDB decrypts the table key as the caller),
    a queue or topic it sends to (the sender generates the data key), a queue it reads."""
    tables, queues = lids(tpl, *TABLES), lids(tpl, "AWS::SQS::Queue")
    topics = lids(tpl, "AWS::SNS::Topic")
    needed: set[str] = set()
    for g in grants(tpl):
        if not g.where.startswith(f"{lid}."):
            continue
        body = g.body
        if g.kind == "statement" and any(str(a).lower().startswith("kms:") for a in as_list(body.get("Action"))):
            continue
        target = body.get("Resource") if g.kind == "statement" else body
        if any(refers_to(target, t) for t in tables):
            needed.add("kms:Decrypt")
        if any(refers_to(target, q) for q in queues | topics):
            actions = {str(a) for a in as_list(body.get("Action"))} if g.kind == "statement" else set()
            needed |= {"kms:Decrypt"} if actions and actions <= {"sqs:ReceiveMessage", "sqs:DeleteMessage",
                                                                 "sqs:GetQueueAttributes"} \
                else {"kms:Decrypt", "kms:GenerateDataKey"}
    res = tpl["Resources"][lid]
    for _, _, ep in events(res):
        source = ep.get("Stream") or ep.get("Queue")
        if any(refers_to(source, t) for t in tables | queues):
            needed.add("kms:Decrypt")
        dest = ((ep.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if any(refers_to(dest, q) for q in queues | topics):
            needed |= {"kms:Decrypt", "kms:GenerateDataKey"}
    # Lambda sends a failed asynchronous invocation to its on-failure
    # destination, or a dead-letter queue, with the function's role.
    on_failure = (((props(res).get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure")
                  or {}).get("Destination")
    if any(refers_to(props(res).get("DeadLetterQueue"), q) or refers_to(on_failure, q) for q in queues | topics):
        needed |= {"kms:Decrypt", "kms:GenerateDataKey"}
    return needed


def kms_grant_violations(tpl: Template) -> list[str]:
    """Each function's role: exactly the kms actions its resources need, on KmsKeyArn,
    only under HasKmsKey; never a kms action otherwise."""
    out = []
    for lid, res in resources(tpl, "AWS::Serverless::Function"):
        needed = kms_actions_needed(tpl, lid)
        granted: list[set[str]] = []
        for i, item in enumerate(as_list(props(res).get("Policies"))):
            conditional = isinstance(item, dict) and set(item) == {"Fn::If"}
            if conditional and item["Fn::If"][0] == "HasKmsKey" and item["Fn::If"][2] == NO_VALUE:
                for st in as_list((item["Fn::If"][1] or {}).get("Statement")):
                    if st.get("Resource") != KEY or st.get("Effect") != "Allow" or "Condition" in st:
                        out.append(f"{lid}.Policies[{i}]: a kms statement not plainly on !Ref KmsKeyArn")
                    granted.append({str(a) for a in as_list(st.get("Action"))})
            elif any(str(v).lower().startswith("kms:") for _, v in scalars(item)):
                out.append(f"{lid}.Policies[{i}]: kms actions outside the HasKmsKey condition")
        have = set().union(*granted) if granted else set()
        if have != needed:
            out.append(f"{lid}: kms actions {sorted(have)} under HasKmsKey, needs exactly {sorted(needed)}")
    return out


def test_kms_key_arn_encrypts_every_table_queue_topic_and_log_group_when_set(template: Template) -> None:
    assert lids(template, *TABLES) and lids(template, "AWS::SQS::Queue") and lids(template, "AWS::Logs::LogGroup")
    assert encryption_violations(template) == []


def test_each_function_role_gets_exactly_the_kms_actions_its_resources_need(template: Template) -> None:
    needs = {lid: kms_actions_needed(template, lid) for lid in lids(template, "AWS::Serverless::Function")}
    assert needs["MeterReporterFunction"] == {"kms:Decrypt", "kms:GenerateDataKey"}  # table, stream, queue
    assert needs["WebhookFunction"] == {"kms:Decrypt"}  # one table
    assert kms_grant_violations(template) == []


KMS_FRAGMENT: Template = {
    "Parameters": {"KmsKeyArn": {"Type": "String"}},
    "Conditions": {},
    "Resources": {
        "T": {"Type": "AWS::DynamoDB::Table", "Properties": {"SSESpecification": {"SSEEnabled": True}}},
        "Q": {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}},
        "L": {"Type": "AWS::Logs::LogGroup", "Properties": {"KmsKeyId": WITH_KEY}},
        "Reader": {"Type": "AWS::Serverless::Function", "Properties": {
            "KmsKeyArn": WITH_KEY,
            "Policies": [{"Statement": [{"Effect": "Allow", "Action": "dynamodb:GetItem",
                                         "Resource": {"Fn::GetAtt": ["T", "Arn"]}}]}]}},
        "Streamer": {"Type": "AWS::Serverless::Function", "Properties": {
            "Policies": [
                {"Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]},
                {"Fn::If": ["HasKmsKey", {"Statement": [{"Effect": "Allow", "Action": ["kms:Decrypt"],
                                                         "Resource": KEY}]}, NO_VALUE]}],
            "Events": {"S": {"Type": "DynamoDB", "Properties": {
                "Stream": {"Fn::GetAtt": ["T", "StreamArn"]},
                "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Q", "Arn"]}}}}}}}},
    },
}


def test_encryption_checker_rejects_resources_that_ignore_the_key() -> None:
    assert encryption_violations(KMS_FRAGMENT) == [
        "Parameters.KmsKeyArn: missing, or its default is not empty",
        "Conditions.HasKmsKey is not !Not [!Equals [!Ref KmsKeyArn, '']]",
        "T: SSESpecification does not use KmsKeyArn when set",
        "Q: not encrypted with KmsKeyArn when set and SQS-managed otherwise",
        "Streamer: its environment does not use KmsKeyArn when set",
    ]


def test_kms_grant_checker_derives_needs_and_rejects_missing_and_unconditional_grants() -> None:
    assert kms_actions_needed(KMS_FRAGMENT, "Streamer") == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert kms_grant_violations(KMS_FRAGMENT) == [
        "Reader: kms actions [] under HasKmsKey, needs exactly ['kms:Decrypt']",
        "Streamer.Policies[0]: kms actions outside the HasKmsKey condition",
        "Streamer: kms actions ['kms:Decrypt'] under HasKmsKey, needs exactly ['kms:Decrypt', 'kms:GenerateDataKey']",
    ]


# ------------------------------------------------------------ access logs

# $context variables each access log line must carry: request id, route,
# status, latency, caller identity, user agent.
ACCESS_LOG_FIELDS = ("$context.requestId", "$context.resourcePath", "$context.status", "$context.responseLatency",
                     "$context.identity.caller", "$context.identity.userArn", "$context.identity.userAgent")
# Never a body (request or response), and not the raw path: it carries ids.
ACCESS_LOG_FORBIDDEN = re.compile(r"\$input|\$context\.(path|requestOverride|responseOverride)\b|\$util|body",
                                  re.IGNORECASE)


def access_log_violations(tpl: Template) -> list[str]:
    """Every API writes JSON access logs with the required fields and no bodies, to a
    log group of this stack, and never turns on data tracing (which logs bodies)."""
    out = []
    groups = lids(tpl, "AWS::Logs::LogGroup")
    for lid, res in resources(tpl, "AWS::Serverless::Api", "AWS::ApiGateway::Stage", "AWS::Serverless::HttpApi"):
        p = props(res)
        setting = p.get("AccessLogSetting") or p.get("AccessLogSettings") or {}
        dest = setting.get("DestinationArn")
        if not any(refers_to(dest, g) for g in groups):
            out.append(f"{lid}: access logs do not go to a log group of this stack")
        fmt = setting.get("Format")
        try:
            fields = json.loads(fmt) if isinstance(fmt, str) else None
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            out.append(f"{lid}: the access log format is not one JSON object")
            fields = {}
        values = " ".join(str(v) for v in fields.values())
        missing = [f for f in ACCESS_LOG_FIELDS if not re.search(re.escape(f) + r"(?![\w.])", values)]
        if missing:
            out.append(f"{lid}: the access log lacks {', '.join(missing)}")
        if ACCESS_LOG_FORBIDDEN.search(str(fmt)):
            out.append(f"{lid}: the access log may carry a body or a raw path")
        if any(is_true(m.get("DataTraceEnabled")) for m in as_list(p.get("MethodSettings")) if isinstance(m, dict)):
            out.append(f"{lid}: DataTraceEnabled logs full requests and responses")
    return out


def retention_violations(tpl: Template) -> list[str]:
    """Every log group keeps the stack's retention (LogRetentionDays)."""
    return [f"{lid}: RetentionInDays is not !Ref LogRetentionDays" for lid, res in resources(tpl, "AWS::Logs::LogGroup")
            if props(res).get("RetentionInDays") != {"Ref": "LogRetentionDays"}]


def test_every_api_writes_json_access_logs_without_bodies(template: Template) -> None:
    assert lids(template, "AWS::Serverless::Api")
    assert access_log_violations(template) == []


def test_every_log_group_keeps_the_stacks_retention(template: Template) -> None:
    assert retention_violations(template) == []


def test_access_log_and_retention_checkers_reject_bad_apis_and_groups() -> None:
    tpl = {"Resources": {
        "G": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 7}},
        "Silent": {"Type": "AWS::Serverless::Api", "Properties": {}},
        "Chatty": {"Type": "AWS::Serverless::Api", "Properties": {
            "AccessLogSetting": {"DestinationArn": {"Fn::GetAtt": ["G", "Arn"]},
                                 "Format": '{"id":"$context.requestId","path":"$context.path","in":"$input.body"}'},
            "MethodSettings": [{"DataTraceEnabled": True}]}},
    }}
    assert access_log_violations(tpl) == [
        "Silent: access logs do not go to a log group of this stack",
        "Silent: the access log format is not one JSON object",
        "Silent: the access log lacks " + ", ".join(ACCESS_LOG_FIELDS),
        "Chatty: the access log lacks " + ", ".join(ACCESS_LOG_FIELDS[1:]),
        "Chatty: the access log may carry a body or a raw path",
        "Chatty: DataTraceEnabled logs full requests and responses",
    ]
    assert retention_violations(tpl) == ["G: RetentionInDays is not !Ref LogRetentionDays"]

