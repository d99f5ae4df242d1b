"""Stream event source mappings and schedules, end to end on the local stack's
parts: moto's server, tables from a fixture template, the recorder function
in a spawned worker (FunctionRuntime), and StreamSupervisor / ScheduleRunner.

The recorder (fixtures/recorder/app.py) writes what it receives into a sink
table: an attempt counter per record key and one item per invocation with the
batch's keys, so each test can check exactly which batches were delivered.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.dynamodb import EmbeddedMoto, client, create_tables
from devstack.runtime import FunctionRuntime
from devstack.schedules import ScheduleRunner
from devstack.streams import OnFailureLog, PollerOptions, StreamPoller, StreamSupervisor
from devstack.template import FunctionSpec, Stack

FIXTURE = Path(__file__).parent / "fixtures" / "stream_template.yaml"
STACK_NAME = "streams-test"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{STACK_NAME}-Recorder"
QUEUE_NAME = f"{STACK_NAME}-FailureQueue"
DRAIN_S = 15.0


@pytest.fixture(scope="module")
def moto() -> Iterator[EmbeddedMoto]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = EmbeddedMoto()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack() -> Stack:
    return Stack(FIXTURE, stack_name=STACK_NAME)


@pytest.fixture(scope="module")
def runtime(moto: EmbeddedMoto, stack: Stack) -> Iterator[FunctionRuntime]:
    # The function's environment does not depend on the stream ARN, so one
    # warm worker pool serves every test.
    (spec,) = stack.functions()
    rt = FunctionRuntime(spec, {"AWS_ENDPOINT_URL_DYNAMODB": moto.url}, concurrency=2)
    rt.warm()
    try:
        yield rt
    finally:
        rt.close()


class Env:
    """Fresh tables for one test, and the helpers to write and inspect them."""

    def __init__(self, moto: EmbeddedMoto, stack: Stack, runtime: FunctionRuntime) -> None:
        self.moto = moto
        self.runtime = runtime
        self.stream_arns = create_tables(moto.url, stack.tables())
        self.functions: list[FunctionSpec] = stack.functions(self.stream_arns)
        self.source = f"{STACK_NAME}-SourceTable"
        self.sink = f"{STACK_NAME}-SinkTable"
        self.ddb: Any = client(moto.url)
        self.on_failure = OnFailureLog()
        self.supervisor = StreamSupervisor(
            self.functions, self.stream_arns, {"Recorder": runtime.invoke}, moto.url,
            sqs_endpoint_url=moto.url, function_arns={"Recorder": FUNCTION_ARN}, on_failure_log=self.on_failure,
        )

    @property
    def poller(self) -> StreamPoller:
        return self.supervisor.poller("Recorder.Source")

    def put(self, pk: str, status: str = "pending", **extra: Any) -> None:
        self.ddb.put_item(TableName=self.source, Item=self.item(pk, status, **extra))

    @staticmethod
    def item(pk: str, status: str = "pending", **extra: Any) -> dict[str, Any]:
        item: dict[str, Any] = {"pk": {"S": pk}, "status": {"S": status}}
        for name, value in extra.items():
            item[name] = {"N": str(value)} if isinstance(value, int) else {"S": str(value)}
        return item

    def drain(self) -> None:
        assert self.supervisor.drain_all(DRAIN_S), "the stream was not drained in time"

    def sink_items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.sink, "ConsistentRead": True}
        while True:
            page = self.ddb.scan(**kwargs)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def attempts(self) -> dict[str, int]:
        return {i["pk"]["S"].removeprefix("attempts#"): int(i["attempts"]["N"])
                for i in self.sink_items() if i["pk"]["S"].startswith("attempts#")}

    def batches(self) -> list[list[str]]:
        """The keys of every invocation's batch, in invocation order."""
        items = sorted((i for i in self.sink_items() if i["pk"]["S"].startswith("batch#")),
                       key=lambda i: int(i["at"]["N"]))
        return [[k["S"] for k in i["keys"]["L"]] for i in items]

    def events(self) -> list[dict[str, Any]]:
        items = sorted((i for i in self.sink_items() if i["pk"]["S"].startswith("batch#")),
                       key=lambda i: int(i["at"]["N"]))
        return [json.loads(i["event"]["S"]) for i in items]

    def sequence_numbers(self) -> dict[str, str]:
        """Key -> sequence number of its (last) delivered record."""
        return {r["dynamodb"]["Keys"]["pk"]["S"]: r["dynamodb"]["SequenceNumber"]
                for event in self.events() for r in event["Records"]}


