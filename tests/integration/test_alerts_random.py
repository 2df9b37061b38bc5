"""Random histories through the whole message path with alerts on, against the plain reference (contract §9, §10).

The unit tests judge raises on a frame of every document; here the message's
own history query decides what is loaded, so a step lying exactly
``ALERT_MEMORY_HOURS`` back, and its own trailing window, must come from that
one query. SNS is a recording stand-in (the real API is
tests/integration/test_alerts_sns.py's); expectations come from
``tests/fakes/alerts_reference.py`` over the stored documents.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.alerts import publish
from libs.helpers import constants_helper
from libs.helpers.constants_helper import load_settings
from libs.helpers.mongodb_helper import get_collection
from libs.processor import process_message
from libs.tools.embedded_store import reset_embedded_store
from tests.fakes.alerts_reference import assert_same_alerts, reference_alerts, reference_latest_raises
from tests.fakes.episodes_reference import Rules
from tests.fakes.examples import examples
from tests.fakes.series import T0, histories

SIGNALS = ("volume", "latest_price")


class RecordingSns:
    """Takes every entry, and remembers the calls."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(PublishBatchRequestEntries)
        return {"Successful": [{"Id": e["Id"]} for e in PublishBatchRequestEntries], "Failed": []}


@pytest.fixture
def recording_sns():
    client = RecordingSns()
    publish._client = client
    yield client
    publish.reset_sns_client()


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=histories(),
    lookback=st.sampled_from([1, 3, 24]),
    memory=st.sampled_from([0, 2, 3, 24]),
    k=st.sampled_from([0.5, 1.5]),
    min_severity=st.sampled_from([0.5, 3.0]),
    factor=st.sampled_from([0.5, 2.0]),
    cap=st.sampled_from([1, 3, 50]),
    min_observations=st.sampled_from([1, 4]),
)
def test_a_latest_mode_message_publishes_the_reference_alerts(
    recording_sns, history, lookback, memory, k, min_severity, factor, cap, min_observations
):
    # given: random coins (ties, gaps at and around the memory, junk values) in the store, alerts on
    documents, as_of_hour = history
    reset_embedded_store()
    constants_helper.reset_settings()
    store = get_collection()
    store.insert_many([dict(d) for d in documents])
    options = {
        "MONGODB_URI": "mongomock://",
        "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:risk-alerts",
        "ANOMALY_PERIODS": "1,2",
        "ANOMALY_LATEST_LOOKBACK_HOURS": str(lookback),
        "ALERT_MEMORY_HOURS": str(memory),
        "QUANTILE_DEVIATION_LIMIT": str(k),
        "ALERT_MIN_SEVERITY": str(min_severity),
        "ALERT_ESCALATION_FACTOR": str(factor),
        "ALERT_MAX_PER_MESSAGE": str(cap),
        "ANOMALY_MIN_OBSERVATIONS": str(min_observations),
    }
    recording_sns.calls.clear()
    as_of = T0 + timedelta(hours=as_of_hour)
    body = json.dumps({"as_of": as_of.isoformat(), "signals": list(SIGNALS)})

    # when
    summary = process_message(body, "m-1", load_settings(options), now=as_of, collection=store)

    # then: the reference's alerts over every stored document go out, in its order, ten at most a call
    raises = reference_latest_raises(
        list(store.find({})),
        as_of=as_of,
        signals=SIGNALS,
        periods=(1, 2),
        k=k,
        min_observations=min_observations,
        rules=Rules(min_severity=min_severity, factor=factor, memory_hours=memory, lookback_hours=lookback),
    )
    expected = reference_alerts(raises, "m-1")
    sent = [json.loads(entry["Message"]) for call in recording_sns.calls for entry in call]
    assert all(len(call) <= 10 for call in recording_sns.calls)
    assert_same_alerts(sent, expected[:cap])
    assert (summary.alerts_published, summary.alerts_withheld) == (len(expected[:cap]), len(expected[cap:]))
