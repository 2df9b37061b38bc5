"""The alerts step in latest mode: against the model on a quiet message, and against loading the documents
when every coin is inside an episode on every signal (contract §9 and §10).

With alerts on, a latest-mode message also finds which of its flags raise
their episode (libs/models/raises.py): the steps in ``ALERT_MEMORY_HOURS``
before each flag of level ≥ 1 are judged, each with its own window, and the
alerts are built (libs/alerts/build.py). Two figures, each timed against its
bar's baseline in the same run, interleaved, the median of ``reps``:

- *quiet*: the benchmark's latest-mode message (bench/dataset.py: 2,000 coins,
  an observation an hour, a few planted anomalies) against ``model.judge`` on
  it. Bar: at most 0.15x.
- *worst case*: the same coins with their last day pushed ever further from
  their windows on every signal, so every coin is inside a deepening episode
  on every signal and every step of the memory must be judged, against the
  same message's own load stage: pymongo reading the documents from the
  loopback wire-protocol endpoint into the model's frame, what loading costs
  the function. Bar: at most 1x. The in-memory loader alone (no socket, no
  BSON decoding) is timed beside it and its ratio printed too.

Wall clock is the figure, as for every other ratio here; for the quiet figure
the CPU-time ratio is printed beside it because these machines are shared.

    .venv/bin/python -m bench.alerts_step [--coins N] [--reps N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from libs.alerts.build import plan_alerts
from libs.helpers.constants_helper import SIGNALS
from libs.models.model import ModelParams, concat_results, judged_mask, signal_judges, sort_rows
from libs.models.raises import message_raises
from libs.models.severity import RaiseRules, SeverityScale

PERIODS = (3, 7, 30)
LOOKBACK_HOURS = 24
PARAMS = ModelParams(SIGNALS, PERIODS, 1.5, 4)
SCALE, RULES = SeverityScale(), RaiseRules()
QUIET_BAR, WORST_BAR = 0.15, 1.0


def _timed(call: Callable[[], Any]) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def _medians(first: Callable[[], Any], second: Callable[[], Any], reps: int) -> tuple[float, float, float, float]:
    """Median wall and CPU seconds of each, interleaved."""
    a, b = [], []
    for _ in range(reps):
        a.append(_timed(first))
        b.append(_timed(second))
    return (
        statistics.median(t[0] for t in a),
        statistics.median(t[0] for t in b),
        statistics.median(t[1] for t in a),
        statistics.median(t[1] for t in b),
    )


def _model(frame: pd.DataFrame, as_of: datetime) -> tuple[Any, pd.DataFrame]:
    judged = judged_mask(frame, as_of=as_of, since=None, lookback_hours=LOOKBACK_HOURS, coin_ids=None)
    rows = sort_rows(frame, judged, PERIODS)
    return rows, concat_results(judge_one() for _, judge_one in signal_judges(frame, rows, PARAMS))


def _alerts(frame: pd.DataFrame, rows: Any, results: pd.DataFrame) -> int:
    raises = message_raises(frame, rows, PARAMS, results, SCALE, RULES)
    return len(plan_alerts(raises, "bench", None).alerts)


def measure_quiet(frame: pd.DataFrame, as_of: datetime, reps: int = 5) -> dict[str, Any]:
    """The alerts step on the benchmark's message against the model on it."""
    rows, results = _model(frame, as_of)
    alerts_s, model_s, alerts_cpu, model_cpu = _medians(
        lambda: _alerts(frame, rows, results), lambda: _model(frame, as_of), reps
    )
    return {
        "judged_rows": int(rows.judged.sum()) if rows is not None else 0,
        "flags": int(results["is_anomaly"].fillna(False).sum()),
        "alerts": _alerts(frame, rows, results),
        "alerts_s": alerts_s,
        "model_s": model_s,
        "ratio": alerts_s / model_s,
        "cpu_ratio": alerts_cpu / model_cpu,
        "bar": f"<= {QUIET_BAR}",
    }


def deepening(documents: list[dict[str, Any]], as_of: datetime) -> list[dict[str, Any]]:
    """The documents with every coin's last day on every signal pushed further out each hour.

    Values within the memory before ``as_of`` are multiplied by 2, 4, 8, …
    (prices, volumes and market caps: ever higher on the log scale) or raised
    by 100, 200, … (scores and the index): every step there is flagged, at a
    level that keeps rising, so every coin is inside an episode on every
    signal and the raise rule must judge the whole memory.
    """
    start = as_of - timedelta(hours=RULES.memory_hours)
    pushed = []
    for doc in documents:
        stamp = doc.get("timestamp")
        if isinstance(stamp, datetime) and stamp > start:
            step = int((stamp - start) / timedelta(hours=1))
            doc = dict(doc)
            for signal in SIGNALS:
                value = doc.get(signal)
                if isinstance(value, float) and np.isfinite(value):
                    doc[signal] = value * 2.0**step if signal in SCALE_RATIO else value + 100.0 * step
        pushed.append(doc)
    return pushed


