"""``redrive`` over moto's SQS server: the DLQ's messages back on the request queue, each once.

Messages reach the DLQ the way they do in production and in the demo: a consumer
receives them ``maxReceiveCount`` times without deleting them, and SQS moves them
on the next receive. The checks read the queues back over the same API.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from libs.cli import main
from libs.tools.local.demo import INVALID_BODIES
from libs.tools.local.redrive import PREVIEW_CHARACTERS, RedriveError, dead_letter_queue_url, redrive
from libs.tools.local.sqs_endpoint import Queues, queue_counts

ATTRIBUTES = {
    "origin": {"DataType": "String", "StringValue": "risk-scheduler"},
    "attempt": {"DataType": "Number", "StringValue": "3"},
    "digest": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
}


def dead_letter(sqs: Any, queues: Queues, bodies: list[str], attributes: dict[str, Any] | None = None) -> list[str]:
    """Send ``bodies`` to the request queue and receive them until SQS dead-letters them; their ids."""
    ids = [
        sqs.send_message(QueueUrl=queues.url, MessageBody=body, MessageAttributes=attributes or {})["MessageId"]
        for body in bodies
    ]
    # each receive hides what it got for 0 s, so the next ones see the messages again; past
    # maxReceiveCount receives, SQS (and moto) moves a message to the DLQ on the next receive
    for _ in range(20 * (len(bodies) // 10 + 1)):
        if not sqs.receive_message(QueueUrl=queues.url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages"):
            break
    assert queue_counts(sqs, queues.dlq_url).visible == len(bodies)
    assert queue_counts(sqs, queues.url).visible == 0
    return ids


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message of a queue, received (and hidden for a minute) with its attributes."""
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        VisibilityTimeout=60,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", []):
        messages.extend(batch)
    return messages


def test_the_dlq_is_found_from_the_request_queues_redrive_policy(sqs, queues):
    assert dead_letter_queue_url(sqs, queues.url) == queues.dlq_url


def test_a_queue_without_a_redrive_policy_is_refused_by_name(sqs, queues):
    # given a queue with no DLQ of its own (the DLQ itself)
    with pytest.raises(RedriveError, match="has no RedrivePolicy"):
        redrive(sqs, queues.dlq_url)


def test_every_dead_lettered_message_goes_back_once_with_its_attributes(sqs, queues):
    # given the demo's invalid requests plus valid-looking ones, all dead-lettered, with attributes
    bodies = [*INVALID_BODIES, *(json.dumps({"request_id": f"r-{i}", "coin_ids": [f"coin-{i}"]}) for i in range(13))]
    dead_letter(sqs, queues, bodies, ATTRIBUTES)

    # when they are redriven
    report = redrive(sqs, queues.url)

    # then each body is on the request queue exactly once, attributes unchanged, and the DLQ is empty
    assert report.moved == len(bodies) and report.complete and report.returned == 0
    back = drain(sqs, queues.url)
    assert Counter(m["Body"] for m in back) == Counter(bodies)
    for message in back:
        assert {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
            for name, value in message["MessageAttributes"].items()
        } == ATTRIBUTES
        # as new messages: the full maxReceiveCount again
        assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert queue_counts(sqs, queues.dlq_url).visible == 0 and queue_counts(sqs, queues.dlq_url).in_flight == 0


def test_a_dry_run_lists_every_message_and_moves_nothing(sqs, queues):
    # given three dead-lettered messages, one with a long body
    long_body = json.dumps({"request_id": "long", "coin_ids": [f"coin-{i:04d}" for i in range(100)]})
    bodies = [INVALID_BODIES[0], INVALID_BODIES[1], long_body]
    ids = dead_letter(sqs, queues, bodies)

    # when a dry run looks
    report = redrive(sqs, queues.url, dry_run=True)

    # then it lists each (id, receive count, the body's first 200 characters) and nothing moved
    assert sorted(letter.message_id for letter in report.listed) == sorted(ids)
    by_id = {letter.message_id: letter for letter in report.listed}
    for message_id, body in zip(ids, bodies):
        assert by_id[message_id].preview == body[:PREVIEW_CHARACTERS]
        assert by_id[message_id].receive_count >= 1
    assert len(by_id[ids[2]].preview) == PREVIEW_CHARACTERS < len(long_body)
    assert report.moved == 0 and queue_counts(sqs, queues.url).visible == 0
    # and the DLQ holds them as before, visible at once
    counts = queue_counts(sqs, queues.dlq_url)
    assert (counts.visible, counts.in_flight) == (3, 0)


