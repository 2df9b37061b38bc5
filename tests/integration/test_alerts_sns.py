"""Alerts over a real SNS API (moto's server on loopback) into SQS subscriptions (contract §10).

The function's SNS client is pointed at the server only through
``AWS_ENDPOINT_URL_SNS``, as a deployed function would take a VPC endpoint.
What arrives is compared with the plain reference of tests/fakes (documents
in, alerts out), never with the code under test.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

import pytest

from libs.alerts.build import MAX_SUBJECT_CHARS
from libs.alerts.publish import reset_sns_client
from libs.errors import AlertPublishFailed
from libs.helpers import constants_helper
from libs.helpers.constants_helper import SIGNALS, load_settings
from libs.processor import process_message
from libs.tools.local.sqs_endpoint import FAKE_CREDENTIALS
from libs.tools.synthetic import synthetic_documents
from tests.fakes.alerts_reference import reference_alerts, reference_latest_raises
from tests.fakes.episodes_reference import Rules

END = datetime(2024, 11, 1)
#: A minimum severity low enough for the synthetic coins' planted anomalies to raise many alerts.
LOW = "0.5"


@pytest.fixture
def sns(sqs_endpoint, sqs, monkeypatch):
    """A client of the loopback SNS API (state wiped with SQS's), and the function's client pointed at it."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", sqs_endpoint.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", FAKE_CREDENTIALS["aws_session_token"])
    reset_sns_client()
    yield boto3.client("sns", region_name="us-east-1", endpoint_url=sqs_endpoint.url, **FAKE_CREDENTIALS)
    reset_sns_client()


def subscribed_topic(sns, sqs, name: str, *, fifo: bool = False, raw: bool = True) -> tuple[str, str]:
    """A topic with an SQS queue subscribed to it; returns (topic ARN, queue URL)."""
    suffix = ".fifo" if fifo else ""
    queue_attributes = {"FifoQueue": "true"} if fifo else {}
    queue_url = sqs.create_queue(QueueName=f"{name}-inbox{suffix}", Attributes=queue_attributes)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic_attributes = {"FifoTopic": "true"} if fifo else {}
    topic_arn = sns.create_topic(Name=f"{name}{suffix}", Attributes=topic_attributes)["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true" if raw else "false"},
    )
    return topic_arn, queue_url


def drain(sqs, queue_url: str) -> list[dict[str, Any]]:
    """Every message waiting in the queue, received and deleted."""
    messages = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=0,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
    ).get("Messages", []):
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


def alerting(topic_arn: str, **more: str):
    return load_settings({"MONGODB_URI": "mongomock://", "ALERT_TOPIC_ARN": topic_arn, **more})


def expected(documents, settings, request_id: str, **options) -> tuple[list[dict], int]:
    """(alerts published in order, withheld by the cap) by the plain reference."""
    raises = reference_latest_raises(
        documents,
        as_of=options.get("as_of", END),
        signals=options.get("signals", SIGNALS),
        periods=settings.periods_days,
        k=settings.deviation_limit,
        min_observations=settings.min_observations,
        rules=Rules(
            relative_floor=settings.severity_relative_floor,
            floors=dict(settings.severity_absolute_floors),
            min_severity=settings.alert_min_severity,
            factor=settings.alert_escalation_factor,
            memory_hours=settings.alert_memory_hours,
            lookback_hours=settings.latest_lookback_hours,
        ),
        coin_ids=options.get("coin_ids"),
    )
    alerts = reference_alerts(raises, request_id)
    cap = settings.alert_max_per_message
    return [{k: v for k, v in a.items() if not k.startswith("_")} for a in alerts[:cap]], len(alerts[cap:])


def stored_flags(store) -> dict:
    """Every document's anomalies, without the run's time."""
    return {
        doc["_id"]: {k: v for k, v in doc["anomalies"].items() if k != "evaluated_at"}
        for doc in store.find({"anomalies": {"$exists": True}})
    }


def seeded(store, coins: int = 8, seed: int = 3) -> list[dict[str, Any]]:
    documents, _ = synthetic_documents(coins=coins, days=35, per_day=4, end=END, seed=seed)
    store.insert_many(documents)
    return list(store.find({}))


