"""Request bodies read strictly, at the edge: the API's resolver and the
webhook's ack path both read their bodies through `loads`, before anything is
validated or written.

A body is accepted only if it is UTF-8 and JSON as RFC 8259 defines it, and
refused with a BadRequest (400 `bad_request`, in the contract's shape)
otherwise. Beyond the grammar, three things Python's `json` would let through
or turn into a crash are refused here:

- nesting deeper than MAX_DEPTH (the C parser raises RecursionError near the
  interpreter's recursion limit; anything past DynamoDB's 32 levels could
  never be stored anyway);
- an integer with more digits than Python converts (`sys.int_info`'s
  int-string limit, 4300 by default: `int()` raises ValueError past it) and a
  number that overflows a float (`1e999`), or NaN and Infinity, which are
  not JSON;
- a string holding a lone UTF-16 surrogate (`"\\ud800"`), which no UTF-8
  encoder downstream (boto3, the logger) can write.

Stdlib only: the webhook's ack path imports this and must stay lean.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from billing.core.errors import BadRequest

# DynamoDB stores maps and lists nested at most 32 levels deep; no body of
# this API nests more than a few, and Stripe events about a dozen.
MAX_DEPTH = 32
# A lone surrogate can only come from a \u escape in D800-DFFF.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _Refused(ValueError):
    """Raised from inside the parser's hooks; becomes a BadRequest."""


def _max_int_digits() -> int:
    limit = sys.get_int_max_str_digits()
    return limit if limit > 0 else sys.int_info.default_max_str_digits


def _parse_int(text: str) -> int:
    if len(text) - (text[0] == "-") > _max_int_digits():
        raise _Refused(f"holds an integer longer than {_max_int_digits()} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("holds a number too large for a float")
    return value


def _parse_constant(name: str) -> Any:
    raise _Refused(f"holds {name}, which is not JSON")


def _too_deep(doc: Any, limit: int) -> bool:
    """Whether containers nest deeper than `limit` (the document itself is level 1).
    Iterative: a deep document must not exhaust the stack here either."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def text(raw: bytes, what: str = "the request body") -> str:
    """The body as text: UTF-8, strictly."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8") from None


def loads(body: str | bytes, what: str = "the request body") -> Any:
    """The parsed body, or BadRequest naming what is wrong (never the body itself)."""
    source = text(body, what) if isinstance(body, bytes) else body
    try:
        doc = json.loads(source, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _Refused as refused:
        raise BadRequest(f"{what} {refused}") from None
    except RecursionError:
        raise BadRequest(f"{what} is nested deeper than {MAX_DEPTH} levels", {"max_depth": MAX_DEPTH}) from None
    except ValueError:
        raise BadRequest(f"{what} is not valid JSON") from None
    # Fewer brackets than the limit (inside strings or not) cannot nest past it.
    if source.count("[") + source.count("{") > MAX_DEPTH and _too_deep(doc, MAX_DEPTH):
        raise BadRequest(f"{what} is nested deeper than {MAX_DEPTH} levels", {"max_depth": MAX_DEPTH})
    if _SURROGATE_ESCAPE.search(source):
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{what} holds a string that is not valid Unicode (a lone surrogate)") from None
    return doc
