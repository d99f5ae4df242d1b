"""A mutation fuzzer over raw bytes against every operation of the local
stack's own /v1/openapi.json (issue 15). test_openapi_fuzz.py sends what the
schema allows; this sends what no schema describes: seed bodies (an empty
object, a body built from the operation's request schema, the issue's three
hostile bodies) cut, spliced, bit-flipped, re-encoded and grown, with bytes
that are not UTF-8, nesting past any limit, digit runs past Python's
int-string limit, NaN, lone surrogates and truncated escapes.

Deterministic: each operation's generator is seeded from its label, so a run
repeats exactly; bounded: FUZZ_MUTATIONS bodies per operation (default 40)
and FUZZ_SECONDS overall (default 120). The webhook's bodies are signed with
the stack's secret so they reach the parser, not just the signature check.

Every answer must be below 500, and every 4xx the contract's error shape
`{"error": {"type", "message", "details"}}`. Failures are collected and
reported together, each with the bytes that caused it.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

import requests

from devstack.stack import LocalStack
from tests.conftest import Client
from tests.integration.usage_helpers import new_customer
from tests.integration.webhook_helpers import sign_bytes

MUTATIONS = int(os.environ.get("FUZZ_MUTATIONS", "40"))
BUDGET_SECONDS = float(os.environ.get("FUZZ_SECONDS", "120"))
WEBHOOK = "/v1/webhooks/stripe"

HOSTILE_SEEDS = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"value": ' + b"5" * 5000 + b"}",
    '{"name":"\xe9"}'.encode("latin-1"),
]
# Bytes that tend to break decoders: invalid UTF-8 lead/continuation bytes,
# structural characters, escapes, a NUL.
INTERESTING = [b"\x00", b"\xff", b"\xfe", b"\xc3", b"\xe9", b"\xed\xa0\x80", b"\x80", b"[", b"{", b"]", b"}",
               b'"', b"\\", b"\\u", b"\\ud800", b",", b":", b"-", b"0", b"9", b"e", b".", b" "]
TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"null", b"true", b"[]", b"{}", b'""', b'"\\ud800"',
          b"9" * 4301, b"1" + b"0" * 400 + b".0", b"-0", b"1e-400", b'"\\u0000"', b"\xef\xbb\xbf"]
CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", None, "text/plain"]


# -- seeds ---------------------------------------------------------------------------------------


def example(schema: Any, components: dict[str, Any], depth: int = 0) -> Any:
    """A small value the schema likely accepts (required fields only), to mutate from."""
    if not isinstance(schema, dict) or depth > 6:
        return None
    if "$ref" in schema:
        return example(components.get(schema["$ref"].rsplit("/", 1)[-1]), components, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key, []) if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return example(options[0], components, depth + 1)
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {k: example(props.get(k), components, depth + 1) for k in schema.get("required", [])}
    if kind == "array":
        return [example(schema.get("items"), components, depth + 1)]
    if kind == "integer":
        return max(int(schema.get("minimum", 1)), 1)
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "string":
        return "x" * max(int(schema.get("minLength", 1)), 1)
    return None


def seeds_for(operation: dict[str, Any], components: dict[str, Any]) -> list[bytes]:
    out = [b"{}", b""]
    schema = (((operation.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema")
    if schema is not None:
        out.append(json.dumps(example(schema, components)).encode())
    return out + HOSTILE_SEEDS


# -- mutations -----------------------------------------------------------------------------------


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return bytes([rng.randrange(256)])
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]


def _insert(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.choice(INTERESTING + TOKENS) + data[i:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    if len(data) < 2:
        return data
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, min(16, len(data) - i)):]


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _replace_value(rng: random.Random, data: bytes) -> bytes:
    """Swap one JSON scalar for a hostile token."""
    spans = [m.span() for m in re.finditer(rb'"(?:[^"\\]|\\.)*"|-?\d[\d.eE+-]*|true|false|null', data[:4096])]
    if not spans:
        return _insert(rng, data)
    start, end = rng.choice(spans)
    return data[:start] + rng.choice(TOKENS) + data[end:]


def _nest(rng: random.Random, data: bytes) -> bytes:
    depth = rng.choice([31, 32, 33, 64, 1000, 20_000])
    return (b'{"a":' if rng.random() < 0.5 else b"[") * depth + data[:256] + \
        (b"}" if rng.random() < 0.5 else b"]") * depth


def _reencode(rng: random.Random, data: bytes) -> bytes:
    text = data[:4096].decode("utf-8", "replace")
    return text.encode(rng.choice(["latin-1", "utf-16", "utf-16-le", "cp1252", "utf-32"]), "replace")


def _splice(rng: random.Random, data: bytes) -> bytes:
    other = rng.choice(HOSTILE_SEEDS)
    i, j = rng.randrange(len(data) + 1), rng.randrange(len(other) + 1)
    return data[:i] + other[j:j + rng.randint(1, 512)]


MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [
    _flip, _insert, _delete, _truncate, _replace_value, _nest, _reencode, _splice]


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = seed
    for _ in range(rng.randint(1, 4)):
        data = rng.choice(MUTATORS)(rng, data)
    return data[:2 * 1024 * 1024]


# -- the run -------------------------------------------------------------------------------------


def contract_error(resp: requests.Response) -> str | None:
    """None if a 4xx body is the contract's error shape, else what is wrong."""
    try:
        body = resp.json()
    except ValueError:
        return "a 4xx whose body is not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(error, dict) and set(error) == {"type", "message", "details"}
            and isinstance(error["type"], str) and isinstance(error["message"], str)
            and isinstance(error["details"], dict)):
        return f"a 4xx outside the contract's error shape: {resp.text[:200]}"
    return None


