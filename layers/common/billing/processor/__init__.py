"""The payment processor: `get_processor()` and the interface it returns.

Environment (read on first use):
- PROCESSOR: "stripe" (default) or "fake".
- FAKE_PROCESSOR_URL: with PROCESSOR=fake, the shared Fake's RPC endpoint
  (the local stack sets it, so every function process sees one Fake); unset,
  a FakeProcessor private to this process.
- STRIPE_API_KEY_PARAM: name of the SecureString SSM parameter holding the
  Stripe secret key (the template sets it).
- STRIPE_API_BASE, STRIPE_METER_EVENTS_BASE: optional base URLs, for stubs.

Importing this package is cheap: the Stripe SDK, Powertools' parameters
utility and the Fake are imported only when a processor of that kind is built.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from billing.core.settings import StripeSettings, load
from billing.processor.base import PROCESSOR_METHODS, Processor
from billing.processor.errors import ProcessorFailure, from_stripe_error

if TYPE_CHECKING:
    from billing.processor.fake import FakeProcessor

__all__ = [
    "PROCESSOR_METHODS",
    "Processor",
    "ProcessorFailure",
    "from_stripe_error",
    "get_processor",
    "set_processor",
]

# The key is cached by Powertools for this long; a rotated key is picked up
# within five minutes without a cold start.
API_KEY_MAX_AGE_SECONDS = 300

_lock = threading.Lock()
_override: Processor | None = None
_cached: Processor | None = None
_cached_key: str | None = None
_process_fake: FakeProcessor | None = None


def set_processor(processor: Processor | None) -> None:
    """Use `processor` for every get_processor() call (tests); None restores the
    environment's choice and drops anything cached."""
    global _override, _cached, _cached_key, _process_fake
    with _lock:
        _override = processor
        _cached = None
        _cached_key = None
        _process_fake = None


def get_processor() -> Processor:
    """The processor this process uses, built once (per API key, for Stripe)."""
    global _cached, _cached_key, _process_fake
    with _lock:
        if _override is not None:
            return _override
        kind = (os.environ.get("PROCESSOR") or "stripe").strip().lower()
        if kind == "fake":
            if _cached is None:
                url = os.environ.get("FAKE_PROCESSOR_URL", "").strip()
                if url:
                    from billing.processor.remote import RemoteFakeProcessor

                    _cached = RemoteFakeProcessor(url)
                else:
                    from billing.processor.fake import FakeProcessor

                    _process_fake = FakeProcessor()
                    _cached = _process_fake
            return _cached
        if kind != "stripe":
            from billing.core.errors import ConfigurationError

            raise ConfigurationError(f"PROCESSOR must be 'stripe' or 'fake', not {kind!r}")
        # Asked every time, answered from Powertools' cache: when the cached
        # value expires and SSM returns a rotated key, the client is rebuilt.
        api_key = _stripe_api_key()
        if _cached is None or api_key != _cached_key:
            from billing.processor.stripe_processor import StripeProcessor

            _cached = StripeProcessor(
                api_key,
                base_url=load(StripeSettings).stripe_api_base,
                meter_events_base_url=load(StripeSettings).stripe_meter_events_base,
            )
            _cached_key = api_key
        return _cached


def _stripe_api_key() -> str:
    from aws_lambda_powertools.utilities import parameters

    from billing.core.errors import ConfigurationError

    name = load(StripeSettings).stripe_api_key_param
    value = parameters.get_parameter(name, decrypt=True, max_age=API_KEY_MAX_AGE_SECONDS)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"SSM parameter {name} holds no Stripe API key")
    return value.strip()
