"""The backtest over a year of hourly data for 50 coins, against pandas' groupby-rolling q1 and q3 (bar ≤ 1.5×).

Timed: everything the ``backtest`` command computes between reading its input
and writing its files, on a frame already read (the CSV reading is not
timed; docs/data.md measures it: about a second per 1.3 million rows):
:func:`libs.tools.backtest.build.backtest` (the range engine judging every
observation of the year and of the memory before it, severities, levels,
raises, the alert table, coin-days), then every alert's body and the summary.
The baseline is :func:`bench.baselines.pandas_range_primitive` on the same
frame: one time-based ``groupby("coin_id").rolling("<P>D")[signal].quantile(q)``
pass per signal, period and quartile (q1 and q3) over the rows the year's
windows need — the bare primitive a pandas backtest would start from, with
no fences, flags, severities or alerts. Both run alternately in one process on
the same data; the figure is the ratio of their medians.

The data: 50 coins × (a year + 32 days) of hourly observations, all seven
signals at the scales of the real collection (``bench.dataset``'s generator),
2 % of cells missing, and a planted spike or crash about once a coin-month so
that alerts are raised and ranked as in a real year.

    .venv/bin/python -m bench.backtest_year [--coins 50] [--days 365]
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from bench.baselines import pandas_range_primitive
from bench.dataset import _values, coin_name
from bench.timing import REPS, median_pair
from libs.helpers.constants_helper import SIGNALS, load_settings
from libs.tools.backtest.build import backtest
from libs.tools.backtest.scope import BacktestScope

SINCE = datetime(2023, 11, 1)
PERIODS = (3, 7, 30)
#: The history before the year: the longest window, the alert memory (a day) and a margin.
BEFORE_DAYS = 32


def year_frame(coins: int = 50, days: int = 365, seed: int = 12) -> pd.DataFrame:
    """The history frame the CSV reader would return for the year (sorted by coin, then time)."""
    rng = np.random.default_rng(seed)
    steps = (days + BEFORE_DAYS) * 24
    values = _values(rng, coins, steps)
    planted = rng.random((coins, steps)) < 1 / (24 * 30)
    factors = np.where(rng.random((coins, steps)) < 0.5, 4.0, 0.2)
    for signal in ("latest_price", "volume", "market_cap"):
        values[signal] = np.where(planted, values[signal] * factors, values[signal])
    for signal in ("market_cap_score", "liquidity_risk_score", "volatility_risk_score"):
        values[signal] = np.where(planted, np.clip(values[signal] + 40, 0, 100), values[signal])
    start = np.datetime64(SINCE - timedelta(days=BEFORE_DAYS), "ms")
    stamps = start + np.arange(steps, dtype=np.int64) * np.timedelta64(3_600_000, "ms")
    frame = pd.DataFrame(
        {
            "coin_id": np.repeat(np.array([coin_name(c) for c in range(coins)], dtype=object), steps),
            "timestamp": np.tile(stamps, coins),
        }
    )
    for signal in SIGNALS:
        column = values[signal].ravel().astype(np.float64)
        column[rng.random(column.size) < 0.02] = np.nan
        frame[signal] = column
    return frame


def measure(coins: int = 50, days: int = 365, reps: int = REPS) -> dict[str, Any]:
    """Seconds of the backtest's computation and of the pandas primitive, and their ratio."""
    frame = year_frame(coins, days)
    settings = load_settings({"MONGODB_URI": "mongomock://"})
    as_of = SINCE + timedelta(days=days) - timedelta(milliseconds=1)
    scope = BacktestScope(since=SINCE, as_of=as_of, coin_ids=None, signals=SIGNALS, periods_days=PERIODS)
    found: dict[str, Any] = {}

    def run_backtest() -> None:
        result = backtest(frame, scope, settings)
        found["alerts"] = len(result.alert_bodies())
        found["summary"] = result.summary()

    backtest_s, primitive_s = median_pair(
        run_backtest, lambda: pandas_range_primitive(frame, SINCE, SIGNALS, PERIODS), reps
    )
    return {
        "coins": coins,
        "days": days,
        "rows": len(frame),
        "rows_in_year": found["summary"]["observations"],
        "signals": len(SIGNALS),
        "periods": list(PERIODS),
        "alerts": found["alerts"],
        "alerts_per_coin_day": found["summary"]["alerts_per_coin_day"],
        "seconds": backtest_s,
        "pandas_primitive_s": primitive_s,
        "ratio": backtest_s / primitive_s,
        "bar": "<= 1.5",
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backtest_year", description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=50)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    print(json.dumps(measure(args.coins, args.days), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