SCALE_RATIO = frozenset(("latest_price", "volume", "market_cap"))


class _TakingSns:
    """Takes every PublishBatch at once: what is timed is the function's own alerts work, not a network."""

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Successful": [{"Id": entry["Id"]} for entry in PublishBatchRequestEntries], "Failed": []}


def measure_worst(documents: list[dict[str, Any]], as_of: datetime, reps: int = 3) -> dict[str, Any]:
    """One latest-mode message with alerts on, every coin inside an episode on every signal, over a socket.

    The message runs as in the function (:func:`libs.processor.process_message`,
    the driver reading from the loopback wire-protocol endpoint, cap off), and
    its own ``load`` and ``alerts`` stages are compared; the in-memory loader
    on the same documents is timed beside them (no socket, no BSON decoding).
    """
    import json

    import bson
    import mongomock

    from libs.alerts import publish
    from libs.helpers import mongodb_helper
    from libs.helpers.constants_helper import load_settings
    from libs.helpers.mongodb_helper import READ_CODEC_OPTIONS
    from libs.models.history import documents_to_history
    from libs.processor import process_message
    from libs.tools.loopback.wire_mongo import WireMongoServer

    pushed = deepening(documents, as_of)
    raw = [bson.encode(document) for document in pushed]
    server = WireMongoServer(mongomock.MongoClient())
    publish._client = _TakingSns()
    try:
        server.serve_batches("risk", "scores", raw, batch_bytes=16 << 20)
        settings = load_settings(
            {
                "MONGODB_URI": server.uri,
                "MONGODB_RSKYCLUSTER_DATABASE": "risk",
                "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
                "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:bench",
                "ALERT_MAX_PER_MESSAGE": "100000",
            }
        )
        mongodb_helper.reset_client()
        body = json.dumps({"as_of": as_of.isoformat()})
        warm = process_message(body, "bench-alerts", settings, now=as_of)  # connection and handshake: once a container
        loads, alerts, loaders = [], [], []
        decoded = bson.decode_all(b"".join(raw), codec_options=READ_CODEC_OPTIONS)
        for _ in range(reps):
            gc.collect()
            summary = process_message(body, "bench-alerts", settings, now=as_of)
            loads.append(summary.stage_ms["load"] / 1000)
            alerts.append(summary.stage_ms["alerts"] / 1000)
            loaders.append(
                _timed(lambda: documents_to_history(decoded, SIGNALS, ids_since=as_of - timedelta(hours=24)))[0]
            )
    finally:
        publish.reset_sns_client()
        mongodb_helper.reset_client()
        server.close()
    load_s, alerts_s, loader_s = statistics.median(loads), statistics.median(alerts), statistics.median(loaders)
    return {
        "documents": warm.documents_read,
        "alerts": warm.alerts_published,
        "alerts_s": alerts_s,
        "load_s": load_s,
        "ratio": alerts_s / load_s,
        "loader_in_memory_s": loader_s,
        "ratio_to_loader_in_memory": alerts_s / loader_s,
        "bar": f"<= {WORST_BAR}",
    }


def main() -> None:
    from bench.dataset import AS_OF, Shape, documents
    from libs.models.history import documents_to_history

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=Shape().coins)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    # 32 days: the 30-day windows of the steps a day before as_of are whole
    docs = documents(Shape(coins=args.coins, days=32))
    frame = documents_to_history(docs, SIGNALS, ids_since=AS_OF - timedelta(hours=LOOKBACK_HOURS)).frame
    quiet = measure_quiet(frame, AS_OF, args.reps)
    del frame
    print(
        f"quiet: {args.coins:,} coins, {quiet['flags']:,} flags, {quiet['alerts']:,} alerts: "
        f"{quiet['alerts_s'] * 1000:.0f} ms vs model {quiet['model_s'] * 1000:.0f} ms = {quiet['ratio']:.3f}x "
        f"(CPU time {quiet['cpu_ratio']:.3f}x; bar {quiet['bar']})",
        flush=True,
    )
    worst = measure_worst(docs, AS_OF, max(1, args.reps // 2))
    print(
        f"worst case: {worst['alerts']:,} alerts: {worst['alerts_s']:.2f} s vs the message's load of "
        f"{worst['documents']:,} documents {worst['load_s']:.2f} s = {worst['ratio']:.3f}x (bar {worst['bar']}); "
        f"{worst['ratio_to_loader_in_memory']:.2f}x the in-memory loader alone ({worst['loader_in_memory_s']:.2f} s)"
    )


if __name__ == "__main__":
    main()
