"""template.yaml against DESIGN.md section 9, continued (issue 15): reserved
concurrency for stream and schedule functions, alarms, the dashboard.

The same pattern as test_operations_contract.py: checkers over the loaded
template that derive what each resource needs from the template itself (a
stream mapping needs an iterator-age alarm, a dead-letter queue its depth
alarm, a stream or schedule function a reserved concurrency parameter), each
run on the real template and on a bad fragment.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import load_template
from tests.template.test_operations_contract import NOTIFY, TABLES, events, lids
from tests.template.test_template_contract import FUNCTION_TYPES, Template, as_list, props, refers_to, resources

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "common" / "billing"
STREAM_EVENTS = frozenset({"DynamoDB", "Kinesis", "SQS", "MSK", "MQ", "SelfManagedKafka", "DocumentDB"})
SCHEDULE_EVENTS = frozenset({"Schedule", "ScheduleV2"})


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


# ------------------------------------------------------- reserved concurrency


def background_functions(tpl: Template) -> dict[str, list[str]]:
    """Functions a stream or a schedule invokes (SAM events or raw mappings, rules and
    schedules that target them), with the triggers found."""
    out: dict[str, list[str]] = {}
    functions = lids(tpl, *FUNCTION_TYPES)
    for lid, res in resources(tpl, "AWS::Serverless::Function"):
        for name, etype, _ in events(res):
            if etype in STREAM_EVENTS | SCHEDULE_EVENTS:
                out.setdefault(lid, []).append(f"{name} ({etype})")
    for lid, res in resources(tpl, "AWS::Lambda::EventSourceMapping"):
        for fn in functions:
            if refers_to(props(res).get("FunctionName"), fn):
                out.setdefault(fn, []).append(lid)
    for lid, res in resources(tpl, "AWS::Events::Rule", "AWS::Scheduler::Schedule"):
        p = props(res)
        if "ScheduleExpression" not in p:
            continue
        for fn in functions:
            if any(refers_to(t, fn) for t in as_list(p.get("Targets")) + as_list(p.get("Target"))):
                out.setdefault(fn, []).append(lid)
    return out


def reserved_concurrency_violations(tpl: Template) -> list[str]:
    """Stream and schedule functions take their reserved concurrency from a Number
    parameter with a default of at least 1; every other function either has one
    or says in a checkov skip why not."""
    out = []
    params = tpl.get("Parameters") or {}
    background = background_functions(tpl)
    for lid, res in resources(tpl, *FUNCTION_TYPES):
        value = props(res).get("ReservedConcurrentExecutions")
        skipped = {str(s.get("id")) for s in as_list(
            ((res.get("Metadata") or {}).get("checkov") or {}).get("skip"))}
        if lid in background:
            name = value.get("Ref") if isinstance(value, dict) else None
            spec = params.get(name) if isinstance(name, str) else None
            if not (isinstance(spec, dict) and spec.get("Type") == "Number"
                    and int(spec.get("Default", 0)) >= 1 and int(spec.get("MinValue", 0)) >= 1):
                out.append(f"{lid}: invoked by {', '.join(background[lid])} but its ReservedConcurrentExecutions "
                           "is not a Number parameter (default and minimum at least 1)")
            if "CKV_AWS_115" in skipped:
                out.append(f"{lid}: a stream or schedule function never skips CKV_AWS_115")
        elif value is None and "CKV_AWS_115" not in skipped:
            out.append(f"{lid}: no ReservedConcurrentExecutions and no CKV_AWS_115 skip saying why")
    return out


def test_stream_and_schedule_functions_reserve_concurrency_from_parameters(template: Template) -> None:
    background = background_functions(template)
    assert {"MeterReporterFunction", "MeterSweeperFunction", "WebhookProcessorFunction"} <= set(background)
    assert reserved_concurrency_violations(template) == []


def test_reserved_concurrency_checker_derives_background_functions_from_their_triggers() -> None:
    tpl = {"Parameters": {"Limit": {"Type": "Number", "Default": 2, "MinValue": 1},
                          "Zero": {"Type": "Number", "Default": 0}},
           "Resources": {
        "Api": {"Type": "AWS::Serverless::Function", "Properties": {"Events": {"A": {"Type": "Api"}}}},
        "Streamer": {"Type": "AWS::Serverless::Function", "Properties": {"ReservedConcurrentExecutions": 3,
                                                                         "Events": {"S": {"Type": "DynamoDB"}}}},
        "Cron": {"Type": "AWS::Serverless::Function", "Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_115"}]}},
                 "Properties": {"ReservedConcurrentExecutions": {"Ref": "Zero"}}},
        "Rule": {"Type": "AWS::Events::Rule", "Properties": {
            "ScheduleExpression": "rate(1 hour)", "Targets": [{"Arn": {"Fn::GetAtt": ["Cron", "Arn"]}}]}},
        "Good": {"Type": "AWS::Serverless::Function", "Properties": {"ReservedConcurrentExecutions": {"Ref": "Limit"},
                                                                     "Events": {"T": {"Type": "Schedule"}}}},
    }}
    assert background_functions(tpl) == {"Streamer": ["S (DynamoDB)"], "Good": ["T (Schedule)"], "Cron": ["Rule"]}
    assert reserved_concurrency_violations(tpl) == [
        "Api: no ReservedConcurrentExecutions and no CKV_AWS_115 skip saying why",
        "Streamer: invoked by S (DynamoDB) but its ReservedConcurrentExecutions is not a Number parameter "
        "(default and minimum at least 1)",
        "Cron: invoked by Rule but its ReservedConcurrentExecutions is not a Number parameter "
        "(default and minimum at least 1)",
        "Cron: a stream or schedule function never skips CKV_AWS_115",
    ]


# ------------------------------------------------------------------ alarms


def alarm_metrics(res: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, metric name, dimensions) an alarm reads: its own metric, or
    each MetricStat of its metric math."""
    p = props(res)
    found = []
    if p.get("MetricName"):
        found.append((p.get("Namespace"), p.get("MetricName"), p.get("Dimensions")))
    for m in as_list(p.get("Metrics")):
        metric = ((m or {}).get("MetricStat") or {}).get("Metric") or {}
        if metric:
            found.append((metric.get("Namespace"), metric.get("MetricName"), metric.get("Dimensions")))
    return [(str(ns), str(name), {d["Name"]: d["Value"] for d in as_list(dims)}) for ns, name, dims in found]