def same_bodies(received: list[dict[str, Any]], published: list[dict[str, Any]]) -> None:
    bodies = {b["alert_id"]: b for b in (json.loads(m["Body"]) for m in received)}
    assert set(bodies) == {a["alert_id"] for a in published}
    for theirs in published:
        mine = bodies[theirs["alert_id"]]
        assert {k: v for k, v in mine.items() if k not in ("value", "severity", "windows")} == {
            k: v for k, v in theirs.items() if k not in ("value", "severity", "windows")
        }
        assert mine["value"] == pytest.approx(theirs["value"], rel=1e-12)
        assert mine["severity"] == pytest.approx(theirs["severity"], rel=1e-9)
        assert [(w["period_days"], w["level"]) for w in mine["windows"]] == [
            (w["period_days"], w["level"]) for w in theirs["windows"]
        ]


# --- a real topic, a raw subscription ---------------------------------------------------------


def test_a_latest_mode_message_publishes_the_reference_alerts_with_their_attributes(store, sns, sqs):
    # given: synthetic coins whose newest observations carry planted anomalies, and alerts on
    documents = seeded(store)
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts")
    settings = alerting(topic_arn, ALERT_MIN_SEVERITY=LOW)
    # when: one latest-mode message for every coin
    summary = process_message(json.dumps({"as_of": END.isoformat()}), "m-1", settings, now=END)
    # then: what arrives is what the reference publishes, with the filter attributes
    published, withheld = expected(documents, settings, "m-1")
    received = drain(sqs, inbox)
    assert published and len(received) == len(published)
    same_bodies(received, published)
    assert (summary.alerts_published, summary.alerts_withheld) == (len(published), withheld)
    assert "alerts" in summary.stage_ms and summary.as_log()["alerts_published"] == len(published)
    for message in received:
        body, attributes = json.loads(message["Body"]), message["MessageAttributes"]
        assert attributes["coin_id"] == {"DataType": "String", "StringValue": body["coin_id"]}
        assert attributes["signal"]["StringValue"] == body["signal"]
        assert attributes["direction"]["StringValue"] == body["direction"]
        assert attributes["level"] == {"DataType": "Number", "StringValue": str(body["level"])}
        assert attributes["severity"]["DataType"] == "Number"
        assert float(attributes["severity"]["StringValue"]) == pytest.approx(body["severity"], abs=1e-5)


def test_alerts_change_nothing_that_is_written(store, sns, sqs):
    # given the same message processed with alerts off, then on
    seeded(store)
    topic_arn, _ = subscribed_topic(sns, sqs, "risk-alerts")
    body = json.dumps({"as_of": END.isoformat()})
    process_message(body, "m-1", load_settings({"MONGODB_URI": "mongomock://"}), now=END)
    without = stored_flags(store)
    # when
    process_message(body, "m-1", alerting(topic_arn), now=END)
    # then the flags are the same
    assert stored_flags(store) == without


def test_a_redelivered_message_publishes_the_same_alert_ids(store, sns, sqs):
    seeded(store)
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts")
    settings = alerting(topic_arn, ALERT_MIN_SEVERITY=LOW)
    body = json.dumps({"as_of": END.isoformat(), "request_id": "hourly"})
    process_message(body, "m-1", settings, now=END)
    first = sorted(json.loads(m["Body"])["alert_id"] for m in drain(sqs, inbox))
    process_message(body, "m-1", settings, now=END + timedelta(minutes=5))
    second = sorted(json.loads(m["Body"])["alert_id"] for m in drain(sqs, inbox))
    assert first and first == second


def test_the_envelope_of_a_plain_subscription_carries_the_subject(store, sns, sqs):
    seeded(store, coins=3)
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts", raw=False)
    process_message(json.dumps({"as_of": END.isoformat()}), "m-1", alerting(topic_arn, ALERT_MIN_SEVERITY=LOW), now=END)
    envelopes = [json.loads(m["Body"]) for m in drain(sqs, inbox)]
    assert envelopes
    for envelope in envelopes:
        body = json.loads(envelope["Message"])
        assert 0 < len(envelope["Subject"]) <= MAX_SUBJECT_CHARS
        assert envelope["Subject"].startswith(f"{body['coin_id']} {body['signal']} {body['direction']}, level ")
        assert envelope["MessageAttributes"]["direction"]["Value"] == body["direction"]


