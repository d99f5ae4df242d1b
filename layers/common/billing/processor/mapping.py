"""How domain code talks to the processor: which one is configured, and how
its failures become domain errors (the caller never sees a processor payload)."""

from __future__ import annotations

import os
from typing import NoReturn

from billing.core.errors import NotFound, ProcessorError, ValidationFailed
from billing.processor.errors import ProcessorFailure


def processor_name() -> str:
    """The `processor` column of rows this deployment creates."""
    return "fake" if os.environ.get("PROCESSOR", "stripe").strip().lower() == "fake" else "stripe"


def raise_for_processor(failure: ProcessorFailure) -> NoReturn:
    details = {"processor_code": failure.code} if failure.code else {}
    if failure.transient or failure.status is None or failure.status >= 500:
        raise ProcessorError("the payment processor is unavailable; retry later", details) from None
    if failure.code == "resource_missing":
        raise NotFound(failure.message or "not found at the processor", details) from None
    raise ValidationFailed(failure.message or "the payment processor rejected the request", details) from None
