"""template.yaml against DESIGN.md section 8 (EventBridge in and out).

Like test_template_contract.py: each checker runs on the real template,
where it must find nothing, and on a bad synthetic fragment, where it must
find exactly what is wrong.

- The publisher may only PutEvents, and only on the stack's own bus; no
  other grant in the template puts events anywhere.
- The inbound function may only put webhook_events rows; its rule and its
  asynchronous invocations both end in a dead-letter queue with an alarm;
  all of it exists only when StripeEventSourceName is set.
- The ledger streams its new rows; the bus is an output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import load_template
from devstack.template import Stack
from tests.template.test_template_contract import (
    EVENTS_TABLE,
    WEBHOOK_EVENTS_TABLE,
    Template,
    as_list,
    grants,
    props,
    refers_to,
    resources,
)

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
BUS = "DomainEventBus"
PUBLISHER = "EventPublisherFunction"
INBOUND = "StripeEventsFunction"
CONDITION = "HasStripeEventSource"


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def _statements(tpl: Template, function: str) -> list[dict[str, Any]]:
    """The function's statements but its use of KmsKeyArn (held to exactly what its
    resources need by test_operations_contract)."""
    return [g.body for g in grants(tpl) if g.where.startswith(f"{function}.") and g.kind == "statement"
            and g.body.get("Resource") != {"Ref": "KmsKeyArn"}]


def _other_grants(tpl: Template, function: str) -> list[str]:
    return [g.where for g in grants(tpl) if g.where.startswith(f"{function}.") and g.kind != "statement"]


def only_grants(tpl: Template, function: str, action: str, resource_lid: str) -> list[str]:
    """`function` is granted `action` on `resource_lid`'s ARN and nothing else
    (SAM adds what its event sources need: stream reads, the on-failure queue)."""
    if function not in dict(resources(tpl, "AWS::Serverless::Function")):
        return [f"{function}: missing"]
    out = [f"{where}: a policy template, connector or managed policy" for where in _other_grants(tpl, function)]
    statements = _statements(tpl, function)
    if not statements:
        out.append(f"{function}: no statement grants {action}")
    for st in statements:
        actions = as_list(st.get("Action"))
        targets = as_list(st.get("Resource"))
        if st.get("Effect") != "Allow":
            continue
        if actions != [action]:
            out.append(f"{function}: allows {actions}, not only {action}")
        if len(targets) != 1 or not isinstance(targets[0], dict) or set(targets[0]) != {"Fn::GetAtt"} \
                or not refers_to(targets[0], resource_lid) or "NotResource" in st:
            out.append(f"{function}: {action} on {targets}, not only {resource_lid}'s ARN")
    return out


def put_events_elsewhere(tpl: Template, allowed: str = PUBLISHER) -> list[str]:
    """Nothing but the publisher may put events."""
    out = []
    for g in grants(tpl):
        if g.kind != "statement" or not isinstance(g.body, dict) or g.body.get("Effect") != "Allow":
            continue
        actions = [str(a).lower() for a in as_list(g.body.get("Action"))]
        if any(a in ("events:putevents", "events:*", "*") for a in actions) and not g.where.startswith(f"{allowed}."):
            out.append(f"{g.where}: puts events")
    return out


def test_the_publisher_may_only_put_events_on_the_stacks_bus(template: Template) -> None:
    assert BUS in dict(resources(template, "AWS::Events::EventBus"))
    assert only_grants(template, PUBLISHER, "events:PutEvents", BUS) == []
    assert put_events_elsewhere(template) == []


def test_the_inbound_function_may_only_put_webhook_events_rows(template: Template) -> None:
    assert only_grants(template, INBOUND, "dynamodb:PutItem", WEBHOOK_EVENTS_TABLE) == []


def test_the_grant_checkers_reject_broader_grants() -> None:
    tpl: Template = {"Resources": {
        BUS: {"Type": "AWS::Events::EventBus"},
        "Other": {"Type": "AWS::Events::EventBus"},
        PUBLISHER: {"Type": "AWS::Serverless::Function", "Properties": {"Policies": [
            "AmazonEventBridgeFullAccess",
            {"Statement": [
                {"Effect": "Allow", "Action": ["events:PutEvents", "events:PutRule"],
                 "Resource": {"Fn::GetAtt": [BUS, "Arn"]}},
                {"Effect": "Allow", "Action": "events:PutEvents", "Resource": "*"},
            ]}]}},
        "Api": {"Type": "AWS::Serverless::Function", "Properties": {"Policies": [{"Statement": [
            {"Effect": "Allow", "Action": "events:PutEvents", "Resource": {"Fn::GetAtt": ["Other", "Arn"]}}]}]}},
    }}
    assert only_grants(tpl, PUBLISHER, "events:PutEvents", BUS) == [
        f"{PUBLISHER}.Policies[0]: a policy template, connector or managed policy",
        f"{PUBLISHER}: allows ['events:PutEvents', 'events:PutRule'], not only events:PutEvents",
        f"{PUBLISHER}: events:PutEvents on ['*'], not only {BUS}'s ARN",
    ]
    assert put_events_elsewhere(tpl) == ["Api.Policies[0].Statement[0]: puts events"]
    assert only_grants(tpl, "Missing", "events:PutEvents", BUS) == ["Missing: missing"]


def inbound_violations(tpl: Template) -> list[str]:
    """The rule's undeliverable events and the function's failed invocations
    both land in a queue with an alarm; everything exists only under the condition."""
    out = []
    res = tpl.get("Resources") or {}
    fn = res.get(INBOUND) or {}
    for lid in (INBOUND, f"{INBOUND}LogGroup", "StripePartnerEventBus"):
        if (res.get(lid) or {}).get("Condition") != CONDITION:
            out.append(f"{lid}: not under {CONDITION}")
    rules = [ev.get("Properties") or {} for ev in (props(fn).get("Events") or {}).values()
             if isinstance(ev, dict) and ev.get("Type") == "EventBridgeRule"]
    if len(rules) != 1:
        return [*out, f"{INBOUND}: {len(rules)} EventBridgeRule events, not 1"]
    rule = rules[0]
    if not refers_to(rule.get("EventBusName"), "StripePartnerEventBus"):
        out.append(f"{INBOUND}: the rule is not on StripePartnerEventBus")
    dlq = (rule.get("DeadLetterConfig") or {}).get("Arn")
    on_failure = (((props(fn).get("EventInvokeConfig") or {}).get("DestinationConfig") or {})
                  .get("OnFailure") or {}).get("Destination")
    if not dlq:
        out.append(f"{INBOUND}: the rule has no DeadLetterConfig")
    if not on_failure:
        out.append(f"{INBOUND}: no EventInvokeConfig OnFailure destination")
    for dest in (dlq, on_failure):
        if not dest:
            continue
        queue = dest["Fn::GetAtt"][0] if isinstance(dest, dict) and "Fn::GetAtt" in dest else None
        alarmed = queue is not None and any(
            refers_to(props(a).get("Dimensions"), queue) for _, a in resources(tpl, "AWS::CloudWatch::Alarm"))
        if not alarmed:
            out.append(f"{INBOUND}: {queue or dest} has no alarm")
    return out


def test_the_inbound_path_dead_letters_with_an_alarm_only_when_configured(template: Template) -> None:
    assert inbound_violations(template) == []


def test_the_inbound_checker_rejects_a_rule_without_dead_letters() -> None:
    tpl: Template = {"Resources": {
        "StripePartnerEventBus": {"Type": "AWS::Events::EventBus"},
        INBOUND: {"Type": "AWS::Serverless::Function", "Condition": CONDITION, "Properties": {"Events": {
            "E": {"Type": "EventBridgeRule", "Properties": {"EventBusName": "default"}}}}},
    }}
    assert inbound_violations(tpl) == [
        f"{INBOUND}LogGroup: not under {CONDITION}",
        f"StripePartnerEventBus: not under {CONDITION}",
        f"{INBOUND}: the rule is not on StripePartnerEventBus",
        f"{INBOUND}: the rule has no DeadLetterConfig",
        f"{INBOUND}: no EventInvokeConfig OnFailure destination",
    ]


def test_the_inbound_path_exists_only_with_a_partner_event_source() -> None:
    without = Stack(ROOT / "template.yaml")
    assert INBOUND not in {f.logical_id for f in without.functions({})}
    assert set(without.event_buses().values()) == {BUS}
    source = "aws.partner/stripe.com/ed_test_contract"
    configured = Stack(ROOT / "template.yaml", parameters={"StripeEventSourceName": source})
    (fn,) = [f for f in configured.functions({}) if f.logical_id == INBOUND]
    (rule,) = fn.rules
    assert (rule.event_bus, rule.pattern, rule.maximum_retry_attempts) == (source, {"source": [source]}, 2)
    assert configured.event_buses()[source] == "StripePartnerEventBus"


def test_the_ledger_streams_its_new_rows_and_the_bus_is_an_output(template: Template) -> None:
    table = dict(resources(template, "AWS::DynamoDB::Table"))[EVENTS_TABLE]
    assert (props(table).get("StreamSpecification") or {}).get("StreamViewType") in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
    outputs = template.get("Outputs") or {}
    assert refers_to(outputs["EventBusName"]["Value"], BUS) and refers_to(outputs["EventBusArn"]["Value"], BUS)
    events = props(template["Resources"][PUBLISHER]).get("Events") or {}
    mapped = [ev.get("Properties") or {} for ev in events.values()]
    assert any(refers_to(m.get("Stream"), EVENTS_TABLE) for m in mapped)
