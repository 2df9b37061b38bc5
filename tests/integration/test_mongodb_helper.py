"""MongoDB access: the query, loading, bulk writes, the client and its failures."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

import numpy as np
import pytest
from bson import ObjectId
from pymongo import UpdateOne
from pymongo.errors import AutoReconnect, BulkWriteError

from libs.errors import StoreUnavailable
from libs.helpers import mongodb_helper
from libs.helpers.constants_helper import load_settings
from libs.helpers.mongodb_helper import (
    HISTORY_INDEX_NAME,
    DriverReader,
    build_updates,
    ensure_indexes,
    get_client,
    get_collection,
    history_query,
    load_history,
    write_updates,
)
from libs.models.model import ModelParams, judge, select_latest
from libs.request import parse_request
from tests.fakes.network import closed_port

AS_OF = datetime(2024, 11, 1, 12)


def _request(settings, **body):
    import json

    return parse_request(json.dumps(body), message_id="m", settings=settings, now=AS_OF)


def test_latest_mode_query_spans_lookback_plus_longest_period(settings):
    request = _request(settings, coin_ids=["b", "a", "b"], signals=["volume"], periods=[7, 3])

    query, projection = history_query(request, lookback_hours=24)

    assert query == {
        "coin_id": {"$in": ["b", "a"]},
        "timestamp": {"$gt": AS_OF - timedelta(hours=24) - timedelta(days=7), "$lte": AS_OF},
    }
    assert projection == {"_id": 1, "coin_id": 1, "timestamp": 1, "volume": 1}


def test_range_mode_query_starts_the_longest_period_before_since(settings):
    since = AS_OF - timedelta(days=2)
    request = _request(settings, since=since.isoformat(), as_of=AS_OF.isoformat())

    query, projection = history_query(request, lookback_hours=24)

    assert query["timestamp"] == {"$gt": since - timedelta(days=30), "$lte": AS_OF}
    assert query["coin_id"] == {"$gt": ""}  # every non-empty string id, so the index still serves it
    assert set(projection) == {
        "_id",
        "coin_id",
        "timestamp",
        "latest_price",
        "market_cap_score",
        "liquidity_risk_score",
        "volatility_risk_score",
        "volume",
        "market_cap",
        "volatility_index",
    }


def test_with_alerts_on_the_one_latest_mode_query_reaches_back_one_more_lookback(store, settings):
    # given documents every hour for 40 days, and alerts on
    from dataclasses import replace

    store.insert_many(
        [{"coin_id": "a", "timestamp": AS_OF - timedelta(hours=h), "volume": float(h)} for h in range(40 * 24)]
    )
    alerting = replace(settings, alert_topic_arn="arn:aws:sns:us-east-1:123456789012:alerts")
    request = _request(settings, signals=["volume"], periods=[7])
    reader = _CountingReader(DriverReader(store))

    # when the history is loaded with alerts off and on
    off = load_history(request, settings, reader).frame
    on = load_history(request, alerting, reader).frame

    # then each is one query; with alerts on it reaches back the memory more: 48 h + 7 days instead of 24 h + 7 days
    assert reader.calls == 2
    assert off["timestamp"].min() == AS_OF - timedelta(hours=24) - timedelta(days=7) + timedelta(hours=1)
    assert on["timestamp"].min() == AS_OF - timedelta(hours=48) - timedelta(days=7) + timedelta(hours=1)
    query, _ = history_query(request, 24, memory_hours=24)
    assert query["timestamp"]["$gt"] == AS_OF - timedelta(hours=48) - timedelta(days=7)


class _CountingReader:
    def __init__(self, reader) -> None:
        self.reader, self.calls = reader, 0

    def find(self, query, projection):
        self.calls += 1
        return self.reader.find(query, projection)


def test_load_history_reads_exactly_the_window_and_counts_nothing_it_did_not_get(store, settings):
    # given documents just inside and just outside the query's time range, and junk ones
    request = _request(settings, periods=[3], signals=["volume"])
    start = AS_OF - timedelta(hours=24) - timedelta(days=3)
    store.insert_many(
        [
            {"coin_id": "a", "timestamp": start, "volume": 1.0},  # excluded: bound is open
            {"coin_id": "a", "timestamp": start + timedelta(milliseconds=1), "volume": 2.0},
            {"coin_id": "a", "timestamp": AS_OF, "volume": 3.0, "other": "x"},  # included: bound closed
            {"coin_id": "a", "timestamp": AS_OF + timedelta(milliseconds=1), "volume": 4.0},
            {"coin_id": "", "timestamp": AS_OF, "volume": 5.0},  # unusable id
            {"coin_id": "b", "timestamp": "2024-11-01", "volume": 6.0},  # string timestamp
        ]
    )

    history = load_history(request, settings)

    assert history.frame["volume"].tolist() == [2.0, 3.0]
    assert list(history.frame.columns) == ["_id", "coin_id", "timestamp", "volume"]
    assert history.read == 2 and history.skipped == 0


def test_documents_a_reader_returns_without_usable_id_or_time_are_skipped_and_counted(settings):
    class Reader:
        def find(self, query, projection):
            return [
                {"_id": 1, "coin_id": "a", "timestamp": AS_OF, "volume": 1.0},
                {"_id": 2, "coin_id": None, "timestamp": AS_OF},
                {"_id": 3, "coin_id": "a", "timestamp": "yesterday"},
            ]

    history = load_history(_request(settings), settings, Reader())

    assert (history.read, history.skipped, len(history.frame)) == (3, 1 + 1, 1)


def test_get_collection_returns_one_shared_embedded_collection(store):
    first, second = get_collection(), get_collection()
    first.insert_one({"coin_id": "a"})
    assert second.count_documents({}) == 1
    assert first.database.name == "risk" and first.name == "coingecko_onchain_scores"


def test_ensure_indexes_creates_the_coin_time_index(store):
    assert ensure_indexes(store) == HISTORY_INDEX_NAME
    assert store.index_information()[HISTORY_INDEX_NAME]["key"] == [("coin_id", 1), ("timestamp", 1)]
    assert ensure_indexes(store) == HISTORY_INDEX_NAME  # idempotent


def _judged_frame(settings, store):
    stamps = [AS_OF - timedelta(hours=h) for h in range(6)]
    store.insert_many(
        [{"coin_id": "a", "timestamp": t, "volume": float(i), "latest_price": 10.0} for i, t in enumerate(stamps)]
    )
    request = _request(settings, signals=["volume", "latest_price"], periods=[3])
    frame = load_history(request, settings).frame
    judged = select_latest(frame, AS_OF, 24)
    results = judge(frame, judged, ModelParams(("volume", "latest_price"), (3,), 1.5, 4))
    return frame, np.flatnonzero(judged), results


def test_build_updates_sets_every_flag_of_a_document_in_one_update_by_id(store, settings):
    frame, rows, results = _judged_frame(settings, store)
    evaluated_at = datetime(2024, 11, 2)

    updates = build_updates(frame, rows, results, evaluated_at)

    assert len(updates) == 1
    doc = updates[0]._doc["$set"]
    assert updates[0]._filter == {"_id": frame["_id"].iloc[rows[0]]}
    assert set(doc) == {"anomalies.evaluated_at", "anomalies.volume.3d", "anomalies.latest_price.3d"}
    assert doc["anomalies.evaluated_at"] == evaluated_at
    volume = doc["anomalies.volume.3d"]
    window = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    q1, q3 = np.percentile(window, [25, 75])
    assert volume == {
        "is_anomaly": False,
        "value": 0.0,
        "q1": q1,
        "q3": q3,
        "lower": q1 - 1.5 * (q3 - q1),
        "upper": q3 + 1.5 * (q3 - q1),
        "n": 6,
        "k": 1.5,
    }
    assert all(type(v) in (float, int, bool) for v in volume.values())  # plain Python types for BSON


def test_an_insufficient_window_is_written_with_null_fences(store, settings):
    store.insert_many([{"coin_id": "a", "timestamp": AS_OF - timedelta(hours=h), "volume": 1.0} for h in range(3)])
    request = _request(settings, signals=["volume"], periods=[3])
    frame = load_history(request, settings).frame
    judged = select_latest(frame, AS_OF, 24)
    results = judge(frame, judged, ModelParams(("volume",), (3,), 1.5, 4))

    entry = build_updates(frame, np.flatnonzero(judged), results, AS_OF)[0]._doc["$set"]["anomalies.volume.3d"]

    assert entry == {
        "is_anomaly": None,
        "value": 1.0,
        "q1": None,
        "q3": None,
        "lower": None,
        "upper": None,
        "n": 3,
        "k": 1.5,
    }


class _SpyCollection:
    def __init__(self, fail_on_call: int | None = None, error: Exception | None = None):
        self.calls: list[tuple[int, bool]] = []
        self._fail_on_call, self._error = fail_on_call, error

    def bulk_write(self, requests, ordered=True):
        self.calls.append((len(requests), ordered))
        if self._fail_on_call == len(self.calls):
            raise self._error

        class Result:
            matched_count = len(requests)

        return Result()


@pytest.mark.parametrize(
    "n, expected", [(0, []), (1, [1]), (1000, [1000]), (1001, [1000, 1]), (2999, [1000, 1000, 999])]
)
def test_writes_go_out_in_unordered_batches_of_at_most_a_thousand(n, expected):
    spy = _SpyCollection()
    updates = [UpdateOne({"_id": i}, {"$set": {"x": 1}}) for i in range(n)]

    assert write_updates(spy, updates) == n
    assert spy.calls == [(size, False) for size in expected]


def test_a_partly_failed_bulk_write_raises_store_unavailable_with_the_reason():
    error = BulkWriteError(
        {"writeErrors": [{"index": 3, "code": 121, "errmsg": "Document failed validation"}], "nMatched": 999}
    )
    spy = _SpyCollection(fail_on_call=2, error=error)

    with pytest.raises(StoreUnavailable, match="1 of 500 updates in batch 2 rejected.*failed validation"):
        write_updates(spy, [UpdateOne({"_id": i}, {"$set": {}}) for i in range(1500)])


def test_a_driver_error_while_writing_raises_store_unavailable():
    spy = _SpyCollection(fail_on_call=1, error=AutoReconnect("connection closed"))
    with pytest.raises(StoreUnavailable, match="AutoReconnect"):
        write_updates(spy, [UpdateOne({"_id": ObjectId()}, {"$set": {}})])


def test_an_unreachable_database_fails_within_the_selection_timeout_without_leaking_the_uri():
    # given a client pointed at a closed loopback port, with a secret in the URI
    port = closed_port()
    settings = load_settings(
        {
            "MONGODB_URI": f"mongodb://svc-user:S3cret-Pa55@127.0.0.1:{port}/?directConnection=true",
            "MONGODB_RSKYCLUSTER_DATABASE": "risk",
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
            "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "300",
        }
    )
    mongodb_helper.reset_client()
    try:
        request = _request(settings)
        started = time.monotonic()

        # when a message reads
        with pytest.raises(StoreUnavailable) as failure:
            load_history(request, settings)

        # then it fails (it does not hang) and says nothing secret
        assert time.monotonic() - started < 10
        assert "S3cret-Pa55" not in str(failure.value) and "svc-user" not in str(failure.value)
    finally:
        mongodb_helper.reset_client()


def test_the_client_is_created_once_per_container():
    settings = load_settings(
        {
            "MONGODB_URI": f"mongodb://127.0.0.1:{closed_port()}/",
            "MONGODB_RSKYCLUSTER_DATABASE": "risk",
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
            "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "1234",
        }
    )
    mongodb_helper.reset_client()
    try:
        client = get_client(settings)
        assert get_client(settings) is client
        assert client.options.server_selection_timeout == pytest.approx(1.234)
    finally:
        mongodb_helper.reset_client()


@pytest.mark.mongodb
@pytest.mark.skipif(not os.environ.get("MONGODB_TEST_URI"), reason="needs a real server: set MONGODB_TEST_URI")
def test_on_a_real_server_the_history_query_is_served_by_the_index():
    from pymongo import MongoClient

    client = MongoClient(os.environ["MONGODB_TEST_URI"], serverSelectionTimeoutMS=5000)
    collection = client["crypto_risk_anomaly_test"]["scores"]
    collection.drop()
    try:
        collection.insert_many(
            [{"coin_id": f"c{i % 7}", "timestamp": AS_OF - timedelta(hours=i), "volume": float(i)} for i in range(500)]
        )
        ensure_indexes(collection)
        settings = load_settings({"MONGODB_URI": "mongomock://"})
        for body in ({}, {"coin_ids": ["c1", "c2"]}):
            query, projection = history_query(_request(settings, **body), 24)
            plan = collection.find(query, projection).explain()["queryPlanner"]["winningPlan"]
            assert "IXSCAN" in str(plan) and "COLLSCAN" not in str(plan)
        updates = [
            UpdateOne({"_id": d["_id"]}, {"$set": {"anomalies.evaluated_at": AS_OF}})
            for d in collection.find({}, {"_id": 1})
        ]
        assert write_updates(collection, updates) == 500
    finally:
        collection.drop()
        client.close()


class _CountingCollection:
    """The embedded collection, counting the round trips a message makes."""

    def __init__(self, collection):
        self._collection = collection
        self.finds: list[dict] = []
        self.bulk_writes: list[int] = []

    def find(self, query, projection=None):
        self.finds.append(query)
        return self._collection.find(query, projection)

    def bulk_write(self, requests, ordered=True):
        self.bulk_writes.append(len(requests))
        return self._collection.bulk_write(requests, ordered=ordered)


@pytest.mark.parametrize(
    "body, judged",
    [
        ({"as_of": AS_OF.isoformat()}, 5),  # latest: one per coin
        ({"as_of": AS_OF.isoformat(), "since": (AS_OF - timedelta(hours=49)).isoformat()}, 5 * (49 * 5 + 1)),
    ],
)
def test_a_message_makes_one_read_query_and_one_bulk_write_per_thousand_flags(store, settings, body, judged):
    # given five coins observed every 12 minutes for three days
    from libs.processor import process_message

    store.insert_many(
        [
            {
                "coin_id": f"c{c}",
                "timestamp": AS_OF - timedelta(minutes=12 * i),
                "volume": float(i % 17),
                "latest_price": 1.0 + i % 5,
            }
            for c in range(5)
            for i in range(3 * 24 * 5)
        ]
    )
    spy = _CountingCollection(store)

    # when one message is processed
    import json

    summary = process_message(
        json.dumps({**body, "signals": ["volume"], "periods": [1]}),
        "m",
        settings,
        now=AS_OF,
        reader=mongodb_helper.DriverReader(spy),
        collection=spy,
    )

    # then it read once and wrote ⌈judged / 1000⌉ batches holding every judged document
    assert summary.observations_judged == judged
    assert len(spy.finds) == 1
    assert spy.bulk_writes == [min(1000, judged - start) for start in range(0, judged, 1000)]
