"""MongoDB access: the client, loading history and bulk-writing flags.

The only module that talks to the database. The client is created once per
container and reused by every invocation; ``serverSelectionTimeoutMS`` is
bounded so that an unreachable database fails a message within its budget.
Reading goes through a reader chosen by ``MONGODB_READ_BACKEND`` (the driver,
or the Data API over HTTP); writing always goes through the driver.
Every driver error becomes :class:`~libs.errors.StoreUnavailable`, whose
message never carries a credential or the connection string; under a
:func:`~libs.helpers.store_budget.store_budget` an operation cut by the budget
becomes :class:`~libs.errors.StoreTimeout` instead.

Values the driver cannot decode into Python (a BSON date beyond year 9999, a
string that is not valid UTF-8) must never fail a message (contract §2):
the scores collection is read with pymongo's own decoding options
(:data:`READ_CODEC_OPTIONS`), which turn them into ``DatetimeMS`` and strings
holding lone surrogates, and the loader treats those as missing or unusable.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pymongo
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, PyMongoError

from libs.errors import StoreUnavailable
from libs.helpers.constants_helper import EMBEDDED_STORE_MODULE, Settings, get_settings
from libs.helpers.store_budget import active_budget, driver_error, remaining_s, timeout_error
from libs.jsonvalues import floats_or_none
from libs.models.history import History, documents_to_history, usable_coin_id
from libs.request import RiskRequest

#: The index every history query is served by (contract §2).
HISTORY_INDEX = [("coin_id", ASCENDING), ("timestamp", ASCENDING)]
HISTORY_INDEX_NAME = "coin_id_1_timestamp_1"
#: Operations per bulk_write call (contract §5).
WRITE_BATCH_SIZE = 1_000

#: How the scores collection is decoded: as the client does (naive UTC datetimes), except that a date
#: outside Python's range comes back as ``bson.DatetimeMS`` and the bytes of a string that is not valid
#: UTF-8 as lone surrogates ("surrogateescape"), instead of ``InvalidBSON`` failing the whole cursor.
#: Lone surrogates never come out of valid UTF-8, so they mark exactly the undecodable strings
#: (pymongo's "replace" would make them indistinguishable from a stored U+FFFD).
READ_CODEC_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=False,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    unicode_decode_error_handler="surrogateescape",
)

_client: Any = None


def get_client(settings: Settings | None = None) -> Any:
    """The container's MongoClient (or the embedded store's), created on first use."""
    global _client
    settings = settings or get_settings()
    if settings.embedded:
        return importlib.import_module(EMBEDDED_STORE_MODULE).embedded_client()
    if _client is None:
        try:  # a mongodb+srv URI is resolved here: an SRV lookup that fails is a store outage like any other
            _client = MongoClient(
                settings.mongodb_uri,
                serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
                connectTimeoutMS=settings.connect_timeout_ms,
                socketTimeoutMS=settings.socket_timeout_ms,
                appname=settings.service_name,
                tz_aware=False,
                datetime_conversion=DatetimeConversion.DATETIME_AUTO,
            )
        except PyMongoError as exc:
            raise driver_error(exc, "setting up the client") from None
    return _client


def reset_client() -> None:
    """Close and forget the cached client (tests, and after a configuration change)."""
    global _client
    if _client is not None:
        _client.close()
    _client = None


def get_collection(settings: Settings | None = None) -> Collection:
    """The scores collection that the handler writes, and reads with the driver backend."""
    settings = settings or get_settings()
    database = get_client(settings)[settings.database]
    if settings.embedded:  # nothing is decoded from bytes there
        return database[settings.collection]
    return database.get_collection(settings.collection, codec_options=READ_CODEC_OPTIONS)


def ensure_indexes(collection: Collection | None = None) -> str:
    """Create the ``{coin_id: 1, timestamp: 1}`` index (idempotent); returns its name."""
    collection = collection if collection is not None else get_collection()
    try:
        return collection.create_index(HISTORY_INDEX, name=HISTORY_INDEX_NAME)
    except PyMongoError as exc:
        raise StoreUnavailable(f"could not create the index: {type(exc).__name__}: {exc}") from None


def history_query(
    request: RiskRequest, lookback_hours: int, *, memory_hours: float = 0
) -> tuple[dict[str, Any], dict[str, int]]:
    """Filter and projection of the one query a request needs.

    The filter spans exactly the time any judged window can reach (with
    ``memory_hours``, alerts on, also the windows of the steps in the memory
    before the judged rows: :meth:`RiskRequest.history_start`), and names
    ``coin_id`` first so the ``{coin_id, timestamp}`` index serves it; with no
    coin list, ``{"$gt": ""}`` matches every non-empty string id (what the
    model can use anyway) and still lets the index be used.
    """
    coins: dict[str, Any] = {"$in": list(request.coin_ids)} if request.coin_ids else {"$gt": ""}
    query = {
        "coin_id": coins,
        "timestamp": {
            "$gt": request.history_start(lookback_hours, memory_hours=memory_hours),
            "$lte": request.as_of,
        },
    }
    projection = {"_id": 1, "coin_id": 1, "timestamp": 1, **{signal: 1 for signal in request.signals}}
    return query, projection


def await_server(collection: Any, doing: str) -> None:
    """Under a store budget, wait for a server no longer than ``MONGODB_SERVER_SELECTION_TIMEOUT_MS``.

    Inside ``pymongo.timeout`` pymongo selects a server for as long as the
    whole budget lasts, ignoring ``serverSelectionTimeoutMS``: an unreachable
    database would cost every message its whole budget instead of one
    selection timeout. So when the client knows of no server it can use (a
    cold start, or after an outage was seen), a ``ping`` under the shorter of
    the two deadlines finds out first; a failure is the store being
    unreachable (:class:`~libs.errors.StoreUnavailable`), not the budget. A
    warm client with a known primary pays nothing. (The embedded store and test
    doubles have no topology and are let through.)
    """
    left = remaining_s()
    client = getattr(getattr(collection, "database", None), "client", None)
    if left is None or not isinstance(client, MongoClient) or client.topology_description.has_writable_server():
        return
    try:
        with pymongo.timeout(max(min(left, client.options.server_selection_timeout), 0.001)):
            collection.database.command("ping")  # the scores database: its trace reads like the find after it
    except PyMongoError as exc:
        raise driver_error(exc, doing) from None


class Reader(Protocol):
    """A read backend: runs one find and returns the documents as the driver would.

    The result may be a list or an iterator; the loader consumes it in
    chunks, so an iterator (a cursor) is never held in memory whole.
    """

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> Iterable[dict[str, Any]]: ...


class DriverReader:
    """Reads with pymongo's ``find`` on the scores collection, streaming the cursor."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> Iterator[dict[str, Any]]:
        try:
            await_server(self._collection, "reading history")
            cursor = self._collection.find(query, projection)
            yield from cursor
        except PyMongoError as exc:
            raise driver_error(exc, "reading history") from None


