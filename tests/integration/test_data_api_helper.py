"""The Data API read backend over real HTTP on 127.0.0.1 (libs/tools/loopback/data_api_server.py).

The server answers ``find`` from the very collection the handler writes, so
the same data can be read through the driver and through the Data API and the
results compared.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import pandas.testing as pdt
import pytest
from bson import Decimal128, Int64, ObjectId
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import handler
from libs.errors import ConfigError, StoreUnavailable
from libs.helpers import constants_helper
from libs.helpers.constants_helper import SIGNALS, load_settings
from libs.helpers.data_api_helper import DataApiReader, reset_data_api_reader
from libs.helpers.mongodb_helper import DriverReader, get_reader
from libs.models.history import documents_to_history
from libs.tools.loopback.data_api_server import DataApiServer
from libs.tools.synthetic import synthetic_documents
from tests.conftest import REPO
from tests.fakes.sqs import failed_ids, sqs_event

API_KEY = "dak-7f3c9e-SECRET-0042"
END = datetime(2024, 11, 1)
QUERY = {"coin_id": {"$gt": ""}, "timestamp": {"$gt": END - timedelta(days=40), "$lte": END}}
PROJECTION = {"_id": 1, "coin_id": 1, "timestamp": 1, **{signal: 1 for signal in SIGNALS}}


@pytest.fixture
def server(store):
    """A Data API endpoint serving the embedded store's collection."""
    endpoint = DataApiServer(collection=store, api_key=API_KEY).start()
    yield endpoint
    endpoint.stop()
    reset_data_api_reader()


def data_api_env(url: str, **overrides: str) -> dict[str, str]:
    env = {
        "MONGODB_URI": "mongomock://",
        "MONGODB_READ_BACKEND": "data_api",
        "MONGODB_DATA_API_URL": url,
        "MONGODB_RSKYCLUSTER_DATA_API_KEY": API_KEY,
        "MONGODB_RSKYCLUSTER_DATA_SOURCE": "mongodb-atlas",
        "MONGODB_DATA_API_TIMEOUT_MS": "2000",
    }
    env.update(overrides)
    return env


@pytest.fixture
def make_reader():
    """Readers with millisecond backoff; their sessions are closed after the test."""
    made: list[DataApiReader] = []

    def make(url: str, *, page_size: int = 5, max_attempts: int = 4, **env: str) -> DataApiReader:
        settings = load_settings(data_api_env(url, MONGODB_DATA_API_PAGE_SIZE=str(page_size), **env))
        made.append(DataApiReader(settings, max_attempts=max_attempts, backoff_s=0.001, max_backoff_s=0.01))
        return made[-1]

    yield make
    for reader in made:
        reader.close()


def ordered_ids(count: int) -> list[ObjectId]:
    """ObjectIds that sort in the order given (insertion order = _id order, as in one writer's run)."""
    base = int(str(ObjectId.from_datetime(END)), 16)
    return [ObjectId(f"{base + i:024x}") for i in range(count)]


# ---- the request on the wire ----------------------------------------------------------------------------------------


def test_find_posts_the_find_action_in_extended_json_with_the_api_key(server, store, make_reader):
    # given one document in range
    store.insert_one({"coin_id": "btc", "timestamp": END - timedelta(hours=1), "volume": 1.0})
    reader = make_reader(server.url, page_size=10)

    # when the reader runs the history query
    documents = reader.find(QUERY, PROJECTION)

    # then it POSTed the find action with the api key, the namespace, and Extended JSON dates
    assert [d["coin_id"] for d in documents] == ["btc"]
    first = server.requests[0]
    assert (first.method, first.path) == ("POST", "/action/find")
    assert first.headers["api-key"] == API_KEY
    assert first.headers["Content-Type"] == "application/ejson"
    assert first.headers["Accept"] == "application/ejson"
    body = first.body
    assert body["dataSource"] == "mongodb-atlas"
    assert (body["database"], body["collection"]) == ("risk", "coingecko_onchain_scores")
    assert body["filter"] == QUERY and body["projection"] == PROJECTION
    assert body["sort"] == {"timestamp": 1, "_id": 1} and list(body["sort"]) == ["timestamp", "_id"]
    assert body["limit"] == 10
    raw = json.loads(first.raw_body)
    assert raw["filter"]["timestamp"]["$lte"] == {"$date": "2024-11-01T00:00:00Z"}


