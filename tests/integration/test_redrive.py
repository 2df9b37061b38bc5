"""``redrive`` over moto's SQS server: the DLQ's messages back on the request queue, each once.

Messages reach the DLQ the way they do in production and in the demo: a consumer
receives them ``maxReceiveCount`` times without deleting them, and SQS moves them
on the next receive. The checks read the queues back over the same API.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from typing import Any

import pytest

from libs.cli import main
from libs.tools.local.demo import INVALID_BODIES
from libs.tools.local.redrive import (
    PREVIEW_CHARACTERS,
    RedriveError,
    dead_letter_queue_url,
    deduplication_id,
    redrive,
)
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


def test_the_cli_dry_run_prints_the_count_reported_then_one_line_per_message(sqs, queues, sqs_endpoint, capsys):
    ids = dead_letter(sqs, queues, list(INVALID_BODIES))

    status = main(["redrive", "--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url, "--dry-run"])

    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out[0] == f"{queues.dlq_url} reports {len(ids)} messages waiting"
    assert sorted(line.split()[0] for line in out[1:-1]) == sorted(ids)
    assert all("receives=" in line for line in out[1:-1])
    assert out[-1] == f"listed {len(ids)} of the {len(ids)} reported; nothing moved (--dry-run)"


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


# --- a dry run always ends, and says what it could see --------------------------------------------------------


class Recorder:
    """The SQS calls a client made, as their parameters, recorded through botocore's own event hook."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("provide-client-params.sqs", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]


