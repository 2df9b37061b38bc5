"""The Lambda entry point end to end on the embedded store (contract §5 and §6)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from pymongo.errors import AutoReconnect

import handler
from libs.errors import NotAnSqsEvent
from libs.helpers import mongodb_helper
from libs.tools.local.lambda_context import LocalContext
from libs.tools.synthetic import synthetic_documents
from tests.conftest import REPO
from tests.fakes.reference import expected_entry, usable_number
from tests.fakes.sqs import failed_ids, sqs_event

END = datetime(2024, 11, 1)


@pytest.fixture
def seeded(store):
    documents, planted = synthetic_documents(coins=4, days=32, per_day=6, end=END, seed=3)
    store.insert_many(documents)
    return store, planted


def test_latest_mode_writes_flags_that_match_numpy(seeded, lambda_context):
    # given the embedded store with four coins, and a request as of the last observation
    store, planted = seeded
    event = sqs_event({"as_of": END.isoformat()})

    # when the handler runs
    response = handler.handler(event, lambda_context)

    # then nothing failed and each coin's newest document carries flags equal to the numpy reference
    assert response == {"batchItemFailures": []}
    all_documents = list(store.find({}))
    judged = [d for d in all_documents if "anomalies" in d]
    assert len(judged) == 4 and all(d["timestamp"] == END for d in judged)
    for doc in judged:
        for signal in ("latest_price", "volume", "market_cap_score"):
            value = usable_number(doc.get(signal))
            for period in (3, 7, 30):
                written = doc["anomalies"].get(signal, {}).get(f"{period}d")
                if value is None:
                    assert written is None
                    continue
                assert written == expected_entry(
                    all_documents, doc["coin_id"], doc["timestamp"], value, signal, period, 1.5, 4
                )
    # and the planted anomalies at the newest observations were flagged in some window
    for plant in planted:
        if plant.timestamp == END:
            doc = store.find_one({"coin_id": plant.coin_id, "timestamp": END})
            assert any(entry["is_anomaly"] for entry in doc["anomalies"][plant.signal].values())


def test_only_requested_signals_and_periods_are_written_and_nothing_else_changes(seeded, lambda_context):
    store, _ = seeded
    before = {d["_id"]: d for d in store.find({})}
    event = sqs_event({"as_of": END.isoformat(), "signals": ["volume"], "periods": [7], "deviation_limit": 3})

    assert handler.handler(event, lambda_context) == {"batchItemFailures": []}

    for doc in store.find({}):
        original = before[doc["_id"]]
        anomalies = doc.pop("anomalies", None)
        assert doc == original  # no other field touched
        if anomalies is not None:
            assert set(anomalies) == {"volume", "evaluated_at"}
            assert set(anomalies["volume"]) == {"7d"}
            assert anomalies["volume"]["7d"]["k"] == 3.0
            assert isinstance(anomalies["evaluated_at"], datetime)


def test_a_missing_value_on_the_judged_document_is_not_written(store, lambda_context):
    stamps = [END - timedelta(hours=h) for h in range(10)]
    store.insert_many(
        [{"coin_id": "x", "timestamp": t, "volume": float(i), "latest_price": 1.0 + i} for i, t in enumerate(stamps)]
    )
    store.update_one({"coin_id": "x", "timestamp": END}, {"$set": {"volume": "NaN"}})

    assert handler.handler(sqs_event({"as_of": END.isoformat()}), lambda_context) == {"batchItemFailures": []}

    doc = store.find_one({"coin_id": "x", "timestamp": END})
    assert "volume" not in doc["anomalies"] and "latest_price" in doc["anomalies"]


def test_one_invalid_message_fails_alone_and_its_log_line_names_the_key(seeded, lambda_context, json_logs):
    store, _ = seeded
    event = sqs_event({"as_of": END.isoformat()}, {"periods": [3.0]}, "not json", {"as_of": END.isoformat()})

    response = handler.handler(event, lambda_context)

    assert failed_ids(response) == ["msg-1", "msg-2"]
    errors = json_logs.errors()
    by_id = {line["message_id"]: line for line in errors}
    assert "periods" in by_id["msg-1"]["reason"] and "integer" in by_id["msg-1"]["reason"]
    assert "body" in by_id["msg-2"]["reason"]
    assert store.count_documents({"anomalies": {"$exists": True}}) == 4


def test_a_batch_where_every_message_fails_still_answers(store, lambda_context):
    event = sqs_event({"periods": [True]}, {"colour": "red"}, [])

    response = handler.handler(event, lambda_context)

    assert failed_ids(response) == ["msg-0", "msg-1", "msg-2"]


def test_an_empty_batch_gets_an_empty_answer(lambda_context):
    assert handler.handler({"Records": []}, lambda_context) == {"batchItemFailures": []}


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"Records": "nope"},
        {"Records": [{"eventSource": "aws:kinesis", "messageId": "a", "body": "{}"}]},
        {"detail-type": "Scheduled Event", "source": "aws.events"},
    ],
)
def test_an_event_that_is_not_sqs_raises_a_clear_error(event, lambda_context):
    with pytest.raises(NotAnSqsEvent, match="SQS event"):
        handler.handler(event, lambda_context)


def test_messages_not_started_for_lack_of_time_are_listed(seeded, lambda_context):
    store, _ = seeded
    context = LocalContext(remaining_ms=[60_000, 14_999])
    event = sqs_event(
        {"as_of": END.isoformat()}, {"as_of": END.isoformat(), "request_id": "second"}, {"as_of": END.isoformat()}
    )

    response = handler.handler(event, context)

    assert failed_ids(response) == ["msg-1", "msg-2"]
    assert store.count_documents({"anomalies": {"$exists": True}}) == 4  # the first one did its work


def test_a_database_error_fails_that_message_only(seeded, lambda_context, monkeypatch, json_logs):
    store, _ = seeded
    real_find = mongodb_helper.DriverReader.find
    calls = {"n": 0}

    def flaky_find(self, query, projection):
        calls["n"] += 1
        if calls["n"] == 2:
            raise mongodb_helper.StoreUnavailable("reading history failed: AutoReconnect: connection reset")
        return real_find(self, query, projection)

    monkeypatch.setattr(mongodb_helper.DriverReader, "find", flaky_find)
    event = sqs_event(
        {"as_of": END.isoformat(), "coin_ids": ["coin-0000"]},
        {"as_of": END.isoformat(), "coin_ids": ["coin-0001"]},
        {"as_of": END.isoformat(), "coin_ids": ["coin-0002"]},
    )

    response = handler.handler(event, lambda_context)

    assert failed_ids(response) == ["msg-1"]
    flagged = {d["coin_id"] for d in store.find({"anomalies": {"$exists": True}})}
    assert flagged == {"coin-0000", "coin-0002"}
    failure = json_logs.errors()
    assert failure[0]["message_id"] == "msg-1" and "AutoReconnect" in failure[0]["reason"]


def test_a_driver_error_while_writing_fails_the_message(seeded, lambda_context, monkeypatch):
    store, _ = seeded

    def broken_bulk_write(*args, **kwargs):
        raise AutoReconnect("primary stepped down")

    monkeypatch.setattr(type(store), "bulk_write", broken_bulk_write)
    response = handler.handler(sqs_event({"as_of": END.isoformat()}), lambda_context)
    assert failed_ids(response) == ["msg-0"]


def test_range_mode_writes_in_bulk_batches_of_at_most_a_thousand(store, lambda_context, monkeypatch):
    # given 2,500 observations to judge in range mode
    documents, _ = synthetic_documents(coins=5, days=32, per_day=24, end=END, seed=5, planted_per_coin=0)
    store.insert_many(documents)
    sizes: list[tuple[int, bool]] = []
    real_bulk_write = type(store).bulk_write

    def spy(self, requests, ordered=True, **kwargs):
        sizes.append((len(requests), ordered))
        return real_bulk_write(self, requests, ordered=ordered, **kwargs)

    monkeypatch.setattr(type(store), "bulk_write", spy)
    since = END - timedelta(hours=499)
    event = sqs_event({"since": since.isoformat(), "as_of": END.isoformat(), "signals": ["volume"]})

    # when
    assert handler.handler(event, lambda_context) == {"batchItemFailures": []}

    # then ⌈2500 / 1000⌉ unordered calls, and every judged document was written
    assert sizes == [(1000, False), (1000, False), (500, False)]
    assert store.count_documents({"anomalies.evaluated_at": {"$exists": True}}) == 2500


def test_the_same_request_twice_writes_the_same_flags(seeded, lambda_context):
    store, _ = seeded
    event = sqs_event({"since": (END - timedelta(days=1)).isoformat(), "as_of": END.isoformat()})

    handler.handler(event, lambda_context)
    first = {d["_id"]: d["anomalies"] for d in store.find({"anomalies": {"$exists": True}})}
    handler.handler(event, lambda_context)
    second = {d["_id"]: d["anomalies"] for d in store.find({"anomalies": {"$exists": True}})}

    for doc_id, anomalies in first.items():
        anomalies.pop("evaluated_at"), second[doc_id].pop("evaluated_at")
        assert second[doc_id] == anomalies


def test_stale_coins_are_logged_not_judged(seeded, lambda_context, json_logs):
    store, _ = seeded
    event = sqs_event({"as_of": END.isoformat(), "coin_ids": ["coin-0000", "ghost-coin"]})

    assert handler.handler(event, lambda_context) == {"batchItemFailures": []}

    summary = [line for line in json_logs.lines() if line["message"] == "message processed"][0]
    assert summary["stale_coins"] == 1 and summary["stale_coin_ids"] == ["ghost-coin"]
    assert summary["coins_judged"] == 1 and summary["message_id"] == "msg-0"


def test_a_bad_configuration_stops_the_function_at_cold_start_naming_the_variable():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB", "ANOMALY", "QUANTILE"))}
    env.update(MONGODB_URI="mongomock://", ANOMALY_PERIODS="3,seven")
    result = subprocess.run(
        [sys.executable, "-c", "import handler"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ANOMALY_PERIODS" in result.stderr and "ConfigError" in result.stderr


class _OnlyRemainingTime:
    """A context with nothing but the remaining time, as some test harnesses and wrappers pass."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.mark.parametrize("context", [None, object()], ids=["None", "bare object"])
