"""Writes per partition key during one customer's burst (DESIGN.md section 7,
issue 12 item 6): DynamoDB takes at most 1,000 write units per second on one
partition key, of a table or of an index, so no key may take a write per
event of one customer.

Table keys are counted from the write requests themselves (bench.proxy).
Index keys are counted from the table's stream (NEW_AND_OLD_IMAGES), with
DynamoDB's rule for a global secondary index: an entry added or removed is
one write on its key, a key changed is a write on the old key and one on the
new, and an entry whose projected attributes changed is one write on its key.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import boto3

from devstack.template import REGION, TableSpec

Image = dict[str, Any]


@dataclass(frozen=True)
class IndexSpec:
    name: str
    hash_key: str
    range_key: str | None
    projection: str  # ALL | KEYS_ONLY | INCLUDE
    included: frozenset[str]

    @classmethod
    def from_template(cls, raw: dict[str, Any]) -> IndexSpec:
        keys = {k["KeyType"]: k["AttributeName"] for k in raw["KeySchema"]}
        projection = raw.get("Projection") or {}
        return cls(name=raw["IndexName"], hash_key=keys["HASH"], range_key=keys.get("RANGE"),
                   projection=projection.get("ProjectionType", "ALL"),
                   included=frozenset(projection.get("NonKeyAttributes") or ()))

    def key(self, image: Image | None) -> tuple[Any, Any] | None:
        if not image or self.hash_key not in image or (self.range_key and self.range_key not in image):
            return None
        return (_plain(image[self.hash_key]), _plain(image[self.range_key]) if self.range_key else None)

    def projected(self, image: Image, table_keys: tuple[str, ...]) -> dict[str, Any]:
        if self.projection == "ALL":
            return image
        names = {*table_keys, self.hash_key, *([self.range_key] if self.range_key else [])}
        if self.projection == "INCLUDE":
            names |= self.included
        return {k: v for k, v in image.items() if k in names}

    def writes(self, old: Image | None, new: Image | None, table_keys: tuple[str, ...]) -> list[Any]:
        """The partition key values this change writes in the index (one entry per write)."""
        before, after = self.key(old), self.key(new)
        if before is None and after is None:
            return []
        if before is None:
            return [after[0]] if after else []
        if after is None:
            return [before[0]]
        if before != after:
            return [before[0], after[0]]
        assert old is not None and new is not None
        return [after[0]] if self.projected(old, table_keys) != self.projected(new, table_keys) else []


def _plain(value: dict[str, Any]) -> Any:
    return next(iter(value.values()))


def stream_records(endpoint: str, stream_arn: str) -> Iterator[dict[str, Any]]:
    """Every record of the stream so far (a reader of its own, from the start)."""
    streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="bench", aws_secret_access_key="bench")  # noqa: S106
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    for shard in shards:
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON").get("ShardIterator")
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            yield from cast(list[dict[str, Any]], page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")


def entry_units(entry: Image) -> int:
    """DynamoDB's rule: 1 write unit per started KB of the entry (names and values, UTF-8)."""
    size = 0
    for name, value in entry.items():
        kind, raw = next(iter(value.items()))
        size += len(name.encode()) + (1 if kind == "BOOL" else len(json.dumps(raw) if kind in ("M", "L") else
                                                                str(raw).encode()))
    return max(1, math.ceil(size / 1024))


def index_writes(table: TableSpec, records: Iterator[dict[str, Any]],
                 wanted: Callable[[dict[str, Any]], bool], *, units: bool = False) -> Counter[tuple[str, str]]:
    """(index name, partition key value) -> writes (or, with `units`, write
    units: the projected entry's size), for the stream records `wanted` selects."""
    table_keys = tuple(k["AttributeName"] for k in table.properties["KeySchema"])
    indexes = [IndexSpec.from_template(ix) for ix in table.properties.get("GlobalSecondaryIndexes") or []]
    out: Counter[tuple[str, str]] = Counter()
    for record in records:
        if not wanted(record):
            continue
        change = record["dynamodb"]
        for index in indexes:
            for key in index.writes(change.get("OldImage"), change.get("NewImage"), table_keys):
                image = change.get("NewImage") or change.get("OldImage") or {}
                out[(index.name, str(key))] += entry_units(index.projected(image, table_keys)) if units else 1
    return out


def hottest(writes: Counter[tuple[str, str]]) -> dict[str, tuple[str, int]]:
    """Per table or index, its most written partition key and how many writes it took."""
    top: dict[str, tuple[str, int]] = {}
    for (where, key), count in writes.items():
        if where not in top or count > top[where][1]:
            top[where] = (key, count)
    return top
