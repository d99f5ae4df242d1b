"""Typed reads of a processor object that skipped every check (webhook
payloads, re-fetched objects): a value of the wrong type reads as absent."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def number(value: Any) -> int | float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def boolean(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def metadata(obj: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in mapping(obj.get("metadata")).items() if isinstance(k, str) and isinstance(v, str)}


def reference(value: Any) -> str | None:
    """An id from a field that is either the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return text(value)
