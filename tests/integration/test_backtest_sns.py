"""The backtest reports exactly what the handler publishes (contract §12), over a real SNS API.

The key property: on random hourly markets in the embedded store, latest-mode
messages processed at every hour of a run (alerts on, ``ALERT_MAX_PER_MESSAGE``
too large to withhold any) publish to moto's SNS server, through a subscribed
SQS queue, the same alert bodies, body for body but for ``request_id``, as
``python -m libs.cli backtest`` reports for those hours from the same store.
Nothing is compared with a model of either side: each is the real path.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.cli import main
from libs.helpers import constants_helper
from libs.helpers.constants_helper import get_settings
from libs.processor import process_message
from tests.fakes.alerts_reference import iso
from tests.fakes.series import T0, markets
from tests.integration.test_alerts_sns import drain, sns, subscribed_topic  # noqa: F401  (sns: a fixture)


@pytest.fixture
def inbox(sns, sqs):  # noqa: F811  (the imported fixture)
    """An SNS topic with a raw SQS subscription: (topic ARN, queue URL)."""
    return subscribed_topic(sns, sqs, "backtest-alerts")


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "request_id"}


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    market=markets(),
    memory_hours=st.sampled_from(["0", "3", "24"]),
    lookback_hours=st.sampled_from(["1", "24"]),
    min_severity=st.sampled_from(["0.5", "3"]),
    hours_run=st.integers(6, 30),
)
def test_the_handler_publishes_what_the_backtest_reports(
    store, inbox, sqs, tmp_path_factory, monkeypatch, market, memory_hours, lookback_hours, min_severity, hours_run
):
    # given: a random hourly market in the store, alerts on, a cap no message reaches, 1- and 2-day windows
    documents, last_hour = market
    store.delete_many({})
    store.insert_many([dict(document) for document in documents])
    topic_arn, queue_url = inbox
    drain(sqs, queue_url)
    for name, value in {
        "ALERT_TOPIC_ARN": topic_arn,
        "ALERT_MAX_PER_MESSAGE": "100000",
        "ALERT_MIN_SEVERITY": min_severity,
        "ALERT_MEMORY_HOURS": memory_hours,
        "ANOMALY_LATEST_LOOKBACK_HOURS": lookback_hours,
        "ANOMALY_PERIODS": "1,2",
    }.items():
        monkeypatch.setenv(name, value)
    constants_helper.reset_settings()
    configured = get_settings()
    first = T0 + timedelta(hours=max(last_hour - hours_run, 0))
    last = T0 + timedelta(hours=last_hour)

    # when: a latest-mode message at every hour of the run, all coins in one
    hour = first
    while hour <= last:
        body = json.dumps({"as_of": iso(hour), "request_id": f"hourly-{iso(hour)}"})
        summary = process_message(body, f"m-{iso(hour)}", configured, now=hour)
        assert summary.alerts_withheld == 0
        hour += timedelta(hours=1)
    received = [json.loads(message["Body"]) for message in drain(sqs, queue_url)]
    # and the backtest of those hours from the same store
    out = tmp_path_factory.mktemp("backtest")
    assert main(["backtest", "--since", iso(first), "--as-of", iso(last), "--out", str(out)]) == 0
    reported = json.loads((out / "alerts.json").read_text())

    # then: an alert published at several hours (a coin's newest observation judged again) is the same each time
    published: dict[str, dict[str, Any]] = {}
    for body in received:
        assert published.setdefault(body["alert_id"], without_request_id(body)) == without_request_id(body)
    # and, of those stamped in the run's hours, the bodies are the backtest's, body for body
    in_run = sorted(
        (body for body in published.values() if body["timestamp"] >= iso(first)),
        key=lambda b: (b["timestamp"], b["coin_id"], b["signal"], b["direction"]),
    )
    assert [without_request_id(body) for body in reported] == in_run
    assert all(body["request_id"] is None for body in reported)
    constants_helper.reset_settings()


def test_the_property_is_not_vacuous(store, inbox, sqs, tmp_path, monkeypatch):
    # given: one coin whose price falls hard after a calm day, alerts on
    calm = [{"coin_id": "luna", "timestamp": T0 + timedelta(hours=h), "latest_price": 100.0 + h % 4} for h in range(30)]
    fall = [
        {"coin_id": "luna", "timestamp": T0 + timedelta(hours=30 + i), "latest_price": price}
        for i, price in enumerate((60.0, 20.0, 2.0))
    ]
    store.insert_many(calm + fall)
    topic_arn, queue_url = inbox
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic_arn)
    monkeypatch.setenv("ANOMALY_PERIODS", "1")
    constants_helper.reset_settings()
    try:
        # when: messages at the three hours of the fall, and the backtest of them
        for i in range(3):
            moment = T0 + timedelta(hours=30 + i)
            process_message(json.dumps({"as_of": iso(moment)}), f"m-{i}", get_settings(), now=moment)
        since, as_of = iso(T0 + timedelta(hours=30)), iso(T0 + timedelta(hours=32))
        assert main(["backtest", "--since", since, "--as-of", as_of, "--out", str(tmp_path)]) == 0
    finally:
        constants_helper.reset_settings()
    # then: both found the deepening fall, level by level, and agree
    received = sorted(
        (without_request_id(json.loads(m["Body"])) for m in drain(sqs, queue_url)), key=lambda b: b["timestamp"]
    )
    reported = [without_request_id(b) for b in json.loads((tmp_path / "alerts.json").read_text())]
    assert len(received) >= 2 and [b["level"] for b in received] == sorted({b["level"] for b in received})
    assert reported == received