def test_the_base_url_is_built_from_region_and_app_id_unless_overridden():
    env = {
        "MONGODB_URI": "mongomock://",
        "MONGODB_READ_BACKEND": "data_api",
        "MONGODB_RSKYCLUSTER_REGION": "eu-west-1",
        "MONGODB_RSKYCLUSTER_DATA_API_APP_ID": "data-abcde",
        "MONGODB_RSKYCLUSTER_DATA_API_KEY": API_KEY,
        "MONGODB_RSKYCLUSTER_DATA_SOURCE": "Cluster0",
    }

    built = DataApiReader(load_settings(env))
    overridden = DataApiReader(load_settings({**env, "MONGODB_DATA_API_URL": "https://data.example.test/v1/"}))

    assert built.endpoint == "https://eu-west-1.aws.data.mongodb-api.com/app/data-abcde/endpoint/data/v1/action/find"
    assert overridden.endpoint == "https://data.example.test/v1/action/find"
    assert API_KEY not in repr(built) and API_KEY not in repr(load_settings(env))


@pytest.mark.parametrize(
    "raw, problem", [("0", "from 1 to 50000"), ("50001", "from 1 to 50000"), ("lots", "whole number")]
)
def test_a_bad_page_size_names_the_variable(raw, problem):
    with pytest.raises(ConfigError, match=f"MONGODB_DATA_API_PAGE_SIZE.*{problem}"):
        load_settings(data_api_env("http://127.0.0.1:9", MONGODB_DATA_API_PAGE_SIZE=raw))
    assert load_settings(data_api_env("http://127.0.0.1:9")).data_api_page_size == 5000


# ---- pagination ------------------------------------------------------------------------------------------------------


def test_many_documents_sharing_one_timestamp_load_exactly_once_across_pages(server, store, make_reader):
    # given 23 documents stamped at the same instant (they straddle five pages of 5) and 4 others
    tie = END - timedelta(hours=2)
    ids = ordered_ids(27)
    random.Random(1).shuffle(ids)  # _id order unrelated to insertion order
    store.insert_many(
        [{"_id": ids[i], "coin_id": f"c{i % 3}", "timestamp": tie, "volume": float(i)} for i in range(23)]
    )
    store.insert_many(
        [{"_id": ids[23 + i], "coin_id": "c0", "timestamp": tie + timedelta(minutes=i - 2)} for i in range(4)]
    )
    reader = make_reader(server.url, page_size=5)

    documents = reader.find(QUERY, PROJECTION)

    assert sorted(d["_id"] for d in documents) == sorted(ids)
    assert len(documents) == 27
    keys = [(d["timestamp"], d["_id"]) for d in documents]
    assert keys == sorted(keys)
    assert len(server.requests) == 27 // 5 + 1 + 1  # six pages with documents, then the empty one


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    count=st.integers(0, 40),
    distinct_stamps=st.integers(1, 6),
    page_size=st.integers(1, 7),
    server_cap=st.one_of(st.none(), st.integers(1, 7)),
    seed=st.integers(0, 2**16),
)
def test_any_number_of_documents_loads_completely_and_exactly_once(
    server, store, make_reader, count, distinct_stamps, page_size, server_cap, seed
):
    # given documents over a few timestamps (many ties), some outside the query, a page size and a server cap
    rng = random.Random(seed)
    store.delete_many({})
    server.requests.clear()
    server.max_page = server_cap
    stamps = [END - timedelta(hours=rng.randrange(0, 24 * 40)) for _ in range(distinct_stamps)]
    ids = ordered_ids(count + 3)
    rng.shuffle(ids)
    documents = [
        {"_id": ids[i], "coin_id": rng.choice(["a", "b"]), "timestamp": rng.choice(stamps)} for i in range(count)
    ]
    documents += [
        {"_id": ids[count], "coin_id": "a", "timestamp": END + timedelta(milliseconds=1)},
        {"_id": ids[count + 1], "coin_id": "", "timestamp": END},
        {"_id": ids[count + 2], "coin_id": "b", "timestamp": END - timedelta(days=40)},
    ]
    rng.shuffle(documents)
    if documents:
        store.insert_many(documents)
    reader = make_reader(server.url, page_size=page_size)

    # when
    loaded = reader.find(QUERY, PROJECTION)

    # then the same documents as the driver's find, each once, in (timestamp, _id) order
    expected = list(DriverReader(store).find(QUERY, PROJECTION))
    assert len(expected) == count
    assert sorted(d["_id"] for d in loaded) == sorted(d["_id"] for d in expected)
    assert len({d["_id"] for d in loaded}) == len(loaded)
    keys = [(d["timestamp"], d["_id"]) for d in loaded]
    assert keys == sorted(keys)
    per_page = min(page_size, server_cap or page_size)
    assert len(server.requests) == math.ceil(count / per_page) + 1


