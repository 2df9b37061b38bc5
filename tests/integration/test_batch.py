"""SQS batch processing: the event check, the time budget and the partial batch response."""

from __future__ import annotations

import pytest

from libs.batch import check_sqs_event, process_sqs_batch
from libs.errors import InvalidRequest, NotAnSqsEvent
from libs.tools.local.lambda_context import LocalContext
from tests.fakes.sqs import failed_ids, sqs_event, sqs_record


def _recording_handler(fail_on: set[str] = frozenset()):
    seen: list[str] = []

    def handle(record, deadline, outage):
        seen.append(record.message_id)
        if record.message_id in fail_on:
            raise InvalidRequest("body", "boom")

    return handle, seen


def test_every_record_is_handed_over_in_order_and_failures_are_listed():
    handle, seen = _recording_handler(fail_on={"msg-1"})
    response = process_sqs_batch(sqs_event({}, {}, {}), LocalContext(), handle, start_margin_ms=15_000)
    assert seen == ["msg-0", "msg-1", "msg-2"]
    assert failed_ids(response) == ["msg-1"]


def test_unexpected_exceptions_fail_only_their_record():
    def handle(record, deadline, outage):
        if record.message_id == "msg-0":
            raise ZeroDivisionError("model crashed")

    response = process_sqs_batch(sqs_event({}, {}), LocalContext(), handle, start_margin_ms=0)
    assert failed_ids(response) == ["msg-0"]


def test_records_are_not_started_once_the_margin_is_reached():
    handle, seen = _recording_handler()
    context = LocalContext(remaining_ms=[20_000, 15_000, 14_999, 50_000])

    response = process_sqs_batch(sqs_event({}, {}, {}, {}), context, handle, start_margin_ms=15_000)

    # 15,000 left is enough (the margin is a floor); 14,999 is not; time never comes back in real life,
    # but a later record with time is still started: each record is judged on its own
    assert seen == ["msg-0", "msg-1", "msg-3"]
    assert failed_ids(response) == ["msg-2"]


def test_without_a_context_nothing_is_held_back():
    handle, seen = _recording_handler()
    process_sqs_batch(sqs_event({}, {}), None, handle, start_margin_ms=15_000)
    assert seen == ["msg-0", "msg-1"]


def test_failure_log_lines_carry_the_message_id_and_reason(json_logs):
    handle, _ = _recording_handler(fail_on={"msg-0"})
    process_sqs_batch(sqs_event({}), LocalContext(remaining_ms=1), handle, start_margin_ms=15_000)
    process_sqs_batch(sqs_event({}), LocalContext(), handle, start_margin_ms=15_000)

    lines = [line for line in json_logs.lines() if line.get("message_id") == "msg-0"]
    assert lines[0]["level"] == "WARNING" and "ANOMALY_TIME_MARGIN_MS" in lines[0]["reason"]
    assert lines[1]["level"] == "ERROR" and lines[1]["reason"] == "invalid request: body: boom"


@pytest.mark.parametrize(
    "event, complaint",
    [
        (None, "got NoneType"),
        ([], "got list"),
        ({"records": []}, "no Records list"),
        ({"Records": [sqs_record({}, "a"), {"eventSource": "aws:sns", "messageId": "b"}]}, "'aws:sns'"),
        ({"Records": ["text"]}, "record 0"),
        ({"Records": [{**sqs_record({}, "a"), "messageId": ""}]}, "no messageId"),
    ],
)
def test_events_that_are_not_sqs_batches_are_refused_with_the_reason(event, complaint):
    with pytest.raises(NotAnSqsEvent, match=complaint):
        check_sqs_event(event)
    handle, seen = _recording_handler()
    with pytest.raises(NotAnSqsEvent):
        process_sqs_batch(event, LocalContext(), handle, start_margin_ms=0)
    assert seen == []


def test_an_empty_batch_answers_with_no_failures():
    handle, seen = _recording_handler()
    assert process_sqs_batch({"Records": []}, LocalContext(), handle, start_margin_ms=0) == {"batchItemFailures": []}
    assert seen == []
