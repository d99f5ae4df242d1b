"""template.yaml's SnapStart and DetailedTracing parameters (issue 11).

- SnapStart (default off): every function publishes versions (SAM's
  AutoPublishAlias `live`, so every trigger - API events, stream mappings,
  schedules - invokes the alias), with SnapStart applied to published
  versions when the parameter is on. SAM cannot make AutoPublishAlias
  conditional, so the alias is there either way, and it must never serve a
  stale configuration: a new version is published when a property changes
  (AutoPublishAliasAllProperties), when the layer does (PublishLambdaVersion)
  and when a parameter the function reads does (its VersionDescription names
  each one: SAM's version hash resolves none of them).
- DetailedTracing (default off) reaches every function as DETAILED_TRACING,
  and Lambda's active tracing stays on.

Checkers in the style of test_template_contract.py: each runs on the real
template, where it finds nothing, and on bad fragments, where it finds
exactly what is wrong.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.cfn import Resolver, load_template

pytestmark = pytest.mark.template

ROOT = Path(__file__).resolve().parents[2]
ALIAS = "live"
APPLY_ON = {"ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}}
# What a version is not: its triggers, and its role's policies (the role is updated in place).
NOT_VERSIONED = ("Events", "Policies", "VersionDescription")
_SUB_NAME = re.compile(r"\$\{([A-Za-z0-9]+)\}")

Template = dict[str, Any]


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def functions(tpl: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each function's properties with Globals merged (maps merge, the function's own win)."""
    globals_ = (tpl.get("Globals") or {}).get("Function") or {}
    for lid, res in (tpl.get("Resources") or {}).items():
        if res.get("Type") == "AWS::Serverless::Function":
            yield lid, _merge(globals_, res.get("Properties") or {})


def _merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in own.items():
        merged[key] = _merge(merged[key], value) if isinstance(merged.get(key), dict) and isinstance(value, dict) \
            else copy.deepcopy(value)
    return merged


