"""Database faults to inject: collections that fail the way a real server can."""

from __future__ import annotations

from pymongo.errors import AutoReconnect


class Unreachable:
    """A collection whose server cannot be reached."""

    def find(self, *args, **kwargs):
        raise AutoReconnect("connection reset by peer")


class HalfWriting:
    """A collection that applies the first half of a bulk write, then loses the connection."""

    def __init__(self, collection) -> None:
        self._collection = collection
        self.written = 0

    def bulk_write(self, requests, ordered=False):
        half = requests[: max(1, len(requests) // 2)]
        self.written += self._collection.bulk_write(half, ordered=ordered).matched_count
        raise AutoReconnect("connection reset mid-write")
