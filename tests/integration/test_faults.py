"""Faults: the database unreachable, a write failing part-way, the time budget running out, the model crashing.

Each test breaks one thing under a batch and checks contract
§6: exactly the messages not fully processed are listed (so SQS
delivers them again and finally dead-letters them), the others are
unaffected, nothing is half-written, and a rerun converges on the same flags.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, ConfigurationError
from pymongo.synchronous import srv_resolver

import handler
from libs.helpers import constants_helper, mongodb_helper
from libs.models import model
from libs.tools.local.lambda_context import LocalContext
from libs.tools.synthetic import synthetic_documents
from tests.fakes.network import closed_port
from tests.fakes.reference import expected_entry, usable_number
from tests.fakes.sqs import failed_ids, sqs_event

END = datetime(2024, 11, 1)
SELECTION_TIMEOUT_MS = 300


def flags_without_time(store) -> dict[Any, dict[str, Any]]:
    """Every written flag by document, without ``evaluated_at`` (the one field a rerun changes)."""
    flags = {}
    for doc in store.find({"anomalies": {"$exists": True}}):
        anomalies = dict(doc["anomalies"])
        assert isinstance(anomalies.pop("evaluated_at"), datetime)
        flags[doc["_id"]] = anomalies
    return flags


def lines_about(json_logs, message_id: str) -> list[dict[str, Any]]:
    return [line for line in json_logs.lines() if line.get("message_id") == message_id]


# --------------------------------------------------------------------------- the database unreachable


def configure(monkeypatch, **env: str) -> list[int]:
    """Configure the handler as at a cold start from ``env``; returns the sizes of any bulk writes attempted."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_DATABASE", "risk")
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION", "scores")
    monkeypatch.setenv("MONGODB_SERVER_SELECTION_TIMEOUT_MS", str(SELECTION_TIMEOUT_MS))
    monkeypatch.setenv("MONGODB_CONNECT_TIMEOUT_MS", str(SELECTION_TIMEOUT_MS))
    writes: list[int] = []
    monkeypatch.setattr(Collection, "bulk_write", lambda self, requests, **kw: writes.append(len(requests)))
    constants_helper.reset_settings()
    mongodb_helper.reset_client()
    return writes


@pytest.fixture
def real_driver_configuration():
    """Forget the cached settings and client after the test (its environment is restored after this runs)."""
    yield
    mongodb_helper.reset_client()
    constants_helper.reset_settings()