def concrete(path: str, customer_id: str, rng: random.Random) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: customer_id if m.group(1) == "customer_id" else f"fz{rng.randrange(10**6)}",
                  path)


def test_mutated_raw_bytes_never_get_a_5xx_and_every_4xx_keeps_the_contract_shape(stack: LocalStack,
                                                                                  api: Client) -> None:
    doc = api.get("/v1/openapi.json").json()
    components = doc.get("components", {}).get("schemas", {})
    customer = new_customer(api)
    operations = [(method.upper(), path, op) for path, item in doc["paths"].items()
                  for method, op in item.items() if method in ("get", "put", "post", "patch", "delete")]
    assert len(operations) >= 25, "the document lost its operations"
    deadline = time.monotonic() + BUDGET_SECONDS
    failures: list[str] = []
    sent = 0
    for method, path, op in operations:
        label = f"{method} {path}"
        rng = random.Random(zlib.crc32(label.encode()))  # noqa: S311 - repeatable on purpose, not a secret
        seeds = seeds_for(op, components)
        for i in range(MUTATIONS):
            if time.monotonic() > deadline:
                break
            body = seeds[i] if i < len(seeds) else mutate(rng, rng.choice(seeds))
            headers: dict[str, str] = {}
            content_type = CONTENT_TYPES[0] if i < len(seeds) else rng.choice(CONTENT_TYPES)
            if content_type:
                headers["Content-Type"] = content_type
            if path == WEBHOOK:
                headers["Stripe-Signature"] = sign_bytes(body)
            url = api.base_url + concrete(path, customer["id"], rng)
            resp = api.session.request(method, url, data=body, headers=headers, timeout=60)
            sent += 1
            problem = f"{resp.status_code}: {resp.text[:200]}" if resp.status_code >= 500 else \
                contract_error(resp) if resp.status_code >= 400 else None
            if problem:
                failures.append(f"{label} [{content_type}] body={body[:120]!r}... ({len(body)} bytes): {problem}")
    print(f"raw-bytes fuzz: {sent} requests over {len(operations)} operations")
    assert sent >= min(len(operations) * 3, 90), f"only {sent} requests inside the time budget"
    assert not failures, f"{len(failures)} of {sent} mutated requests broke the contract:\n" + "\n".join(failures[:25])