def parameters_in(tpl: Template, value: Any) -> set[str]:
    """Template parameters `value` refers to: by Ref, in a Sub, or through a condition."""
    names = set(tpl.get("Parameters") or {})
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= parameters_in(tpl, item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and arg in names:
                found.add(arg)
            elif key == "Fn::Sub":
                text = arg[0] if isinstance(arg, list) else arg
                found |= {n for n in _SUB_NAME.findall(str(text)) if n in names}
                found |= parameters_in(tpl, arg[1:] if isinstance(arg, list) else [])
            elif key == "Fn::If":
                condition = (tpl.get("Conditions") or {}).get(arg[0])
                found |= parameters_in(tpl, condition) | parameters_in(tpl, arg[1:])
            else:
                found |= parameters_in(tpl, arg)
    return found


def publish_problems(tpl: Template) -> list[str]:
    problems = []
    for lid, props in functions(tpl):
        if props.get("AutoPublishAlias") != ALIAS:
            problems.append(f"{lid}: AutoPublishAlias must be {ALIAS} (every trigger through the alias)")
        if props.get("AutoPublishAliasAllProperties") is not True:
            problems.append(f"{lid}: AutoPublishAliasAllProperties must be true (a property change publishes)")
        if props.get("SnapStart") != APPLY_ON:
            problems.append(f"{lid}: SnapStart must apply to published versions when SnapStartOn")
        read = parameters_in(tpl, {k: v for k, v in props.items() if k not in NOT_VERSIONED})
        described = props.get("VersionDescription")
        named = parameters_in(tpl, described) if isinstance(described, dict) and "Fn::Sub" in described else set()
        if read - named:
            problems.append(f"{lid}: VersionDescription must name {sorted(read - named)} (a change must publish)")
        for layer in props.get("Layers") or []:
            ref = layer.get("Ref") if isinstance(layer, dict) else None
            layer_props = ((tpl.get("Resources") or {}).get(ref) or {}).get("Properties") or {}
            if ref and layer_props.get("PublishLambdaVersion") is not True:
                problems.append(f"{lid}: layer {ref} must set PublishLambdaVersion (a new layer publishes)")
    return problems


def switch_problems(tpl: Template) -> list[str]:
    """Both parameters off by default; SnapStartOn reads SnapStart; the tracing switch reaches
    every function; Lambda's own active tracing stays on."""
    problems = []
    params = tpl.get("Parameters") or {}
    for name in ("SnapStart", "DetailedTracing"):
        spec = params.get(name) or {}
        if spec.get("Default") != "false" or sorted(spec.get("AllowedValues") or []) != ["false", "true"]:
            problems.append(f"{name}: a parameter of true/false, default false")
    if (tpl.get("Conditions") or {}).get("SnapStartOn") != {"Fn::Equals": [{"Ref": "SnapStart"}, "true"]}:
        problems.append("SnapStartOn: must be SnapStart == true")
    for lid, props in functions(tpl):
        variables = (props.get("Environment") or {}).get("Variables") or {}
        if variables.get("DETAILED_TRACING") != {"Ref": "DetailedTracing"}:
            problems.append(f"{lid}: DETAILED_TRACING must be the DetailedTracing parameter")
        if props.get("Tracing") != "Active":
            problems.append(f"{lid}: Lambda's active tracing must stay on")
    return problems


def test_every_function_publishes_through_its_alias_and_never_serves_a_stale_version(template: Template) -> None:
    assert len(list(functions(template))) >= 5
    assert publish_problems(template) == []


def test_each_version_description_fits_lambdas_limit_at_the_defaults(template: Template) -> None:
    resolver = Resolver(template)
    for lid, props in functions(template):
        assert len(resolver.resolve(props["VersionDescription"])) <= 256 - 64, f"{lid}: leave room for longer names"


def test_both_switches_default_off_and_reach_every_function(template: Template) -> None:
    assert switch_problems(template) == []


def test_the_publish_check_finds_what_is_wrong(template: Template) -> None:
    bad = copy.deepcopy(template)
    resources = bad["Resources"]
    resources["ApiFunction"]["Properties"]["AutoPublishAlias"] = "other"
    del resources["WebhookFunction"]["Properties"]["AutoPublishAliasAllProperties"]
    resources["MeterReporterFunction"]["Properties"]["SnapStart"] = {"ApplyOn": "PublishedVersions"}
    # A parameter read by the sweeper that its description does not name.
    resources["MeterSweeperFunction"]["Properties"]["VersionDescription"] = {"Fn::Sub": "SnapStart=${SnapStart}"}
    resources["CommonLayer"]["Properties"].pop("PublishLambdaVersion")
    problems = publish_problems(bad)
    assert "ApiFunction: AutoPublishAlias must be live (every trigger through the alias)" in problems
    assert "WebhookFunction: AutoPublishAliasAllProperties must be true (a property change publishes)" in problems
    assert "MeterReporterFunction: SnapStart must apply to published versions when SnapStartOn" in problems
    assert ("MeterSweeperFunction: VersionDescription must name ['DetailedTracing', 'KmsKeyArn', 'LogLevel', "
            "'MeterApi', 'MeterSweepMinAgeSeconds', 'MeterSweeperReservedConcurrency', 'StripeApiKeyParameter', "
            "'StripeWebhookSecretsParameter'] (a change must publish)") in problems
    assert sum("PublishLambdaVersion" in p for p in problems) == len(list(functions(bad)))
    assert len(problems) == 4 + len(list(functions(bad)))


def test_the_switch_check_finds_what_is_wrong(template: Template) -> None:
    bad = copy.deepcopy(template)
    bad["Parameters"]["SnapStart"]["Default"] = "true"
    bad["Conditions"]["SnapStartOn"] = {"Fn::Equals": [{"Ref": "DetailedTracing"}, "true"]}
    bad["Globals"]["Function"]["Environment"]["Variables"].pop("DETAILED_TRACING")
    bad["Resources"]["WebhookFunction"]["Properties"]["Tracing"] = "PassThrough"
    problems = switch_problems(bad)
    assert problems[:2] == ["SnapStart: a parameter of true/false, default false",
                            "SnapStartOn: must be SnapStart == true"]
    assert sum("DETAILED_TRACING" in p for p in problems) == len(list(functions(bad)))
    assert "WebhookFunction: Lambda's active tracing must stay on" in problems


def test_a_parameter_is_found_by_ref_in_a_sub_and_through_a_condition(template: Template) -> None:
    assert parameters_in(template, {"Fn::If": ["SnapStartOn", "a", {"Ref": "LogLevel"}]}) == {"SnapStart", "LogLevel"}
    assert parameters_in(template, {"Fn::Sub": ["${MeterApi}-${x}", {"x": {"Ref": "Stage"}}]}) == {"MeterApi", "Stage"}
    assert parameters_in(template, {"Ref": "AWS::Region"}) == set()


def test_version_descriptions_fit_lambdas_limit_with_long_parameter_values(template: Template) -> None:
    """A version's Description holds at most 256 characters: a deploy with a
    customer managed key and a partner event source (the longest values the
    parameters take in practice) must still publish."""
    values = {name: str(spec.get("Default", "")) for name, spec in (template.get("Parameters") or {}).items()}
    values.update({
        "KmsKeyArn": "arn:aws:kms:eu-central-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        "StripeEventSourceName": "aws.partner/stripe.com/ed_test_61RZkQ3fD8f1qYbKT16RZkQ3fD8f1qYbKT1aBcD",
        "LogLevel": "CRITICAL", "SnapStart": "false", "DetailedTracing": "false",
    })
    for lid, props in functions(template):
        described = props.get("VersionDescription")
        assert isinstance(described, dict) and isinstance(described.get("Fn::Sub"), str), lid
        rendered = _SUB_NAME.sub(lambda m: values[m.group(1)], described["Fn::Sub"])
        assert len(rendered) <= 256, f"{lid}: {len(rendered)} characters"