def dead_letter_queues(tpl: Template) -> set[str]:
    """Queues that receive what failed elsewhere: on-failure destinations, function
    DLQs, redrive targets."""
    queues = lids(tpl, "AWS::SQS::Queue")
    holders = [ep.get("DestinationConfig") for _, res in resources(tpl, "AWS::Serverless::Function")
               for _, _, ep in events(res)]
    holders += [props(res).get("DeadLetterQueue") for _, res in resources(tpl, "AWS::Serverless::Function")]
    holders += [props(res).get("DestinationConfig") for _, res in resources(tpl, "AWS::Lambda::EventSourceMapping")]
    holders += [props(res).get("RedrivePolicy") for _, res in resources(tpl, "AWS::SQS::Queue")]
    return {q for q in queues if any(refers_to(h, q) for h in holders)}


def table_of_stream(tpl: Template, stream: Any) -> str | None:
    return next((t for t in lids(tpl, *TABLES) if refers_to(stream, t)), None)


def required_alarms(tpl: Template) -> dict[str, tuple[str, str, str, Any]]:
    """What must be alarmed, derived from the template: label -> (namespace, metric,
    dimension name, dimension value)."""
    need: dict[str, tuple[str, str, str, Any]] = {}
    for lid, res in resources(tpl, "AWS::Serverless::Function"):
        for name, etype, ep in events(res):
            if etype in ("DynamoDB", "Kinesis"):
                need[f"iterator age of {lid}.{name}"] = ("AWS/Lambda", "IteratorAge", "FunctionName", {"Ref": lid})
                # The meter reporter: what sends pending usage to Stripe (the
                # mapping on meter_events that lets pending rows through).
                if table_of_stream(tpl, ep.get("Stream")) == "MeterEventsTable" and "pending" in json.dumps(
                        ep.get("FilterCriteria") or {}):
                    need[f"errors of {lid} (meter reporter)"] = ("AWS/Lambda", "Errors", "FunctionName", {"Ref": lid})
    for q in sorted(dead_letter_queues(tpl)):
        need[f"dead-letter queue {q}"] = ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                          {"Fn::GetAtt": [q, "QueueName"]})
    for lid, _ in resources(tpl, "AWS::Serverless::Api"):
        need[f"5xx of {lid}"] = ("AWS/ApiGateway", "5XXError", "ApiName", {"Ref": "AWS::StackName"})
    if "WebhookEventsTable" in lids(tpl, *TABLES):
        need["webhook processing lag"] = ("BillingFunctions", "WebhookProcessingLag", "service", "webhook_processor")
    return need


