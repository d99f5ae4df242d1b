"""billing.core.jsonbody: the strict reader both edges (API, webhook) use.
Pure: no AWS, no stack."""

from __future__ import annotations

import json
import sys

import pytest

from billing.core import jsonbody
from billing.core.errors import BadRequest

LIMIT = sys.get_int_max_str_digits() or sys.int_info.default_max_str_digits


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def refused(body: str | bytes, what: str = "the request body") -> BadRequest:
    with pytest.raises(BadRequest) as info:
        jsonbody.loads(body, what=what)
    assert info.value.status == 400 and info.value.error_type == "bad_request"
    return info.value


def test_an_ordinary_body_parses_as_json_does() -> None:
    body = '{"name": "Zoë 🚀", "value": 12, "ratio": 0.5, "tags": ["a", null, true], "pair": "\\ud83d\\ude80"}'
    assert jsonbody.loads(body) == json.loads(body)
    assert jsonbody.loads(body.encode("utf-8")) == json.loads(body)


@pytest.mark.parametrize("depth", [1, 2, jsonbody.MAX_DEPTH])
def test_nesting_up_to_the_limit_is_accepted(depth: int) -> None:
    assert jsonbody.loads(nested(depth)) is not None
    objects = '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)
    assert jsonbody.loads(objects) is not None


@pytest.mark.parametrize("depth", [jsonbody.MAX_DEPTH + 1, 500, 100_000])
def test_nesting_past_the_limit_is_refused_without_exhausting_the_stack(depth: int) -> None:
    err = refused(nested(depth))
    assert err.message == f"the request body is nested deeper than {jsonbody.MAX_DEPTH} levels"
    assert err.details == {"max_depth": jsonbody.MAX_DEPTH}
    mixed = '{"a": [' * depth + "]}" * depth
    assert "nested deeper" in refused(mixed).message


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    body = json.dumps({"note": "[" * 1000 + "{" * 1000})
    assert jsonbody.loads(body) == {"note": "[" * 1000 + "{" * 1000}


def test_an_integer_at_pythons_digit_limit_is_accepted_and_one_past_it_refused() -> None:
    assert jsonbody.loads("9" * LIMIT) == int("9" * LIMIT)
    assert jsonbody.loads("-" + "9" * LIMIT) == -int("9" * LIMIT)
    err = refused('{"value": ' + "9" * (LIMIT + 1) + "}")
    assert err.message == f"the request body holds an integer longer than {LIMIT} digits"
    assert "999" not in str(err.to_body())  # the body is never echoed


def test_the_issues_5000_digit_value_is_refused() -> None:
    assert "integer longer" in refused('{"value": ' + "5" * 5000 + "}").message


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1" + "0" * 400 + ".0"])
def test_a_number_that_overflows_a_float_is_refused(number: str) -> None:
    assert refused(f'{{"value": {number}}}').message == "the request body holds a number too large for a float"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    assert refused(f'{{"value": {constant}}}').message == f"the request body holds {constant}, which is not JSON"


@pytest.mark.parametrize("raw", ['{"name":"\xe9"}'.encode("latin-1"), b"\xff\xfe{}", b'{"a": "\xed\xa0\x80"}',
                                 '{"a": 1}'.encode("utf-16")])
def test_bytes_that_are_not_utf8_are_refused(raw: bytes) -> None:
    assert refused(raw, "the webhook body").message == "the webhook body is not UTF-8"


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud83d", "\\ude00y"])
def test_a_lone_surrogate_escape_is_refused(escape: str) -> None:
    err = refused(f'{{"name": "{escape}"}}')
    assert err.message == "the request body holds a string that is not valid Unicode (a lone surrogate)"


@pytest.mark.parametrize("body", ["", "{", "{'a': 1}", '{"a": 1} trailing', "\ufeff{}", "[1,]"])
def test_malformed_json_is_refused_as_not_valid_json(body: str) -> None:
    assert refused(body).message == "the request body is not valid JSON"
