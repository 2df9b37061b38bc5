"""moto's SQS server on loopback and the queue pair as serverless.yml declares it."""

from __future__ import annotations

import json
import logging
import socket
from urllib.parse import urlparse

from libs.tools.local.sqs_endpoint import (
    create_queues,
    peek_messages,
    queue_counts,
    region_of,
    sqs_client,
)


def test_the_endpoint_listens_on_loopback_on_a_port_the_os_chose(sqs_endpoint):
    url = urlparse(sqs_endpoint.url)

    assert url.hostname == "127.0.0.1" and url.port not in (None, 0, 5000)
    with socket.create_connection((url.hostname, url.port), timeout=2):
        pass


def test_the_queues_get_the_declared_attributes(sqs, queue_settings):
    # when the queue pair is created as declared
    queues = create_queues(sqs, queue_settings)

    # then the request queue's visibility is factor x timeout and its redrive policy names the DLQ
    attributes = sqs.get_queue_attributes(QueueUrl=queues.url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "720"
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": queues.dlq_arn, "maxReceiveCount": 5}
    dlq = sqs.get_queue_attributes(QueueUrl=queues.dlq_url, AttributeNames=["All"])["Attributes"]
    assert dlq["MessageRetentionPeriod"] == "1209600"
    assert queues.url.endswith("/crypto-risk-anomaly-dev-requests")
    assert queues.dlq_arn.endswith(":crypto-risk-anomaly-dev-requests-dlq")


def test_a_shorter_visibility_timeout_can_be_asked_for_and_nothing_else_changes(sqs, queue_settings):
    queues = create_queues(sqs, queue_settings, visibility_timeout_seconds=1)

    attributes = sqs.get_queue_attributes(QueueUrl=queues.url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "1"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 5


def test_the_access_log_is_silent(sqs, queues, capfd, caplog):
    # given logging captured at every level
    caplog.set_level(logging.DEBUG)

    # when requests reach the server
    sqs.send_message(QueueUrl=queues.url, MessageBody="{}")
    sqs.receive_message(QueueUrl=queues.url)

    # then werkzeug wrote nothing: no record and no "POST / HTTP/1.1" line
    assert not [record for record in caplog.records if record.name == "werkzeug"]
    assert "HTTP/1.1" not in capfd.readouterr().err


def test_a_loopback_client_uses_fake_credentials_even_when_real_ones_are_set(monkeypatch, sqs_endpoint):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGKEY00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-looking-secret")

    local = sqs_client(sqs_endpoint.url)
    remote = sqs_client(queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/requests")

    assert local._request_signer._credentials.access_key == "testing"
    assert remote._request_signer._credentials.access_key == "AKIAREALLOOKINGKEY00"
    assert remote.meta.region_name == "eu-west-1"


def test_the_region_is_read_from_an_aws_queue_url_only():
    assert region_of("https://sqs.ap-southeast-2.amazonaws.com/123456789012/q") == "ap-southeast-2"
    assert region_of("http://127.0.0.1:5000/123456789012/q") is None
    assert region_of(None) is None


def test_counts_say_drained_only_when_nothing_waits_or_is_in_flight(sqs, queues):
    assert queue_counts(sqs, queues.url).drained

    sqs.send_message(QueueUrl=queues.url, MessageBody="a")
    waiting = queue_counts(sqs, queues.url)
    handle = sqs.receive_message(QueueUrl=queues.url)["Messages"][0]["ReceiptHandle"]
    in_flight = queue_counts(sqs, queues.url)
    sqs.delete_message(QueueUrl=queues.url, ReceiptHandle=handle)

    assert (waiting.visible, waiting.in_flight, waiting.drained) == (1, 0, False)
    assert (in_flight.visible, in_flight.in_flight, in_flight.drained) == (0, 1, False)
    assert queue_counts(sqs, queues.url).drained


def test_peeking_returns_every_message_and_deletes_none(sqs, queues):
    bodies = {f"body-{i}" for i in range(23)}
    for body in bodies:
        sqs.send_message(QueueUrl=queues.dlq_url, MessageBody=body)

    peeked = peek_messages(sqs, queues.dlq_url)

    assert {m["Body"] for m in peeked} == bodies and len(peeked) == 23
    assert queue_counts(sqs, queues.dlq_url).in_flight == 23