@pytest.fixture
def unreachable_database(monkeypatch, real_driver_configuration):
    """The handler configured for a MongoDB on a closed loopback port."""
    return configure(monkeypatch, MONGODB_URI=f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true")


def test_an_unreachable_database_fails_the_batch_in_about_one_selection_timeout(unreachable_database, json_logs):
    # given a batch of four messages (one of them invalid), and no database listening
    writes = unreachable_database
    event = sqs_event(
        {"as_of": END.isoformat()},
        {"coin_ids": ["bitcoin"]},
        {"periods": [0]},
        {"since": (END - timedelta(days=1)).isoformat(), "as_of": END.isoformat()},
    )

    # when the handler runs it
    started = time.monotonic()
    response = handler.handler(event, LocalContext())
    elapsed = time.monotonic() - started

    # then every message is listed and nothing was written
    assert failed_ids(response) == ["msg-0", "msg-1", "msg-2", "msg-3"]
    assert writes == []
    # and only the first waited for a server: it is logged with the driver's error, as an unreachable store
    [first] = lines_about(json_logs, "msg-0")
    assert first["level"] == "ERROR" and first["message"] == "message failed" and first["failure"] == "store"
    assert first["reason"].startswith("StoreUnreachable: reading history failed: ServerSelectionTimeoutError")
    # and the rest were listed at once, naming the outage; the invalid one is still rejected for what it is
    for message_id in ("msg-1", "msg-3"):
        [line] = lines_about(json_logs, message_id)
        assert line["failure"] == "store" and "not started: the database was unreachable" in line["reason"]
    [rejected] = lines_about(json_logs, "msg-2")
    assert rejected["message"] == "message rejected" and rejected["key"] == "periods"
    # one selection timeout, not four (a bound far above one, far below four)
    assert elapsed < 2.5 * (10 * SELECTION_TIMEOUT_MS / 1000) + 3, f"took {elapsed:.1f} s"


def test_after_an_outage_a_new_batch_tries_the_database_again(unreachable_database, json_logs):
    # given a batch that found the database unreachable
    handler.handler(sqs_event({"as_of": END.isoformat()}), LocalContext())

    # when the next invocation arrives
    handler.handler(sqs_event({"as_of": END.isoformat()}, {"coin_ids": ["x"]}), LocalContext())

    # then its first message tried the server again (the outage is remembered for one batch only)
    reasons = [line["reason"] for line in json_logs.errors() if line.get("message_id") == "msg-0"]
    assert len(reasons) == 2 and all("ServerSelectionTimeoutError" in reason for reason in reasons)


def test_an_atlas_host_whose_srv_record_does_not_resolve_fails_each_message_as_a_store_outage(
    monkeypatch, real_driver_configuration, json_logs
):
    # given the Atlas variables, and DNS answering that the cluster's SRV record does not exist
    def no_such_name(self, *args):
        raise ConfigurationError("The DNS query name does not exist: _mongodb._tcp.cluster0.gone.mongodb.net.")

    monkeypatch.setattr(srv_resolver._SrvResolver, "get_hosts", no_such_name)
    monkeypatch.setattr(srv_resolver._SrvResolver, "get_hosts_and_min_ttl", no_such_name)
    monkeypatch.delenv("MONGODB_URI")
    writes = configure(
        monkeypatch,
        MONGODB_RSKYCLUSTER_HOST="cluster0.gone.mongodb.net",
        MONGODB_RSKYCLUSTER_DATABASE_USER_NAME="reader",
        MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD="pw",
    )

    # when a batch of two messages arrives
    response = handler.handler(sqs_event({"as_of": END.isoformat()}, {"coin_ids": ["x"]}), LocalContext())

    # then both are listed as store outages (retried by SQS), logged without a traceback, and nothing was written
    assert failed_ids(response) == ["msg-0", "msg-1"]
    [first] = lines_about(json_logs, "msg-0")
    assert first["reason"].startswith("StoreUnreachable: setting up the client failed: ConfigurationError")
    [second] = lines_about(json_logs, "msg-1")
    assert "not started: the database was unreachable" in second["reason"]
    for line in (first, second):
        assert "exception" not in line
    assert writes == []


# --------------------------------------------------------------------------- a write failing part-way


@pytest.fixture
def backfill(store):
    """2,500 observations to judge in one range-mode message: three bulk_write calls (1,000 + 1,000 + 500)."""
    documents, _ = synthetic_documents(coins=5, days=32, per_day=24, end=END, seed=5)
    store.insert_many(documents)
    since = END - timedelta(hours=499)
    event = sqs_event({"since": since.isoformat(), "as_of": END.isoformat(), "signals": ["volume", "latest_price"]})
    return store, documents, event


def _interrupted_bulk_write(real, calls: list[int]):
    """A bulk_write that applies half of its second batch and then fails, as a primary stepping down would."""

    def bulk_write(self, requests, ordered=True, **kwargs):
        calls.append(len(requests))
        if len(calls) != 2:
            return real(self, requests, ordered=ordered, **kwargs)
        applied = requests[: len(requests) // 2]
        real(self, applied, ordered=ordered, **kwargs)
        raise BulkWriteError(
            {
                "writeErrors": [
                    {"index": i, "code": 11602, "errmsg": "InterruptedDueToReplStateChange"}
                    for i in range(len(applied), len(requests))
                ],
                "writeConcernErrors": [],
                "nInserted": 0,
                "nUpserted": 0,
                "nMatched": len(applied),
                "nModified": len(applied),
                "nRemoved": 0,
                "upserted": [],
            }
        )

    return bulk_write


def test_a_write_that_fails_part_way_is_listed_and_a_rerun_finishes_it_with_the_same_flags(
    backfill, monkeypatch, json_logs
):
    store, documents, event = backfill
    # given the flags a clean run writes (then cleared again)
    assert handler.handler(event, LocalContext()) == {"batchItemFailures": []}
    clean = flags_without_time(store)
    assert len(clean) == 2500
    store.update_many({}, {"$unset": {"anomalies": ""}})

    # when the second of the three bulk writes fails after applying half of its updates
    real = type(store).bulk_write
    calls: list[int] = []
    monkeypatch.setattr(type(store), "bulk_write", _interrupted_bulk_write(real, calls))
    response = handler.handler(event, LocalContext())

    # then the message is listed, the third batch was never sent, and the failure is logged with the reason
    assert failed_ids(response) == ["msg-0"]
    assert calls == [1000, 1000]
    [line] = lines_about(json_logs, "msg-0")[-1:]
    assert line["message"] == "message failed" and "bulk write failed" in line["reason"]
    # and what was written is whole: each written document carries exactly the flags of the clean run
    partial = flags_without_time(store)
    assert len(partial) == 1500
    assert all(partial[doc_id] == clean[doc_id] for doc_id in partial)

    # when SQS delivers the message again and the database is healthy
    monkeypatch.setattr(type(store), "bulk_write", real)
    assert handler.handler(event, LocalContext()) == {"batchItemFailures": []}

    # then every document carries the same flags as the clean run, field for field
    assert flags_without_time(store) == clean
    # and those flags are numpy's (a sample, checked against the independent reference)
    by_id = {doc["_id"]: doc for doc in documents}
    for doc_id in random.Random(7).sample(sorted(clean), 20):
        doc = by_id[doc_id]
        value = usable_number(doc.get("volume"))
        if value is not None:
            assert clean[doc_id]["volume"]["7d"] == expected_entry(
                documents, doc["coin_id"], doc["timestamp"], value, "volume", 7, 1.5, 4
            )


# --------------------------------------------------------------------------- the time budget running out


@pytest.fixture
def four_coins(store):
    documents, _ = synthetic_documents(coins=4, days=31, per_day=4, end=END, seed=9)
    store.insert_many(documents)
    return store


def test_when_the_time_budget_runs_out_mid_batch_the_unstarted_messages_are_listed(four_coins, monkeypatch, json_logs):
    # given a context with one second more than the margin, and a database whose reads take two seconds
    store = four_coins
    margin_ms = constants_helper.get_settings().time_margin_ms
    context = LocalContext(remaining_ms=margin_ms + 1_000)

    class SlowReader(mongodb_helper.DriverReader):
        def find(self, query, projection):
            context.remaining_ms -= 2_000  # the clock the handler reads moves as the work is done
            return super().find(query, projection)

    monkeypatch.setitem(
        mongodb_helper.READERS, "driver", lambda settings: SlowReader(mongodb_helper.get_collection(settings))
    )
    event = sqs_event(*[{"as_of": END.isoformat(), "coin_ids": [f"coin-{i:04d}"]} for i in range(4)])

    # when the handler runs the batch
    response = handler.handler(event, context)

    # then the first message finished, and the three it left no time for are listed, untouched and logged
    assert failed_ids(response) == ["msg-1", "msg-2", "msg-3"]
    assert {d["coin_id"] for d in store.find({"anomalies": {"$exists": True}})} == {"coin-0000"}
    for message_id in ("msg-1", "msg-2", "msg-3"):
        [line] = lines_about(json_logs, message_id)
        assert line["level"] == "WARNING" and "ANOMALY_TIME_MARGIN_MS" in line["reason"]


# --------------------------------------------------------------------------- the model crashing


def test_a_crash_inside_the_model_for_one_message_does_not_touch_the_others(four_coins, monkeypatch, json_logs):
    # given a model that crashes on coin-0001's data only
    store = four_coins
    real_judge_signal = model.judge_signal

    def crashing_judge_signal(frame, rows, signal, params):
        if "coin-0001" in set(frame["coin_id"]):
            raise FloatingPointError("model blew up")
        return real_judge_signal(frame, rows, signal, params)

    monkeypatch.setattr(model, "judge_signal", crashing_judge_signal)  # what signal_judges calls
    bodies = [{"as_of": END.isoformat(), "coin_ids": [f"coin-{i:04d}"]} for i in range(4)]

    # when the handler runs a batch with one message per coin
    response = handler.handler(sqs_event(*bodies), LocalContext())

    # then only that message is listed, with the exception and its trace in the log, and it wrote nothing
    assert failed_ids(response) == ["msg-1"]
    [line] = lines_about(json_logs, "msg-1")
    assert line["reason"] == "FloatingPointError: model blew up" and "Traceback" in line["exception"]
    flagged = {d["coin_id"] for d in store.find({"anomalies": {"$exists": True}})}
    assert flagged == {"coin-0000", "coin-0002", "coin-0003"}
    # and the others' flags are exactly what a batch without the crashing message writes
    with_crash = flags_without_time(store)
    store.update_many({}, {"$unset": {"anomalies": ""}})
    monkeypatch.setattr(model, "judge_signal", real_judge_signal)
    assert handler.handler(sqs_event(bodies[0], bodies[2], bodies[3]), LocalContext()) == {"batchItemFailures": []}
    assert flags_without_time(store) == with_crash
