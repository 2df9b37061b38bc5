"""What the Data API read path costs on top of the driver path, measured in one run.

    MONGODB_URI=mongomock:// .venv/bin/python -m bench.bench_data_api [--documents N] [--page-size P]

Seeds the embedded store with synthetic coins, serves it from the loopback
Data API endpoint of the tests, and times (best of three) the same history
query through the driver reader and through the Data API reader, then the
client-side Extended JSON decoding alone against ``documents_to_history`` on
the same documents. Ratios are against baselines measured in this run; the
absolute numbers depend on the machine and on mongomock, which dominates both
reads (a real server answers a paged, indexed query far faster).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

os.environ.setdefault("MONGODB_URI", "mongomock://")

from bson import json_util

from libs.helpers.constants_helper import SIGNALS, load_settings
from libs.helpers.data_api_helper import RESPONSE_JSON_OPTIONS, DataApiReader
from libs.helpers.mongodb_helper import DriverReader, get_collection
from libs.models.history import documents_to_history
from libs.tools.embedded_store import reset_embedded_store
from libs.tools.loopback.data_api_server import DataApiServer
from libs.tools.synthetic import synthetic_documents

END = datetime(2024, 11, 1)


def best_of(runs: int, work: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=5_000)
    args = parser.parse_args()

    reset_embedded_store()
    collection = get_collection()
    per_day, days = 24, 30
    coins = max(1, args.documents // (per_day * days))
    documents, _ = synthetic_documents(coins=coins, days=days, per_day=per_day, end=END, seed=1)
    collection.insert_many(documents)
    query = {"coin_id": {"$gt": ""}, "timestamp": {"$gt": END - timedelta(days=days), "$lte": END}}
    projection = {"_id": 1, "coin_id": 1, "timestamp": 1, **{signal: 1 for signal in SIGNALS}}

    server = DataApiServer(collection=collection, api_key="bench-key").start()
    try:
        settings = load_settings(
            {
                "MONGODB_URI": "mongomock://",
                "MONGODB_READ_BACKEND": "data_api",
                "MONGODB_DATA_API_URL": server.url,
                "MONGODB_RSKYCLUSTER_DATA_API_KEY": "bench-key",
                "MONGODB_RSKYCLUSTER_DATA_SOURCE": "bench",
                "MONGODB_DATA_API_PAGE_SIZE": str(args.page_size),
                "MONGODB_DATA_API_TIMEOUT_MS": "600000",
            }
        )
        reader = DataApiReader(settings)
        driver = DriverReader(collection)
        loaded = list(driver.find(query, projection))
        driver_s = best_of(3, lambda: list(driver.find(query, projection)))
        server.requests.clear()
        http_s = best_of(3, lambda: reader.find(query, projection))
        pages = len(server.requests) // 3
        reader.close()
    finally:
        server.stop()

    canonical = json_util.dumps({"documents": loaded}, json_options=json_util.CANONICAL_JSON_OPTIONS)
    decode_s = best_of(3, lambda: json_util.loads(canonical, json_options=RESPONSE_JSON_OPTIONS))
    frame_s = best_of(3, lambda: documents_to_history(loaded, SIGNALS))

    n = len(loaded)
    print(f"documents read: {n:,} ({coins} coins), Data API pages of {args.page_size:,}: {pages} requests")
    print(f"driver reader (mongomock):        {driver_s * 1000:9.1f} ms  (baseline)")
    print(f"Data API reader over loopback:    {http_s * 1000:9.1f} ms  x{http_s / driver_s:.2f}")
    print(
        f"client EJSON decode alone:        {decode_s * 1000:9.1f} ms  "
        f"({decode_s / n * 1e6:.1f} us/doc, {len(canonical) / n:.0f} bytes/doc)"
    )
    print(f"documents_to_history (baseline):  {frame_s * 1000:9.1f} ms  decode = x{decode_s / frame_s:.2f} of it")


if __name__ == "__main__":
    main()
