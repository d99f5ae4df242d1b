"""`make run` takes any template parameter as `sam deploy --parameter-overrides`
does (PARAMETER_OVERRIDES, DESIGN.md section 6): names and allowed values are
checked against template.yaml before anything starts, and the values reach
the functions as the template resolves them."""

from __future__ import annotations

import pytest

from devstack.cfn import TemplateError, check_parameters, load_template, parse_parameter_overrides
from devstack.stack import ROOT, LocalStack, Settings, StartupError
from tests.devstack.test_startup import assert_one_line_failure, run_devstack


def function_env(settings: Settings, logical_id: str) -> dict[str, str]:
    """A function's environment as the stack would start it (nothing is started)."""
    stack = LocalStack(settings)
    (spec,) = [f for f in stack.stack.functions({}) if f.logical_id == logical_id]
    return spec.environment


def test_the_sam_deploy_syntax_is_parsed_with_quotes() -> None:
    assert parse_parameter_overrides('WebhookStuckAfterSeconds=5 MeterApi=v2 LogLevel="DEBUG" A=\'x y\' B=') == {
        "WebhookStuckAfterSeconds": "5", "MeterApi": "v2", "LogLevel": "DEBUG", "A": "x y", "B": ""}
    assert parse_parameter_overrides("") == {}
    with pytest.raises(TemplateError, match="'MeterApi' is not Key=Value"):
        parse_parameter_overrides("MeterApi")
    with pytest.raises(TemplateError, match="cannot be read"):
        parse_parameter_overrides('MeterApi="v2')


def test_any_parameter_reaches_the_functions() -> None:
    settings = Settings.from_env({"PARAMETER_OVERRIDES": "WebhookStuckAfterSeconds=5 MeterApi=v2"})
    assert settings.meter_api == "v2"
    env = function_env(settings, "WebhookProcessorFunction")
    assert env["WEBHOOK_STUCK_AFTER_SECONDS"] == "5"
    assert function_env(settings, "MeterReporterFunction")["METER_API"] == "v2"
    # Without it, the template's default.
    assert function_env(Settings.from_env({}), "WebhookProcessorFunction")["WEBHOOK_STUCK_AFTER_SECONDS"] == "900"


def test_the_older_variables_keep_working_and_must_agree() -> None:
    assert Settings.from_env({"METER_API": "v2"}).meter_api == "v2"
    assert Settings.from_env({"METER_API": "v2", "PARAMETER_OVERRIDES": "MeterApi=v2"}).meter_api == "v2"
    with pytest.raises(StartupError, match="METER_API='v1' and PARAMETER_OVERRIDES MeterApi='v2' disagree"):
        Settings.from_env({"METER_API": "v1", "PARAMETER_OVERRIDES": "MeterApi=v2"})
    assert Settings.from_env({"PARAMETER_OVERRIDES": "StripeEventSourceName="}).stripe_event_source == ""


def test_unknown_names_and_refused_values_are_named() -> None:
    doc = load_template(ROOT / "template.yaml")
    with pytest.raises(TemplateError, match="unknown template parameter\\(s\\): NoSuchOne, WebhookStuckAfter "):
        check_parameters(doc, {"WebhookStuckAfter": "5", "NoSuchOne": "1", "MeterApi": "v2"})
    with pytest.raises(TemplateError, match="MeterApi='v3' is not one of v1, v2"):
        check_parameters(doc, {"MeterApi": "v3"})
    with pytest.raises(TemplateError, match="WebhookStuckAfterSeconds='soon' is not a number"):
        check_parameters(doc, {"WebhookStuckAfterSeconds": "soon"})
    with pytest.raises(TemplateError, match="WebhookStuckAfterSeconds=0 is below its MinValue 1"):
        check_parameters(doc, {"WebhookStuckAfterSeconds": "0"})
    with pytest.raises(TemplateError, match="Stage='Live!' does not match"):
        check_parameters(doc, {"Stage": "Live!"})
    check_parameters(doc, {"WebhookStuckAfterSeconds": "5", "SnapStart": "true"})  # fine: no error


def test_make_run_refuses_an_unknown_parameter_in_one_line() -> None:
    result = run_devstack({"PORT": "0", "PARAMETER_OVERRIDES": "WebhookStuckAfterSeconds=5 WebhookStuckSeconds=5"})
    assert_one_line_failure(result, "unknown template parameter(s): WebhookStuckSeconds")


def test_make_run_refuses_a_value_outside_allowed_values_in_one_line() -> None:
    result = run_devstack({"PORT": "0", "PARAMETER_OVERRIDES": 'SnapStart="maybe"'})
    assert_one_line_failure(result, "SnapStart='maybe' is not one of true, false")