def _id_keys(documents: list[dict[str, Any]]) -> list[str]:
    """Each document's _id with its type, sortable whatever the types (a Counter of these is the multiset)."""
    return sorted(f"{type(d['_id']).__name__}:{d['_id']!r}" for d in documents)


def test_a_collection_mixing_id_types_loads_every_document_once_across_pages(server, store, make_reader):
    # given ObjectIds, strings and integers as _ids of documents sharing a few timestamps (pages end inside the ties)
    stamps = [END - timedelta(hours=h) for h in (1, 2, 3)]
    ids: list[Any] = [*ordered_ids(9), *(f"doc-{i}" for i in range(9)), *range(100, 109)]
    random.Random(4).shuffle(ids)
    store.insert_many([{"_id": doc_id, "coin_id": "c", "timestamp": stamps[i % 3]} for i, doc_id in enumerate(ids)])
    reader = make_reader(server.url, page_size=2)

    # when the Data API reader pages through them
    loaded = reader.find(QUERY, PROJECTION)

    # then it returns what the driver reads, every document exactly once
    driver = list(DriverReader(store).find(QUERY, PROJECTION))
    assert len(driver) == len(ids) == 27
    assert _id_keys(loaded) == _id_keys(driver)


MIXED_IDS = st.one_of(
    st.integers(2, 60),
    st.text("abc", min_size=0, max_size=3),
    st.integers(0, 40).map(lambda i: ObjectId(f"{int(str(ObjectId.from_datetime(END)), 16) + i:024x}")),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, fold=0)
    ),
    st.sampled_from([True, False]),
)


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(MIXED_IDS, max_size=30, unique_by=lambda i: (type(i) is bool, i)),
    distinct_stamps=st.integers(1, 4),
    page_size=st.integers(1, 6),
    server_cap=st.one_of(st.none(), st.integers(1, 6)),
    seed=st.integers(0, 2**16),
)
def test_any_mix_of_id_types_loads_exactly_what_the_driver_reads(
    server, store, make_reader, ids, distinct_stamps, page_size, server_cap, seed
):
    # given documents whose _ids mix BSON types (numbers, strings, ObjectIds, dates, booleans) over few timestamps
    rng = random.Random(seed)
    store.delete_many({})
    server.requests.clear()
    server.max_page = server_cap
    stamps = [END - timedelta(hours=rng.randrange(1, 24 * 30)) for _ in range(distinct_stamps)]
    if ids:
        store.insert_many([{"_id": doc_id, "coin_id": "c", "timestamp": rng.choice(stamps)} for doc_id in ids])
    reader = make_reader(server.url, page_size=page_size)

    # when the Data API reader pages through them
    loaded = reader.find(QUERY, PROJECTION)

    # then it returns exactly what the driver reads: never fewer documents, never one twice
    assert _id_keys(loaded) == _id_keys(list(DriverReader(store).find(QUERY, PROJECTION)))


def test_a_server_that_ignores_the_page_filter_is_caught_not_looped(server, store, monkeypatch, make_reader):
    store.insert_many([{"coin_id": "a", "timestamp": END - timedelta(hours=h)} for h in range(6)])
    original = server._find
    monkeypatch.setattr(server, "_find", lambda body: original({**body, "filter": QUERY}))
    reader = make_reader(server.url, page_size=3)

    with pytest.raises(StoreUnavailable, match="does not honour the find sort or filter"):
        reader.find(QUERY, PROJECTION)
    assert len(server.requests) == 2


# ---- values come back as the driver gives them -----------------------------------------------------------------------

JUNK = [
    1.5,
    0.0,
    -2.25,
    1e308,
    5e-324,
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal128("12.345"),
    Decimal128("NaN"),
    Decimal128("Infinity"),
    Decimal128("-0"),
    Decimal128("1E+400"),
    7,
    -3,
    2**31,
    2**40,
    Int64(5),
    True,
    False,
    None,
    "12.5",
    "NaN",
    "",
    [1.0],
    {"v": 1.0},
]