def test_a_message_sqs_refuses_stays_in_the_dlq_and_the_rest_move(sqs, queues):
    # given a dead-lettered message larger than the request queue now accepts, among small ones
    bodies = [json.dumps({"request_id": f"small-{i}"}) for i in range(4)] + ["x" * 2000]
    ids = dead_letter(sqs, queues, bodies)
    sqs.set_queue_attributes(QueueUrl=queues.url, Attributes={"MaximumMessageSize": "1024"})

    # when they are redriven
    report = redrive(sqs, queues.url)

    # then the small ones moved, the large one was never deleted from the DLQ (it is there, hidden
    # while the run had it), and the report names it
    assert report.moved == 4 and [message_id for message_id, _ in report.not_sent] == [ids[4]]
    assert not report.complete
    assert Counter(m["Body"] for m in drain(sqs, queues.url)) == Counter(bodies[:4])
    counts = queue_counts(sqs, queues.dlq_url)
    assert counts.visible + counts.in_flight == 1


class DeadLetteringAgain:
    """An SQS client whose sends land straight in the DLQ, as a copy that failed again at once would.

    Everything goes over the real server; only the destination queue of SendMessageBatch changes.
    """

    def __init__(self, client: Any, dlq_url: str) -> None:
        self._client = client
        self._dlq_url = dlq_url

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        return self._client.send_message_batch(QueueUrl=self._dlq_url, Entries=Entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_copy_back_in_the_dlq_during_the_run_is_not_moved_again(sqs, queues):
    # given dead-lettered messages, and copies that come back to the DLQ as soon as they are sent
    bodies = [json.dumps({"request_id": f"again-{i}"}) for i in range(12)]
    dead_letter(sqs, queues, bodies)

    # when they are redriven
    report = redrive(DeadLetteringAgain(sqs, queues.dlq_url), queues.url)

    # then each original was copied once and deleted, and each returning copy was left alone in
    # the DLQ (hidden for the run's HIDE_SECONDS, as the run received it once): 12 there, not 24
    assert report.moved == 12 and report.returned == 12 and report.complete
    counts = queue_counts(sqs, queues.dlq_url)
    assert counts.visible + counts.in_flight == 12
    assert queue_counts(sqs, queues.url).visible == 0


def test_the_cli_dry_run_prints_one_line_per_message_then_the_count(sqs, queues, sqs_endpoint, capsys):
    ids = dead_letter(sqs, queues, list(INVALID_BODIES))

    status = main(["redrive", "--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url, "--dry-run"])

    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert sorted(line.split()[0] for line in out[:-1]) == sorted(ids)
    assert all("receives=" in line for line in out[:-1])
    assert out[-1] == f"{len(ids)} messages in {queues.dlq_url}; nothing moved (--dry-run)"


def test_the_cli_moves_them_and_says_how_many(sqs, queues, sqs_endpoint, capsys):
    dead_letter(sqs, queues, list(INVALID_BODIES))

    status = main(["redrive", "--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url])

    assert status == 0
    assert (
        capsys.readouterr().out.strip() == f"moved {len(INVALID_BODIES)} messages from {queues.dlq_url} to {queues.url}"
    )
    assert queue_counts(sqs, queues.url).visible == len(INVALID_BODIES)


def test_the_cli_names_a_queue_without_a_dlq_and_exits_2(sqs, queues, sqs_endpoint, capsys):
    status = main(["redrive", "--queue-url", queues.dlq_url, "--endpoint-url", sqs_endpoint.url])

    assert status == 2
    assert "has no RedrivePolicy" in capsys.readouterr().err
