"""A MongoDB wire-protocol endpoint on loopback, backed by the embedded (mongomock) store.

There is no MongoDB server here, and mongomock never touches pymongo's network
layer, so nothing that watches the driver's commands (pymongo's command
monitoring, and through it aws-xray-sdk's pymongo patch) ever fires against
it. This endpoint closes that gap honestly: a real ``MongoClient`` connects
to 127.0.0.1 over TCP, performs its handshake and sends real ``OP_MSG``
commands, which are answered from a mongomock collection. Only what the
service and its tests send is implemented (``hello``, ``ping``, ``find``,
``insert``, ``update``, ``createIndexes``, ``dropDatabase``, ``endSessions``,
``getMore`` and ``killCursors`` of canned cursors); authentication is always
refused, so a configuration with credentials meets a real auth failure.

Every command received is recorded with the number of documents it returned
or matched, an account kept by the server and independent of the client.

For tests of what a real server can send and a real client must survive:

* ``raw_documents`` maps an ``_id`` to pre-encoded BSON served in place of the
  stored document whenever a ``find`` returns it (the stored one only decides
  whether it matches), so a test can serve bytes pymongo cannot decode with its
  defaults: a date beyond year 9999, a string that is not valid UTF-8;
* ``delays_s`` holds the answer to a command back (``{"find": 60}``), as a slow
  or stuck server does; closing the server ends the wait and drops the socket;
* :meth:`serve_batches` answers ``find`` and ``getMore`` on one namespace from
  replies encoded once in advance, so that serving costs almost nothing and a
  benchmark measures the client (``bench/driver_socket.py``).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import bson
from bson.int64 import Int64
from bson.raw_bson import RawBSONDocument

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
MORE_TO_COME = 1 << 1
AUTH_COMMANDS = {"saslStart", "saslContinue", "authenticate"}


@dataclass
class ReceivedCommand:
    """One command as the server saw it."""

    name: str
    database: str
    collection: str | None
    documents: int  # returned by a find, inserted, or matched by an update


class WireMongoServer:
    """Serves ``mongodb://127.0.0.1:<port>/`` from ``client`` (a mongomock client) until closed."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.commands: list[ReceivedCommand] = []
        #: ``_id`` -> pre-encoded document sent in place of the stored one (see the module docstring).
        self.raw_documents: dict[Any, bytes] = {}
        #: Command name (lower case) -> seconds to wait before answering it.
        self.delays_s: dict[str, float] = {}
        self._canned: dict[str, list[bytes]] = {}  # "db.collection" -> OP_MSG bodies of the cursor's batches
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._connections = 0
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                server._serve(self.request)

        self._tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._tcp.daemon_threads = True
        self.port = self._tcp.server_address[1]
        self._thread = threading.Thread(target=self._tcp.serve_forever, name="wire-mongo", daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self._closing.set()
        self._tcp.shutdown()
        self._tcp.server_close()

    def serve_batches(self, database: str, collection: str, documents: list[bytes], batch_bytes: int = 4 << 20) -> int:
        """Answer every ``find`` on ``database.collection`` with ``documents`` (encoded BSON), whatever its filter.

        The cursor's replies are built here, once: the first batch answers
        ``find``, the next ones ``getMore`` (the cursor id names the batch to
        come), and each reply costs the server a header and one ``sendall``.
        ``update`` on the namespace answers as if every update matched.
        Returns the number of batches.
        """
        namespace = f"{database}.{collection}"
        groups: list[list[bytes]] = [[]]
        size = 0
        for document in documents:
            if size + len(document) > batch_bytes and groups[-1]:
                groups.append([])
                size = 0
            groups[-1].append(document)
            size += len(document)
        bodies = []
        for index, group in enumerate(groups):
            cursor_id = Int64(index + 1 if index + 1 < len(groups) else 0)
            key = "firstBatch" if index == 0 else "nextBatch"
            reply = {"cursor": {"id": cursor_id, "ns": namespace, key: [RawBSONDocument(d) for d in group]}, "ok": 1.0}
            bodies.append(struct.pack("<IB", 0, 0) + bson.encode(reply))
        self._canned[namespace] = bodies
        return len(bodies)

    def __enter__(self) -> WireMongoServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def received(self, name: str) -> list[ReceivedCommand]:
        return [command for command in self.commands if command.name == name]

    # -- the protocol ---------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections += 1
            connection_id = self._connections
        while True:
            header = _read_exactly(conn, 16)
            if header is None:
                return
            length, request_id, _, op_code = struct.unpack("<iiii", header)
            payload = _read_exactly(conn, length - 16)
            if payload is None:
                return
            if op_code == OP_QUERY:
                command = _parse_query(payload)
                reply = self._run(command, connection_id)
                conn.sendall(_op_reply(request_id, reply))
            elif op_code == OP_MSG:
                flags, command = _parse_msg(payload)
                if not self._hold_back(command):
                    return
                canned = self._canned_reply(command)
                if canned is not None:
                    conn.sendall(struct.pack("<iiii", 16 + len(canned), 0, request_id, OP_MSG))
                    conn.sendall(canned)
                    continue
                reply = self._run(command, connection_id)
                if not flags & MORE_TO_COME:
                    conn.sendall(_op_msg(request_id, reply))
            else:
                return

    def _hold_back(self, command: dict[str, Any]) -> bool:
        """Wait the command's configured delay; False when the server closed meanwhile (drop the socket)."""
        delay = self.delays_s.get(next(iter(command)).lower())
        return not (delay and self._closing.wait(delay))

    def _canned_reply(self, command: dict[str, Any]) -> bytes | None:
        if not self._canned:
            return None
        name = next(iter(command))
        database = command.get("$db", "admin")
        if name == "find":
            bodies, index = self._canned.get(f"{database}.{command['find']}"), 0
        elif name == "getMore":
            bodies, index = self._canned.get(f"{database}.{command.get('collection')}"), int(command["getMore"])
        elif name == "update" and f"{database}.{command['update']}" in self._canned:
            count = len(command.get("updates", []))
            with self._lock:
                self.commands.append(ReceivedCommand(name, database, command["update"], count))
            return struct.pack("<IB", 0, 0) + bson.encode({"n": count, "nModified": count, "ok": 1.0})
        else:
            return None
        if bodies is None or index >= len(bodies):
            return None
        with self._lock:
            self.commands.append(ReceivedCommand(name, database, None, 0))
        return bodies[index]

    def _run(self, command: dict[str, Any], connection_id: int) -> dict[str, Any]:
        name = next(iter(command))
        database = command.get("$db", "admin")
        handler = getattr(self, f"_cmd_{name.lower()}", None)
        if name in AUTH_COMMANDS:
            return {"ok": 0.0, "errmsg": "Authentication failed.", "code": 18, "codeName": "AuthenticationFailed"}
        if handler is None:
            return {"ok": 0.0, "errmsg": f"no such command: '{name}'", "code": 59, "codeName": "CommandNotFound"}
        with self._lock:
            reply, collection, documents = handler(command, database, connection_id)
            if name.lower() not in ("hello", "ismaster"):
                self.commands.append(ReceivedCommand(name, database, collection, documents))
        return reply

    def _collection(self, command: dict[str, Any], database: str) -> Any:
        return self.client[database][next(iter(command.values()))]

    def _cmd_hello(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, None, int]:
        reply = {
            "helloOk": True,
            "ismaster": True,
            "isWritablePrimary": True,
            "maxBsonObjectSize": 16 * 1024 * 1024,
            "maxMessageSizeBytes": 48_000_000,
            "maxWriteBatchSize": 100_000,
            "localTime": datetime.now(UTC),
            "logicalSessionTimeoutMinutes": 30,
            "connectionId": connection_id,
            "minWireVersion": 0,
            "maxWireVersion": 21,
            "readOnly": False,
            "ok": 1.0,
        }
        return reply, None, 0

    _cmd_ismaster = _cmd_hello

    def _cmd_ping(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, None, int]:
        return {"ok": 1.0}, None, 0

    _cmd_endsessions = _cmd_ping

    def _cmd_killcursors(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, None, int]:
        # Cursors here are stateless (a canned cursor's id names its next batch): nothing to free.
        return {"cursorsKilled": command.get("cursors", []), "ok": 1.0}, None, 0

    def _cmd_find(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, str, int]:
        collection = self._collection(command, database)
        cursor = collection.find(command.get("filter", {}), command.get("projection"))
        if command.get("sort"):
            cursor = cursor.sort(list(command["sort"].items()))
        if command.get("skip"):
            cursor = cursor.skip(command["skip"])
        if command.get("limit"):
            cursor = cursor.limit(abs(command["limit"]))
        documents = list(cursor)
        if self.raw_documents:
            documents = [self._raw_or(document) for document in documents]
        reply = {"cursor": {"id": Int64(0), "ns": f"{database}.{collection.name}", "firstBatch": documents}, "ok": 1.0}
        return reply, collection.name, len(documents)

    def _raw_or(self, document: dict[str, Any]) -> Any:
        try:
            raw = self.raw_documents.get(document.get("_id"))
        except TypeError:  # an unhashable _id has no raw stand-in
            return document
        return document if raw is None else RawBSONDocument(raw)

    def _cmd_insert(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, str, int]:
        collection = self._collection(command, database)
        documents = command.get("documents", [])
        if documents:
            collection.insert_many(documents)
        return {"n": len(documents), "ok": 1.0}, collection.name, len(documents)

    def _cmd_update(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, str, int]:
        collection = self._collection(command, database)
        matched = modified = 0
        for update in command.get("updates", []):
            apply = collection.update_many if update.get("multi") else collection.update_one
            result = apply(update["q"], update["u"], upsert=bool(update.get("upsert")))
            matched += result.matched_count
            modified += result.modified_count
        return {"n": matched, "nModified": modified, "ok": 1.0}, collection.name, matched

    def _cmd_dropdatabase(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, None, int]:
        self.client.drop_database(database)
        return {"ok": 1.0}, None, 0

    def _cmd_createindexes(self, command: dict[str, Any], database: str, connection_id: int) -> tuple[dict, str, int]:
        collection = self._collection(command, database)
        for index in command.get("indexes", []):
            collection.create_index(list(index["key"].items()), name=index.get("name"))
        return {"ok": 1.0}, collection.name, 0


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        try:
            chunk = conn.recv(size - len(chunks))
        except OSError:
            return None
        if not chunk:
            return None
        chunks.extend(chunk)
    return bytes(chunks)


def _cstring(data: bytes, start: int) -> tuple[str, int]:
    end = data.index(b"\x00", start)
    return data[start:end].decode(), end + 1


def _parse_query(payload: bytes) -> dict[str, Any]:
    """An ``OP_QUERY`` on ``<db>.$cmd`` (the driver's first handshake) as a command with ``$db``."""
    _, position = struct.unpack_from("<i", payload, 0)[0], 4
    namespace, position = _cstring(payload, position)
    position += 8  # numberToSkip, numberToReturn
    size = struct.unpack_from("<i", payload, position)[0]
    command = bson.decode(payload[position : position + size])
    command.setdefault("$db", namespace.split(".", 1)[0])
    return command


def _parse_msg(payload: bytes) -> tuple[int, dict[str, Any]]:
    """An ``OP_MSG``: the body section, with each document sequence added under its identifier."""
    flags = struct.unpack_from("<I", payload, 0)[0]
    position, end = 4, len(payload) - (4 if flags & 1 else 0)
    body: dict[str, Any] = {}
    sequences: dict[str, list[dict[str, Any]]] = {}
    while position < end:
        kind = payload[position]
        position += 1
        size = struct.unpack_from("<i", payload, position)[0]
        if kind == 0:
            body = bson.decode(payload[position : position + size])
        else:
            identifier, documents_start = _cstring(payload, position + 4)
            sequences[identifier] = bson.decode_all(payload[documents_start : position + size])
        position += size
    body.update(sequences)
    return flags, body


def _op_msg(response_to: int, reply: dict[str, Any]) -> bytes:
    document = bson.encode(reply)
    body = struct.pack("<IB", 0, 0) + document
    return struct.pack("<iiii", 16 + len(body), 0, response_to, OP_MSG) + body


def _op_reply(response_to: int, reply: dict[str, Any]) -> bytes:
    document = bson.encode(reply)
    body = struct.pack("<iqii", 0, 0, 0, 1) + document
    return struct.pack("<iiii", 16 + len(body), 0, response_to, OP_REPLY) + body
