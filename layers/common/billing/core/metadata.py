"""Stripe's metadata contract (DESIGN.md section 3), shared by every resource
that carries metadata."""

from __future__ import annotations

import re
from typing import Any

from billing.core.errors import ValidationFailed

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500
# Control characters: never meaningful in a key, and in a value only as
# layout (tab, line feed, carriage return). The rest (NUL, ESC, DEL...) only
# ever arrive by mistake or to corrupt whatever later prints or exports the
# map, so they are refused rather than stored and sent to Stripe.
_KEY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _problems(metadata: Any, *, allow_removals: bool) -> dict[str, str]:
    if not isinstance(metadata, dict):
        return {"metadata": "must be an object of string keys to string values"}
    problems: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            problems[str(key)] = "key must be a non-empty string"
        elif len(key) > MAX_KEY_LENGTH:
            problems[key] = f"key is longer than {MAX_KEY_LENGTH} characters"
        elif "[" in key or "]" in key:
            problems[key] = "key must not contain [ or ]"
        elif _KEY_CONTROL.search(key):
            problems[key] = "key must not contain control characters"
        elif value is None and allow_removals:
            continue
        elif isinstance(value, dict | list):
            problems[key] = "nested values are not allowed"
        elif not isinstance(value, str):
            problems[key] = "value must be a string"
        elif len(value) > MAX_VALUE_LENGTH:
            problems[key] = f"value is longer than {MAX_VALUE_LENGTH} characters"
        elif _VALUE_CONTROL.search(value):
            problems[key] = "value must not contain control characters (other than tab and line breaks)"
    return problems


def _raise(problems: dict[str, str]) -> None:
    keys = ", ".join(sorted(problems))
    raise ValidationFailed(f"invalid metadata: {keys}", {"metadata": problems})


def validate(metadata: Any) -> dict[str, str]:
    """A complete metadata map for a create: every rule, no removals."""
    problems = _problems(metadata, allow_removals=False)
    if problems:
        _raise(problems)
    cleaned = {k: v for k, v in metadata.items() if v != ""}
    if len(cleaned) > MAX_KEYS:
        _raise({"metadata": f"at most {MAX_KEYS} keys"})
    return cleaned


def merge(current: dict[str, str], update: Any) -> dict[str, str]:
    """Stripe's update rule: keys merge; a key set to "" or null is removed."""
    problems = _problems(update, allow_removals=True)
    if problems:
        _raise(problems)
    merged = dict(current)
    for key, value in update.items():
        if value is None or value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > MAX_KEYS:
        _raise({"metadata": f"at most {MAX_KEYS} keys after the merge, got {len(merged)}"})
    return merged
