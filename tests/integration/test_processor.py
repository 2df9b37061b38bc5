"""One message end to end without SQS: what it writes and what its summary says."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta

import pytest

from libs.errors import InvalidRequest
from libs.processor import process_message, utc_now
from libs.tools.synthetic import synthetic_documents

END = datetime(2024, 11, 1)


class _JunkReader:
    """Returns what the store holds plus documents no query should return but a backend might."""

    def __init__(self, collection):
        self._collection = collection

    def find(self, query, projection):
        return list(self._collection.find(query, projection)) + [
            {"_id": "junk-1", "coin_id": 42, "timestamp": END, "volume": 1.0},
            {"_id": "junk-2", "coin_id": "coin-0000", "timestamp": None, "volume": 1.0},
        ]


def test_the_summary_counts_what_the_message_did(store, settings):
    documents, _ = synthetic_documents(coins=3, days=31, per_day=4, end=END, seed=11)
    store.insert_many(documents)
    body = json.dumps({"as_of": END.isoformat(), "coin_ids": ["coin-0000", "coin-0001", "gone"]})
    now = datetime(2024, 11, 2, 3, 4, 5, 6000)

    summary = process_message(body, "m-1", settings, now=now, reader=_JunkReader(store))

    assert summary.request_id == "m-1" and summary.mode == "latest"
    assert summary.coins_judged == 2 and summary.stale_coins == ["gone"]
    assert summary.observations_judged == 2 and summary.documents_written == 2
    expected_read = (
        sum(
            1
            for d in documents
            if d["coin_id"] in ("coin-0000", "coin-0001") and END - timedelta(days=31) < d["timestamp"] <= END
        )
        + 2
    )
    assert summary.documents_read == expected_read and summary.documents_skipped == 2
    flags = Counter()
    for doc in store.find({"anomalies": {"$exists": True}}):
        assert doc["anomalies"]["evaluated_at"] == now.replace(microsecond=6000)
        for signal, periods in doc["anomalies"].items():
            if signal != "evaluated_at":
                for period, entry in periods.items():
                    flags[f"{signal}.{period}"] += entry["is_anomaly"] is True
    assert summary.anomalies == {key: count for key, count in flags.items() if count}
    assert set(summary.stage_ms) == {"validate", "load", "model", "write"}
    log = summary.as_log()
    assert log["anomalies_total"] == sum(flags.values()) and log["stale_coin_ids"] == ["gone"]


def test_an_invalid_body_writes_nothing(store, settings):
    store.insert_one({"coin_id": "a", "timestamp": END, "volume": 1.0})
    with pytest.raises(InvalidRequest):
        process_message('{"periods": []}', "m", settings)
    assert store.count_documents({"anomalies": {"$exists": True}}) == 0


def test_nothing_to_judge_is_a_success_with_nothing_written(store, settings):
    summary = process_message("{}", "m", settings, now=END)
    assert (summary.observations_judged, summary.documents_written, summary.anomalies) == (0, 0, {})


def test_utc_now_is_naive_and_whole_milliseconds():
    now = utc_now()
    assert now.tzinfo is None and now.microsecond % 1000 == 0


class _BudgetReader:
    """Reads the store, noting how much of the store deadline is left when the history query runs."""

    def __init__(self, collection):
        self._collection = collection
        self.left_s: float | None = None

    def find(self, query, projection):
        from libs.helpers.store_budget import remaining_s

        self.left_s = remaining_s()
        return list(self._collection.find(query, projection))


@pytest.mark.parametrize(("body", "kept_for_alerts_s"), [({"as_of": END.isoformat()}, 30.0), ({}, 0.0)])
def test_with_alerts_on_the_store_must_finish_the_alerts_worst_case_before_the_deadline(store, body, kept_for_alerts_s):
    # given alerts on (50 alerts at most: 10 calls of 3 s in the worst case) and a message with 100 s left
    from libs.deadline import Deadline
    from libs.helpers.constants_helper import load_settings

    settings = load_settings({"MONGODB_URI": "mongomock://", "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:a"})
    reader = _BudgetReader(store)
    if "as_of" not in body:  # range mode: a backfill publishes no alerts, so it keeps nothing back
        body = {"since": (END - timedelta(days=1)).isoformat(), "as_of": END.isoformat()}
    # when the message runs (nothing stored: no alert to publish)
    process_message(json.dumps(body), "m", settings, deadline=Deadline.after(100.0), reader=reader, now=END)
    # then its history was read under a store deadline ending the alerts' worst case earlier (latest mode only)
    assert reader.left_s is not None
    assert 100.0 - kept_for_alerts_s - 1.0 < reader.left_s <= 100.0 - kept_for_alerts_s
