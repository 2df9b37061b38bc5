"""``make bench``: every figure of docs/performance.md, a table, and bench/results.json.

Each ratio compares two things measured in the same run on the same data,
interleaved, as the median of ``BENCH_REPS`` repetitions (default 3): these
machines are shared, so absolute seconds drift while ratios hold. Memory and
cold start run in fresh processes. Nothing here is asserted; the bars are
printed next to the figures.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import subprocess
import sys
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import alerts_step, backtest_year, baselines, coldstart, driver_socket, episodes_build
from bench.dataset import AS_OF, KEYS, Shape, documents
from bench.timing import REPS, median_pair
from libs.helpers.constants_helper import SIGNALS
from libs.models.history import documents_to_history
from libs.models.model import ModelParams, judge, judged_mask

RESULTS = Path(__file__).resolve().parent / "results.json"
PERIODS = (3, 7, 30)
LOOKBACK_HOURS = 24
PARAMS = ModelParams(SIGNALS, PERIODS, 1.5, 4)


def _machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "libraries": {
            name: version(name) for name in ("numpy", "pandas", "pymongo", "aws-lambda-powertools", "aws-xray-sdk")
        },
        "load_average": os.getloadavg(),
    }


def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    judged = judged_mask(frame, as_of=AS_OF, since=None, lookback_hours=LOOKBACK_HOURS, coin_ids=None)
    return judge(frame, judged, PARAMS)


def _range(frame: pd.DataFrame, since: Any) -> pd.DataFrame:
    judged = judged_mask(frame, as_of=AS_OF, since=since, lookback_hours=LOOKBACK_HOURS, coin_ids=None)
    return judge(frame, judged, PARAMS)


def _naive_agrees(results: pd.DataFrame, frame: pd.DataFrame, naive: dict) -> bool:
    coins = frame["coin_id"].to_numpy()[results["row"].to_numpy()]
    for coin, signal, period, q1, q3 in zip(
        coins, results["signal"], results["period_days"], results["q1"], results["q3"]
    ):
        expected = naive.get((coin, signal, period))
        if (expected is None) != np.isnan(q1) or (expected is not None and expected != (q1, q3)):
            return False
    return True


def _memory(coins: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", str(coins)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    results: dict[str, Any] = {"machine": _machine(), "repetitions": REPS}
    shape = Shape()
    gc.disable()
    started = time.perf_counter()
    docs = documents(shape)
    gc.collect()
    gc.freeze()  # the documents are long-lived: keep the collector from rescanning them
    gc.enable()
    results["dataset"] = {
        "coins": shape.coins,
        "days": shape.days,
        "per_day": shape.per_day,
        "seed": shape.seed,
        "documents": len(docs),
        "generated_s": round(time.perf_counter() - started, 2),
    }
    print(f"dataset: {len(docs):,} documents in {results['dataset']['generated_s']} s", flush=True)

    ids_since = AS_OF - timedelta(hours=LOOKBACK_HOURS)
    load_s, records_s = median_pair(
        lambda: documents_to_history(docs, SIGNALS, ids_since=ids_since),
        lambda: pd.DataFrame.from_records(docs, columns=list(KEYS)),
    )
    frame = documents_to_history(docs, SIGNALS, ids_since=ids_since).frame
    del docs
    gc.unfreeze()
    gc.collect()
    results["loading"] = {
        "seconds": load_s,
        "documents_per_s": shape.documents / load_s,
        "from_records_s": records_s,
        "ratio": load_s / records_s,
        "bar": "<= 1.0",
    }
    print(f"loading: {load_s:.2f} s vs from_records {records_s:.2f} s", flush=True)

    judged = judged_mask(frame, as_of=AS_OF, since=None, lookback_hours=LOOKBACK_HOURS, coin_ids=None)
    windows = baselines.locate_latest_windows(frame, judged, PERIODS)
    latest_s, bound_s = median_pair(
        lambda: _latest(frame), lambda: baselines.numpy_latest_bound(frame, windows, SIGNALS)
    )
    results["latest"] = {
        "seconds": latest_s,
        "numpy_bound_s": bound_s,
        "ratio": latest_s / bound_s,
        "judged_rows": int(judged.sum()),
        "bar": "<= 1.5",
    }
    print(f"latest: {latest_s:.2f} s vs numpy bound {bound_s:.2f} s", flush=True)

    results["alerts_quiet"] = quiet = alerts_step.measure_quiet(frame, AS_OF, REPS)
    print(f"alerts step, quiet: {quiet['alerts_s'] * 1000:.0f} ms vs model {quiet['model_s']:.2f} s", flush=True)

    subset = frame[frame["coin_id"].isin(frame["coin_id"].unique()[:200])].reset_index(drop=True)
    subset_s, _ = median_pair(lambda: _latest(subset), lambda: None)
    started = time.perf_counter()
    naive = baselines.naive_latest(subset, AS_OF, LOOKBACK_HOURS, SIGNALS, PERIODS, PARAMS.min_observations)
    naive_s = time.perf_counter() - started
    results["latest_vs_naive"] = {
        "coins": 200,
        "seconds": subset_s,
        "naive_s": naive_s,
        "speedup": naive_s / subset_s,
        "agrees": _naive_agrees(_latest(subset), subset, naive),
        "bar": ">= 100",
    }
    print(f"latest, 200 coins: {subset_s:.3f} s vs naive loop {naive_s:.1f} s", flush=True)

    since = AS_OF - timedelta(days=7)
    range_s, primitive_s = median_pair(
        lambda: _range(frame, since), lambda: baselines.pandas_range_primitive(frame, since, SIGNALS, PERIODS)
    )
    judged_range = judged_mask(frame, as_of=AS_OF, since=since, lookback_hours=LOOKBACK_HOURS, coin_ids=None)
    results["range"] = {
        "seconds": range_s,
        "pandas_primitive_s": primitive_s,
        "ratio": range_s / primitive_s,
        "judged_rows": int(judged_range.sum()),
        "bar": "<= 1.3",
    }
    print(f"range: {range_s:.2f} s vs pandas groupby-rolling {primitive_s:.2f} s", flush=True)
    del frame, subset

    results["backtest_year"] = year = backtest_year.measure(reps=REPS)
    print(f"backtest, a year of 50 coins hourly: {year['seconds']:.2f} s vs pandas {year['pandas_primitive_s']:.2f} s")

    results["alerts_worst"] = worst = alerts_step.measure_worst(documents(Shape(coins=500, days=32)), AS_OF, REPS)
    print(f"alerts step, worst case: {worst['ratio']:.2f}x the message's load over a socket", flush=True)

    results["driver_socket"] = driver_socket.measure()
    print(f"driver over a socket: load {results['driver_socket']['load_vs_decode_all']:.2f}x decode_all", flush=True)

    results["memory"] = {str(coins): _memory(coins) for coins in (2_000, 5_000)}
    results["memory"]["bar"] = "5,000 coins <= 700 MB"
    print(
        "memory: " + ", ".join(f"{c} coins {m['peak_rss_mb']} MB" for c, m in results["memory"].items() if c != "bar"),
        flush=True,
    )

    results["episodes_build"] = {**episodes_build.measure(), "bar": "<= 0.5"}
    print(f"report episodes: build {results['episodes_build']['ratio']:.2f}x loading the entries", flush=True)

    results["cold_start"] = {**coldstart.measure(), "bar": "<= 1.15"}
    RESULTS.write_text(json.dumps(results, indent=2, default=float))
    print()
    print(table(results))
    print(f"\nwritten to {RESULTS}")
    return 0


def table(results: dict[str, Any]) -> str:
    """The table of docs/performance.md, from a results dict."""
    memory = results["memory"]
    rows = [
        (
            "Latest mode, model only (2,000 coins)",
            f"{results['latest']['seconds']:.2f} s",
            f"{results['latest']['ratio']:.2f}× the numpy nanpercentile bound",
            "≤ 1.5×",
        ),
        (
            "Alerts step, latest mode, quiet message (2,000 coins)",
            f"{results['alerts_quiet']['alerts_s'] * 1000:.0f} ms",
            f"{results['alerts_quiet']['ratio']:.2f}× the model on the same message",
            "≤ 0.15×",
        ),
        (
            "Alerts step, every coin in an episode on every signal (500 coins)",
            f"{results['alerts_worst']['alerts_s']:.2f} s",
            f"{results['alerts_worst']['ratio']:.2f}× the message's load over a socket "
            f"({results['alerts_worst']['ratio_to_loader_in_memory']:.2f}× the in-memory loader alone)",
            "≤ 1×",
        ),
        (
            "Latest mode vs naive loop (200 coins)",
            f"{results['latest_vs_naive']['seconds'] * 1000:.0f} ms",
            f"{results['latest_vs_naive']['speedup']:.0f}× faster",
            "≥ 100×",
        ),
        (
            "Range mode, 7-day backfill, model only",
            f"{results['range']['seconds']:.2f} s",
            f"{results['range']['ratio']:.2f}× the pandas groupby-rolling quantile",
            "≤ 1.3×",
        ),
        (
            "Backtest, a year of hourly data for 50 coins (CSV already read)",
            f"{results['backtest_year']['seconds']:.2f} s",
            f"{results['backtest_year']['ratio']:.2f}× the pandas groupby-rolling q1 and q3",
            "≤ 1.5×",
        ),
        (
            "Loading (documents → frame)",
            f"{results['loading']['documents_per_s'] / 1e6:.2f} M docs/s",
            f"{results['loading']['ratio']:.2f}× DataFrame.from_records",
            "≤ 1.0×",
        ),
        (
            "Driver path over a socket, latest message (1,000 coins)",
            f"{results['driver_socket']['us_per_document']['load_over_socket']:.1f} µs/doc",
            f"{results['driver_socket']['load_vs_decode_all']:.2f}× bson.decode_all, "
            f"{results['driver_socket']['load_vs_loader_in_memory']:.2f}× the in-memory loader",
            "",
        ),
        ("Peak RSS, latest mode, 2,000 coins", f"{memory['2000']['peak_rss_mb']:.0f} MB", "", ""),
        ("Peak RSS, latest mode, 5,000 coins", f"{memory['5000']['peak_rss_mb']:.0f} MB", "", "≤ 700 MB"),
        (
            "Report: episodes from a month of entries (2,000 coins)",
            f"{results['episodes_build']['build_s']:.2f} s",
            f"{results['episodes_build']['ratio']:.2f}× loading the same entries",
            "≤ 0.5×",
        ),
        (
            "Cold start, import handler",
            f"{results['cold_start']['handler_s']:.2f} s",
            f"{results['cold_start']['ratio']:.2f}× importing the libraries alone",
            "≤ 1.15×",
        ),
    ]
    header = ("figure", "value", "ratio", "bar")
    widths = [max(len(str(r[i])) for r in (*rows, header)) for i in range(4)]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in (header, *rows)]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
