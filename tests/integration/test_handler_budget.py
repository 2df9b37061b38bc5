"""The handler answers before the deadline when the store is slow (contract §6), over a real socket.

``libs/batch.py`` gives each started message a budget of the time left less
``ANSWER_RESERVE_MS`` (1 s), and does not start one with less than
``ANOMALY_TIME_MARGIN_MS`` left. Here a loopback wire endpoint holds ``find``
back for a minute while the Lambda context counts 3 s down in real time, with
the margin scaled down with it (1.5 s instead of 15 s): the same race as a
120 s function meeting a slow store, in a few seconds.
"""

from __future__ import annotations

from datetime import datetime

import mongomock
import pytest

import handler
from libs.helpers import constants_helper, mongodb_helper
from libs.tools.local.lambda_context import LocalContext
from libs.tools.loopback.wire_mongo import WireMongoServer
from libs.tools.synthetic import synthetic_documents
from tests.fakes.sqs import failed_ids, sqs_event

END = datetime(2024, 11, 1)
DATABASE, COLLECTION = "risk", "scores"
SLOW_S = 60
#: The function's time, counting down in real time, and the margin below which a message is not started.
TIMEOUT_MS, TIME_MARGIN_MS = 3_000, 1_500


@pytest.fixture
def wire():
    """A loopback wire endpoint over a mongomock collection holding three coins."""
    client = mongomock.MongoClient()
    client[DATABASE][COLLECTION].insert_many(synthetic_documents(coins=3, days=35, per_day=4, end=END, seed=5)[0])
    with WireMongoServer(client) as server:
        yield server, client[DATABASE][COLLECTION]


@pytest.fixture
def handler_on_wire(wire, monkeypatch):
    """The handler configured, as at a cold start, for the loopback wire endpoint."""
    server, _ = wire
    monkeypatch.setenv("MONGODB_URI", server.uri)
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_DATABASE", DATABASE)
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION", COLLECTION)
    monkeypatch.setenv("ANOMALY_TIME_MARGIN_MS", str(TIME_MARGIN_MS))
    constants_helper.reset_settings()
    mongodb_helper.reset_client()
    yield handler.handler
    mongodb_helper.reset_client()
    constants_helper.reset_settings()


def test_a_store_that_answers_after_a_minute_still_gets_the_batch_answered_before_the_deadline(
    wire, handler_on_wire, json_logs
):
    # given a function with 3 s left, counting down in real time, and a store whose find answers after a minute
    server, stored = wire
    server.delays_s["find"] = SLOW_S
    context = LocalContext(timeout_ms=TIMEOUT_MS)
    event = sqs_event({"as_of": END.isoformat()}, {"as_of": END.isoformat(), "coin_ids": ["coin-0001"]})

    # when the handler runs the batch
    response = handler_on_wire(event, context)

    # then the answer came back while the context still had time, listing both messages: the first one
    # failed on the store budget, the second was left unstarted for lack of time; nothing was written
    assert context.get_remaining_time_in_millis() > 0
    assert failed_ids(response) == ["msg-0", "msg-1"]
    lines = {line["message_id"]: line for line in json_logs.lines() if line.get("message_id") and "reason" in line}
    assert lines["msg-0"]["failure"] == "store"
    assert lines["msg-0"]["reason"].startswith("StoreTimeout: store time budget of ")
    assert "ran out while reading history" in lines["msg-0"]["reason"]
    assert lines["msg-1"]["failure"] == "time_budget"
    assert stored.count_documents({"anomalies": {"$exists": True}}) == 0