def alarm_violations(tpl: Template) -> list[str]:
    """Every required signal has an alarm; every alarm says what it means and
    notifies AlarmTopicArn when one is set."""
    alarms = list(resources(tpl, "AWS::CloudWatch::Alarm"))
    out = []
    for label, (ns, metric, dim, value) in required_alarms(tpl).items():
        if not any((ns, metric) == (a_ns, a_name) and dims.get(dim) == value
                   for _, res in alarms for a_ns, a_name, dims in alarm_metrics(res)):
            out.append(f"no alarm on {label} ({ns} {metric}, {dim})")
    for lid, res in alarms:
        p = props(res)
        if not p.get("AlarmDescription"):
            out.append(f"{lid}: no AlarmDescription")
        if p.get("AlarmActions") != NOTIFY:
            out.append(f"{lid}: does not notify AlarmTopicArn when it is set")
        if not p.get("TreatMissingData"):
            out.append(f"{lid}: no TreatMissingData")
    return out


def test_every_stream_dead_letter_queue_api_and_the_webhook_lag_have_alarms(template: Template) -> None:
    need = required_alarms(template)
    assert {"iterator age of MeterReporterFunction.Stream",
            "iterator age of WebhookProcessorFunction.Stream"} <= set(need)
    assert {"dead-letter queue MeterDeadLetterQueue", "dead-letter queue WebhookDeadLetterQueue",
            "webhook processing lag", "5xx of BillingApi",
            "errors of MeterReporterFunction (meter reporter)"} <= set(need)
    assert alarm_violations(template) == []


def test_alarm_checker_derives_what_needs_an_alarm_and_rejects_silent_alarms() -> None:
    tpl = {"Resources": {
        "MeterEventsTable": {"Type": "AWS::DynamoDB::Table"},
        "Dlq": {"Type": "AWS::SQS::Queue"},
        "Work": {"Type": "AWS::SQS::Queue"},
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {"Events": {"S": {"Type": "DynamoDB", "Properties": {
            "Stream": {"Fn::GetAtt": ["MeterEventsTable", "StreamArn"]},
            "FilterCriteria": {"Filters": [
                {"Pattern": '{"dynamodb": {"NewImage": {"stripe_status": {"S": ["pending"]}}}}'}]},
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Dlq", "Arn"]}}}}}}}},
        "Age": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Metrics": [{"Id": "a", "MetricStat": {"Metric": {
            "Namespace": "AWS/Lambda", "MetricName": "IteratorAge",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "Fn"}}]}}}]}},
    }}
    assert required_alarms(tpl) == {
        "iterator age of Fn.S": ("AWS/Lambda", "IteratorAge", "FunctionName", {"Ref": "Fn"}),
        "errors of Fn (meter reporter)": ("AWS/Lambda", "Errors", "FunctionName", {"Ref": "Fn"}),
        "dead-letter queue Dlq": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                                  {"Fn::GetAtt": ["Dlq", "QueueName"]}),
    }
    assert alarm_violations(tpl) == [
        "no alarm on errors of Fn (meter reporter) (AWS/Lambda Errors, FunctionName)",
        "no alarm on dead-letter queue Dlq (AWS/SQS ApproximateNumberOfMessagesVisible, QueueName)",
        "Age: no AlarmDescription",
        "Age: does not notify AlarmTopicArn when it is set",
        "Age: no TreatMissingData",
    ]


# --------------------------------------------------------------- dashboard

# What the dashboard must show (issue 15): the usage flow, the webhook flow, the API.
DASHBOARD_METRICS = {
    "usage flow": {"UsageAccepted", "UsageReported", "UsageFailed", "ReportLatency"},
    "webhook flow": {"WebhookStored", "WebhookProcessed", "WebhookFailed", "WebhookProcessingLag"},
    "API": {"Latency", "5XXError", "4XXError"},
}
_PLACEHOLDER = re.compile(r"\$\{([^}!][^}]*)\}")


def emitted_metrics() -> dict[str, set[str]]:
    """Metric name -> the modules of billing/ that emit it (add_metric(name="...")), or
    that name it as a ternary's branches."""
    out: dict[str, set[str]] = {}
    for path in LAYER.rglob("*.py"):
        text = path.read_text()
        for call in re.finditer(r"add_metric\(\s*name=([^,]+),", text):
            for name in re.findall(r'"([A-Za-z]+)"', call.group(1)):
                out.setdefault(name, set()).add(path.stem)
    return out


def _render(variables: set[str], match: re.Match[str]) -> str:
    # A !Sub variable renders as what its condition may leave: nothing.
    return "" if match.group(1) in variables else "X"


