"""Lambda event-filtering patterns against DynamoDB stream records as Lambda
delivers them (devstack.filters)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devstack.filters import PatternError, matches, matches_any, validate_pattern

STREAM_ARN = ("arn:aws:dynamodb:us-east-1:123456789012:table/billing-local-MeterEventsTable"
              "/stream/2026-01-01T00:00:00.000")

INSERT: dict[str, Any] = {
    "eventID": "7de3041dd709b024af6f29e4fa13d34c",
    "eventName": "INSERT",
    "eventVersion": "1.1",
    "eventSource": "aws:dynamodb",
    "awsRegion": "us-east-1",
    "dynamodb": {
        "ApproximateCreationDateTime": 1767225600.0,
        "Keys": {"pk": {"S": "METER#cus_123#evt_1"}},
        "NewImage": {
            "pk": {"S": "METER#cus_123#evt_1"},
            "status": {"S": "pending"},
            "customer_id": {"S": "cus_123"},
            "event_name": {"S": "api_requests"},
            "value": {"N": "42"},
            "attempts": {"N": "0"},
            "live": {"BOOL": True},
            "error": {"NULL": True},
            "tags": {"SS": ["beta", "eu"]},
            "lines": {"L": [
                {"M": {"sku": {"S": "basic"}, "qty": {"N": "1"}}},
                {"M": {"sku": {"S": "pro"}, "qty": {"N": "3"}}},
            ]},
            "source_ip": {"S": "10.0.3.7"},
        },
        "SequenceNumber": "1100000000017454423009",
        "SizeBytes": 253,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    },
    "eventSourceARN": STREAM_ARN,
}

MODIFY: dict[str, Any] = {
    **copy.deepcopy(INSERT),
    "eventName": "MODIFY",
    "dynamodb": {
        **copy.deepcopy(INSERT["dynamodb"]),
        "NewImage": {**copy.deepcopy(INSERT["dynamodb"]["NewImage"]), "status": {"S": "reported"}},
        "OldImage": copy.deepcopy(INSERT["dynamodb"]["NewImage"]),
        "SequenceNumber": "1100000000017454423010",
        "SizeBytes": 480,
    },
}

REMOVE: dict[str, Any] = {
    **copy.deepcopy(INSERT),
    "eventName": "REMOVE",
    "dynamodb": {
        "ApproximateCreationDateTime": 1767225700.0,
        "Keys": {"pk": {"S": "METER#cus_123#evt_1"}},
        "OldImage": {"pk": {"S": "METER#cus_123#evt_1"}, "status": {"S": "reported"}},
        "SequenceNumber": "1100000000017454423011",
        "SizeBytes": 120,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    },
    # A TTL deletion names the service as the remover.
    "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
}


def new_image(**fields: Any) -> dict[str, Any]:
    return {"dynamodb": {"NewImage": fields}}


# -- exact values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "record", "expected"), [
    ({"eventName": ["INSERT"]}, INSERT, True),
    ({"eventName": ["INSERT"]}, MODIFY, False),
    ({"eventName": ["INSERT", "MODIFY"]}, MODIFY, True),  # values in one array are OR'd
    (new_image(status={"S": ["pending"]}), INSERT, True),
    (new_image(status={"S": ["pending"]}), MODIFY, False),
    (new_image(status={"S": ["Pending"]}), INSERT, False),  # exact is case-sensitive
    ({"dynamodb": {"Keys": {"pk": {"S": ["METER#cus_123#evt_1"]}}}}, REMOVE, True),
    # AND across keys: both must hold.
    ({"eventName": ["INSERT"], **new_image(status={"S": ["reported"]})}, INSERT, False),
    ({"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["reported"]}},
                                            "OldImage": {"status": {"S": ["pending"]}}}}, MODIFY, True),
    # Numbers in the record are JSON numbers where Lambda puts them...
    ({"dynamodb": {"SizeBytes": [253]}}, INSERT, True),
    ({"dynamodb": {"SizeBytes": [253.0]}}, INSERT, True),
    ({"dynamodb": {"SizeBytes": ["253"]}}, INSERT, False),
    # ...and strings inside DynamoDB's N type.
    (new_image(value={"N": ["42"]}), INSERT, True),
    (new_image(value={"N": [42]}), INSERT, False),
    # Booleans and DynamoDB's NULL.
    (new_image(live={"BOOL": [True]}), INSERT, True),
    (new_image(live={"BOOL": [False]}), INSERT, False),
    (new_image(live={"BOOL": [1]}), INSERT, False),
    (new_image(error={"NULL": [True]}), INSERT, True),
    # Empty string matches only an empty string.
    (new_image(status={"S": [""]}), INSERT, False),
])
def test_exact_values(pattern: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, record) is expected


def test_null_matches_only_a_present_null() -> None:
    record = {**INSERT, "userIdentity": None}
    assert matches({"userIdentity": [None]}, record)
    assert not matches({"userIdentity": [None]}, INSERT)  # missing is not null
    assert not matches({"userIdentity": [None]}, REMOVE)  # an object is not null
    assert matches({"eventName": ["INSERT"], "userIdentity": [None]}, record)


def test_empty_string_value() -> None:
    record = copy.deepcopy(INSERT)
    record["dynamodb"]["NewImage"]["note"] = {"S": ""}
    assert matches(new_image(note={"S": [""]}), record)


# -- string operators -----------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ({"prefix": "METER#cus_123"}, True),
    ({"prefix": "METER#cus_999"}, False),
    ({"prefix": {"equals-ignore-case": "meter#CUS_123"}}, True),
    ({"suffix": "#evt_1"}, True),
    ({"suffix": "#evt_2"}, False),
    ({"suffix": {"equals-ignore-case": "#EVT_1"}}, True),
    ({"equals-ignore-case": "meter#CUS_123#EVT_1"}, True),
    ({"equals-ignore-case": "meter#cus_123"}, False),
    ({"wildcard": "METER#*#evt_1"}, True),
    ({"wildcard": "METER#*#evt_2"}, False),
    ({"wildcard": "*cus_123*"}, True),
    ({"wildcard": "METER#cus_123"}, False),  # a wildcard pattern must match the whole value
])
def test_string_operators_on_keys(condition: dict[str, Any], expected: bool) -> None:
    pattern = {"dynamodb": {"Keys": {"pk": {"S": [condition]}}}}
    assert matches(pattern, INSERT) is expected


def test_string_operators_do_not_match_non_strings() -> None:
    for op in ({"prefix": "25"}, {"suffix": "3"}, {"equals-ignore-case": "253"}, {"wildcard": "2*"}):
        assert not matches({"dynamodb": {"SizeBytes": [op]}}, INSERT), op


def test_wildcard_escapes() -> None:
    record = {"dynamodb": {"NewImage": {"path": {"S": "a*b\\c"}}}}
    assert matches(new_image(path={"S": [{"wildcard": "a\\*b\\\\c"}]}), record)
    assert not matches(new_image(path={"S": [{"wildcard": "a\\*x*"}]}), record)


# -- anything-but --------------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ({"anything-but": ["reported", "failed"]}, True),
    ({"anything-but": ["pending", "failed"]}, False),
    ({"anything-but": "reported"}, True),
    ({"anything-but": "pending"}, False),
    ({"anything-but": {"prefix": "pend"}}, False),
    ({"anything-but": {"prefix": "rep"}}, True),
    ({"anything-but": {"suffix": "ing"}}, False),
    ({"anything-but": {"equals-ignore-case": "PENDING"}}, False),
    ({"anything-but": {"equals-ignore-case": ["REPORTED", "FAILED"]}}, True),
    ({"anything-but": {"wildcard": "p*g"}}, False),
])
def test_anything_but(condition: dict[str, Any], expected: bool) -> None:
    assert matches(new_image(status={"S": [condition]}), INSERT) is expected


def test_anything_but_numbers_and_types() -> None:
    assert matches({"dynamodb": {"SizeBytes": [{"anything-but": [100, 200]}]}}, INSERT)
    assert not matches({"dynamodb": {"SizeBytes": [{"anything-but": 253}]}}, INSERT)
    # A string "253" is not the number 253, and a number never has a string prefix.
    assert matches({"dynamodb": {"SizeBytes": [{"anything-but": ["253"]}]}}, INSERT)
    assert matches({"dynamodb": {"SizeBytes": [{"anything-but": {"prefix": "2"}}]}}, INSERT)


def test_anything_but_needs_the_field() -> None:
    # REMOVE has no NewImage: anything-but does not match a missing field.
    assert not matches(new_image(status={"S": [{"anything-but": ["pending"]}]}), REMOVE)
    # A present null is "anything but" the excluded string.
    assert matches({"userIdentity": [{"anything-but": "x"}]}, {**INSERT, "userIdentity": None})


# -- exists ---------------------------------------------------------------------------------------


def test_exists_true_and_false() -> None:
    has_old = {"dynamodb": {"OldImage": {"status": {"S": [{"exists": True}]}}}}
    no_old = {"dynamodb": {"OldImage": {"status": {"S": [{"exists": False}]}}}}
    assert matches(has_old, MODIFY) and not matches(has_old, INSERT)
    assert matches(no_old, INSERT) and not matches(no_old, MODIFY)
    # A REMOVE has no NewImage at all: the leaf under it does not exist.
    assert matches({"dynamodb": {"NewImage": {"pk": {"S": [{"exists": False}]}}}}, REMOVE)


def test_exists_is_about_leaves() -> None:
    # An object is not a leaf: exists true fails and exists false matches it.
    assert not matches({"dynamodb": {"NewImage": {"status": [{"exists": True}]}}}, INSERT)
    assert matches({"dynamodb": {"NewImage": {"status": [{"exists": False}]}}}, INSERT)
    # A null leaf exists.
    record = {**INSERT, "userIdentity": None}
    assert matches({"userIdentity": [{"exists": True}]}, record)
    assert not matches({"userIdentity": [{"exists": False}]}, record)


def test_exists_combined_with_a_value_in_one_array() -> None:
    # "missing, or not 0": a common way to filter out retries.
    pattern = new_image(attempts={"N": [{"exists": False}, {"anything-but": ["0"]}]})
    assert not matches(pattern, INSERT)
    record = copy.deepcopy(INSERT)
    del record["dynamodb"]["NewImage"]["attempts"]
    assert matches(pattern, record)


# -- numeric -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("numeric", "expected"), [
    (["=", 253], True),
    (["=", 252.9], False),
    ([">", 200], True),
    ([">", 253], False),
    ([">=", 253], True),
    (["<", 253], False),
    (["<=", 253], True),
    ([">", 0, "<=", 253], True),
    ([">", 0, "<", 253], False),
    (["<", 300, ">=", 253], True),
    ([">=", 254, "<", 1000], False),
])
def test_numeric_on_json_numbers(numeric: list[Any], expected: bool) -> None:
    assert matches({"dynamodb": {"SizeBytes": [{"numeric": numeric}]}}, INSERT) is expected


def test_numeric_on_creation_time() -> None:
    pattern = {"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">=", 1767225600, "<", 1767225601]}]}}
    assert matches(pattern, INSERT)
    assert not matches(pattern, REMOVE)


def test_numeric_does_not_match_dynamodb_number_strings() -> None:
    # {"N": "42"} is a string in the stream record, as in Lambda's event.
    assert not matches(new_image(value={"N": [{"numeric": [">", 0]}]}), INSERT)


# -- cidr -----------------------------------------------------------------------------------------


def test_cidr() -> None:
    assert matches(new_image(source_ip={"S": [{"cidr": "10.0.0.0/16"}]}), INSERT)
    assert not matches(new_image(source_ip={"S": [{"cidr": "192.168.0.0/16"}]}), INSERT)
    assert not matches(new_image(status={"S": [{"cidr": "10.0.0.0/8"}]}), INSERT)


# -- arrays in the record -------------------------------------------------------------------------


def test_a_record_array_matches_if_any_element_matches() -> None:
    assert matches(new_image(tags={"SS": ["eu"]}), INSERT)
    assert matches(new_image(tags={"SS": [{"prefix": "be"}]}), INSERT)
    assert not matches(new_image(tags={"SS": ["us"]}), INSERT)
    assert not matches(new_image(tags={"SS": [{"anything-but": ["beta", "eu"]}]}), INSERT)
    assert matches(new_image(tags={"SS": [{"anything-but": ["beta"]}]}), INSERT)


def test_objects_in_a_record_array_are_matched_one_at_a_time() -> None:
    same_line = new_image(lines={"L": {"M": {"sku": {"S": ["pro"]}, "qty": {"N": ["3"]}}}})
    across_lines = new_image(lines={"L": {"M": {"sku": {"S": ["pro"]}, "qty": {"N": ["1"]}}}})
    assert matches(same_line, INSERT)
    assert not matches(across_lines, INSERT)


def test_an_empty_record_array_has_no_values() -> None:
    record: dict[str, Any] = {"dynamodb": {"NewImage": {"tags": {"L": []}}}}
    assert not matches(new_image(tags={"L": [None]}), record)
    assert matches(new_image(tags={"L": [{"exists": False}]}), record)


# -- missing keys, several filters, $or ------------------------------------------------------------


def test_a_key_missing_from_the_record_fails() -> None:
    assert not matches(new_image(status={"S": ["pending"]}), REMOVE)
    assert not matches({"dynamodb": {"NoSuchKey": ["x"]}}, INSERT)
    assert not matches({"nope": {"deeper": ["x"]}}, INSERT)


def test_several_filters_are_alternatives() -> None:
    inserts = {"eventName": ["INSERT"]}
    reported = new_image(status={"S": ["reported"]})
    assert matches_any([inserts, reported], INSERT)
    assert matches_any([inserts, reported], MODIFY)
    assert not matches_any([inserts, reported], REMOVE)


def test_no_filters_match_everything() -> None:
    assert matches_any([], REMOVE)
    assert matches_any(None, REMOVE)
    assert matches_any((), INSERT)


def test_or_primitive() -> None:
    pattern = {"$or": [{"eventName": ["REMOVE"]}, new_image(status={"S": ["pending"]})]}
    assert matches(pattern, INSERT)
    assert matches(pattern, REMOVE)
    assert not matches(pattern, MODIFY)


# -- invalid patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", [
    {"eventName": "INSERT"},  # values must be in an array
    {"eventName": []},
    {"eventName": [{"prefixx": "IN"}]},
    {"eventName": [{"exists": "true"}]},
    {"dynamodb": {"SizeBytes": [{"numeric": [">"]}]}},
    {"dynamodb": {"SizeBytes": [{"numeric": ["!=", 3]}]}},
    {"dynamodb": {"SizeBytes": [{"numeric": [">", 1, ">", 2]}]}},
    {"dynamodb": {"SizeBytes": [{"numeric": [">", "1"]}]}},
    {"eventName": [{"wildcard": "IN**"}]},
    {"eventName": [{"anything-but": {"numeric": [">", 1]}}]},
    {"eventName": [["INSERT"]]},
])
def test_invalid_patterns_are_rejected(pattern: dict[str, Any]) -> None:
    with pytest.raises(PatternError):
        validate_pattern(pattern)


def test_valid_patterns_validate() -> None:
    validate_pattern({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": [
        {"anything-but": {"prefix": "x"}}, {"exists": False}, {"wildcard": "a*b"}]}},
        "SizeBytes": [{"numeric": [">", 0, "<=", 5]}]}})
