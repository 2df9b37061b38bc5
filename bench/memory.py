"""Peak memory of one latest-mode message, from loading to the last bulk write, in its own process.

Run as ``python -m bench.memory COINS``; prints one JSON line. Documents are
generated a batch of coins at a time and handed to the loader as a cursor
would hand them (nothing holds them all), and writes go to a collection that
only counts them: mongomock is far too slow at this size, and what is
measured is this process's own memory. The peak is the kernel's ``VmHWM``
(peak resident set of this process image); ``ru_maxrss`` is not used because
Linux carries it over ``exec`` from the parent, so a child of a big process
would report its parent's peak.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from collections.abc import Iterable
from typing import Any

from bench.dataset import AS_OF, Shape, latest_request_body, stream


def _rss_mb() -> float:
    """Peak resident set size of this process image, in MB."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StreamingReader:
    """Hands over the synthetic documents as a cursor does: one batch at a time."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.queries = 0

    def find(self, query: dict[str, Any], projection: dict[str, int]) -> Iterable[dict[str, Any]]:
        self.queries += 1
        return stream(self.shape)


class CountingCollection:
    """Takes bulk writes and only counts them."""

    def __init__(self) -> None:
        self.calls = 0
        self.updates = 0

    def bulk_write(self, requests: list[Any], ordered: bool = True) -> Any:
        self.calls += 1
        self.updates += len(requests)

        class Result:
            matched_count = len(requests)

        return Result()


def main(argv: list[str]) -> int:
    coins = int(argv[0]) if argv else 2_000
    from libs.helpers.constants_helper import load_settings
    from libs.processor import process_message

    gc.collect()
    baseline = _rss_mb()
    settings = load_settings(
        {
            "MONGODB_URI": "mongodb://127.0.0.1:1/",
            "MONGODB_RSKYCLUSTER_DATABASE": "risk",
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
        }
    )
    reader, collection = StreamingReader(Shape(coins=coins)), CountingCollection()
    started = time.perf_counter()
    summary = process_message(
        json.dumps(latest_request_body()), "bench-memory", settings, now=AS_OF, reader=reader, collection=collection
    )
    print(
        json.dumps(
            {
                "coins": coins,
                "documents": summary.documents_read,
                "peak_rss_mb": round(_rss_mb(), 1),
                "rss_after_imports_mb": round(baseline, 1),
                "seconds_with_generation": round(time.perf_counter() - started, 2),
                "stage_ms": summary.stage_ms,
                "read_queries": reader.queries,
                "bulk_writes": collection.calls,
                "updates": collection.updates,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