def _junk_documents() -> list[dict[str, Any]]:
    rng = random.Random(8)
    ids = ordered_ids(120)
    documents = []
    for i in range(120):
        doc: dict[str, Any] = {
            "_id": ids[i],
            "coin_id": f"coin-{i % 4}",
            "timestamp": END - timedelta(hours=i // 3, milliseconds=i % 2 * 7),
        }
        for signal in SIGNALS:
            pick = rng.randrange(len(JUNK) + 2)  # the last two: the field is absent
            if pick < len(JUNK):
                doc[signal] = JUNK[pick]
        documents.append(doc)
    return documents


def _same(a: Any, b: Any) -> bool:
    """Equal value for value and type for type; NaN matches NaN, int matches Int64 (BSON int32/int64)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    kinds = {type(a), type(b)}
    return (len(kinds) == 1 or kinds <= {int, Int64}) and a == b


@pytest.mark.parametrize("relaxed", [False, True], ids=["canonical", "relaxed"])
def test_junk_values_come_back_as_the_driver_gives_them_and_frames_are_identical(server, store, relaxed, make_reader):
    # given documents carrying every kind of junk value, as canonical or relaxed Extended JSON answers
    store.insert_many(_junk_documents())
    server.force_relaxed = relaxed
    reader = make_reader(server.url, page_size=17)

    # when both backends read the same query
    over_http = reader.find(QUERY, PROJECTION)
    over_driver = list(DriverReader(store).find(QUERY, PROJECTION))

    # then each document is the driver's, value for value and type for type (int/Int64 alike)
    by_id = {d["_id"]: d for d in over_driver}
    assert len(over_http) == len(over_driver) == 120
    for doc in over_http:
        assert _same(doc, by_id[doc["_id"]]), doc
        assert doc["timestamp"].tzinfo is None
    # and the model's frames are identical
    expected = documents_to_history(over_driver, SIGNALS)
    actual = documents_to_history(over_http, SIGNALS)
    pdt.assert_frame_equal(actual.frame, expected.frame)
    assert (actual.read, actual.skipped) == (expected.read, expected.skipped)
    assert actual.frame[list(SIGNALS)].isna().any().all() and actual.frame[list(SIGNALS)].notna().any().all()


# ---- failures --------------------------------------------------------------------------------------------------------


def _seed_three(store) -> None:
    store.insert_many([{"coin_id": "a", "timestamp": END - timedelta(hours=h), "volume": float(h)} for h in range(3)])


@pytest.mark.parametrize("statuses", [[429], [500], [502, 503, 504]], ids=["429", "500", "502-503-504"])
def test_throttling_and_server_errors_are_retried_until_the_answer_comes(
    server, store, statuses, json_logs, make_reader
):
    _seed_three(store)
    server.statuses = list(statuses)
    reader = make_reader(server.url, page_size=5)

    documents = reader.find(QUERY, PROJECTION)

    assert len(documents) == 3
    assert len(server.requests) == len(statuses) + 2  # the failures, the page, the empty page
    retried = [line for line in json_logs.lines() if line["message"] == "Data API find retried"]
    assert [line["attempt"] for line in retried] == list(range(1, len(statuses) + 1))
    assert f"HTTP {statuses[0]}" in retried[0]["reason"]
    assert API_KEY not in json_logs.text


def _failure_message(server, store, make_reader, statuses: list[int], **reader_options: Any) -> str:
    """Seed three documents, answer the next requests with ``statuses``, return the reader's error message."""
    _seed_three(store)
    server.statuses = list(statuses)
    reader = make_reader(server.url, **reader_options)
    with pytest.raises(StoreUnavailable) as failure:
        reader.find(QUERY, PROJECTION)
    return str(failure.value)


def test_a_server_error_that_persists_fails_after_the_bounded_attempts(server, store, make_reader):
    message = _failure_message(server, store, make_reader, [500] * 10, max_attempts=3)

    assert "after 3 attempts" in message and "HTTP 500" in message
    assert API_KEY not in message
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_fails_at_once_with_a_clear_message_that_does_not_echo_it(server, store, status, make_reader):
    message = _failure_message(server, store, make_reader, [status])

    assert f"HTTP {status}" in message and "MONGODB_RSKYCLUSTER_DATA_API_KEY" in message
    assert API_KEY not in message
    assert len(server.requests) == 1  # not retried: another attempt cannot succeed


def test_the_server_checks_the_key(server, store, make_reader):
    _seed_three(store)
    reader = make_reader(server.url, MONGODB_RSKYCLUSTER_DATA_API_KEY="wrong-key")

    with pytest.raises(StoreUnavailable, match="HTTP 401"):
        reader.find(QUERY, PROJECTION)
    assert server.requests[0].headers["api-key"] == "wrong-key"


@pytest.mark.parametrize("status", [400, 404, 302])
def test_other_client_errors_fail_at_once_with_status_and_excerpt_but_never_the_key(server, store, status, make_reader):
    # given an endpoint whose error bodies echo the key it was sent
    message = _failure_message(server, store, make_reader, [status])

    assert f"HTTP {status}: " in message and f"forced {status} for api-key <api-key>" in message
    assert API_KEY not in message
    assert len(server.requests) == 1  # a redirect is not followed: the key goes nowhere else


def test_a_query_the_server_rejects_is_reported_with_the_servers_reason(server, store, make_reader):
    reader = make_reader(server.url)

    with pytest.raises(StoreUnavailable, match=r"HTTP 400: .*unknown operator: \$within_days"):
        reader.find({"timestamp": {"$within_days": 3}}, PROJECTION)
    assert len(server.requests) == 1


def test_a_slow_answer_times_out_and_is_retried(server, store, make_reader):
    _seed_three(store)
    server.delays_s = [1.0]
    reader = make_reader(server.url, MONGODB_DATA_API_TIMEOUT_MS="200")

    started = time.monotonic()
    documents = reader.find(QUERY, PROJECTION)

    assert len(documents) == 3 and time.monotonic() - started < 1.0
    assert len(server.requests) == 3


def test_an_endpoint_that_never_answers_in_time_fails_within_the_bound(server, store, make_reader):
    server.delays_s = [0.6] * 3
    reader = make_reader(server.url, max_attempts=3, MONGODB_DATA_API_TIMEOUT_MS="150")

    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="after 3 attempts: ReadTimeout"):
        reader.find(QUERY, PROJECTION)
    assert time.monotonic() - started < 3 * 0.15 + 1.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_endpoint_fails_after_retries_without_the_key(caplog, json_logs, make_reader):
    caplog.set_level(logging.DEBUG)
    reader = make_reader(f"http://127.0.0.1:{_closed_port()}", max_attempts=2)

    with pytest.raises(StoreUnavailable) as failure:
        reader.find(QUERY, PROJECTION)

    assert "after 2 attempts: ConnectionError" in str(failure.value)
    assert API_KEY not in str(failure.value) and API_KEY not in caplog.text and API_KEY not in json_logs.text