def dashboard_violations(tpl: Template, emitted: dict[str, set[str]]) -> list[str]:
    """A dashboard whose placeholders name the template's resources, that shows the
    usage flow, the webhook flow and the API from metrics billing/ emits (under the
    services the functions are), and lists every alarm."""
    out = []
    boards = list(resources(tpl, "AWS::CloudWatch::Dashboard"))
    if not boards:
        return ["no AWS::CloudWatch::Dashboard"]
    names = set(tpl.get("Resources") or {}) | set(tpl.get("Parameters") or {})
    services = {str(((props(r).get("Environment") or {}).get("Variables") or {}).get("POWERTOOLS_SERVICE_NAME"))
                for _, r in resources(tpl, *FUNCTION_TYPES)}
    alarms = lids(tpl, "AWS::CloudWatch::Alarm")
    for lid, res in boards:
        body = props(res).get("DashboardBody")
        sub = body.get("Fn::Sub") if isinstance(body, dict) else body
        # !Sub [text, {name: value}]: the variables may hold what exists only
        # under a condition (an alarm of an optional path).
        text, variables = (sub[0], sub[1]) if isinstance(sub, list) and len(sub) == 2 else (sub, {})
        if not isinstance(text, str) or not isinstance(variables, dict):
            out.append(f"{lid}: DashboardBody is not a !Sub string")
            continue
        names = names | set(variables)
        for ref in _PLACEHOLDER.findall(text):
            if ref.split(".", 1)[0] not in names and not ref.startswith("AWS::"):
                out.append(f"{lid}: ${{{ref}}} names nothing in the template")
        try:
            doc = json.loads(_PLACEHOLDER.sub(partial(_render, set(variables)), text))
        except ValueError:
            out.append(f"{lid}: DashboardBody is not JSON")
            continue
        shown: set[str] = set()
        for widget in doc.get("widgets", []):
            wp = widget.get("properties") or {}
            for line in wp.get("metrics") or []:
                strings = [x for x in line if isinstance(x, str)]
                if len(strings) >= 2:
                    shown.add(strings[1])
                    if strings[0] == "BillingFunctions":
                        if strings[1] not in emitted:
                            out.append(f"{lid}: BillingFunctions {strings[1]} is emitted nowhere in billing/")
                        if "service" in strings and strings[strings.index("service") + 1] not in services:
                            out.append(f"{lid}: {strings[1]} reads service {strings[strings.index('service') + 1]}, "
                                       "which no function is")
        for flow, metrics in DASHBOARD_METRICS.items():
            if missing := sorted(metrics - shown):
                out.append(f"{lid}: the {flow} lacks {', '.join(missing)}")
        alarm_refs = {m.split(".", 1)[0] for m in re.findall(r"\$\{(\w+)\.Arn\}", text + json.dumps(variables))}
        if missing_alarms := sorted(alarms - alarm_refs):
            out.append(f"{lid}: its alarm widget lacks {', '.join(missing_alarms)}")
    return out


def test_the_dashboard_shows_both_flows_the_api_and_every_alarm(template: Template) -> None:
    emitted = emitted_metrics()
    assert {"UsageAccepted", "WebhookStored", "WebhookProcessingLag"} <= set(emitted)
    assert dashboard_violations(template, emitted) == []


def test_alarmed_metrics_of_our_own_namespace_are_emitted_by_the_code(template: Template) -> None:
    emitted = emitted_metrics()
    for lid, res in resources(template, "AWS::CloudWatch::Alarm"):
        for ns, name, _ in alarm_metrics(res):
            if ns == "BillingFunctions":
                assert name in emitted, f"{lid} alarms on {name}, which billing/ never emits"


def test_dashboard_checker_rejects_missing_flows_alarms_and_unknown_names() -> None:
    body = json.dumps({"widgets": [
        {"type": "metric", "properties": {"metrics": [
            ["BillingFunctions", "UsageAccepted", "service", "api"],
            ["BillingFunctions", "UsageInvented", "service", "nobody"],
            ["AWS/ApiGateway", "Latency", "ApiName", "${AWS::StackName}", "Stage", "${Stage}"]]}},
        {"type": "alarm", "properties": {"alarms": ["${A.Arn}"]}}]})
    tpl = {"Parameters": {}, "Resources": {
        "Fn": {"Type": "AWS::Serverless::Function", "Properties": {
            "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": "api"}}}},
        "A": {"Type": "AWS::CloudWatch::Alarm"}, "B": {"Type": "AWS::CloudWatch::Alarm"},
        "D": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {"DashboardBody": {"Fn::Sub": body}}}}}
    assert dashboard_violations(tpl, {"UsageAccepted": {"intake"}}) == [
        "D: ${Stage} names nothing in the template",
        "D: BillingFunctions UsageInvented is emitted nowhere in billing/",
        "D: UsageInvented reads service nobody, which no function is",
        "D: the usage flow lacks ReportLatency, UsageFailed, UsageReported",
        "D: the webhook flow lacks WebhookFailed, WebhookProcessed, WebhookProcessingLag, WebhookStored",
        "D: the API lacks 4XXError, 5XXError",
        "D: its alarm widget lacks B",
    ]
    assert dashboard_violations({"Resources": {}}, {}) == ["no AWS::CloudWatch::Dashboard"]