def _data_api_reader(settings: Settings) -> Reader:
    # Imported here so that requests is loaded only when this backend is configured.
    from libs.helpers.data_api_helper import data_api_reader

    return data_api_reader(settings)


#: Read backends by ``MONGODB_READ_BACKEND``; each takes the settings and returns a Reader.
READERS: dict[str, Callable[[Settings], Reader]] = {
    "driver": lambda settings: DriverReader(get_collection(settings)),
    "data_api": _data_api_reader,
}


def get_reader(settings: Settings | None = None) -> Reader:
    """The reader for the configured backend."""
    settings = settings or get_settings()
    try:
        factory = READERS[settings.read_backend]
    except KeyError:
        raise StoreUnavailable(f"read backend {settings.read_backend!r} is not available") from None
    return factory(settings)


def load_history(request: RiskRequest, settings: Settings, reader: Reader | None = None) -> History:
    """Everything the request's windows need, as the model's frame: one query.

    With alerts on, that includes what judging the steps of the alert memory needs (contract §9).

    ``_id`` is kept only for rows the request can judge (the others are
    window context and are never written).
    """
    memory_hours = settings.alert_memory_hours if settings.alerts_enabled else 0
    query, projection = history_query(request, settings.latest_lookback_hours, memory_hours=memory_hours)
    documents = (reader or get_reader(settings)).find(query, projection)
    judged_from, _ = request.judged_start(settings.latest_lookback_hours)
    return documents_to_history(documents, request.signals, ids_since=judged_from)


