"""A stand-in X-Ray daemon: a UDP socket on 127.0.0.1 that keeps every datagram the SDK sends.

The SDK emits each finished (sub)segment as ``{"format": "json", "version": 1}``
and a newline, then the entity's JSON. In Lambda it streams subsegments one by
one with their ``parent_id``; a parent may also carry finished children
inline under ``subsegments``. :meth:`XRayDaemon.entities` flattens both forms
into one list, each entity with its ``parent_id``.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

HEADER = {"format": "json", "version": 1}


class XRayDaemon:
    """Listens on ``address`` (use it as ``AWS_XRAY_DAEMON_ADDRESS``) until closed."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self.datagrams: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="xray-daemon", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._socket.recvfrom(65_535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append(data)

    def close(self) -> None:
        """Stop listening, after draining what is already queued on the socket."""
        self._stop.set()
        self._thread.join()
        self._socket.close()

    def __enter__(self) -> XRayDaemon:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def entities(self) -> list[dict[str, Any]]:
        """Every segment and subsegment received, inline children flattened out."""
        found: list[dict[str, Any]] = []
        for datagram in self.datagrams:
            header, body = datagram.decode("utf-8").split("\n", 1)
            if json.loads(header) != HEADER:
                raise AssertionError(f"not an X-Ray datagram header: {header!r}")
            _flatten(json.loads(body), None, found)
        return found


def _flatten(entity: dict[str, Any], parent_id: str | None, found: list[dict[str, Any]]) -> None:
    children = entity.pop("subsegments", [])
    if parent_id is not None:
        entity.setdefault("parent_id", parent_id)
    found.append(entity)
    for child in children:
        _flatten(child, entity["id"], found)


def children(entities: list[dict[str, Any]], parent: dict[str, Any], name: str | None = None) -> list[dict[str, Any]]:
    """The entities whose parent is ``parent`` (optionally only those named ``name``), by start time."""
    found = [e for e in entities if e.get("parent_id") == parent["id"] and (name is None or e["name"] == name)]
    return sorted(found, key=lambda e: e["start_time"])


def descendants(entities: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    """Every entity below ``parent``, at any depth."""
    below = children(entities, parent)
    return below + [d for child in below for d in descendants(entities, child)]