@pytest.fixture
def env(moto: EmbeddedMoto, stack: Stack, runtime: FunctionRuntime) -> Iterator[Env]:
    e = Env(moto, stack, runtime)
    try:
        yield e
    finally:
        e.supervisor.stop()


# -- (a) filtering ---------------------------------------------------------------------


def test_only_records_matching_the_filter_reach_the_function(env: Env) -> None:
    env.put("p1")
    env.put("d1", status="done")
    env.put("p2")
    env.ddb.update_item(TableName=env.source, Key={"pk": {"S": "p1"}}, UpdateExpression="SET #s = :done",
                        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":done": {"S": "done"}})
    env.ddb.delete_item(TableName=env.source, Key={"pk": {"S": "p2"}})  # REMOVE: no NewImage
    env.supervisor.start()
    env.drain()

    assert env.batches() == [["p1", "p2"]]
    assert env.attempts() == {"p1": 1, "p2": 1}
    stats = env.poller.stats()
    assert (stats.records_delivered, stats.records_filtered, stats.batches_invoked) == (2, 3, 1)

    # Written while the poller runs: still filtered, and a matching MODIFY
    # arrives with both images.
    env.put("d2", status="done")
    env.put("p3")
    env.ddb.update_item(TableName=env.source, Key={"pk": {"S": "p3"}}, UpdateExpression="SET note = :n",
                        ExpressionAttributeValues={":n": {"S": "edited"}})
    env.drain()
    assert env.attempts() == {"p1": 1, "p2": 1, "p3": 2}
    assert "d1" not in {k for batch in env.batches() for k in batch}
    assert "d2" not in {k for batch in env.batches() for k in batch}
    assert env.poller.stats().records_filtered == 4


def test_records_have_the_shape_lambda_delivers(env: Env) -> None:
    env.put("p1")
    env.ddb.update_item(TableName=env.source, Key={"pk": {"S": "p1"}}, UpdateExpression="SET note = :n",
                        ExpressionAttributeValues={":n": {"S": "edited"}})
    env.supervisor.start()
    env.drain()

    records = [r for event in env.events() for r in event["Records"]]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    insert, modify = records
    assert set(insert) == {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb",
                           "eventSourceARN"}
    assert insert["eventVersion"] == "1.1"
    assert insert["eventSource"] == "aws:dynamodb"
    assert insert["awsRegion"] == "us-east-1"
    assert insert["eventSourceARN"] == env.stream_arns["SourceTable"]
    ddb = insert["dynamodb"]
    assert set(ddb) == {"ApproximateCreationDateTime", "Keys", "NewImage", "SequenceNumber", "SizeBytes",
                        "StreamViewType"}
    assert isinstance(ddb["ApproximateCreationDateTime"], float)
    assert ddb["ApproximateCreationDateTime"] == int(ddb["ApproximateCreationDateTime"])
    assert ddb["Keys"] == {"pk": {"S": "p1"}}
    assert ddb["NewImage"] == {"pk": {"S": "p1"}, "status": {"S": "pending"}}
    assert ddb["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert isinstance(ddb["SizeBytes"], int)
    assert re.fullmatch(r"\d+", ddb["SequenceNumber"])
    assert modify["dynamodb"]["OldImage"] == {"pk": {"S": "p1"}, "status": {"S": "pending"}}
    assert modify["dynamodb"]["NewImage"]["note"] == {"S": "edited"}
    assert int(modify["dynamodb"]["SequenceNumber"]) > int(ddb["SequenceNumber"])


# -- (b) partial batch failures ---------------------------------------------------------


def test_a_reported_failure_retries_only_the_failed_record(env: Env) -> None:
    for pk in ("a", "b", "c"):
        env.put(pk)
    env.put("d", fail_times=1)
    env.supervisor.start()
    env.drain()

    assert env.batches() == [["a", "b", "c", "d"], ["d"]]
    assert env.attempts() == {"a": 1, "b": 1, "c": 1, "d": 2}
    stats = env.poller.stats()
    assert (stats.partial_failures, stats.retries, stats.records_delivered) == (1, 1, 4)
    assert len(env.on_failure) == 0


def test_records_before_the_failed_one_are_not_redelivered(env: Env) -> None:
    env.supervisor.start()
    # A cancelled transaction first: moto 5.2.5 swaps the table's stream shard
    # object then, which strands iterators taken before it.
    with pytest.raises(env.ddb.exceptions.TransactionCanceledException):
        env.ddb.transact_write_items(TransactItems=[{"Put": {
            "TableName": env.source, "Item": env.item("never"),
            "ConditionExpression": "attribute_exists(pk)"}}])
    # One transaction, so the three records are in the stream together.
    env.ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": env.source, "Item": env.item("e")}},
        {"Put": {"TableName": env.source, "Item": env.item("f", fail_times=1)}},
        {"Put": {"TableName": env.source, "Item": env.item("g")}},
    ])
    env.drain()

    assert env.batches() == [["e", "f", "g"], ["f", "g"]]
    assert env.attempts() == {"e": 1, "f": 2, "g": 2}


