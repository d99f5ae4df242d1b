"""Lambda event filtering (FilterCriteria) for DynamoDB stream records.

Lambda matches each record, as it would deliver it, against the mapping's
filter patterns with the same engine as EventBridge (aws/event-ruler). The
rules reproduced here, because a local filter that is more lenient than the
real one hides a pattern that drops records in production:

- A pattern is a JSON object mirroring the record. Its leaves are arrays of
  conditions, OR'd; its keys are AND'd. Several filters are OR'd.
- A value that is an array in the record matches if any element matches, and
  objects inside arrays are matched element by element (a pattern naming two
  fields cannot take one from each of two array elements).
- A key the pattern names but the record lacks fails every condition except
  `{"exists": false}`. An object or an empty array is not a leaf: for leaf
  conditions it counts as missing (so `exists: false` matches it).
- JSON null is a value: `[null]` matches it, `exists: true` matches it and
  `anything-but` matches it (null is not the excluded value).
- Exact values compare with their JSON type: "1" is not 1, and true is not 1.
  DynamoDB stream images carry numbers as strings ({"N": "10"}), so a
  `numeric` condition never matches an "N" value; that is what Lambda does
  too, which is why patterns on numbers use exact strings.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["PatternError", "matches", "matches_any", "validate_pattern"]


class PatternError(ValueError):
    """The filter pattern is not one Lambda would accept."""


class _Missing:
    """The record has no (leaf) value at the pattern's path."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": operator.eq, ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_STRING_OPS = ("prefix", "suffix", "equals-ignore-case", "wildcard")


def matches_any(patterns: Iterable[Mapping[str, Any]] | None, record: Mapping[str, Any]) -> bool:
    """True if the record passes the mapping's filters: no filters pass everything,
    several filters are alternatives."""
    pattern_list = list(patterns or ())
    if not pattern_list:
        return True
    return any(matches(pattern, record) for pattern in pattern_list)


