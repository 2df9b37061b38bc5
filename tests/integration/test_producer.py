"""The producer: splitting the coin universe and sending batches over moto's SQS server."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from libs.tools.local.producer import SQS_MAX_BATCH_BYTES, request_bodies, send_bodies, split_coins
from libs.tools.local.sqs_endpoint import peek_messages


class FailingOnce:
    """Wraps a real SQS client: the first send_message_batch drops ``drop`` entries and reports them failed.

    The dropped entries really are not sent (as when SQS fails them), so a
    retry that sends them again delivers each body exactly once.
    """

    def __init__(self, client, drop: int = 1, sender_fault: bool = False) -> None:
        self._client, self._drop, self._sender_fault = client, drop, sender_fault
        self.calls: list[list[str]] = []

    def send_message_batch(self, QueueUrl, Entries):
        self.calls.append([entry["MessageBody"] for entry in Entries])
        dropped, kept = (Entries[: self._drop], Entries[self._drop :]) if len(self.calls) == 1 else ([], Entries)
        response = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
        failed = [
            {"Id": e["Id"], "SenderFault": self._sender_fault, "Code": "InternalError", "Message": "try again"}
            for e in dropped
        ]
        return {"Successful": response.get("Successful", []), "Failed": failed}


def test_coins_are_split_into_chunks_each_coin_once():
    coins = [f"c{i}" for i in range(23)] + ["c4", "c0"]

    chunks = split_coins(coins, 5)

    assert [len(chunk) for chunk in chunks] == [5, 5, 5, 5, 3]
    assert [coin for chunk in chunks for coin in chunk] == [f"c{i}" for i in range(23)]


def test_a_chunk_size_below_one_is_refused():
    with pytest.raises(ValueError, match="coins_per_message"):
        split_coins(["a"], 0)


def test_each_body_carries_the_request_keys_and_its_chunk():
    bodies = request_bodies(["a", "b", "c"], 2, {"as_of": "2024-11-01", "periods": [7]})

    assert [json.loads(body) for body in bodies] == [
        {"as_of": "2024-11-01", "periods": [7], "coin_ids": ["a", "b"]},
        {"as_of": "2024-11-01", "periods": [7], "coin_ids": ["c"]},
    ]


def test_every_body_arrives_once_in_calls_of_at_most_ten(sqs, queues):
    bodies = request_bodies([f"coin-{i}" for i in range(25)], 1, {})
    client = FailingOnce(sqs, drop=0)

    report = send_bodies(client, queues.url, bodies)

    assert [len(call) for call in client.calls] == [10, 10, 5]
    assert report.sent == 25 and not report.rejected
    assert Counter(m["Body"] for m in peek_messages(sqs, queues.url)) == Counter(bodies)


def test_entries_failed_on_the_sqs_side_are_sent_again(sqs, queues):
    bodies = [f"body-{i}" for i in range(7)]
    client = FailingOnce(sqs, drop=2)

    report = send_bodies(client, queues.url, bodies, pause_seconds=0)

    assert client.calls[1] == ["body-0", "body-1"]
    assert report.sent == 7 and report.retried == 2 and not report.rejected
    assert Counter(m["Body"] for m in peek_messages(sqs, queues.url)) == Counter(bodies)


def test_entries_rejected_as_the_senders_fault_are_reported_not_retried(sqs, queues):
    client = FailingOnce(sqs, drop=1, sender_fault=True)

    report = send_bodies(client, queues.url, ["bad", "good"], pause_seconds=0)

    assert len(client.calls) == 1
    assert report.sent == 1 and report.rejected == [("bad", "InternalError: try again")]
    assert [m["Body"] for m in peek_messages(sqs, queues.url)] == ["good"]


def test_large_bodies_are_grouped_so_no_call_exceeds_256_kib(sqs, queues):
    bodies = ["x" * 100_000 + str(i) for i in range(5)]
    client = FailingOnce(sqs, drop=0)

    report = send_bodies(client, queues.url, bodies)

    assert report.sent == 5
    assert all(sum(len(body) for body in call) <= SQS_MAX_BATCH_BYTES for call in client.calls)
    assert [len(call) for call in client.calls] == [2, 2, 1]


class EndpointGoneAfter:
    """Wraps a real SQS client: after ``calls`` send_message_batch calls the endpoint stops answering."""

    def __init__(self, client, calls: int) -> None:
        self._client, self._calls = client, calls

    def send_message_batch(self, QueueUrl, Entries):
        from botocore.exceptions import EndpointConnectionError

        if self._calls == 0:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/")
        self._calls -= 1
        return self._client.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)


def test_an_endpoint_lost_midway_returns_what_was_not_sent_with_the_reason(sqs, queues):
    # given 25 bodies (three calls) and an endpoint that answers only the first call
    bodies = [json.dumps({"coin_ids": [f"c{i}"]}) for i in range(25)]

    # when they are sent
    report = send_bodies(EndpointGoneAfter(sqs, 1), queues.url, bodies)

    # then the first ten went, and the other fifteen are reported as not sent, with the endpoint's error
    assert report.sent == 10 and [body for body, _ in report.rejected] == bodies[10:]
    assert all(reason.startswith("EndpointConnectionError: Could not connect") for _, reason in report.rejected)
    assert Counter(m["Body"] for m in peek_messages(sqs, queues.url)) == Counter(bodies[:10])


def test_an_endpoint_that_never_answered_raises(sqs, queues):
    from botocore.exceptions import EndpointConnectionError

    with pytest.raises(EndpointConnectionError):
        send_bodies(EndpointGoneAfter(sqs, 0), queues.url, ["{}"])
