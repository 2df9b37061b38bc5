"""Values the driver cannot decode never fail a message (contract §2), over a real socket.

A real ``MongoClient`` reads from the loopback wire-protocol endpoint
(``libs/tools/loopback/wire_mongo.py``), which serves some documents as pre-encoded
BSON holding what pymongo cannot decode with its defaults: a date beyond year
9999 and strings that are not valid UTF-8. With the defaults the first such
document makes pymongo raise ``InvalidBSON`` while the cursor is read (the
defect); the service's collection must read through them: an undecodable
signal value is missing, and a document whose ``coin_id``, ``timestamp`` or
``_id`` cannot be decoded is skipped and counted. Expected flags come from the
independent reference of ``tests/fakes/reference.py`` run on the documents as
a careful reader sees them.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta
from typing import Any

import bson
import mongomock
import pymongo
import pytest
from bson import DatetimeMS, ObjectId
from bson.errors import InvalidBSON

import handler
from libs.helpers import constants_helper, mongodb_helper
from libs.helpers.constants_helper import SIGNALS
from libs.helpers.mongodb_helper import distinct_coin_ids, get_collection, load_history
from libs.request import parse_request
from libs.tools.local.lambda_context import LocalContext
from libs.tools.loopback.wire_mongo import WireMongoServer
from libs.tools.synthetic import synthetic_documents
from tests.fakes.reference import expected_entry, usable_number
from tests.fakes.sqs import sqs_event

END = datetime(2024, 11, 1)
DATABASE, COLLECTION = "risk", "scores"
PERIODS = (3, 7, 30)
#: 1 January 10000, 00:00:01 UTC: one second past what Python's datetime can hold.
BEYOND_9999_MS = 253_402_300_801_000


class Undecodable:
    """What a reader that cannot decode a value knows of it: nothing (the reference's 'missing')."""

    def __repr__(self) -> str:
        return "<undecodable>"


UNDECODABLE = Undecodable()


def raw_bson(document: dict[str, Any], dates: tuple[str, ...] = (), bad_utf8: tuple[str, ...] = ()) -> bytes:
    """``document`` encoded with ``dates`` beyond year 9999 and ``bad_utf8`` strings holding an invalid byte."""
    patched = dict(document)
    markers = {}
    for name in dates:
        patched[name] = DatetimeMS(BEYOND_9999_MS)
    for name in bad_utf8:
        marker = f"UTF8-MARK-{name}-{id(document)}"
        patched[name] = marker
        markers[marker] = b"\xff" + marker.encode()[1:]  # same length: the BSON framing stays valid
    raw = bson.encode(patched)
    for marker, replacement in markers.items():
        assert raw.count(marker.encode()) == 1
        raw = raw.replace(marker.encode(), replacement)
    return raw


def scenario() -> tuple[list[dict[str, Any]], dict[Any, bytes], list[dict[str, Any]]]:
    """Stored documents, raw stand-ins served for some of them, and the documents as a careful reader sees them.

    * coin-0000, newest observation: ``volume`` a date beyond 9999, ``latest_price`` not UTF-8 (both missing);
    * coin-0000, a window observation: ``market_cap`` a date beyond 9999 (missing, out of every window);
    * coin-0001, newest observation: ``coin_id`` not UTF-8 (skipped: the coin is judged on its previous one);
    * coin-0002, a window observation: ``timestamp`` beyond 9999 (skipped);
    * coin-0003, newest observation: a string ``_id`` that is not UTF-8 (skipped: it could not be written back).
    """
    documents, _ = synthetic_documents(coins=4, days=35, per_day=4, end=END, seed=12, missing_rate=0.0)
    for doc in documents:
        doc["_id"] = ObjectId()
    by_coin: dict[str, list[dict[str, Any]]] = {}
    for doc in documents:
        by_coin.setdefault(doc["coin_id"], []).append(doc)
    newest0, window0 = by_coin["coin-0000"][-1], by_coin["coin-0000"][-10]
    newest1, window2, newest3 = by_coin["coin-0001"][-1], by_coin["coin-0002"][-20], by_coin["coin-0003"][-1]
    newest3["_id"] = "doc-with-a-string-id"
    raw = {
        newest0["_id"]: raw_bson(newest0, dates=("volume",), bad_utf8=("latest_price",)),
        window0["_id"]: raw_bson(window0, dates=("market_cap",)),
        newest1["_id"]: raw_bson(newest1, bad_utf8=("coin_id",)),
        window2["_id"]: raw_bson(window2, dates=("timestamp",)),
        newest3["_id"]: raw_bson(newest3, bad_utf8=("_id",)),
    }
    seen = copy.deepcopy(documents)
    seen_by_id = {doc["_id"]: doc for doc in seen}
    seen_by_id[newest0["_id"]].update(volume=UNDECODABLE, latest_price=UNDECODABLE)
    seen_by_id[window0["_id"]]["market_cap"] = UNDECODABLE
    skipped = {newest1["_id"], window2["_id"], newest3["_id"]}
    return documents, raw, [doc for doc in seen if doc["_id"] not in skipped]


@pytest.fixture
def wire_store():
    """The scenario's documents in a mongomock client, served over loopback with the raw stand-ins."""
    documents, raw, seen = scenario()
    client = mongomock.MongoClient()
    client[DATABASE][COLLECTION].insert_many(copy.deepcopy(documents))
    with WireMongoServer(client) as server:
        server.raw_documents.update(raw)
        yield server, client[DATABASE][COLLECTION], seen, len(raw) - 2


@pytest.fixture
def wire_settings(wire_store, monkeypatch):
    """The handler configured, as at a cold start, for the loopback endpoint."""
    server = wire_store[0]
    monkeypatch.setenv("MONGODB_URI", server.uri)
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_DATABASE", DATABASE)
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION", COLLECTION)
    monkeypatch.setenv("MONGODB_SERVER_SELECTION_TIMEOUT_MS", "2000")
    constants_helper.reset_settings()
    mongodb_helper.reset_client()
    yield constants_helper.get_settings()
    mongodb_helper.reset_client()
    constants_helper.reset_settings()


def test_with_pymongos_defaults_one_undecodable_value_fails_the_whole_read(wire_store):
    # given the endpoint serving the scenario (this is the defect the service must not have)
    server = wire_store[0]
    with pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=2000) as client:
        # when a client with the default decoding options reads the collection, then the cursor raises
        with pytest.raises(InvalidBSON):
            list(client[DATABASE][COLLECTION].find({}))


