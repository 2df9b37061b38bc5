"""A slow store fails the message within its time budget (contract §6), over real sockets.

The stores here answer late on purpose: the loopback wire-protocol endpoint
holds ``find`` or ``update`` back for a minute, the loopback Data API endpoint
holds its answer back or asks for long backoffs. Under ``store_budget(BUDGET_S)``
(half a second) every read and write must give up with :class:`StoreTimeout` naming the budget
instead of waiting the minute. Timings are only bounded generously (well under
the minute) to show nothing waited it out; speed belongs in bench/.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import bson
import mongomock
import pymongo
import pytest
from pymongo import UpdateOne

from libs.errors import StoreTimeout, StoreUnavailable
from libs.helpers import constants_helper, mongodb_helper
from libs.helpers.constants_helper import SIGNALS, load_settings
from libs.helpers.data_api_helper import DataApiReader
from libs.helpers.mongodb_helper import get_collection, load_history, write_updates
from libs.helpers.store_budget import active_budget, remaining_s, store_budget
from libs.request import parse_request
from libs.tools.loopback.data_api_server import DataApiServer
from libs.tools.loopback.wire_mongo import WireMongoServer
from libs.tools.synthetic import synthetic_documents
from tests.fakes.network import closed_port

END = datetime(2024, 11, 1)
DATABASE, COLLECTION = "risk", "scores"
SLOW_S = 60
#: The budget a slow store must give up within: a fraction of a second is the same proof as seconds.
BUDGET_S = 0.5
#: Far below the minute a slow store takes: proof that the budget, not the store, ended the wait.
WELL_BEFORE_S = 30
API_KEY = "budget-test-key"
QUERY = {"coin_id": {"$gt": ""}, "timestamp": {"$gt": END - timedelta(days=40), "$lte": END}}
PROJECTION = {"_id": 1, "coin_id": 1, "timestamp": 1, **{signal: 1 for signal in SIGNALS}}


def _documents() -> list[dict]:
    documents, _ = synthetic_documents(coins=3, days=35, per_day=4, end=END, seed=5)
    return documents


@pytest.fixture
def wire():
    """A loopback wire endpoint over a mongomock collection holding three coins."""
    client = mongomock.MongoClient()
    client[DATABASE][COLLECTION].insert_many(_documents())
    with WireMongoServer(client) as server:
        yield server, client[DATABASE][COLLECTION]


@pytest.fixture
def wire_settings(wire):
    settings = load_settings(
        {
            "MONGODB_URI": wire[0].uri,
            "MONGODB_RSKYCLUSTER_DATABASE": DATABASE,
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": COLLECTION,
            "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "5000",
        }
    )
    mongodb_helper.reset_client()
    yield settings
    mongodb_helper.reset_client()
    constants_helper.reset_settings()


def _latest(settings):
    return parse_request(json.dumps({"as_of": END.isoformat()}), message_id="m", settings=settings, now=END)


# --------------------------------------------------------------------------- the budget itself


def test_no_budget_means_no_deadline_and_a_spent_budget_fails_at_once():
    assert remaining_s() is None
    with store_budget(None) as budget:
        assert budget is None and remaining_s() is None
    with pytest.raises(StoreTimeout, match="store time budget exhausted"):
        with store_budget(0):
            pass
    with pytest.raises(StoreTimeout):
        with store_budget(-1.5):
            pass


def test_a_nested_budget_only_shortens_the_deadline():
    with store_budget(10) as outer:
        with store_budget(100) as inner:
            assert inner is outer
        with store_budget(1) as inner:
            assert inner.at < outer.at and 0 < remaining_s() <= 1
        assert active_budget() is outer
    assert active_budget() is None


# --------------------------------------------------------------------------- the driver


def test_a_find_that_answers_after_a_minute_fails_the_load_within_the_budget(wire, wire_settings):
    # given a server whose find answers after a minute
    server, _ = wire
    server.delays_s["find"] = SLOW_S

    # when a message loads its history under a half-second budget
    started = time.monotonic()
    with pytest.raises(StoreTimeout) as failure, store_budget(BUDGET_S):
        load_history(_latest(wire_settings), wire_settings)
    elapsed = time.monotonic() - started

    # then it fails with the clear reason, long before the server would have answered
    assert str(failure.value).startswith("store time budget of 0.5 s ran out while reading history (")
    assert isinstance(failure.value, StoreUnavailable)
    assert elapsed < WELL_BEFORE_S
    assert server.uri not in str(failure.value)


def test_a_bulk_write_that_answers_after_a_minute_fails_within_the_budget(wire, wire_settings):
    # given a server whose update answers after a minute
    server, stored = wire
    server.delays_s["update"] = SLOW_S
    doc_id = stored.find_one({})["_id"]

    # when flags are written under a half-second budget
    started = time.monotonic()
    with (
        pytest.raises(StoreTimeout, match=r"^store time budget of 0\.5 s ran out while writing flags"),
        store_budget(BUDGET_S),
    ):
        write_updates(get_collection(wire_settings), [UpdateOne({"_id": doc_id}, {"$set": {"anomalies.x": 1}})])

    # then it failed well before the server answered
    assert time.monotonic() - started < WELL_BEFORE_S


def test_within_the_budget_a_cursor_of_many_batches_reads_everything(wire, wire_settings):
    # given a server answering the find with a cursor of several batches (getMore after getMore)
    server, stored = wire
    documents = list(stored.find({}))
    batches = server.serve_batches(DATABASE, COLLECTION, [bson.encode(d) for d in documents], batch_bytes=8_000)
    assert batches > 3

    # when a message loads under a generous budget, then every document arrives
    with store_budget(30):
        history = load_history(_latest(wire_settings), wire_settings)
    assert history.read == len(documents) and history.skipped == 0
    assert len(server.received("getMore")) == batches - 1


def test_without_a_budget_a_driver_timeout_is_an_outage_not_the_budget(wire, wire_settings):
    # given a server whose find answers later than the client's socket timeout
    server, _ = wire
    server.delays_s["find"] = SLOW_S
    settings = load_settings(
        {
            "MONGODB_URI": server.uri,
            "MONGODB_RSKYCLUSTER_DATABASE": DATABASE,
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": COLLECTION,
            "MONGODB_SOCKET_TIMEOUT_MS": "500",
        }
    )

    # when a message loads without a budget, then it fails as a store error that does not blame a budget
    with pytest.raises(StoreUnavailable) as failure:
        load_history(_latest(settings), settings)
    assert not isinstance(failure.value, StoreTimeout)
    assert str(failure.value).startswith("reading history failed: NetworkTimeout")


def test_pymongo_timeout_errors_carry_the_timeout_mark_the_conversion_relies_on(wire):
    server, _ = wire
    server.delays_s["find"] = SLOW_S
    with pymongo.MongoClient(server.uri) as client, pytest.raises(pymongo.errors.PyMongoError) as failure:
        with pymongo.timeout(0.5):
            client[DATABASE][COLLECTION].find_one({})
    assert failure.value.timeout


# --------------------------------------------------------------------------- the Data API


@pytest.fixture
def data_api():
    client = mongomock.MongoClient()
    client[DATABASE][COLLECTION].insert_many(_documents())
    endpoint = DataApiServer(collection=client[DATABASE][COLLECTION], api_key=API_KEY).start()
    yield endpoint
    endpoint.stop()


def _reader(url: str, **options) -> DataApiReader:
    settings = load_settings(
        {
            "MONGODB_URI": "mongomock://",
            "MONGODB_RSKYCLUSTER_DATABASE": DATABASE,
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": COLLECTION,
            "MONGODB_READ_BACKEND": "data_api",
            "MONGODB_DATA_API_URL": url,
            "MONGODB_RSKYCLUSTER_DATA_API_KEY": API_KEY,
            "MONGODB_RSKYCLUSTER_DATA_SOURCE": "mongodb-atlas",
            "MONGODB_DATA_API_TIMEOUT_MS": str(SLOW_S * 1000),  # the request timeout alone would wait the minute
        }
    )
    return DataApiReader(settings, **options)


def test_a_data_api_answer_held_back_a_minute_fails_within_the_budget(data_api):
    # given an endpoint that answers the next requests after a minute, and a reader whose own timeout is a minute
    data_api.delays_s.extend([SLOW_S] * 4)
    reader = _reader(data_api.url)

    # when a message reads under a half-second budget
    started = time.monotonic()
    try:
        with pytest.raises(StoreTimeout) as failure, store_budget(BUDGET_S):
            reader.find(QUERY, PROJECTION)
    finally:
        reader.close()

    # then it fails with the clear reason, long before the endpoint answered, without the key
    message = str(failure.value)
    assert message.startswith("store time budget of 0.5 s ran out while reading history over the Data API")
    assert API_KEY not in message
    assert time.monotonic() - started < WELL_BEFORE_S


def test_a_data_api_body_trickling_in_for_minutes_fails_within_the_budget(data_api):
    # given an endpoint that sends its headers at once, then its body a byte every 50 ms (minutes in all,
    # yet never quiet long enough for a read timeout), and a reader whose own timeout is a minute
    data_api.trickle_s = 0.05
    reader = _reader(data_api.url)

    # when a message reads under a half-second budget
    started = time.monotonic()
    try:
        with pytest.raises(StoreTimeout) as failure, store_budget(BUDGET_S):
            reader.find(QUERY, PROJECTION)
    finally:
        reader.close()
        data_api.trickle_s = None

    # then it fails with the clear reason at the budget, not when the last byte arrives
    assert str(failure.value).startswith("store time budget of 0.5 s ran out while reading history over the Data API")
    assert time.monotonic() - started < WELL_BEFORE_S


def test_a_backoff_that_would_outlast_the_budget_is_not_slept(data_api):
    # given an endpoint failing with 503 and a reader whose backoff is a minute
    data_api.statuses.extend([503] * 4)
    reader = _reader(data_api.url, backoff_s=SLOW_S, max_backoff_s=SLOW_S)

    # when a message reads under a half-second budget, then it stops at the first backoff with the reason
    started = time.monotonic()
    try:
        with pytest.raises(StoreTimeout, match="no time left to retry after HTTP 503"), store_budget(BUDGET_S):
            reader.find(QUERY, PROJECTION)
    finally:
        reader.close()
    assert len(data_api.requests) == 1
    assert time.monotonic() - started < WELL_BEFORE_S


def test_within_the_budget_the_data_api_reads_everything(data_api):
    reader = _reader(data_api.url)
    try:
        with store_budget(30):
            documents = reader.find(QUERY, PROJECTION)
    finally:
        reader.close()
    assert len(documents) == data_api.collection.count_documents(QUERY)


def test_under_a_budget_an_unreachable_database_fails_after_the_selection_timeout_not_the_budget():
    # given a database on a closed port, a 300 ms selection timeout and a budget of a minute
    settings = load_settings(
        {
            "MONGODB_URI": f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true",
            "MONGODB_RSKYCLUSTER_DATABASE": DATABASE,
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": COLLECTION,
            "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "300",
            "MONGODB_CONNECT_TIMEOUT_MS": "300",
        }
    )
    mongodb_helper.reset_client()
    try:
        # when a load and a write run under the budget (pymongo alone would select for the whole minute)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as read, store_budget(SLOW_S):
            load_history(_latest(settings), settings)
        with pytest.raises(StoreUnavailable) as write, store_budget(SLOW_S):
            write_updates(get_collection(settings), [UpdateOne({"_id": 1}, {"$set": {"x": 1}})])
        elapsed = time.monotonic() - started
    finally:
        mongodb_helper.reset_client()

    # then each fails as the outage it is, after about the selection timeout, not as the budget
    for failure, doing in ((read, "reading history"), (write, "writing flags")):
        assert not isinstance(failure.value, StoreTimeout)
        assert str(failure.value).startswith(f"{doing} failed: ServerSelectionTimeoutError")
    assert elapsed < WELL_BEFORE_S