# -- (c) retries exhausted -----------------------------------------------------------------


def test_exhausted_retries_produce_one_on_failure_record(env: Env) -> None:
    env.put("y")
    env.put("x1", fail="always")
    env.put("x2", fail="always")
    env.supervisor.start()
    env.drain()

    # MaximumRetryAttempts 2: the first attempt and two retries, then the shard moves on.
    assert env.batches() == [["y", "x1", "x2"], ["x1", "x2"], ["x1", "x2"]]
    assert env.attempts() == {"y": 1, "x1": 3, "x2": 3}
    seqs = env.sequence_numbers()

    (record,) = env.on_failure.records()
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["functionArn"] == FUNCTION_ARN
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": None}
    assert record["version"] == "1.0"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    info = record["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (seqs["x1"], seqs["x2"])
    assert info["batchSize"] == 2
    assert info["streamArn"] == env.stream_arns["SourceTable"]
    assert info["shardId"] in env.poller.checkpoints()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["approximateArrivalOfFirstRecord"])
    assert env.poller.on_failure_records == [record]
    assert env.poller.stats().records_failed == 2

    # The destination queue got the same record.
    sqs: Any = client(env.moto.url, "sqs")
    url = sqs.get_queue_url(QueueName=QUEUE_NAME)["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"]) for m in messages] == [record]
    sqs.delete_queue(QueueUrl=url)

    # And the shard is not stuck: the next record is delivered.
    env.put("z")
    env.drain()
    assert env.attempts()["z"] == 1


# -- (d) function errors and bisection ----------------------------------------------------


def test_bisection_isolates_the_record_that_makes_the_function_fail(env: Env) -> None:
    env.put("a")
    env.put("b")
    env.put("c", **{"raise": "yes"})
    env.put("d")
    env.supervisor.start()
    env.drain()

    # Halving is free; the single bad record then uses its two retries.
    assert env.batches() == [["a", "b", "c", "d"], ["a", "b"], ["c", "d"], ["c"], ["c"], ["c"], ["d"]]
    assert env.attempts() == {"a": 1, "b": 1, "d": 1}
    stats = env.poller.stats()
    assert (stats.function_errors, stats.bisections, stats.retries) == (5, 2, 2)

    (record,) = env.on_failure.records()
    info = record["DDBStreamBatchInfo"]
    seq_c = next(r["dynamodb"]["SequenceNumber"] for e in env.events() for r in e["Records"]
                 if r["dynamodb"]["Keys"]["pk"]["S"] == "c")
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (seq_c, seq_c, 1)
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["requestContext"]["approximateInvokeCount"] == 3