def test_the_services_collection_reads_through_undecodable_values(wire_store, wire_settings):
    # given the endpoint serving three documents that cannot be used and two holding undecodable signals
    server, _, seen, skipped = wire_store
    request = parse_request(json.dumps({"as_of": END.isoformat()}), message_id="m", settings=wire_settings, now=END)

    # when the history is loaded with the real driver over the socket
    history = load_history(request, wire_settings)

    # then every document the server returned was read, the undecodable ones were skipped and counted
    [find] = server.received("find")
    assert history.read == find.documents
    assert history.skipped == skipped
    # and every other value is what the careful reader sees: undecodable signal values are missing (NaN)
    frame = history.frame.set_index(["coin_id", "timestamp"])
    start = request.history_start(wire_settings.latest_lookback_hours)
    expected = {(d["coin_id"], d["timestamp"]): d for d in seen if start < d["timestamp"] <= END}
    assert len(frame) == len(expected)
    for key, doc in expected.items():
        for signal in SIGNALS:
            value, number = frame.at[key, signal], usable_number(doc[signal])
            assert (value != value) if number is None else value == number, (key, signal)


def test_a_request_for_every_coin_succeeds_and_flags_what_can_be_read(wire_store, wire_settings, json_logs):
    # given the endpoint serving the scenario
    server, stored, seen, skipped = wire_store

    # when the handler runs a latest request without coin_ids (every coin) and a backfill
    since = END - timedelta(days=2)
    response = handler.handler(
        sqs_event({"as_of": END.isoformat()}, {"as_of": END.isoformat(), "since": since.isoformat()}),
        LocalContext(),
    )

    # then both messages succeed, and the summary counts the unusable documents as skipped
    assert response == {"batchItemFailures": []}
    summaries = [line for line in json_logs.lines() if line["message"] == "message processed"]
    assert [s["documents_skipped"] for s in summaries] == [skipped, skipped]
    # and the flags written are the reference's on what can be read: undecodable values missing, the
    # skipped documents out of every window and never written
    judged = _latest_ids(seen) | {d["_id"] for d in seen if since <= d["timestamp"] <= END}
    written = {doc["_id"]: doc for doc in stored.find({"anomalies": {"$exists": True}})}
    assert set(written) == judged
    for doc_id, doc in written.items():
        anomalies = doc["anomalies"]
        reader_view = next(d for d in seen if d["_id"] == doc_id)
        for signal in SIGNALS:
            value = usable_number(reader_view[signal])
            if value is None:
                assert signal not in anomalies, (doc_id, signal)
                continue
            for period in PERIODS:
                entry = expected_entry(seen, doc["coin_id"], doc["timestamp"], value, signal, period, 1.5, 4)
                assert anomalies[signal][f"{period}d"] == entry, (doc_id, signal, period)


def _latest_ids(seen: list[dict[str, Any]]) -> set[Any]:
    recent = [d for d in seen if END - timedelta(hours=24) < d["timestamp"] <= END]
    newest: dict[str, datetime] = {}
    for doc in recent:
        newest[doc["coin_id"]] = max(newest.get(doc["coin_id"], doc["timestamp"]), doc["timestamp"])
    return {d["_id"] for d in recent if d["timestamp"] == newest[d["coin_id"]]}


def test_the_coin_list_leaves_out_ids_that_cannot_be_decoded(monkeypatch):
    # given a collection whose coin ids include one a reader decoded from invalid UTF-8
    class Distinct:
        def distinct(self, key, query):
            return ["coin-b", "coin-\udcff", "", "coin-a", 7]

    # when the producer's universe is listed, then only the usable, decodable ids are in it
    assert distinct_coin_ids(Distinct()) == ["coin-a", "coin-b"]


def test_the_service_reads_the_collection_with_the_lenient_decoding_options(wire_settings):
    options = get_collection(wire_settings).codec_options
    assert options.datetime_conversion == bson.DatetimeConversion.DATETIME_AUTO
    assert options.unicode_decode_error_handler == "surrogateescape"
    assert options.tz_aware is False
