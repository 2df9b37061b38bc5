"""The MongoDB Data API read backend (``MONGODB_READ_BACKEND=data_api``).

Reads the scores over HTTPS with the Data API's ``find`` action and hands back
documents exactly as the driver would (naive UTC datetimes, ``Decimal128``,
NaN/±inf floats, ``ObjectId``, ``Int64``), so the model sees the same frame
from either backend. Writes never come here: the Data API has no bulk write,
so flags still go out through the driver (``mongodb_helper.write_updates``).

This module is the only one that imports ``requests``, and it is imported only
by the ``data_api`` factory in ``mongodb_helper.READERS``: the driver path of
the function never loads it.

Why it pages: an endpoint answers one ``find`` with a bounded number of
documents. The reader sorts by ``(timestamp, _id)`` and asks for the documents
after the last key it holds until a page comes back empty, so every document
arrives exactly once however many share a timestamp and whatever cap the
server applies below the requested ``limit``.

"After the last key" must hold across ``_id`` types too (a collection may mix
ObjectIds and strings): MongoDB's comparisons never match across types, so
``{_id: {$gt: last}}`` alone would drop every document of another type that
shares the boundary timestamp. The next page therefore asks, at the boundary
timestamp, for what is *not* ``<= last`` (same-type ids above it, and every id
of another type) less the ids of another type already received there
(:func:`after_key_filter`); that holds whatever order the server gives the
types, and costs nothing extra when ids are of one type.

Every request, its retries and its backoff are bounded by the message's store
budget when one is active (:mod:`libs.helpers.store_budget`): running out
raises :class:`~libs.errors.StoreTimeout`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import bson
import requests
import urllib3
from bson import json_util
from bson.errors import BSONError
from bson.json_util import JSONOptions

from libs.errors import StoreUnavailable
from libs.helpers.constants_helper import Settings
from libs.helpers.store_budget import budget_expired, remaining_s, timeout_error
from libs.observability import logger, tracer

#: Requests go out as relaxed Extended JSON: dates as {"$date": "…Z"}, ObjectIds as {"$oid": …}.
REQUEST_JSON_OPTIONS = json_util.RELAXED_JSON_OPTIONS
#: Answers decode as the driver decodes BSON: naive UTC datetimes, plain dicts.
RESPONSE_JSON_OPTIONS = JSONOptions(tz_aware=False, document_class=dict)
#: The page order; the pair is unique, so "after the last key" is well defined.
PAGE_SORT = {"timestamp": 1, "_id": 1}
#: Statuses worth another attempt: throttling and server-side failures.
RETRIED_STATUSES = frozenset({429}) | frozenset(range(500, 600))
#: How much of an error body goes into an error message.
BODY_EXCERPT_CHARS = 200
#: Bytes read at a time from an answer (the store budget is checked between reads).
BODY_CHUNK_BYTES = 1 << 18
#: What a Data API request is doing, for the store budget's error.
DOING = "reading history over the Data API"

DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 0.25
DEFAULT_MAX_BACKOFF_S = 4.0


class DataApiReader:
    """A :class:`~libs.helpers.mongodb_helper.Reader` over the Data API's ``find`` action.

    One ``requests.Session`` per reader keeps the TLS connection open across
    pages and invocations. Every request has a timeout (``data_api_timeout_ms``
    for connecting and for each read); 429, 5xx, timeouts and dropped
    connections are retried up to ``max_attempts`` times with exponential
    backoff (jittered, capped at ``max_backoff_s``, a numeric ``Retry-After``
    honoured within the cap). A message therefore waits at most about
    ``max_attempts × timeout + Σ backoff`` per page before it fails, and never
    longer than its store budget: under
    :func:`~libs.helpers.store_budget.store_budget` each request's timeout is
    cut to the time left, the body is read in chunks that stop at the deadline
    (a server trickling bytes cannot hold a read open past it by more than one
    read timeout), and a backoff that would end past the deadline is not
    slept: :class:`~libs.errors.StoreTimeout` is raised instead.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        max_backoff_s: float = DEFAULT_MAX_BACKOFF_S,
    ) -> None:
        if not settings.data_api_url or not settings.data_api_key or not settings.data_source:
            raise StoreUnavailable("the data_api backend needs its URL, key and data source configured")
        tracer.patch(("requests",))  # X-Ray subsegments for each request; a no-op when tracing is off
        self.endpoint = f"{settings.data_api_url}/action/find"
        self._key = settings.data_api_key
        self._namespace = {
            "dataSource": settings.data_source,
            "database": settings.database,
            "collection": settings.collection,
        }
        self.page_size = settings.data_api_page_size
        self._timeout_s = settings.data_api_timeout_ms / 1000
        self._max_attempts = max(1, max_attempts)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._session = requests.Session()
        self._session.headers.update(
            {"api-key": self._key, "Content-Type": "application/ejson", "Accept": "application/ejson"}
        )

    def __repr__(self) -> str:
        return f"DataApiReader(endpoint={self.endpoint!r}, page_size={self.page_size})"

    def close(self) -> None:
        """Close the session's pooled connections."""
        self._session.close()

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> list[dict[str, Any]]:
        """Every document matching ``query``, paged by ``(timestamp, _id)``.

        ``projection`` must keep ``_id`` and ``timestamp`` (the history query's
        does): they are the page key.
        """
        documents: list[dict[str, Any]] = []
        page_filter = query
        boundary: PageBoundary | None = None
        pages = 0
        while True:
            page = self._find_page(page_filter, projection)
            pages += 1
            if not page:
                break
            if boundary is not None and boundary.received(page[0]):
                raise StoreUnavailable(
                    "the Data API endpoint does not honour the find sort or filter: a page did not move past"
                    " the previous one"
                )
            documents.extend(page)
            boundary = PageBoundary.after(page, boundary)
            page_filter = after_key_filter(query, boundary.timestamp, boundary.last_id, boundary.other_type_ids())
        logger.debug("Data API find done", extra={"pages": pages, "documents": len(documents)})
        return documents

    def _find_page(self, page_filter: dict[str, Any], projection: dict[str, int]) -> list[dict[str, Any]]:
        body = json_util.dumps(
            {
                **self._namespace,
                "filter": page_filter,
                "projection": projection,
                "sort": PAGE_SORT,
                "limit": self.page_size,
            },
            json_options=REQUEST_JSON_OPTIONS,
        ).encode("utf-8")
        failure = ""
        for attempt in range(1, self._max_attempts + 1):
            retry_after: float | None = None
            timeout_s = self._timeout_within_budget_s(f"after {failure}" if failure else "")
            try:
                response = self._session.post(
                    self.endpoint, data=body, timeout=timeout_s, allow_redirects=False, stream=True
                )
                try:
                    content = self._read_body(response)
                finally:
                    response.close()
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                failure = f"{type(exc).__name__}: {self._scrub(str(exc))}"
                if budget_expired():
                    raise timeout_error(DOING, failure) from None
            except requests.RequestException as exc:
                raise StoreUnavailable(f"Data API find failed: {type(exc).__name__}: {self._scrub(str(exc))}") from None
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._documents(status, content)
                if status in (401, 403):
                    raise StoreUnavailable(
                        f"Data API refused the request (HTTP {status}): check MONGODB_RSKYCLUSTER_DATA_API_KEY and"
                        " the key's access to the data source, database and collection"
                    )
                if status not in RETRIED_STATUSES:
                    raise StoreUnavailable(f"Data API find failed: HTTP {status}: {self._excerpt(content)}")
                failure = f"HTTP {status}: {self._excerpt(content)}"
                retry_after = _retry_after_s(response)
            if attempt < self._max_attempts:
                delay = self._delay_s(attempt, retry_after)
                left = remaining_s()
                if left is not None and delay >= left:
                    raise timeout_error(DOING, f"no time left to retry after {failure}")
                logger.warning(
                    "Data API find retried",
                    extra={"attempt": attempt, "reason": failure, "retry_in_ms": round(delay * 1000)},
                )
                time.sleep(delay)
        raise StoreUnavailable(f"Data API find failed after {self._max_attempts} attempts: {failure}")

    def _timeout_within_budget_s(self, detail: str) -> float:
        """The configured timeout, cut to what is left of the store budget (StoreTimeout naming ``detail`` when nothing is)."""
        left = remaining_s()
        if left is None:
            return self._timeout_s
        if left <= 0:
            raise timeout_error(DOING, detail)
        return min(self._timeout_s, left)

    def _read_body(self, response: requests.Response) -> bytes:
        """The whole body; stops with StoreTimeout once the store budget has run out.

        Read with ``read1`` (at most one socket read per call, whatever arrived),
        each read's socket timeout cut to what is left of the budget:
        ``iter_content`` would fill a whole chunk first, so a server trickling a
        byte at a time, never quiet long enough for the read timeout, could hold
        it open for minutes past the deadline.
        """
        if getattr(response, "_content_consumed", False):  # requests read a redirect's body already
            return response.content
        raw = response.raw
        chunks: list[bytes] = []
        while True:
            self._cut_read_timeout(raw)
            try:
                chunk = raw.read1(BODY_CHUNK_BYTES, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError as exc:
                raise requests.exceptions.ReadTimeout(exc) from None
            except urllib3.exceptions.ProtocolError as exc:
                raise requests.exceptions.ChunkedEncodingError(exc) from None
            except urllib3.exceptions.HTTPError as exc:  # a body that does not decode, TLS trouble
                raise requests.exceptions.ContentDecodingError(exc) from None
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            if budget_expired():
                raise timeout_error(DOING, f"HTTP {response.status_code} body still arriving")

    def _cut_read_timeout(self, raw: Any) -> None:
        """Bound the next socket read of ``raw`` by what is left of the store budget (if one is active)."""
        if remaining_s() is None:
            return
        timeout_s = self._timeout_within_budget_s("body still arriving")
        sock = getattr(getattr(raw, "connection", None), "sock", None)
        if sock is not None:
            sock.settimeout(timeout_s)

    def _delay_s(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_backoff_s)
        ceiling = min(self._backoff_s * 2 ** (attempt - 1), self._max_backoff_s)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _documents(self, status: int, content: bytes) -> list[dict[str, Any]]:
        # JSON is UTF-8 (RFC 8259); response.text would guess the charset of a large body instead.
        try:
            payload = json_util.loads(content.decode("utf-8"), json_options=RESPONSE_JSON_OPTIONS)
        except (ValueError, TypeError, KeyError, OverflowError, BSONError) as exc:
            raise StoreUnavailable(
                f"Data API answered HTTP {status} with a body that is not Extended JSON"
                f" ({type(exc).__name__}): {self._excerpt(content)}"
            ) from None
        documents = payload.get("documents") if isinstance(payload, dict) else None
        if not isinstance(documents, list) or not all(isinstance(doc, dict) for doc in documents):
            raise StoreUnavailable(f"Data API answered without a list of documents: {self._excerpt(content)}")
        return documents

    def _excerpt(self, content: bytes) -> str:
        text = content[: BODY_EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
        return self._scrub(" ".join(text.split())[:BODY_EXCERPT_CHARS]) or "<empty body>"

    def _scrub(self, text: str) -> str:
        """``text`` without the api key, in case an endpoint or library echoes it."""
        return text.replace(self._key, "<api-key>") if self._key else text


def _page_key(document: dict[str, Any]) -> tuple[datetime, Any]:
    timestamp = document.get("timestamp")
    if not isinstance(timestamp, datetime) or "_id" not in document:
        raise StoreUnavailable("a Data API page ended with a document without a date timestamp and an _id")
    return timestamp, document["_id"]


def _identity(doc_id: Any) -> Any:
    """A hashable stand-in for an ``_id`` that tells BSON types apart (``True`` is not ``1`` there)."""
    if isinstance(doc_id, float) and doc_id != doc_id:
        return ("NaN",)
    try:
        hash(doc_id)
    except TypeError:  # a document or a Decimal128 _id: its encoding names it
        return bson.encode({"": doc_id})
    return (type(doc_id) is bool, doc_id)


@dataclass
class PageBoundary:
    """Where the last page ended: its timestamp, its last ``_id``, and every ``_id`` received at that timestamp."""

    timestamp: datetime
    last_id: Any
    seen: dict[Any, Any] = field(default_factory=dict)  # identity -> _id

    @classmethod
    def after(cls, page: list[dict[str, Any]], previous: PageBoundary | None) -> PageBoundary:
        """The boundary after ``page``; ids at a timestamp that spans pages accumulate."""
        timestamp, last_id = _page_key(page[-1])
        seen = previous.seen if previous is not None and previous.timestamp == timestamp else {}
        for document in reversed(page):  # only the page's tail shares the boundary timestamp
            if document.get("timestamp") != timestamp:
                break
            seen[_identity(document.get("_id"))] = document.get("_id")
        return cls(timestamp, last_id, seen)

    def received(self, document: dict[str, Any]) -> bool:
        """Whether ``document`` sorts at or before the boundary (a server that ignored the filter sent it)."""
        timestamp = document.get("timestamp")
        if not isinstance(timestamp, datetime):
            return False
        return timestamp < self.timestamp or (
            timestamp == self.timestamp and _identity(document.get("_id")) in self.seen
        )

    def other_type_ids(self) -> list[Any]:
        """Ids received at the boundary timestamp whose type differs from the last one's."""
        kind = type(self.last_id)
        return [doc_id for doc_id in self.seen.values() if type(doc_id) is not kind]


def after_key_filter(
    query: dict[str, Any], timestamp: datetime, doc_id: Any, received_other_types: list[Any] | None = None
) -> dict[str, Any]:
    """``query`` restricted to documents sorting after ``(timestamp, doc_id)``, across ``_id`` types.

    At ``timestamp`` a document comes next when its ``_id`` is not ``<= doc_id``:
    MongoDB compares only within a type, so that is the same-type ids above
    ``doc_id`` and every id of another type; the other-type ids already
    received there (``received_other_types``) are excluded by name. The
    ``$gte`` clause is implied by the ``$or``; it is there so that a server
    intersects it with the query's own timestamp range and scans only what is
    left of the index instead of the whole range on every page.
    """
    tie: dict[str, Any] = {"timestamp": timestamp, "$nor": [{"_id": {"$lte": doc_id}}]}
    if received_other_types:
        tie["_id"] = {"$nin": received_other_types}
    return {
        "$and": [
            query,
            {"timestamp": {"$gte": timestamp}},
            {"$or": [{"timestamp": {"$gt": timestamp}}, tie]},
        ]
    }


def _retry_after_s(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


_cached: tuple[Settings, DataApiReader] | None = None


def data_api_reader(settings: Settings) -> DataApiReader:
    """The container's reader for these settings (one session reused across invocations)."""
    global _cached
    if _cached is not None and _cached[0] == settings:
        return _cached[1]
    reset_data_api_reader()
    reader = DataApiReader(settings)
    _cached = (settings, reader)
    return reader


def reset_data_api_reader() -> None:
    """Close and forget the cached reader (tests, and after a configuration change)."""
    global _cached
    if _cached is not None:
        _cached[1].close()
    _cached = None