class Slow:
    """A client whose receives take ``seconds`` each (a slow network, a throttled account), over the real server.

    It refuses to go on past ``max_receives``: a listing that never ends fails the test instead of hanging it.
    With ``refuse_renewals`` SQS is made to refuse every lease extension (visibility timeouts above 0).
    """

    def __init__(self, client: Any, seconds: float, *, max_receives: int = 60, refuse_renewals: bool = False) -> None:
        self._client, self._seconds, self._max = client, seconds, max_receives
        self._refuse_renewals = refuse_renewals
        self.receives = 0

    def receive_message(self, **kwargs: Any) -> Any:
        self.receives += 1
        if self.receives > self._max:
            raise AssertionError(f"the listing did not end after {self._max} receives")
        time.sleep(self._seconds)
        return self._client.receive_message(**kwargs)

    def change_message_visibility_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        if self._refuse_renewals and any(entry["VisibilityTimeout"] > 0 for entry in Entries):
            return {
                "Successful": [],
                "Failed": [{"Id": e["Id"], "Code": "MessageNotInflight", "SenderFault": True} for e in Entries],
            }
        return self._client.change_message_visibility_batch(QueueUrl=QueueUrl, Entries=Entries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def short_lease(monkeypatch):
    """A dry run's messages hidden for 2 s only (today's code read HIDE_SECONDS), so a listing outlasts it."""
    from libs.tools.local import redrive as module

    for name, value in (("HIDE_SECONDS", 2), ("LIST_LEASE_MIN_SECONDS", 2), ("LIST_LEASE_PER_MESSAGE_SECONDS", 0)):
        monkeypatch.setattr(module, name, value, raising=False)


def test_a_dry_run_that_outlasts_its_lease_renews_it_and_lists_each_message_once(sqs, queues, short_lease):
    # given 45 dead-lettered messages, and receives slow enough that listing them outlasts the 2 s lease
    ids = dead_letter(sqs, queues, [json.dumps({"request_id": f"slow-{i}"}) for i in range(45)])
    client = Slow(sqs, 0.6)

    # when a dry run lists them
    report = redrive(client, queues.url, dry_run=True)

    # then it ended, listing every message exactly once (none came back into view: the lease was renewed)
    assert sorted(letter.message_id for letter in report.listed) == sorted(ids)
    assert report.reported == 45 and report.stopped == "every message the DLQ reported was listed"
    # and they are all visible again, nothing moved
    counts = queue_counts(sqs, queues.dlq_url)
    assert (counts.visible, counts.in_flight) == (45, 0) and queue_counts(sqs, queues.url).visible == 0


def test_a_dry_run_whose_lease_cannot_be_renewed_still_ends_listing_each_message_once(sqs, queues, short_lease):
    # given 45 dead-lettered messages, slow receives, and SQS refusing to extend the lease: the first ones
    # come back into view while the listing runs
    ids = dead_letter(sqs, queues, [json.dumps({"request_id": f"lapse-{i}"}) for i in range(45)])
    client = Slow(sqs, 0.9, refuse_renewals=True)

    # when a dry run lists them
    report = redrive(client, queues.url, dry_run=True)

    # then it ended when a receive brought back only messages it had listed, each listed once
    listed = [letter.message_id for letter in report.listed]
    assert len(listed) == len(set(listed)) and set(listed) <= set(ids)
    assert 0 < len(listed) < 45 and "came back into view" in report.stopped
    counts = queue_counts(sqs, queues.dlq_url)
    assert (counts.visible, counts.in_flight) == (45, 0)


def fifo_queues(sqs: Any, max_receive_count: int = 2) -> Queues:
    """A FIFO request queue and its FIFO DLQ, as a FIFO variant of the stack would declare them."""
    dlq_url = sqs.create_queue(QueueName="requests-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    url = sqs.create_queue(
        QueueName="requests.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "1", "RedrivePolicy": policy},
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return Queues(url=url, arn=arn, dlq_url=dlq_url, dlq_arn=dlq_arn)


def fifo_dead_letter(sqs: Any, queues: Queues, messages: list[tuple[str, str, str]]) -> list[str]:
    """Send (group, deduplication id, body) messages and receive them until SQS dead-letters them all."""
    ids = [
        sqs.send_message(QueueUrl=queues.url, MessageBody=body, MessageGroupId=group, MessageDeduplicationId=dedup)[
            "MessageId"
        ]
        for group, dedup, body in messages
    ]
    for _ in range(100):
        if queue_counts(sqs, queues.dlq_url).visible == len(messages):
            break
        sqs.receive_message(QueueUrl=queues.url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert queue_counts(sqs, queues.dlq_url).visible == len(messages)
    return ids


def test_a_fifo_dry_run_reports_what_waits_lists_the_heads_it_can_see_and_says_why(sqs, sqs_endpoint, capsys):
    # given 18 dead-lettered messages in three message groups of a FIFO pair
    queues = fifo_queues(sqs)
    ids = fifo_dead_letter(sqs, queues, [(f"g{g}", f"d{g}-{i}", f"body {g}-{i}") for g in range(3) for i in range(6)])

    # when a dry run looks
    status = main(["redrive", "--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url, "--dry-run"])

    # then it says all 18 wait, lists the messages it could see (some of each group) once each, and says why
    # a group's later messages could not be seen
    out = capsys.readouterr().out.splitlines()
    assert status == 0 and out[0] == f"{queues.dlq_url} reports 18 messages waiting"
    listed = [line.split()[0] for line in out if line.split()[0] in ids]
    assert len(listed) == len(set(listed)) and 3 <= len(listed) < 18
    assert f"listed {len(listed)} of the 18 reported; nothing moved (--dry-run)" in out
    assert out[-1].startswith("a FIFO queue: while a message group's first message is held, its later ones")
    # and all 18 are there as before
    counts = queue_counts(sqs, queues.dlq_url)
    assert (counts.visible, counts.in_flight) == (18, 0)


# --- a move never stops early, and never loses a FIFO message ---------------------------------------------------


def test_every_receive_of_a_move_is_a_long_poll_and_the_dlqs_count_is_read_before_it_stops(sqs, queues):
    # given dead-lettered messages, and the client's calls recorded
    dead_letter(sqs, queues, [json.dumps({"request_id": f"poll-{i}"}) for i in range(12)])
    calls = Recorder(sqs)

    # when they are redriven
    report = redrive(sqs, queues.url)

    # then every receive was a long poll (SQS asks all its servers, not a sample)
    receives = calls.of("ReceiveMessage")
    assert report.moved == 12 and report.complete
    assert receives and all(r["WaitTimeSeconds"] >= 1 for r in receives)
    # and after the last receive (an empty one) the DLQ's own count was read, waiting and in flight
    last_receive = max(i for i, (name, _) in enumerate(calls.calls) if name == "ReceiveMessage")
    after = [params for name, params in calls.calls[last_receive:] if name == "GetQueueAttributes"]
    assert after and after[-1]["QueueUrl"] == queues.dlq_url
    assert {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"} <= set(after[-1]["AttributeNames"])


class FalseEmpty:
    """A client whose first ``empties`` receives answer nothing while messages wait, as AWS's sampled short
    polls do (and as no long poll should, which is why the count is read too); the rest go to the real server."""

    def __init__(self, client: Any, empties: int) -> None:
        self._client, self._empties = client, empties

    def receive_message(self, **kwargs: Any) -> Any:
        if self._empties:
            self._empties -= 1
            return {}
        return self._client.receive_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_an_empty_answer_while_the_dlq_counts_messages_does_not_end_the_move(sqs, queues):
    # given 12 dead-lettered messages and a DLQ whose first two receives answer nothing
    bodies = [json.dumps({"request_id": f"sampled-{i}"}) for i in range(12)]
    dead_letter(sqs, queues, bodies)

    # when they are redriven
    report = redrive(FalseEmpty(sqs, 2), queues.url)

    # then the DLQ's count said they were there, the move went on, and every one is back
    assert report.moved == 12 and report.complete
    assert Counter(m["Body"] for m in drain(sqs, queues.url)) == Counter(bodies)
    assert queue_counts(sqs, queues.dlq_url).visible == 0


def test_a_move_that_cannot_receive_what_the_dlq_counts_says_so_and_exits_1(sqs, queues, sqs_endpoint, capsys):
    # given three dead-lettered messages held by another reader (a consumer, or a dry run in progress)
    dead_letter(sqs, queues, [json.dumps({"request_id": f"held-{i}"}) for i in range(3)])
    sqs.receive_message(QueueUrl=queues.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60)

    # when a redrive runs
    status = main(["redrive", "--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url])

    # then it moved nothing, and rather than claim the DLQ empty it says what remains and exits 1
    captured = capsys.readouterr()
    assert status == 1 and captured.out.startswith("moved 0 messages")
    assert "the DLQ still counts 3 more messages it did not hand over" in captured.err
    assert queue_counts(sqs, queues.dlq_url).in_flight == 3


def test_a_fifo_copy_never_reuses_the_original_deduplication_id_so_none_is_dropped(sqs, queues_fifo_pair):
    # given a FIFO pair: a request dead-lettered with the producer's deduplication id "req-1", and a new
    # request the producer sent later with the same id (its own five minutes after the first, on AWS)
    sqs_, queues = queues_fifo_pair
    [original] = fifo_dead_letter(sqs_, queues, [("coin-a", "req-1", '{"request_id": "req-1", "periods": [0]}')])
    sqs_.send_message(
        QueueUrl=queues.url,
        MessageBody='{"request_id": "req-1"}',
        MessageGroupId="coin-a",
        MessageDeduplicationId="req-1",
    )
    calls = Recorder(sqs_)

    # when the DLQ is redriven
    report = redrive(sqs_, queues.url)

    # then SQS kept the copy beside the new request (sent with "req-1" it would have been dropped as a
    # duplicate, and the DLQ's message deleted: lost) ...
    assert report.moved == 1 and report.complete
    bodies = sorted(m["Body"] for m in drain_fifo(sqs_, queues.url))
    assert bodies == ['{"request_id": "req-1", "periods": [0]}', '{"request_id": "req-1"}']
    assert queue_counts(sqs_, queues.dlq_url).visible == 0
    # ... because the copy went out under its own deduplication id, in the original's group
    [sent] = [entry for call in calls.of("SendMessageBatch") for entry in call["Entries"]]
    assert sent["MessageDeduplicationId"] == deduplication_id({"MessageId": original}) == f"redrive:{original}"
    assert sent["MessageDeduplicationId"] != "req-1" and sent["MessageGroupId"] == "coin-a"


class FailingDeletes:
    """A client whose DeleteMessageBatch fails for every entry (SQS answering 'Failed'), the rest real."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.handles: list[str] = []

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        self.handles += [entry["ReceiptHandle"] for entry in Entries]
        return {
            "Successful": [],
            "Failed": [{"Id": e["Id"], "Code": "InternalError", "SenderFault": False} for e in Entries],
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_fifo_message_redriven_twice_within_five_minutes_lands_once(sqs, queues_fifo_pair):
    # given a dead-lettered FIFO message whose first redrive sent its copy but could not delete it
    sqs_, queues = queues_fifo_pair
    [original] = fifo_dead_letter(sqs_, queues, [("coin-b", "req-2", '{"request_id": "req-2"}')])
    failing = FailingDeletes(sqs_)
    first = redrive(failing, queues.url)
    assert first.moved == 1 and [message_id for message_id, _ in first.not_deleted] == [original]
    # (the message becomes visible in the DLQ again, as it would once the first run's hold ends)
    sqs_.change_message_visibility(QueueUrl=queues.dlq_url, ReceiptHandle=failing.handles[0], VisibilityTimeout=0)

    # when a second redrive moves it again
    second = redrive(sqs_, queues.url)

    # then the second copy carried the same deduplication id, so SQS kept one copy, and the DLQ is empty
    assert second.moved == 1 and second.complete
    assert [m["Body"] for m in drain_fifo(sqs_, queues.url)] == ['{"request_id": "req-2"}']
    assert queue_counts(sqs_, queues.dlq_url).visible + queue_counts(sqs_, queues.dlq_url).in_flight == 0


def test_deduplication_ids_are_the_same_for_one_message_and_differ_between_messages():
    # given DLQ messages (SQS message ids), one of them with an id SQS would refuse as a deduplication id
    ids = ["0f3c2b9e-6f0e-4c1e-9e58-0d6b5d1f0a11", "7a1e0c55-2b0c-4b7f-8a6e-3b4d9b2f8c22", "ünïcode id " * 20]

    # when their copies' deduplication ids are made twice
    first = [deduplication_id({"MessageId": i}) for i in ids]
    second = [deduplication_id({"MessageId": i}) for i in ids]

    # then each is stable, they are distinct, and each is one SQS accepts (1-128 printable ASCII characters)
    assert first == second and len(set(first)) == len(ids)
    assert all(re.fullmatch(r"[!-~]{1,128}", d) for d in first)


def drain_fifo(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message of a FIFO queue: receive and delete, group by group."""
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
        "Messages", []
    ):
        messages.extend(batch)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


@pytest.fixture
def queues_fifo_pair(sqs):
    return sqs, fifo_queues(sqs)
