"""get_processor(): the StripeProcessor the layer builds, unless a processor (the
Fake) was installed with set_processor(); processor_name() says which."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from billing.core import settings as config
from billing.core.errors import ConfigurationError
from billing.processor import get_processor, processor_name, set_processor
from billing.processor.stripe_processor import StripeProcessor
from devstack.fake_stripe import FakeProcessor, RemoteFakeProcessor

ENV = ("PROCESSOR", "FAKE_PROCESSOR_URL", "STRIPE_API_KEY_PARAM", "STRIPE_API_BASE", "STRIPE_METER_EVENTS_BASE")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    config.load.cache_clear()
    set_processor(None)
    yield
    set_processor(None)
    config.load.cache_clear()


class FakeSSM:
    """Stands in for Powertools' get_parameter; records each call."""

    def __init__(self) -> None:
        self.values = {"/billing-functions/stripe/api-key": "sk_test_one"}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_parameter(self, name: str, **kwargs: Any) -> str:
        self.calls.append((name, kwargs))
        return self.values[name]


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> FakeSSM:
    from aws_lambda_powertools.utilities import parameters

    fake_ssm = FakeSSM()
    monkeypatch.setattr(parameters, "get_parameter", fake_ssm.get_parameter)
    monkeypatch.setenv("STRIPE_API_KEY_PARAM", "/billing-functions/stripe/api-key")
    return fake_ssm


def test_the_environment_cannot_select_the_fake(monkeypatch: pytest.MonkeyPatch, ssm: FakeSSM) -> None:
    # The variables the layer once read to build a Fake mean nothing now.
    monkeypatch.setenv("PROCESSOR", "fake")
    monkeypatch.setenv("FAKE_PROCESSOR_URL", "http://127.0.0.1:4010/")
    processor = get_processor()
    assert isinstance(processor, StripeProcessor)
    assert processor_name() == "stripe"


def test_an_installed_remote_fake_is_the_shared_fake() -> None:
    installed = RemoteFakeProcessor("http://127.0.0.1:4010/")
    set_processor(installed)
    processor = get_processor()
    assert processor is installed
    assert isinstance(processor, RemoteFakeProcessor)
    assert processor.url == "http://127.0.0.1:4010/"
    assert get_processor() is processor


def test_stripe_is_the_default_with_the_key_from_ssm(monkeypatch: pytest.MonkeyPatch,
                                                     ssm: FakeSSM) -> None:
    monkeypatch.setenv("STRIPE_API_BASE", "http://127.0.0.1:12111")
    monkeypatch.setenv("STRIPE_METER_EVENTS_BASE", "http://127.0.0.1:12112")
    processor = get_processor()
    assert isinstance(processor, StripeProcessor)
    assert processor.api_key == "sk_test_one"
    assert ssm.calls == [("/billing-functions/stripe/api-key", {"decrypt": True, "max_age": 300})]
    addresses = processor._client._requestor._options.base_addresses
    assert (addresses["api"], addresses["meter_events"]) == ("http://127.0.0.1:12111", "http://127.0.0.1:12112")
    assert get_processor() is processor


def test_a_rotated_key_rebuilds_the_client(ssm: FakeSSM) -> None:
    first = get_processor()
    ssm.values["/billing-functions/stripe/api-key"] = "sk_test_two"
    second = get_processor()
    assert second is not first
    assert isinstance(second, StripeProcessor) and second.api_key == "sk_test_two"


def test_missing_configuration_fails_with_one_line() -> None:
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY_PARAM"):
        get_processor()


def test_set_processor_installs_a_processor_until_removed() -> None:
    mine = FakeProcessor()
    set_processor(mine)
    assert get_processor() is mine
    set_processor(None)
    with pytest.raises(ConfigurationError, match="STRIPE_API_KEY_PARAM"):
        get_processor()  # removed: the StripeProcessor again


def test_processor_name_is_the_installed_processors_without_building_stripe(ssm: FakeSSM) -> None:
    assert processor_name() == "stripe"
    assert ssm.calls == []  # no key fetched, no client built
    set_processor(FakeProcessor())
    assert processor_name() == "fake"
    set_processor(RemoteFakeProcessor("http://127.0.0.1:4010/"))
    assert processor_name() == "fake"
    set_processor(None)
    assert processor_name() == "stripe"
    assert processor_name() == get_processor().name == "stripe"
