"""Settings: read once, typed, and a missing or malformed variable named at
cold start. The template and the settings classes cannot drift apart: each
function's environment in template.yaml sets every variable its settings
require."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing.core import settings
from billing.core.errors import ConfigurationError
from devstack.template import Stack

ROOT = Path(__file__).resolve().parents[2]

FUNCTIONS = {
    "ApiFunction": settings.ApiSettings,
    "WebhookFunction": settings.WebhookSettings,
    "WebhookProcessorFunction": settings.WebhookProcessorSettings,
    "MeterReporterFunction": settings.MeterReporterSettings,
    "MeterSweeperFunction": settings.MeterSweeperSettings,
    "StripeEventsFunction": settings.StripeEventsSettings,
    "EventPublisherFunction": settings.EventPublisherSettings,
    "BackfillFunction": settings.BackfillSettings,
    "EventsPollFunction": settings.EventsPollSettings,
}
# StripeEventsFunction exists only with a partner event source (template Condition).
PARAMETERS = {"StripeEventSourceName": "aws.partner/stripe.com/ed_test_settings"}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    settings.load.cache_clear()
    yield
    settings.load.cache_clear()


def _required(model: type) -> set[str]:
    import dataclasses

    return {f.metadata["env"] for f in dataclasses.fields(model) if f.default is dataclasses.MISSING}


def test_every_missing_variable_is_named_in_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _required(settings.WebhookSettings):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as error:
        settings.load(settings.WebhookSettings)
    assert "WEBHOOK_EVENTS_TABLE is not set" in str(error.value)
    assert "STRIPE_WEBHOOK_SECRETS_PARAM is not set" in str(error.value)


def test_values_are_typed_defaults_apply_and_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METER_API", "v2")
    monkeypatch.setenv("METER_V1_CONCURRENCY", "3")
    monkeypatch.delenv("METER_TRANSIENT_TRIES", raising=False)
    delivery = settings.load(settings.DeliverySettings)
    assert (delivery.meter_api, delivery.meter_v1_concurrency, delivery.meter_transient_tries) == ("v2", 3, 4)
    settings.load.cache_clear()
    monkeypatch.setenv("METER_API", "v3")
    monkeypatch.setenv("METER_V1_CONCURRENCY", "many")
    with pytest.raises(ConfigurationError) as error:
        settings.load(settings.DeliverySettings)
    assert "METER_API must be one of v1, v2" in str(error.value)
    assert "METER_V1_CONCURRENCY is not a number" in str(error.value)


def test_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEP_MAX_ROWS", "7")
    first = settings.load(settings.SweepSettings)
    monkeypatch.setenv("SWEEP_MAX_ROWS", "9")
    assert settings.load(settings.SweepSettings) is first


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_the_template_sets_what_each_function_requires(logical_id: str) -> None:
    stack = Stack(ROOT / "template.yaml", parameters=PARAMETERS)
    spec = next(f for f in stack.functions({}) if f.logical_id == logical_id)
    missing = _required(FUNCTIONS[logical_id]) - set(spec.environment)
    assert not missing, f"{logical_id}: template.yaml does not set {sorted(missing)}"


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_a_function_without_its_variables_fails_its_cold_start(logical_id: str, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    stack = Stack(ROOT / "template.yaml", parameters=PARAMETERS)
    spec = next(f for f in stack.functions({}) if f.logical_id == logical_id)
    for name in _required(FUNCTIONS[logical_id]):
        monkeypatch.delenv(name, raising=False)
    module = f"functions.{spec.code_dir.name}.app"
    sys.modules.pop(module, None)
    with pytest.raises(ConfigurationError, match="is not set"):
        importlib.import_module(module)
    sys.modules.pop(module, None)