def test_a_success_status_with_a_body_that_is_not_extended_json_fails_clearly(server, store, monkeypatch, make_reader):
    reader = make_reader(server.url)
    monkeypatch.setattr(server, "_find", lambda body: [{"timestamp": {"$date": "yesterday"}}])

    with pytest.raises(StoreUnavailable, match="HTTP 200 with a body that is not Extended JSON"):
        reader.find(QUERY, PROJECTION)


# ---- the handler over the data_api backend ---------------------------------------------------------------------------


@pytest.fixture
def data_api_backend(server, monkeypatch):
    """Switch the handler's configuration to the data_api backend served by ``server``."""

    def switch(**overrides: str) -> None:
        for name, value in data_api_env(server.url, MONGODB_DATA_API_PAGE_SIZE="50", **overrides).items():
            monkeypatch.setenv(name, value)
        constants_helper.reset_settings()

    yield switch
    constants_helper.reset_settings()


def _flags(store) -> dict[Any, dict[str, Any]]:
    flags = {}
    for doc in store.find({"anomalies": {"$exists": True}}):
        anomalies = dict(doc["anomalies"])
        anomalies.pop("evaluated_at")
        flags[doc["_id"]] = anomalies
    return flags


def test_the_handler_writes_the_same_flags_over_either_backend(server, store, data_api_backend, lambda_context):
    # given synthetic coins (with junk values and planted anomalies) in the store the server reads
    documents, _ = synthetic_documents(coins=4, days=32, per_day=6, end=END, seed=11, missing_rate=0.05)
    store.insert_many(documents)
    event = sqs_event(
        {"as_of": END.isoformat()},
        {
            "since": (END - timedelta(days=2)).isoformat(),
            "as_of": END.isoformat(),
            "signals": ["volume", "latest_price", "market_cap_score"],
            "periods": [3, 7],
        },
    )

    # when the handler runs over the driver, then (flags cleared) over the Data API
    assert handler.handler(event, lambda_context) == {"batchItemFailures": []}
    over_driver = _flags(store)
    store.update_many({}, {"$unset": {"anomalies": ""}})
    data_api_backend()
    assert isinstance(get_reader(constants_helper.get_settings()), DataApiReader)
    assert handler.handler(event, lambda_context) == {"batchItemFailures": []}
    over_data_api = _flags(store)

    # then the very same flags were written, over many pages
    assert over_data_api == over_driver
    assert len(over_driver) >= 2 * 6 * 4  # two days of four coins at six a day, and the latest ones
    assert any(
        entry["is_anomaly"] for flags in over_driver.values() for signal in flags.values() for entry in signal.values()
    )
    assert len(server.requests) > 10