def test_a_handler_called_without_a_lambda_context_still_answers_with_no_budget(seeded, context, json_logs):
    # given a batch with a valid and an invalid message, and a context Powertools cannot read
    event = sqs_event({"as_of": END.isoformat()}, {"periods": [0]})

    # when the handler runs
    response = handler.handler(event, context)

    # then it answers the partial batch response: the valid message was processed (no budget held it back)
    assert failed_ids(response) == ["msg-1"]
    store, _ = seeded
    assert store.count_documents({"anomalies": {"$exists": True}}) == 4
    # and the log lines carry placeholders for the context's fields
    [processed] = [line for line in json_logs.lines() if line["message"] == "message processed"]
    assert processed["function_name"] == "unknown" and processed["function_request_id"] == "unknown"


def test_a_context_with_only_the_remaining_time_keeps_its_budget(seeded, json_logs):
    # given a context that has only get_remaining_time_in_millis, with less left than the margin
    event = sqs_event({"as_of": END.isoformat()}, {"as_of": END.isoformat(), "coin_ids": ["coin-0001"]})

    # when the handler runs with 20 s left, then with 1 s left
    roomy = handler.handler(event, _OnlyRemainingTime(20_000))
    tight = handler.handler(event, _OnlyRemainingTime(1_000))

    # then the first batch was processed, and the second left for retry (the budget was read from the context)
    assert roomy == {"batchItemFailures": []}
    assert failed_ids(tight) == ["msg-0", "msg-1"]
    reasons = {line["reason"] for line in json_logs.lines() if line.get("failure") == "time_budget"}
    assert reasons == {
        "not started: 1000 ms left, below the start margin of 15000 ms"
        " (ANOMALY_TIME_MARGIN_MS, plus the alerts step's worst case with alerts on)"
    }


def test_with_alerts_on_a_message_starts_only_when_the_alerts_worst_case_fits_too(seeded, json_logs, monkeypatch):
    # given alerts on, so the start margin is ANOMALY_TIME_MARGIN_MS (15 s) plus the alerts step's worst case
    # (50 alerts at most: ten calls of 3 s)
    from libs.helpers import constants_helper

    monkeypatch.setenv("ALERT_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:alerts")
    constants_helper.reset_settings()
    event = sqs_event({"as_of": END.isoformat()})
    try:
        # when the handler runs with 44 s left: more than the bare margin, less than margin plus alerts
        response = handler.handler(event, _OnlyRemainingTime(44_000))
    finally:
        constants_helper.reset_settings()
    # then the message is not started (it would write its flags, then lack the time to publish them)
    assert failed_ids(response) == ["msg-0"]
    reasons = {line["reason"] for line in json_logs.lines() if line.get("failure") == "time_budget"}
    assert reasons == {
        "not started: 44000 ms left, below the start margin of 45000 ms"
        " (ANOMALY_TIME_MARGIN_MS, plus the alerts step's worst case with alerts on)"
    }
    assert seeded[0].count_documents({"anomalies": {"$exists": True}}) == 0
