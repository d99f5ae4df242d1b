"""The payment processor: `get_processor()` and the interface it returns.

The layer builds one implementation, the StripeProcessor. Whatever else a
process should use instead is installed with `set_processor()`: the local
stack injects its shared Fake into every function worker that way, and tests
inject theirs (the Fake lives in devstack/fake_stripe/, never in the layer).

Environment (read when the StripeProcessor is built):
- STRIPE_API_KEY_PARAM: name of the SecureString SSM parameter holding the
  Stripe secret key (the template sets it).
- STRIPE_API_BASE, STRIPE_METER_EVENTS_BASE: optional base URLs, for stubs.

Importing this package is cheap: the Stripe SDK and Powertools' parameters
utility are imported only when the StripeProcessor is built.
"""

from __future__ import annotations

import threading

from billing.core import snapstart
from billing.core.settings import StripeSettings, load
from billing.processor.base import PROCESSOR_METHODS, Processor
from billing.processor.errors import ProcessorFailure, from_stripe_error

__all__ = [
    "PROCESSOR_METHODS",
    "Processor",
    "ProcessorFailure",
    "from_stripe_error",
    "get_processor",
    "processor_name",
    "set_processor",
]

# The key is cached by Powertools for this long; a rotated key is picked up
# within five minutes without a cold start.
API_KEY_MAX_AGE_SECONDS = 300
# What the layer builds when nothing is installed.
DEFAULT_PROCESSOR_NAME = "stripe"

_lock = threading.Lock()
_override: Processor | None = None
_cached: Processor | None = None
_cached_key: str | None = None


def set_processor(processor: Processor | None) -> None:
    """Use `processor` for every get_processor() call of this process (the
    local stack's Fake, a test's); None removes it and drops the cached client."""
    global _override, _cached, _cached_key
    with _lock:
        _override = processor
        _cached = None
        _cached_key = None


def processor_name() -> str:
    """The `processor` column of rows this deployment creates: the installed
    processor's `name`, else "stripe". Never builds a processor."""
    with _lock:
        return _override.name if _override is not None else DEFAULT_PROCESSOR_NAME


def get_processor() -> Processor:
    """The installed processor, else the StripeProcessor (built once per API key)."""
    global _cached, _cached_key
    with _lock:
        if _override is not None:
            return _override
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


@snapstart.before_snapshot
def _warm() -> None:
    """What building the StripeProcessor imports, into a SnapStart snapshot (never
    the client: it holds the API key)."""
    import stripe  # noqa: F401
    from aws_lambda_powertools.utilities import parameters  # noqa: F401

    import billing.processor.stripe_processor  # noqa: F401


@snapstart.after_restore
def _drop_client() -> None:
    """The StripeProcessor (its HTTP connections) and its key: read and built again
    after a SnapStart restore. An installed processor stays."""
    global _cached, _cached_key
    with _lock:
        _cached = None
        _cached_key = None


def _stripe_api_key() -> str:
    from aws_lambda_powertools.utilities import parameters

    from billing.core.errors import ConfigurationError

    name = load(StripeSettings).stripe_api_key_param
    value = parameters.get_parameter(name, decrypt=True, max_age=API_KEY_MAX_AGE_SECONDS)
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"SSM parameter {name} holds no Stripe API key")
    return value.strip()