def test_over_the_data_api_a_failing_endpoint_fails_only_its_message_and_logs_no_key(
    server, store, data_api_backend, lambda_context, json_logs, caplog
):
    caplog.set_level(logging.DEBUG)
    _seed_three(store)
    data_api_backend()
    server.statuses = [401]
    event = sqs_event({"as_of": END.isoformat(), "coin_ids": ["a"]}, {"as_of": END.isoformat(), "coin_ids": ["a"]})

    response = handler.handler(event, lambda_context)

    assert failed_ids(response) == ["msg-0"]
    failure = json_logs.errors()[0]
    assert failure["message_id"] == "msg-0" and "HTTP 401" in failure["reason"]
    assert API_KEY not in json_logs.text and API_KEY not in caplog.text
    assert store.count_documents({"anomalies": {"$exists": True}}) == 1


# ---- what the function loads -----------------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MONGODB", "ANOMALY", "QUANTILE", "POWERTOOLS", "AWS_XRAY", "_X_AMZN", "LAMBDA_TASK"))
    }
    env.update(extra)
    return env


def test_in_a_traced_function_requests_loads_only_for_the_data_api_and_each_request_is_a_subsegment(server, store):
    # given a UDP listener standing in for the X-Ray daemon, and a function process with tracing on
    _seed_three(store)
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(0.2)
    script = (
        "import datetime, sys, handler\n"
        "from libs.helpers.constants_helper import load_settings\n"
        "from libs.helpers.mongodb_helper import get_reader\n"
        "get_reader(handler.settings)\n"
        "print('driver', 'requests' in sys.modules)\n"
        f"reader = get_reader(load_settings({data_api_env(server.url)!r}))\n"
        f"print('data_api', 'requests' in sys.modules, len(reader.find({QUERY!r}, {PROJECTION!r})))\n"
    )
    env = _clean_env(
        MONGODB_URI="mongomock://",
        LAMBDA_TASK_ROOT=str(REPO),
        POWERTOOLS_TRACE_DISABLED="false",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
        AWS_XRAY_CONTEXT_MISSING="LOG_ERROR",
        _X_AMZN_TRACE_ID="Root=1-672415a0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    try:
        # when the function starts on the driver backend, then reads through the Data API
        result = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        datagrams = []
        while True:
            try:
                datagrams.append(daemon.recv(65536).decode())
            except TimeoutError:
                break
    finally:
        daemon.close()

    # then requests was loaded only by the data_api backend
    assert result.stdout.split("\n")[:2] == ["driver False", "data_api True 3"]
    # and every request went out as a traced "remote" subsegment carrying the trace header, and no key
    subsegments = [json.loads(datagram.split("\n", 1)[1]) for datagram in datagrams]
    http = [s for s in subsegments if s.get("namespace") == "remote"]
    assert len(http) == len(server.requests) == 2
    assert {s["http"]["request"]["url"] for s in http} == {f"{server.url}/action/find"}
    assert all(s["http"]["request"]["method"] == "POST" and s["http"]["response"]["status"] == 200 for s in http)
    assert all("Root=1-672415a0-0123456789abcdef01234567" in r.headers["X-Amzn-Trace-Id"] for r in server.requests)
    assert not any(API_KEY in datagram for datagram in datagrams)
