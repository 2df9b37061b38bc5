"""The driver path over a socket: one latest-mode message, real pymongo, per-document cost as ratios.

    .venv/bin/python -m bench.driver_socket [--coins N]     (prints one JSON line)

The loopback wire-protocol endpoint (``libs/tools/loopback/wire_mongo.py``) serves the
benchmark dataset (``bench/dataset.py``) from cursor replies encoded once in
advance (:meth:`~libs.tools.loopback.wire_mongo.WireMongoServer.serve_batches`, 16 MiB
batches as a server sends them), so the endpoint costs a header and a
``sendall`` per batch and nearly everything measured is the client: pymongo
receiving and decoding the batches, the loader building the frame from the
streaming cursor, the model, the bulk write (answered from a canned reply).

Three things are timed in the same run on the same bytes, interleaved, as the
median of ``BENCH_REPS`` repetitions (default 3):

* the message: :func:`libs.processor.process_message` with the service's
  driver configuration (its ``load`` stage is the driver path);
* the floor: ``bson.decode_all`` of the same documents' bytes with the same
  codec options (what decoding alone costs; pymongo cannot do less);
* the in-memory loader: ``documents_to_history`` on the decoded documents
  (``bench/run.py``'s "Loading" figure, measured here on this dataset).

The ratios say what a document costs over the socket compared with each; the
load stage against decode + loader is the overhead of the cursor, the socket
and the protocol.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bson
import mongomock

from bench.dataset import AS_OF, Shape, latest_request_body, stream
from bench.timing import REPS
from libs.helpers import mongodb_helper
from libs.helpers.constants_helper import SIGNALS, load_settings
from libs.helpers.mongodb_helper import READ_CODEC_OPTIONS
from libs.models.history import documents_to_history
from libs.processor import MessageSummary, process_message
from libs.tools.loopback.wire_mongo import WireMongoServer

DATABASE, COLLECTION = "risk", "scores"
#: A server's getMore batches are at most 16 MiB.
BATCH_BYTES = 16 << 20
LOOKBACK_HOURS = 24


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def measure(coins: int = 1_000, reps: int = REPS) -> dict[str, Any]:
    """The figures for ``coins`` coins of the benchmark dataset (31 days, 24 a day)."""
    shape = Shape(coins=coins)
    raw = [bson.encode(document) for document in stream(shape)]
    payload = b"".join(raw)
    server = WireMongoServer(mongomock.MongoClient())
    try:
        batches = server.serve_batches(DATABASE, COLLECTION, raw, batch_bytes=BATCH_BYTES)
        del raw
        settings = load_settings(
            {
                "MONGODB_URI": server.uri,
                "MONGODB_RSKYCLUSTER_DATABASE": DATABASE,
                "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": COLLECTION,
            }
        )
        mongodb_helper.reset_client()
        body = json.dumps(latest_request_body())
        now = AS_OF + timedelta(minutes=5)

        def message() -> MessageSummary:
            return process_message(body, "bench-driver-socket", settings, now=now)

        warm = message()  # the connection and the handshake are paid once per container, not per message
        ids_since = AS_OF - timedelta(hours=LOOKBACK_HOURS)
        messages: list[float] = []
        loads: list[float] = []
        decodes: list[float] = []
        loaders: list[float] = []
        for _ in range(reps):
            seconds, summary = _timed(message)
            messages.append(seconds)
            loads.append(summary.stage_ms["load"] / 1000)
            seconds, documents = _timed(lambda: bson.decode_all(payload, codec_options=READ_CODEC_OPTIONS))
            decodes.append(seconds)
            seconds, _ = _timed(lambda: documents_to_history(documents, SIGNALS, ids_since=ids_since))
            loaders.append(seconds)
            del documents
    finally:
        mongodb_helper.reset_client()
        server.close()
    n = warm.documents_read
    message_s, load_s = statistics.median(messages), statistics.median(loads)
    decode_s, loader_s = statistics.median(decodes), statistics.median(loaders)
    return {
        "coins": coins,
        "documents": n,
        "bytes_per_document": round(len(payload) / n, 1),
        "batches": batches,
        "judged": warm.observations_judged,
        "written": warm.documents_written,
        "message_s": message_s,
        "load_s": load_s,
        "decode_all_s": decode_s,
        "loader_s": loader_s,
        "us_per_document": {
            "message": message_s / n * 1e6,
            "load_over_socket": load_s / n * 1e6,
            "decode_all": decode_s / n * 1e6,
            "loader_in_memory": loader_s / n * 1e6,
        },
        "load_vs_decode_all": load_s / decode_s,
        "load_vs_loader_in_memory": load_s / loader_s,
        "load_vs_decode_plus_loader": load_s / (decode_s + loader_s),
        "message_vs_decode_all": message_s / decode_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coins", type=int, default=1_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.coins), default=float))


if __name__ == "__main__":
    main()
