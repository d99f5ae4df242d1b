"""The process's Powertools Tracer, as the DetailedTracing template parameter
asks (DETAILED_TRACING; DESIGN.md section 9).

Lambda's active tracing (template.yaml, `Tracing: Active`) records every
invocation, its duration and its errors without any code in the function.
Detailed tracing adds Powertools' subsegments (the handler, the AWS and
Stripe calls the X-Ray SDK patches) and costs the X-Ray SDK's import on
every cold start, so it is off unless asked for:

- off: the X-Ray SDK is never imported. The Tracer gets a provider that
  records nothing, so handlers keep their `@tracer.capture_lambda_handler`
  and nothing else changes.
- on: Powertools' Tracer, which never captures a response or an exception's
  payload (response bodies hold customers' emails, names and metadata; an
  exception's message may quote what it refused). A failing handler or
  method is marked as a fault with its exception's type, and nothing more:
  the exception is raised again outside its subsegment, since the X-Ray SDK
  records the message and stack of an exception that leaves one.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from billing.core.settings import ObservabilitySettings, load

# AWS and Stripe calls: botocore (DynamoDB, SSM; PynamoDB calls through it) and
# requests (the Stripe SDK's HTTP client). Powertools' default would patch, so
# import, every library the X-Ray SDK knows.
PATCHED_MODULES = ("botocore", "requests")
ERROR_ANNOTATION = "error_type"


def build_tracer() -> Tracer:
    """The Tracer for this process: private (detailed tracing on) or recording nothing."""
    if load(ObservabilitySettings).detailed_tracing:
        return PrivateTracer(patch_modules=PATCHED_MODULES)
    # Not `disabled=True`: Powertools imports the X-Ray SDK to disable it.
    return Tracer(provider=UntracedProvider(), disabled=False, auto_patch=False)


# -- off -------------------------------------------------------------------------------


class _UntracedSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class UntracedProvider(BaseProvider):
    """A Powertools tracing provider that records nothing and imports nothing."""

    _segment = _UntracedSegment()

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Generator[BaseSegment]:
        yield self._segment

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any
                                  ) -> AsyncGenerator[BaseSegment]:
        yield self._segment

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


# -- on --------------------------------------------------------------------------------


class _Raised:
    """An exception carried out of a subsegment, to be raised again outside it."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class PrivateTracer(Tracer):
    """Powertools' Tracer that never records a response or an exception's payload,
    whatever a decorator asks for."""

    def capture_lambda_handler(self, lambda_handler: Callable[..., Any] | None = None,
                               capture_response: bool | None = None,
                               capture_error: bool | None = None) -> Callable[..., Any]:
        if lambda_handler is None:
            return functools.partial(self.capture_lambda_handler)
        traced = super().capture_lambda_handler(self._shield(lambda_handler), capture_response=False,
                                                capture_error=False)
        return _unshield(lambda_handler, traced)

    def capture_method(self, method: Any = None, capture_response: bool | None = None,
                       capture_error: bool | None = None) -> Any:
        if method is None:
            return functools.partial(self.capture_method)
        # Powertools' decorator itself: its partial form would call this override again.
        # (Its overloads do not declare the method-and-flags call it supports.)
        decorate = cast(Any, super().capture_method)
        # Powertools' own dispatch (Tracer.capture_method).
        plain = not (inspect.iscoroutinefunction(method) or inspect.isgeneratorfunction(method)
                     or inspect.isgeneratorfunction(getattr(method, "__wrapped__", None)))
        if not plain:
            # Coroutines, generators and context managers keep Powertools' own
            # handling, responses and errors still off (an exception's
            # message then reaches the subsegment: prefer plain functions).
            return decorate(method, capture_response=False, capture_error=False)
        traced = decorate(self._shield(method), capture_response=False, capture_error=False)
        return _unshield(method, traced)

    def _shield(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`function`, returning its exception instead of raising it through the subsegment."""

        @functools.wraps(function)
        def shielded(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - raised again by _unshield
                self._mark_fault(error)
                return _Raised(error)

        return shielded

    def _mark_fault(self, error: Exception) -> None:
        self.put_annotation(ERROR_ANNOTATION, type(error).__name__)
        # The X-Ray recorder (the provider when tracing is on) knows the open subsegment.
        current = getattr(self.provider, "current_subsegment", None)
        subsegment = current() if callable(current) else None
        if subsegment is not None:
            subsegment.add_fault_flag()


def _unshield(function: Callable[..., Any], traced: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def unshielded(*args: Any, **kwargs: Any) -> Any:
        result = traced(*args, **kwargs)
        if isinstance(result, _Raised):
            raise result.error
        return result

    return cast(Callable[..., Any], unshielded)
