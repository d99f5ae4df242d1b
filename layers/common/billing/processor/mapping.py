"""How the processor's failures become domain errors (the caller never sees a
processor payload). Which processor is configured: billing.processor.processor_name."""

from __future__ import annotations

from typing import NoReturn

from billing.core.errors import NotFound, ProcessorError, ValidationFailed
from billing.processor.errors import ProcessorFailure


def raise_for_processor(failure: ProcessorFailure) -> NoReturn:
    details = {"processor_code": failure.code} if failure.code else {}
    if failure.transient or failure.status is None or failure.status >= 500:
        raise ProcessorError("the payment processor is unavailable; retry later", details) from None
    if failure.code == "resource_missing":
        raise NotFound(failure.message or "not found at the processor", details) from None
    raise ValidationFailed(failure.message or "the payment processor rejected the request", details) from None
