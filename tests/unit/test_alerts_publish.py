"""Publishing alerts (contract §10) against a recording fake of boto3's SNS client.

The fake answers as SNS's ``PublishBatch`` does (``Successful`` / ``Failed``
by entry Id, or a ``ClientError`` for the whole call); the same paths over a
real SNS API (moto's server) are in tests/integration/test_alerts_sns.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from libs.alerts.build import Alert
from libs.alerts.publish import BATCH_SIZE, CALL_BUDGET_S, publish_alerts, region_of, worst_case_s
from libs.deadline import Deadline
from libs.errors import AlertPublishFailed

TOPIC = "arn:aws:sns:eu-west-1:123456789012:risk-alerts"
FIFO_TOPIC = "arn:aws:sns:eu-west-1:123456789012:risk-alerts.fifo"


def alert(number: int) -> Alert:
    return Alert(
        alert_id=f"id-{number:03d}",
        coin_id=f"coin-{number % 3}",
        signal="volume",
        timestamp="2024-11-01T12:00:00.000Z",
        direction="spike",
        value=float(number),
        severity=4.0,
        level=1,
        flat_window=False,
        windows=({"period_days": 7, "severity": 4.0, "level": 1},),
        request_id="r",
        subject=f"coin-{number % 3} volume spike, level 1: severity 4.0 beyond the 7-day fence",
    )


class FakeSns:
    """Records every call; ``reject`` says which alert ids fail on which attempt (1 = first sight)."""

    def __init__(self, reject: dict[str, set[int]] | None = None, error: Exception | None = None) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.reject = reject or {}
        self.error = error
        self.seen: dict[str, int] = {}

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(PublishBatchRequestEntries) <= BATCH_SIZE
        assert len({e["Id"] for e in PublishBatchRequestEntries}) == len(PublishBatchRequestEntries)
        self.calls.append(PublishBatchRequestEntries)
        if self.error is not None:
            raise self.error
        ok, failed = [], []
        for e in PublishBatchRequestEntries:
            alert_id = json.loads(e["Message"])["alert_id"]
            self.seen[alert_id] = self.seen.get(alert_id, 0) + 1
            if self.seen[alert_id] in self.reject.get(alert_id, set()):
                failed.append({"Id": e["Id"], "Code": "InternalError", "Message": "try again", "SenderFault": False})
            else:
                ok.append({"Id": e["Id"], "MessageId": f"m-{alert_id}"})
        return {"Successful": ok, "Failed": failed}

    def published_ids(self) -> list[str]:
        return [json.loads(e["Message"])["alert_id"] for call in self.calls for e in call]


def test_alerts_go_out_in_order_ten_a_call():
    # given 23 alerts
    alerts = [alert(i) for i in range(23)]
    client = FakeSns()
    # when
    published = publish_alerts(alerts, TOPIC, client)
    # then: three calls of 10, 10, 3, in order, each entry with its Subject and attributes
    assert published == 23
    assert [len(call) for call in client.calls] == [10, 10, 3]
    assert client.published_ids() == [a.alert_id for a in alerts]
    first = client.calls[0][0]
    assert first["Subject"] == alerts[0].subject and first["MessageAttributes"] == alerts[0].attributes()
    assert "MessageGroupId" not in first and "MessageDeduplicationId" not in first


def test_a_fifo_topic_gets_the_alert_id_as_dedup_id_and_the_coin_as_group():
    client = FakeSns()
    publish_alerts([alert(4)], FIFO_TOPIC, client)
    (entry,) = client.calls[0]
    assert entry["MessageDeduplicationId"] == "id-004" and entry["MessageGroupId"] == "coin-1"


def test_entries_reported_failed_are_retried_once_together_in_one_call():
    # given SNS fails two entries the first time only
    client = FakeSns(reject={"id-002": {1}, "id-007": {1}})
    # when
    published = publish_alerts([alert(i) for i in range(12)], TOPIC, client)
    # then: the retry carries just those two, and everything is published
    assert published == 12
    assert [len(call) for call in client.calls] == [10, 2, 2]
    assert [json.loads(e["Message"])["alert_id"] for e in client.calls[1]] == ["id-002", "id-007"]


def test_an_entry_failing_twice_fails_the_message_with_the_reason():
    client = FakeSns(reject={"id-001": {1, 2}})
    with pytest.raises(AlertPublishFailed, match=r"1 of 3 alerts after a retry \(InternalError: try again\)"):
        publish_alerts([alert(i) for i in range(3)], TOPIC, client)
    assert len(client.calls) == 2


@pytest.mark.parametrize(
    "error",
    [
        ClientError({"Error": {"Code": "NotFound", "Message": "Topic does not exist"}}, "PublishBatch"),
        ClientError({"Error": {"Code": "AuthorizationError", "Message": "not allowed"}}, "PublishBatch"),
        EndpointConnectionError(endpoint_url="https://sns.eu-west-1.amazonaws.com"),
    ],
)
def test_a_call_failing_as_a_whole_fails_the_message_at_once(error):
    client = FakeSns(error=error)
    with pytest.raises(AlertPublishFailed, match="publishing alerts failed"):
        publish_alerts([alert(1)], TOPIC, client)
    assert len(client.calls) == 1


def test_too_little_time_left_fails_before_calling():
    client = FakeSns()
    with pytest.raises(AlertPublishFailed, match="too little time"):
        publish_alerts([alert(1)], TOPIC, client, deadline=Deadline.after(CALL_BUDGET_S / 2))
    assert client.calls == []
    assert publish_alerts([alert(1)], TOPIC, client, deadline=Deadline.after(CALL_BUDGET_S + 60)) == 1


def test_nothing_to_publish_makes_no_call():
    client = FakeSns()
    assert publish_alerts([], TOPIC, client) == 0 and client.calls == []


def test_the_region_comes_from_the_topic_arn():
    assert region_of(TOPIC) == "eu-west-1"
    assert region_of("arn:aws-cn:sns:cn-north-1:123456789012:a") == "cn-north-1"


@pytest.mark.parametrize(
    ("coin_id", "kept"),
    [
        ("bitcoin", True),
        ("a" * 128, True),
        ("wrapped-btc.e/usd", True),
        ("a" * 129, False),
        ("two words", False),
        ("é", False),
    ],
)
def test_a_fifo_group_is_the_coin_id_unless_sns_would_refuse_it(coin_id, kept):
    from libs.alerts.publish import message_group_id

    # when a coin's alerts go to a FIFO topic
    group = message_group_id(coin_id)

    # then the group is the coin id where SNS takes it (1-128 printable ASCII), else a stable digest of it
    assert re.fullmatch(r"[!-~]{1,128}", group)
    assert (group == coin_id) is kept
    assert group == message_group_id(coin_id)
    if not kept:
        assert group != message_group_id(coin_id + "x")


def test_the_time_a_call_needs_covers_botocores_slowest_call():
    # given the client's own configuration (one attempt: no retry) and botocore's standard-mode backoff at its
    # slowest for any retry there would be: a throttled attempt, full jitter, and an x-amz-retry-after header
    # asking for longer than botocore allows
    from types import SimpleNamespace

    from botocore.retries.standard import ExponentialBackoff

    from libs.alerts import publish

    client = publish.sns_client("arn:aws:sns:us-east-1:123456789012:alerts")
    publish.reset_sns_client()
    config = client.meta.config
    attempts = config.retries["total_max_attempts"]
    backoff = ExponentialBackoff(
        random=lambda: 1.0, throttling_detector=SimpleNamespace(is_throttling_error_from_context=lambda c: True)
    )
    slowest_delays = sum(
        backoff.delay_amount(
            SimpleNamespace(attempt_number=n, http_response=SimpleNamespace(headers={"x-amz-retry-after": "600000"}))
        )
        for n in range(1, attempts)
    )

    # when the longest one call can take is added up, then the time publish_alerts keeps for a call covers it
    slowest_call = attempts * (config.connect_timeout + config.read_timeout) + slowest_delays
    assert publish.CALL_BUDGET_S >= slowest_call


def test_the_alerts_steps_worst_case_is_every_batch_and_its_retry_at_their_longest():
    # given the default cap of 50 alerts: five batches, each possibly sent twice (its failed entries again)
    # then the worst case counts ten calls, each at the longest a call can take
    assert worst_case_s(50) == 10 * CALL_BUDGET_S == 30
    assert worst_case_s(1) == 2 * CALL_BUDGET_S and worst_case_s(11) == 4 * CALL_BUDGET_S


def test_publishing_the_cap_with_every_entry_failing_once_makes_exactly_the_calls_the_worst_case_counts():
    # given 50 alerts, each refused on its first sight
    alerts = [alert(n) for n in range(50)]
    client = FakeSns(reject={a.alert_id: {1} for a in alerts})
    # when
    assert publish_alerts(alerts, TOPIC, client) == 50
    # then: ten calls, what worst_case_s budgets for
    assert len(client.calls) * CALL_BUDGET_S == worst_case_s(50)