def test_a_fifo_topic_dedupes_a_redelivery_and_groups_by_coin(store, sns, sqs):
    # given a FIFO topic with a FIFO queue subscribed
    documents = seeded(store)
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts", fifo=True)
    settings = alerting(topic_arn, ALERT_MIN_SEVERITY=LOW)
    body = json.dumps({"as_of": END.isoformat()})
    # when the message is processed twice (a redelivery)
    process_message(body, "m-1", settings, now=END)
    process_message(body, "m-1", settings, now=END)
    # then each alert arrives once, deduplicated by its id, in its coin's group
    published, _ = expected(documents, settings, "m-1")
    received = drain(sqs, inbox)
    assert len(received) == len(published)
    same_bodies(received, published)
    for message in received:
        alert = json.loads(message["Body"])
        assert message["Attributes"]["MessageGroupId"] == alert["coin_id"]
        assert message["Attributes"]["MessageDeduplicationId"] == alert["alert_id"]


# --- threshold, cap, range mode -----------------------------------------------------------------


def test_a_broken_flat_window_alerts_by_its_severity_against_the_floor_like_any_other(store, sns, sqs):
    # given: coin "flat" sat at 5.0 for days, then rose 10 %; coin "spiky" has an ordinary spike
    hours = [END - timedelta(hours=6 * i) for i in range(40)][::-1]
    flat = [{"coin_id": "flat", "timestamp": t, "volume": 5.0} for t in hours[:-1]]
    flat.append({"coin_id": "flat", "timestamp": hours[-1], "volume": 5.5})
    spiky = [{"coin_id": "spiky", "timestamp": t, "volume": 10.0 + i % 4} for i, t in enumerate(hours[:-1])]
    spiky.append({"coin_id": "spiky", "timestamp": hours[-1], "volume": 40.0})
    store.insert_many(flat + spiky)
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts")
    body = json.dumps({"as_of": END.isoformat(), "signals": ["volume"]})
    # when: the default minimum, then one above the flat window's severity
    default = alerting(topic_arn)
    process_message(body, "m", default, now=END)
    at_default = [json.loads(m["Body"]) for m in drain(sqs, inbox)]
    strict = alerting(topic_arn, ALERT_MIN_SEVERITY="1000")
    summary = process_message(body, "m", strict, now=END)
    # then: the flat window's 10 % rise is ln(1.1) / ln(1.01) = 9.6 floors of spread: it alerts at the default
    # minimum, flat_window saying why, and is held to the minimum like any other (nothing at 1,000)
    flat_alert = next(a for a in at_default if a["coin_id"] == "flat")
    assert flat_alert["flat_window"] is True
    assert flat_alert["severity"] == pytest.approx(math.log(1.1) / math.log(1.01))
    assert [a["alert_id"] for a in at_default] == [
        a["alert_id"] for a in expected(list(store.find({})), default, "m", signals=("volume",))[0]
    ]
    assert drain(sqs, inbox) == [] and summary.alerts_published == 0


def test_at_most_alert_max_per_message_go_out_the_most_severe_first(store, sns, sqs):
    documents = seeded(store, coins=12)
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts")
    settings = alerting(topic_arn, ALERT_MIN_SEVERITY=LOW, ALERT_MAX_PER_MESSAGE="3")
    summary = process_message(json.dumps({"as_of": END.isoformat()}), "m-1", settings, now=END)
    published, withheld = expected(documents, settings, "m-1")
    assert len(published) == 3 and withheld > 0
    same_bodies(drain(sqs, inbox), published)
    assert (summary.alerts_published, summary.alerts_withheld) == (3, withheld)