def build_updates(
    frame: pd.DataFrame, judged_rows: np.ndarray, results: pd.DataFrame, evaluated_at: datetime
) -> list[UpdateOne]:
    """One ``UpdateOne`` by ``_id`` per judged row, all its flags in one ``$set`` (contract §5)."""
    sets: dict[int, dict[str, Any]] = {int(row): {"anomalies.evaluated_at": evaluated_at} for row in judged_rows}
    for (signal, period), block in results.groupby(["signal", "period_days"], sort=False):
        field = f"anomalies.{signal}.{int(period)}d"
        columns = zip(
            block["row"].tolist(),
            block["is_anomaly"].to_numpy(dtype=object, na_value=None).tolist(),
            block["value"].tolist(),
            floats_or_none(block["q1"], infinite=True),
            floats_or_none(block["q3"], infinite=True),
            floats_or_none(block["lower"], infinite=True),
            floats_or_none(block["upper"], infinite=True),
            block["n"].tolist(),
            block["k"].tolist(),
        )
        for row, flag, value, q1, q3, lower, upper, n, k in columns:
            sets[row][field] = {
                "is_anomaly": flag,
                "value": value,
                "q1": q1,
                "q3": q3,
                "lower": lower,
                "upper": upper,
                "n": n,
                "k": k,
            }
    ids = frame["_id"].to_numpy()
    return [UpdateOne({"_id": ids[row]}, {"$set": fields}) for row, fields in sets.items()]


def write_updates(collection: Collection, updates: Iterable[UpdateOne]) -> int:
    """Send the updates as unordered ``bulk_write`` calls of at most 1,000; returns documents matched."""
    updates = list(updates)
    matched = 0
    if updates:
        await_server(collection, "writing flags")
    for start in range(0, len(updates), WRITE_BATCH_SIZE):
        batch = updates[start : start + WRITE_BATCH_SIZE]
        try:
            result = collection.bulk_write(batch, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            first = errors[0].get("errmsg", "") if errors else ""
            if exc.timeout and active_budget() is not None:  # the server gave up at the budget's maxTimeMS
                raise timeout_error("writing flags", f"{len(errors)} of {len(batch)} updates cut") from None
            raise StoreUnavailable(
                f"bulk write failed: {len(errors)} of {len(batch)} updates in batch {start // WRITE_BATCH_SIZE + 1}"
                f" rejected ({first[:200]})"
            ) from None
        except PyMongoError as exc:
            raise driver_error(exc, "writing flags") from None
        matched += result.matched_count
    return matched


def distinct_coin_ids(collection: Collection | None = None) -> list[str]:
    """Every non-empty string ``coin_id`` in the collection, sorted (the producer's default universe)."""
    collection = collection if collection is not None else get_collection()
    try:
        coins = collection.distinct("coin_id", {"coin_id": {"$gt": ""}})
    except PyMongoError as exc:
        raise StoreUnavailable(f"listing coins failed: {type(exc).__name__}: {exc}") from None
    return sorted(coin for coin in coins if usable_coin_id(coin))


def coin_documents(
    collection: Collection, coin_id: str, signal: str, *, after: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """One coin's observations of one signal with the flags written for it (the plot's data).

    ``after`` (exclusive) and ``until`` (inclusive) bound the timestamps when given.
    """
    projection = {"_id": 1, "coin_id": 1, "timestamp": 1, signal: 1, f"anomalies.{signal}": 1}
    query: dict[str, Any] = {"coin_id": coin_id}
    bounds = {name: moment for name, moment in (("$gt", after), ("$lte", until)) if moment is not None}
    if bounds:
        query["timestamp"] = bounds
    try:
        return list(collection.find(query, projection))
    except PyMongoError as exc:
        raise StoreUnavailable(f"reading coin {coin_id!r} failed: {type(exc).__name__}: {exc}") from None