# -- (e) schedules -------------------------------------------------------------------------


def test_trigger_invokes_the_function_with_a_scheduled_event(env: Env) -> None:
    runner = ScheduleRunner(env.functions, {"Recorder": env.runtime.invoke}, stack_name=STACK_NAME)
    assert runner.trigger("Recorder.Hourly") == {"scheduled": True}
    assert runner.trigger("Nightly") == {"scheduled": True}  # disabled: not on a timer, still triggerable

    events = [json.loads(i["event"]["S"]) for i in env.sink_items() if i["pk"]["S"].startswith("schedule#")]
    scheduled = next(e for e in events if "source" in e)
    assert set(scheduled) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources",
                              "detail"}
    assert scheduled["source"] == "aws.events"
    assert scheduled["detail-type"] == "Scheduled Event"
    assert scheduled["version"] == "0"
    assert scheduled["account"] == "123456789012"
    assert scheduled["region"] == "us-east-1"
    assert scheduled["resources"] == [f"arn:aws:events:us-east-1:123456789012:rule/{STACK_NAME}-RecorderHourly"]
    assert scheduled["detail"] == {}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", scheduled["time"])
    # A schedule with Input delivers the Input instead of the event.
    assert {"job": "nightly"} in events
    assert [(h.name, h.ok) for h in runner.history()] == [("Recorder.Hourly", True), ("Recorder.Nightly", True)]


# -- mapping semantics with an in-process function -----------------------------------------


class FakeFunction:
    """An in-process invoke(event) that records batches and returns canned responses."""

    def __init__(self, respond: Any) -> None:
        self.respond = respond
        self.batches: list[list[str]] = []

    def __call__(self, event: dict[str, Any]) -> Any:
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]
        self.batches.append(keys)
        return self.respond(event)


def _poller(env: Env, fn: FakeFunction, **changes: Any) -> StreamPoller:
    mapping = dataclasses.replace(env.functions[0].streams[0], **changes)
    return StreamPoller(mapping, env.stream_arns["SourceTable"], env.moto.url, fn,
                        on_failure_log=env.on_failure, options=PollerOptions(retry_base_s=0.01))


def test_a_malformed_batch_response_fails_the_whole_batch(env: Env) -> None:
    env.put("m1")
    env.put("m2")
    fn = FakeFunction(lambda event: {"batchItemFailures": [{"itemIdentifier": "not-a-sequence-number"}]})
    poller = _poller(env, fn).start()
    try:
        assert poller.drain(DRAIN_S)
    finally:
        poller.stop()
    assert fn.batches == [["m1", "m2"]] * 3
    (record,) = env.on_failure.records()
    assert record["DDBStreamBatchInfo"]["batchSize"] == 2


def test_without_report_batch_item_failures_the_response_is_ignored(env: Env) -> None:
    env.put("n1")

    def respond(event: dict[str, Any]) -> Any:
        return {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["dynamodb"]["SequenceNumber"]}]}

    fn = FakeFunction(respond)
    poller = _poller(env, fn, report_batch_item_failures=False).start()
    try:
        assert poller.drain(DRAIN_S)
    finally:
        poller.stop()
    assert fn.batches == [["n1"]]
    assert len(env.on_failure) == 0


def test_latest_starts_after_what_is_already_in_the_stream(env: Env) -> None:
    env.put("old")
    fn = FakeFunction(lambda event: None)
    poller = _poller(env, fn, starting_position="LATEST").start()
    try:
        env.put("new")
        assert poller.drain(DRAIN_S)
    finally:
        poller.stop()
    assert fn.batches == [["new"]]


def test_batch_size_splits_a_backlog(env: Env) -> None:
    for i in range(5):
        env.put(f"k{i}")
    fn = FakeFunction(lambda event: {"batchItemFailures": []})
    poller = _poller(env, fn, batch_size=2).start()
    try:
        assert poller.drain(DRAIN_S)
    finally:
        poller.stop()
    assert fn.batches == [["k0", "k1"], ["k2", "k3"], ["k4"]]
    assert poller.idle()