def test_a_range_mode_message_publishes_nothing(store, sns, sqs):
    seeded(store)
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts")
    body = json.dumps({"since": (END - timedelta(days=2)).isoformat(), "as_of": END.isoformat()})
    summary = process_message(body, "m-1", alerting(topic_arn, ALERT_MIN_SEVERITY=LOW), now=END)
    assert summary.anomalies_total > 0
    assert drain(sqs, inbox) == [] and summary.alerts_published == 0 and "alerts" not in summary.stage_ms


def test_the_one_query_reaches_the_windows_of_the_memorys_steps(store, sns, sqs):
    # given (2-day window, 10 observations needed, a day's memory): coins a and b spike an hour before as_of;
    # a's step 24 h earlier spiked as high, and its window holds 10 observations only counting one 72.5 h
    # before as_of, which a query reaching back the lookback and 2 days, without the memory, would not read
    calm = [(-48 + 3 * i, 10.0 + i % 4) for i in range(8)]
    a = [(-72.5, 10.0), *calm, (-25, 100.0), (-1, 100.0)]
    b = [(-72.5, 10.0), *calm, (-25, 11.0), (-1, 100.0)]
    store.insert_many(
        [
            {"coin_id": coin, "timestamp": END + timedelta(hours=hour), "volume": value}
            for coin, series in (("a", a), ("b", b))
            for hour, value in series
        ]
    )
    topic_arn, inbox = subscribed_topic(sns, sqs, "risk-alerts")
    settings = alerting(topic_arn, ALERT_MIN_SEVERITY=LOW, ANOMALY_PERIODS="2", ANOMALY_MIN_OBSERVATIONS="10")
    # when
    summary = process_message(json.dumps({"as_of": END.isoformat(), "signals": ["volume"]}), "m", settings, now=END)
    # then: both are flagged, and only b's spike raises (a's episode reached that level a day ago)
    assert summary.anomalies == {"volume.2d": 2}
    assert [json.loads(m["Body"])["coin_id"] for m in drain(sqs, inbox)] == ["b"]
    published, _ = expected(list(store.find({})), settings, "m", signals=("volume",))
    assert [a["coin_id"] for a in published] == ["b"]


# --- failures -----------------------------------------------------------------------------------


def test_a_missing_topic_fails_the_message_after_its_flags_are_written(store, sns, sqs):
    seeded(store, coins=3)
    settings = alerting("arn:aws:sns:us-east-1:123456789012:no-such-topic", ALERT_MIN_SEVERITY=LOW)
    with pytest.raises(AlertPublishFailed, match="NotFound"):
        process_message(json.dumps({"as_of": END.isoformat()}), "m-1", settings, now=END)
    assert stored_flags(store)


def test_a_publish_failure_fails_the_message_and_its_redelivery_publishes_everything(
    store, sns, sqs, queues, monkeypatch, json_logs
):
    # given: alerts configured for a topic that does not exist yet, and a request on the queue
    from libs.tools.local.poller import Poller

    documents = seeded(store, coins=4)
    topic_arn = "arn:aws:sns:us-east-1:123456789012:risk-alerts"
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("ALERT_MIN_SEVERITY", LOW)
    constants_helper.reset_settings()
    sqs.send_message(QueueUrl=queues.url, MessageBody=json.dumps({"as_of": END.isoformat(), "request_id": "r"}))
    poller = Poller(sqs, queues.url, wait_seconds=0)
    try:
        # when: the first delivery meets no topic
        poller.poll_once()
        assert (poller.stats.failed, poller.stats.succeeded) == (1, 0)
        assert any("NotFound" in line.get("reason", "") for line in json_logs.errors())
        # and the topic appears before the redelivery
        created, inbox = subscribed_topic(sns, sqs, "risk-alerts")
        assert created == topic_arn
        stats = poller.run(until_empty=True, max_seconds=30)
    finally:
        constants_helper.reset_settings()
    # then: the redelivery succeeded and every alert arrived; nothing was dead-lettered
    assert stats.succeeded == 1
    published, _ = expected(documents, constants_helper.get_settings(), "r")
    assert published
    same_bodies(drain(sqs, inbox), published)
    assert drain(sqs, queues.dlq_url) == []
