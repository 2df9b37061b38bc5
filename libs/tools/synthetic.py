"""Synthetic score documents with planted anomalies, for the demo, tests and benchmarks.

Scales are meant to look like the real collection: prices follow a random
walk, market cap is price times a supply, volume is heavy-tailed, the risk
scores live in 0–100 and the volatility index in a few percent. Planted
anomalies are spikes and dips far outside any reasonable fence, so a model
that works finds them; what was planted is returned so recall can be measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from libs.helpers.constants_helper import SIGNALS


@dataclass(frozen=True)
class Planted:
    """One planted anomaly: this coin's signal at this time was pushed out of range."""

    coin_id: str
    timestamp: datetime
    signal: str


def synthetic_documents(
    *,
    coins: int = 10,
    days: int = 35,
    per_day: int = 4,
    end: datetime = datetime(2024, 11, 1),
    seed: int = 7,
    missing_rate: float = 0.02,
    planted_per_coin: int = 2,
    plant_latest: bool = True,
) -> tuple[list[dict[str, Any]], list[Planted]]:
    """Documents for ``coins`` coins over ``days`` days, ``per_day`` observations a day, ending at ``end``.

    Each coin gets ``planted_per_coin`` anomalies at random times in its last
    week (the first at its newest observation when ``plant_latest``), and a
    few signal values are missing (absent, None, NaN or a string).
    """
    rng = np.random.default_rng(seed)
    steps = days * per_day
    step = timedelta(days=1) / per_day
    stamps = [end - step * (steps - 1 - i) for i in range(steps)]
    documents: list[dict[str, Any]] = []
    planted: list[Planted] = []
    junk = [None, float("nan"), "n/a"]
    for c in range(coins):
        coin_id = f"coin-{c:04d}"
        price = 10 ** rng.uniform(-2, 4) * np.exp(np.cumsum(rng.normal(0, 0.01, steps)))
        supply = 10 ** rng.uniform(6, 10)
        series = {
            "latest_price": price,
            "market_cap_score": np.clip(rng.normal(60, 3, steps), 0, 100),
            "liquidity_risk_score": np.clip(rng.normal(40, 3, steps), 0, 100),
            "volatility_risk_score": np.clip(rng.normal(50, 3, steps), 0, 100),
            "volume": 10 ** rng.uniform(4, 9) * rng.lognormal(0, 0.15, steps),
            "market_cap": price * supply,
            "volatility_index": np.abs(rng.normal(3, 0.3, steps)),
        }
        week = max(1, min(steps, 7 * per_day))
        positions = rng.choice(np.arange(steps - week, steps), size=min(planted_per_coin, week), replace=False)
        if plant_latest and planted_per_coin:
            positions[0] = steps - 1
        plants: dict[int, str] = {}
        for position in positions:
            signal = SIGNALS[int(rng.integers(len(SIGNALS)))]
            plants[int(position)] = signal
            planted.append(Planted(coin_id, stamps[int(position)], signal))
            if signal.endswith("_score"):
                series[signal][position] = 100.0 if series[signal][position] < 50 else 0.0
            else:
                series[signal][position] *= 8.0 if rng.random() < 0.5 else 0.1
        for i, stamp in enumerate(stamps):
            doc: dict[str, Any] = {"coin_id": coin_id, "timestamp": stamp}
            for signal in SIGNALS:
                if plants.get(i) != signal and rng.random() < missing_rate:
                    choice = int(rng.integers(len(junk) + 1))
                    if choice < len(junk):
                        doc[signal] = junk[choice]
                    continue
                doc[signal] = float(series[signal][i])
            documents.append(doc)
    return documents, planted
