"""The report's episode building against loading the same stored entries (bar: at most 0.5x).

A month of stored entries of 2,000 coins, shaped as the function writes them
(contract §5: ``anomalies.<signal>.<P>d = {is_anomaly, value, q1, q3,
lower, upper, n, k}``) and as pymongo hands them over (nested dicts, naive
UTC datetimes). Loading is :func:`libs.tools.report.entries.documents_to_entries`
(documents to the entries frame); building is
:func:`libs.models.episodes.build_episodes` on that frame. Both run on the
same data in the same process, alternately, and the figure is the ratio of
their medians.

The entries are generated, not judged: each signal follows a heavy-tailed
AR(1) series around a per-coin level, the quartiles follow the level with a
little noise, and the flags follow from the fences by contract §4's rule,
so flags come in runs and their share (about 5 %) is near that of the demo's
unplanted values (8.6 % measured there, 19.8 % on real hourly data). Generating them takes longer than
either side. The bar: building the episodes should cost the report less than the read it cannot avoid.

    .venv/bin/python -m bench.episodes_build [--coins 2000] [--days 31] [--per-day 4]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from bench.timing import REPS, median_pair
from libs.models.episodes import build_episodes
from libs.models.severity import SeverityScale
from libs.tools.report.entries import documents_to_entries

AS_OF = datetime(2024, 11, 1)
PERIODS = (3, 7, 30)
#: Signals with stored entries: three already make 2.2 M entries (about 2.3 GB peak as nested dicts, for a
#: month of 2,000 coins at four observations a day); all seven would need over 5 GB, and both sides of the
#: ratio grow linearly with the number of entries.
SIGNALS = ("latest_price", "volume", "volatility_risk_score")
K = 1.5
LOOKBACK_HOURS = 24
SCALE = SeverityScale()


@dataclass(frozen=True)
class EntriesShape:
    coins: int = 2_000
    days: int = 31
    per_day: int = 4
    seed: int = 13

    @property
    def observations(self) -> int:
        return self.coins * self.days * self.per_day


def _series(rng: np.random.Generator, coins: int, steps: int) -> np.ndarray:
    """Heavy-tailed AR(1) deviations from a level, shape (coins, steps): runs of large values, as in prices."""
    shocks = rng.standard_t(3, size=(coins, steps))
    series = np.empty((coins, steps))
    series[:, 0] = shocks[:, 0]
    for step in range(1, steps):  # a loop over time steps of generated data, not over coins
        series[:, step] = 0.6 * series[:, step - 1] + shocks[:, step]
    return series


def stored_documents(shape: EntriesShape) -> list[dict[str, Any]]:
    """The month's documents with their stored entries, coin by coin in time order (as the index returns them)."""
    rng = np.random.default_rng(shape.seed)
    steps = shape.days * shape.per_day
    step = timedelta(days=1) / shape.per_day
    stamps = [AS_OF - step * (steps - 1 - i) for i in range(steps)]
    levels = 10 ** rng.uniform(0, 4, size=(shape.coins, 1))
    cells: dict[str, dict[int, list[list[dict[str, Any]]]]] = {}
    for signal in SIGNALS:
        value = levels * (1 + 0.05 * _series(rng, shape.coins, steps))
        cells[signal] = {}
        for period in PERIODS:
            spread = levels * 0.05 * (1.0 + rng.normal(0, 0.05, size=(shape.coins, steps)))
            q1 = levels - spread + levels * rng.normal(0, 0.01, size=(shape.coins, steps))
            q3 = q1 + 2 * spread
            lower, upper = q1 - K * (q3 - q1), q3 + K * (q3 - q1)
            flag = (value < lower) | (value > upper)
            n = np.minimum(period * shape.per_day, 10_000)
            columns = (value.tolist(), q1.tolist(), q3.tolist(), lower.tolist(), upper.tolist(), flag.tolist())
            cells[signal][period] = [
                [
                    {"is_anomaly": f, "value": v, "q1": a, "q3": b, "lower": lo, "upper": up, "n": n, "k": K}
                    for v, a, b, lo, up, f in zip(*(column[c] for column in columns))
                ]
                for c in range(shape.coins)
            ]
    documents = []
    for c in range(shape.coins):
        coin_id = f"coin-{c:05d}"
        for i, stamp in enumerate(stamps):
            anomalies: dict[str, Any] = {"evaluated_at": AS_OF}
            for signal in SIGNALS:
                anomalies[signal] = {f"{period}d": cells[signal][period][c][i] for period in PERIODS}
            documents.append({"coin_id": coin_id, "timestamp": stamp, "anomalies": anomalies})
    return documents


def measure(shape: EntriesShape | None = None, reps: int = REPS) -> dict[str, Any]:
    """Build vs load on one month of stored entries; returns seconds, sizes and the ratio."""
    shape = shape or EntriesShape()
    started = time.perf_counter()
    documents = stored_documents(shape)
    generated_s = time.perf_counter() - started
    entries = documents_to_entries(documents, SIGNALS).frame
    episodes = build_episodes(entries, LOOKBACK_HOURS, SCALE)

    load_s, build_s = median_pair(
        lambda: documents_to_entries(documents, SIGNALS),
        lambda: build_episodes(entries, LOOKBACK_HOURS, SCALE),
        reps=reps,
    )
    flagged = int(entries["is_anomaly"].fillna(False).sum())
    return {
        "coins": shape.coins,
        "days": shape.days,
        "per_day": shape.per_day,
        "signals": len(SIGNALS),
        "periods": list(PERIODS),
        "documents": len(documents),
        "entries": len(entries),
        "flagged": flagged,
        "episodes": len(episodes),
        "generated_s": generated_s,
        "load_s": load_s,
        "build_s": build_s,
        "ratio": build_s / load_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=EntriesShape.coins)
    parser.add_argument("--days", type=int, default=EntriesShape.days)
    parser.add_argument("--per-day", type=int, default=EntriesShape.per_day)
    args = parser.parse_args()
    result = measure(EntriesShape(coins=args.coins, days=args.days, per_day=args.per_day))
    print(json.dumps(result, indent=2))
    print(
        f"episodes from {result['entries']:,} stored entries ({result['flagged']:,} flagged, "
        f"{result['episodes']:,} episodes): build {result['build_s']:.2f} s vs load {result['load_s']:.2f} s "
        f"= {result['ratio']:.2f}x (target <= 0.5x)"
    )


if __name__ == "__main__":
    main()