def matches(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """True if `record` matches the filter `pattern` (one FilterCriteria.Filters[].Pattern)."""
    if not isinstance(pattern, Mapping):
        raise PatternError("a filter pattern must be a JSON object")
    return _match_object(pattern, record)


def validate_pattern(pattern: Any) -> None:
    """Raise PatternError for a pattern Lambda would reject, so a template
    mistake fails when the stack starts rather than silently matching nothing."""
    if not isinstance(pattern, Mapping):
        raise PatternError("a filter pattern must be a JSON object")
    for key, sub in pattern.items():
        if _is_or(key, sub):
            for alternative in sub:
                validate_pattern(alternative)
        elif isinstance(sub, Mapping):
            validate_pattern(sub)
        elif isinstance(sub, list):
            if not sub:
                raise PatternError(f"{key}: empty arrays are not allowed")
            for condition in sub:
                _check_condition(key, condition)
        else:
            raise PatternError(f"{key}: match values must be inside an array, got {sub!r}")


# -- structure ------------------------------------------------------------------------


def _is_or(key: str, sub: Any) -> bool:
    # event-ruler only reads "$or" as the OR primitive when it holds two or more
    # objects; otherwise "$or" is an ordinary field name.
    return key == "$or" and isinstance(sub, list) and len(sub) >= 2 and all(isinstance(s, Mapping) for s in sub)


def _match_object(pattern: Mapping[str, Any], node: Any) -> bool:
    fields = node if isinstance(node, Mapping) else {}
    for key, sub in pattern.items():
        if _is_or(key, sub):
            if not any(_match_object(alternative, node) for alternative in sub):
                return False
        elif isinstance(sub, Mapping):
            if not _match_nested(sub, fields.get(key, MISSING)):
                return False
        elif isinstance(sub, list):
            if not _match_leaf(sub, fields.get(key, MISSING)):
                return False
        else:
            raise PatternError(f"{key}: match values must be inside an array, got {sub!r}")
    return True


def _match_nested(pattern: Mapping[str, Any], value: Any) -> bool:
    # An array of objects is matched one element at a time, which keeps fields
    # from different elements apart (event-ruler's "array consistency").
    if isinstance(value, list) and value:
        return any(_match_nested(pattern, element) for element in value)
    # Missing, a scalar or an empty array: only `exists: false` leaves can match,
    # which _match_object decides by seeing no fields.
    return _match_object(pattern, value)


def _match_leaf(conditions: list[Any], value: Any) -> bool:
    if not conditions:
        raise PatternError("empty arrays are not allowed in a filter pattern")
    if isinstance(value, list):
        if not value:
            value = MISSING
        else:
            # Every element is a candidate value; an element that is itself an
            # object is not a leaf.
            return any(_match_leaf(conditions, element) for element in value)
    if isinstance(value, Mapping):
        value = MISSING
    return any(_match_condition(condition, value) for condition in conditions)


# -- conditions -----------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_equal(expected: Any, value: Any) -> bool:
    """Equality with JSON types: numbers compare numerically, bool and numbers
    never equal each other (Python's True == 1 must not leak in)."""
    if expected is None or value is None:
        return expected is None and value is None
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(expected, bool) and isinstance(value, bool) and expected is value
    if _is_number(expected) or _is_number(value):
        return _is_number(expected) and _is_number(value) and float(expected) == float(value)
    if isinstance(expected, str) and isinstance(value, str):
        return expected == value
    return False


def _match_condition(condition: Any, value: Any) -> bool:
    if isinstance(condition, Mapping):
        return _match_operator(condition, value)
    if isinstance(condition, list):
        raise PatternError(f"nested arrays are not allowed in a filter pattern: {condition!r}")
    if value is MISSING:
        return False
    return _json_equal(condition, value)


def _match_operator(condition: Mapping[str, Any], value: Any) -> bool:
    if len(condition) != 1:
        raise PatternError(f"one operator per condition object, got {dict(condition)!r}")
    ((op, arg),) = condition.items()
    if op == "exists":
        if not isinstance(arg, bool):
            raise PatternError("exists match pattern must be either true or false")
        return (value is not MISSING) is arg
    if value is MISSING:
        # Every other operator needs the field to be there, anything-but included.
        return False
    if op == "anything-but":
        return _match_anything_but(arg, value)
    if op == "numeric":
        return _match_numeric(arg, value)
    if op == "cidr":
        return _match_cidr(arg, value)
    if op in _STRING_OPS:
        return _match_string_op(op, arg, value)
    raise PatternError(f"unrecognized match type {op}")


def _match_string_op(op: str, arg: Any, value: Any) -> bool:
    if op in ("prefix", "suffix") and isinstance(arg, Mapping):
        # {"prefix": {"equals-ignore-case": "abc"}}
        if set(arg) != {"equals-ignore-case"} or not isinstance(arg["equals-ignore-case"], str):
            raise PatternError(f"{op} only combines with equals-ignore-case")
        if not isinstance(value, str):
            return False
        needle, haystack = arg["equals-ignore-case"].casefold(), value.casefold()
        return haystack.startswith(needle) if op == "prefix" else haystack.endswith(needle)
    if not isinstance(arg, str):
        raise PatternError(f"{op} match pattern must be a string")
    if not isinstance(value, str):
        return False
    if op == "prefix":
        return value.startswith(arg)
    if op == "suffix":
        return value.endswith(arg)
    if op == "equals-ignore-case":
        return value.casefold() == arg.casefold()
    return _wildcard_regex(arg).fullmatch(value) is not None


def _match_anything_but(arg: Any, value: Any) -> bool:
    if isinstance(arg, Mapping):
        if len(arg) != 1:
            raise PatternError("anything-but takes one operator")
        ((op, inner),) = arg.items()
        if op not in _STRING_OPS:
            raise PatternError(f"unsupported anything-but pattern: {op}")
        alternatives = inner if isinstance(inner, list) else [inner]
        # A non-string value can never start with, end with or equal a string,
        # so anything-but of a string operator matches it. Every alternative is
        # evaluated (no short-circuit) so that each one is validated.
        hits = [_match_string_op(op, alt, value) for alt in alternatives]
        return not any(hits)
    excluded = arg if isinstance(arg, list) else [arg]
    for item in excluded:
        if isinstance(item, (Mapping, list, bool)) or item is None:
            raise PatternError("anything-but takes strings or numbers")
    return not any(_json_equal(item, value) for item in excluded)


def _match_numeric(arg: Any, value: Any) -> bool:
    ops = _numeric_pairs(arg)
    if not _is_number(value):
        return False
    number = float(value)
    return all(_COMPARE[op](number, operand) for op, operand in ops)


def _numeric_pairs(arg: Any) -> list[tuple[str, float]]:
    if not isinstance(arg, list) or not arg or len(arg) % 2:
        raise PatternError("numeric takes operator/value pairs, e.g. [\">\", 0, \"<=\", 5]")
    pairs: list[tuple[str, float]] = []
    for i in range(0, len(arg), 2):
        op, operand = arg[i], arg[i + 1]
        if op not in _COMPARE:
            raise PatternError(f"unrecognized numeric range operator: {op!r}")
        if not _is_number(operand):
            raise PatternError(f"value of numeric {op} must be a number, got {operand!r}")
        pairs.append((op, float(operand)))
    if len(pairs) == 2:
        # A range is one lower bound and one upper bound, in either order.
        kinds = {"lower" if op in (">", ">=") else "upper" if op in ("<", "<=") else "equals" for op, _ in pairs}
        if kinds != {"lower", "upper"}:
            raise PatternError("a numeric range takes one lower (>, >=) and one upper (<, <=) bound")
    elif len(pairs) > 2:
        raise PatternError("numeric takes one comparison or a range of two")
    return pairs


def _match_cidr(arg: Any, value: Any) -> bool:
    if not isinstance(arg, str):
        raise PatternError("cidr match pattern must be a string")
    try:
        network = ipaddress.ip_network(arg, strict=False)
    except ValueError:
        raise PatternError(f"nonstandard IP address: {arg}") from None
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False


@lru_cache(maxsize=256)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    """`*` matches any run of characters; `\\*` is a literal star, `\\\\` a backslash."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            nxt = pattern[i + 1] if i + 1 < len(pattern) else ""
            if nxt not in ("*", "\\"):
                raise PatternError("a backslash in a wildcard may only escape * or \\")
            parts.append(re.escape(nxt))
            i += 2
            continue
        if ch == "*":
            if pattern[i + 1:i + 2] == "*":
                raise PatternError("consecutive wildcard characters are not allowed")
            parts.append(".*")
        else:
            parts.append(re.escape(ch))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def _check_condition(key: str, condition: Any) -> None:
    """Exercise a condition once so malformed operators raise PatternError."""
    if isinstance(condition, list):
        raise PatternError(f"{key}: nested arrays are not allowed")
    if isinstance(condition, Mapping):
        # Evaluating against a present dummy value runs every argument check
        # (exists is checked against a missing one).
        _match_operator(condition, "" if "exists" not in condition else MISSING)
