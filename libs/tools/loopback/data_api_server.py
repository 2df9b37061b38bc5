"""A MongoDB Data API endpoint on 127.0.0.1 that serves ``find`` from a mongomock collection.

Real HTTP (the standard library's threading server, HTTP/1.1 keep-alive) so
that the reader's session, timeouts, headers and retries meet a real socket.
It speaks the part of the Data API the service uses: ``POST /action/find``
with an ``api-key`` header and an Extended JSON body (``dataSource``,
``database``, ``collection``, ``filter``, ``projection``, ``sort``, ``limit``),
answering ``{"documents": [...]}`` in canonical Extended JSON when asked for
``application/ejson`` and relaxed otherwise, as the hosted API did.

Failure modes for tests: ``statuses`` answers the next requests with those
HTTP statuses (one per request) before serving normally; ``delays_s`` holds
the next answers back (stopping the server ends the wait and drops the answer); ``max_page`` caps every answer below the requested
``limit``; ``force_relaxed`` answers relaxed Extended JSON whatever is asked; ``trickle_s`` sends
each answer's headers at once and then its body one byte every ``trickle_s`` seconds (a server that
never goes quiet long enough for a read timeout, yet takes minutes to answer).
Forced error bodies echo the api key the request presented, the worst thing a
server can do, so tests can prove the client never repeats it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bson import json_util
from bson.json_util import JSONOptions
from pymongo.errors import OperationFailure

DECODE_OPTIONS = JSONOptions(tz_aware=False, document_class=dict)
DEFAULT_LIMIT = 1000


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    raw_body: str
    body: dict[str, Any] | None


@dataclass
class DataApiServer:
    """The endpoint's state; ``start()`` serves it on an ephemeral loopback port."""

    collection: Any
    api_key: str
    max_page: int | None = None
    statuses: list[int] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)
    force_relaxed: bool = False
    trickle_s: float | None = None
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> DataApiServer:
        self._stopping.clear()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="data-api-server", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def finds(self) -> list[dict[str, Any]]:
        """The decoded bodies of the find requests received so far."""
        return [r.body for r in self.requests if r.body is not None]

    def _next(self, queue: list[Any]) -> Any:
        with self._lock:
            return queue.pop(0) if queue else None

    def _find(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        limit = int(body.get("limit") or DEFAULT_LIMIT)
        if self.max_page is not None:
            limit = min(limit, self.max_page)
        with self._lock:  # mongomock is not meant for concurrent use
            cursor = self.collection.find(body.get("filter") or {}, body.get("projection") or None)
            if body.get("sort"):
                cursor = cursor.sort(list(body["sort"].items()))
            return list(cursor.limit(limit))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out closes its socket before a delayed answer: expected in tests.
        pass


def _handler_for(server: DataApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body leave at once, no delayed-ACK stall per answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(
            self,
            status: int,
            payload: str,
            content_type: str = "application/json",
            headers: dict[str, str] | None = None,
        ) -> None:
            data = payload.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if not server.trickle_s:
                self.wfile.write(data)
                return
            for at in range(len(data)):
                if server._stopping.wait(server.trickle_s):
                    self.close_connection = True
                    return
                try:
                    self.wfile.write(data[at : at + 1])
                except OSError:  # the client gave up: expected
                    self.close_connection = True
                    return

        def _error(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
            self._answer(status, json.dumps({"error": message, "error_code": code}), headers=headers)

        def do_GET(self) -> None:
            server.requests.append(RecordedRequest("GET", self.path, dict(self.headers), "", None))
            self._error(405, "use POST", "MethodNotAllowed")

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
            try:
                body = json_util.loads(raw, json_options=DECODE_OPTIONS)
            except Exception:
                body = None
            server.requests.append(RecordedRequest("POST", self.path, dict(self.headers), raw, body))
            delay = server._next(server.delays_s)
            if delay and server._stopping.wait(delay):
                self.close_connection = True
                return
            presented = self.headers.get("api-key", "")
            forced = server._next(server.statuses)
            if forced is not None:
                headers = {"Retry-After": "0"} if forced == 429 else {}
                if forced in (301, 302, 307, 308):
                    headers["Location"] = f"{server.url}/action/find"
                self._error(forced, f"forced {forced} for api-key {presented}", f"Forced{forced}", headers)
                return
            if presented != server.api_key:
                self._error(401, "invalid session: no user found for this api-key", "InvalidSession")
                return
            if self.path != "/action/find":
                self._error(404, f"no action at {self.path}", "NotFound")
                return
            if not isinstance(body, dict) or not all(body.get(k) for k in ("dataSource", "database", "collection")):
                self._error(
                    400, "invalid request: dataSource, database and collection are required", "InvalidParameter"
                )
                return
            try:
                documents = server._find(body)
            except OperationFailure as exc:
                self._error(400, f"(BadValue) {exc}", "InvalidParameter")
                return
            canonical = "application/ejson" in (self.headers.get("Accept") or "") and not server.force_relaxed
            options = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
            content_type = "application/ejson" if canonical else "application/json"
            self._answer(200, json_util.dumps({"documents": documents}, json_options=options), content_type)

    return Handler
