"""MongoDB access: the client, loading history and bulk-writing flags.

The only module that talks to the database. The client is created once per
container and reused by every invocation; ``serverSelectionTimeoutMS`` is
bounded so that an unreachable database fails a message within its budget.
Reading goes through a reader chosen by ``MONGODB_READ_BACKEND`` (the driver,
or the Data API over HTTP); writing always goes through the driver.
Every driver error becomes :class:`~libs.errors.StoreUnavailable`, whose
message never carries a credential or the connection string.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, PyMongoError

from libs.errors import StoreUnavailable
from libs.helpers.constants_helper import Settings, get_settings
from libs.models.history import History, documents_to_history
from libs.request import RiskRequest

#: The index every history query is served by (SPEC section 2).
HISTORY_INDEX = [("coin_id", ASCENDING), ("timestamp", ASCENDING)]
HISTORY_INDEX_NAME = "coin_id_1_timestamp_1"
#: Operations per bulk_write call (SPEC section 5).
WRITE_BATCH_SIZE = 1_000

_client: Any = None


def get_client(settings: Settings | None = None) -> Any:
    """The container's MongoClient (or the embedded store's), created on first use."""
    global _client
    settings = settings or get_settings()
    if settings.embedded:
        from libs.helpers.embedded_store import embedded_client

        return embedded_client()
    if _client is None:
        try:  # a mongodb+srv URI is resolved here: an SRV lookup that fails is a store outage like any other
            _client = MongoClient(
                settings.mongodb_uri,
                serverSelectionTimeoutMS=settings.server_selection_timeout_ms,
                connectTimeoutMS=settings.connect_timeout_ms,
                socketTimeoutMS=settings.socket_timeout_ms,
                appname=settings.service_name,
                tz_aware=False,
            )
        except PyMongoError as exc:
            raise StoreUnavailable(f"could not set up the client: {type(exc).__name__}: {exc}") from None
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
    return get_client(settings)[settings.database][settings.collection]


def ensure_indexes(collection: Collection | None = None) -> str:
    """Create the ``{coin_id: 1, timestamp: 1}`` index (idempotent); returns its name."""
    collection = collection if collection is not None else get_collection()
    try:
        return collection.create_index(HISTORY_INDEX, name=HISTORY_INDEX_NAME)
    except PyMongoError as exc:
        raise StoreUnavailable(f"could not create the index: {type(exc).__name__}: {exc}") from None


def history_query(
    request: RiskRequest, lookback_hours: int, *, previous_steps: bool = False
) -> tuple[dict[str, Any], dict[str, int]]:
    """Filter and projection of the one query a request needs.

    The filter spans exactly the time any judged window can reach (with
    ``previous_steps``, alerts on, also the windows of the judged rows'
    previous steps: :meth:`RiskRequest.history_start`), and names
    ``coin_id`` first so the ``{coin_id, timestamp}`` index serves it; with no
    coin list, ``{"$gt": ""}`` matches every non-empty string id (what the
    model can use anyway) and still lets the index be used.
    """
    coins: dict[str, Any] = {"$in": list(request.coin_ids)} if request.coin_ids else {"$gt": ""}
    query = {
        "coin_id": coins,
        "timestamp": {
            "$gt": request.history_start(lookback_hours, previous_steps=previous_steps),
            "$lte": request.as_of,
        },
    }
    projection = {"_id": 1, "coin_id": 1, "timestamp": 1, **{signal: 1 for signal in request.signals}}
    return query, projection


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
            cursor = self._collection.find(query, projection)
            yield from cursor
        except PyMongoError as exc:
            raise StoreUnavailable(f"reading history failed: {type(exc).__name__}: {exc}") from None


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

    With alerts on, that includes what judging the previous steps needs (SPEC section 9).

    ``_id`` is kept only for rows the request can judge (the others are
    window context and are never written).
    """
    query, projection = history_query(request, settings.latest_lookback_hours, previous_steps=settings.alerts_enabled)
    documents = (reader or get_reader(settings)).find(query, projection)
    judged_from, _ = request.judged_start(settings.latest_lookback_hours)
    return documents_to_history(documents, request.signals, ids_since=judged_from)


def _or_none(values: np.ndarray) -> list[Any]:
    return [None if v != v else v for v in values.tolist()]


def build_updates(
    frame: pd.DataFrame, judged_rows: np.ndarray, results: pd.DataFrame, evaluated_at: datetime
) -> list[UpdateOne]:
    """One ``UpdateOne`` by ``_id`` per judged row, all its flags in one ``$set`` (SPEC section 5)."""
    sets: dict[int, dict[str, Any]] = {int(row): {"anomalies.evaluated_at": evaluated_at} for row in judged_rows}
    for (signal, period), block in results.groupby(["signal", "period_days"], sort=False):
        field = f"anomalies.{signal}.{int(period)}d"
        columns = zip(
            block["row"].tolist(),
            block["is_anomaly"].to_numpy(dtype=object, na_value=None).tolist(),
            block["value"].tolist(),
            _or_none(block["q1"].to_numpy()),
            _or_none(block["q3"].to_numpy()),
            _or_none(block["lower"].to_numpy()),
            _or_none(block["upper"].to_numpy()),
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
    for start in range(0, len(updates), WRITE_BATCH_SIZE):
        batch = updates[start : start + WRITE_BATCH_SIZE]
        try:
            result = collection.bulk_write(batch, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            first = errors[0].get("errmsg", "") if errors else ""
            raise StoreUnavailable(
                f"bulk write failed: {len(errors)} of {len(batch)} updates in batch {start // WRITE_BATCH_SIZE + 1}"
                f" rejected ({first[:200]})"
            ) from None
        except PyMongoError as exc:
            raise StoreUnavailable(f"writing flags failed: {type(exc).__name__}: {exc}") from None
        matched += result.matched_count
    return matched


def distinct_coin_ids(collection: Collection | None = None) -> list[str]:
    """Every non-empty string ``coin_id`` in the collection, sorted (the producer's default universe)."""
    collection = collection if collection is not None else get_collection()
    try:
        coins = collection.distinct("coin_id", {"coin_id": {"$gt": ""}})
    except PyMongoError as exc:
        raise StoreUnavailable(f"listing coins failed: {type(exc).__name__}: {exc}") from None
    return sorted(coin for coin in coins if isinstance(coin, str) and coin)


def coin_documents(collection: Collection, coin_id: str, signal: str) -> list[dict[str, Any]]:
    """One coin's observations of one signal with the flags written for it (the plot's data)."""
    projection = {"_id": 1, "coin_id": 1, "timestamp": 1, signal: 1, f"anomalies.{signal}": 1}
    try:
        return list(collection.find({"coin_id": coin_id}, projection))
    except PyMongoError as exc:
        raise StoreUnavailable(f"reading coin {coin_id!r} failed: {type(exc).__name__}: {exc}") from None
