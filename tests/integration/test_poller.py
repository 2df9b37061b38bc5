"""The local event source mapping, over moto's SQS server, with recording stand-ins for the function."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace

import pytest
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from libs.batch import check_sqs_event
from libs.tools.local.poller import Poller, failed_message_ids
from libs.tools.local.queue_settings import load_queue_settings
from libs.tools.local.sqs_endpoint import create_queues, queue_counts
from tests.fakes.sqs import sqs_record


class RecordingFunction:
    """Records each invocation; fails the messages whose body is in ``fail`` (or raises)."""

    def __init__(self, fail: set[str] = frozenset(), raises: bool = False) -> None:
        self.fail, self.raises = set(fail), raises
        self.events: list[dict] = []
        self.remaining_ms: list[int] = []

    def __call__(self, event, context):
        self.remaining_ms.append(context.get_remaining_time_in_millis())
        self.events.append(event)
        if self.raises:
            raise RuntimeError("function crashed")
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.fail
            ]
        }

    def bodies(self) -> list[str]:
        return [r["body"] for event in self.events for r in event["Records"]]


def send(sqs, url, *bodies, **kwargs):
    return [sqs.send_message(QueueUrl=url, MessageBody=body, **kwargs)["MessageId"] for body in bodies]


def delete_calls(sqs) -> list[int]:
    """Entries of every DeleteMessageBatch call the client makes from now on."""
    calls: list[int] = []
    sqs.meta.events.register(
        "provide-client-params.sqs.DeleteMessageBatch", lambda params, **_: calls.append(len(params["Entries"]))
    )
    return calls


def test_the_event_has_exactly_the_shape_lambda_sends(sqs, queues):
    # given a plain message and one with string and binary message attributes
    send(sqs, queues.url, '{"as_of": "2024-11-01"}')
    send(
        sqs,
        queues.url,
        "second",
        MessageAttributes={
            "origin": {"DataType": "String", "StringValue": "upstream"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    function = RecordingFunction()

    # when the poller runs until the queue is drained
    Poller(sqs, queues.url, handler=function, wait_seconds=0).run(until_empty=True, max_seconds=20)

    # then each record has the keys of a real Lambda SQS record, with the queue's ARN and region
    records = [r for event in function.events for r in event["Records"]]
    assert len(records) == 2
    reference = sqs_record("x", "id")
    for record in records:
        assert record.keys() == reference.keys()
        assert record["attributes"].keys() == reference["attributes"].keys()
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == queues.arn
        assert record["awsRegion"] == sqs.meta.region_name
    with_attributes = next(r for r in records if r["body"] == "second")
    assert with_attributes["messageAttributes"] == {
        "origin": {"stringValue": "upstream", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }
    # and the service's own check and Powertools accept the event
    for event in function.events:
        check_sqs_event(event)
        assert [r.message_id for r in SQSEvent(event).records] == [r["messageId"] for r in event["Records"]]


def test_the_context_counts_down_from_the_function_timeout(sqs, queues):
    send(sqs, queues.url, "a")
    seen: list[int] = []

    def slow_function(event, context):
        seen.append(context.get_remaining_time_in_millis())
        time.sleep(0.3)
        seen.append(context.get_remaining_time_in_millis())

    Poller(sqs, queues.url, handler=slow_function, function_timeout_ms=30_000, wait_seconds=0).poll_once()

    first, second = seen
    assert 29_000 <= first <= 30_000
    assert 250 <= first - second <= 2_000


def test_successes_are_deleted_in_one_call_and_failures_wait_out_their_visibility(sqs, queues):
    # given ten messages of which one fails
    bodies = [f"m{i}" for i in range(10)]
    send(sqs, queues.url, *bodies)
    function = RecordingFunction(fail={"m3"})
    calls = delete_calls(sqs)
    poller = Poller(sqs, queues.url, handler=function, wait_seconds=0)

    # when one batch is processed
    received = poller.poll_once()

    # then nine are deleted in one delete_message_batch and the failure is in flight, not waiting
    assert received == 10 and calls == [9]
    counts = queue_counts(sqs, queues.url)
    assert (counts.visible, counts.in_flight) == (0, 1)
    assert poller.poll_once() == 0
    # and once its visibility timeout (1 s) has passed it is delivered again, with a higher receive count
    time.sleep(1.2)
    function.fail.clear()
    assert poller.poll_once() == 1
    redelivered = function.events[-1]["Records"][0]
    assert redelivered["body"] == "m3" and redelivered["attributes"]["ApproximateReceiveCount"] == "2"
    assert queue_counts(sqs, queues.url).drained
    assert (poller.stats.received, poller.stats.succeeded, poller.stats.failed) == (11, 10, 1)


def test_a_message_failing_max_receive_count_times_ends_in_the_dlq_and_polling_stops(sqs):
    # given a queue pair where a message gets two receives
    settings = replace(load_queue_settings(), max_receive_count=2)
    queues = create_queues(sqs, settings, visibility_timeout_seconds=1)
    (poison,) = send(sqs, queues.url, "poison")
    send(sqs, queues.url, "fine")
    function = RecordingFunction(fail={"poison"})

    # when the poller runs until empty
    stats = Poller(sqs, queues.url, handler=function).run(until_empty=True, max_seconds=30)

    # then the poison message was tried twice and moved to the DLQ with its id; the good one was deleted
    assert stats.stopped == "queue drained"
    assert function.bodies().count("poison") == 2 and function.bodies().count("fine") == 1
    dlq = sqs.receive_message(QueueUrl=queues.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [(m["MessageId"], m["Body"]) for m in dlq] == [(poison, "poison")]
    assert len(stats.deleted_message_ids) == 1


def test_a_function_error_leaves_the_whole_batch_on_the_queue(sqs, queues):
    send(sqs, queues.url, "a", "b")
    poller = Poller(sqs, queues.url, handler=RecordingFunction(raises=True), wait_seconds=0)

    assert poller.poll_once() == 2

    assert queue_counts(sqs, queues.url).in_flight == 2
    assert poller.stats.failed == 2 and poller.stats.succeeded == 0
    assert poller.stats.invocation_errors == ["RuntimeError: function crashed"]


def test_a_batch_size_above_ten_gathers_over_the_batching_window(sqs, queues):
    send(sqs, queues.url, *[f"m{i}" for i in range(15)])
    function = RecordingFunction()
    calls = delete_calls(sqs)

    Poller(sqs, queues.url, handler=function, batch_size=15, batching_window_seconds=1, wait_seconds=0).poll_once()

    assert [len(event["Records"]) for event in function.events] == [15]
    assert sorted(calls) == [5, 10]


@pytest.mark.parametrize(
    "response, failed",
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b"}),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"a", "b"}),
        ({"batchItemFailures": [{"id": "a"}]}, {"a", "b"}),
        ({"batchItemFailures": "a"}, {"a", "b"}),
        ("not a response", {"a", "b"}),
    ],
)
def test_the_partial_batch_response_is_read_with_lambdas_rules(response, failed):
    assert failed_message_ids(response, ["a", "b"]) == failed
