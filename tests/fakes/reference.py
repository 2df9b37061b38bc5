"""An independent reference for the model: plain Python filters and np.percentile per window.

Deliberately naive (one window at a time, straight from documents) so that it
shares nothing with the vectorised model it checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from bson.decimal128 import Decimal128


def usable_number(value: Any) -> float | None:
    """The value as a float when contract §2 calls it a number, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal128):
        try:
            value = float(value.to_decimal())
        except (ValueError, OverflowError):
            return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def expected_entry(
    documents: Iterable[dict[str, Any]],
    coin_id: str,
    timestamp: datetime,
    value: float,
    signal: str,
    period_days: int,
    k: float,
    min_observations: int,
) -> dict[str, Any]:
    """What contract §5 says is written at ``anomalies.<signal>.<P>d`` for this observation."""
    start = timestamp - timedelta(days=period_days)
    window = [
        number
        for doc in documents
        if doc.get("coin_id") == coin_id
        and isinstance(doc.get("timestamp"), datetime)
        and start < doc["timestamp"] <= timestamp
        and (number := usable_number(doc.get(signal))) is not None
    ]
    entry: dict[str, Any] = {"value": value, "n": len(window), "k": k}
    if len(window) < min_observations:
        entry.update(is_anomaly=None, q1=None, q3=None, lower=None, upper=None)
        return entry
    q1, q3 = np.percentile(np.array(window), [25, 75])
    lower, upper = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    entry.update(
        is_anomaly=bool(value < lower or value > upper),
        q1=float(q1),
        q3=float(q3),
        lower=float(lower),
        upper=float(upper),
    )
    return entry


def expected_written(
    documents: Iterable[dict[str, Any]],
    doc: dict[str, Any],
    signal: str,
    period_days: int,
    k: float,
    min_observations: int,
) -> dict[str, Any] | None:
    """What a judged document should hold at ``anomalies.<signal>.<P>d``: None when its value is missing."""
    value = usable_number(doc.get(signal))
    if value is None:
        return None
    return expected_entry(documents, doc["coin_id"], doc["timestamp"], value, signal, period_days, k, min_observations)


def stored_flag(document: dict[str, Any], signal: str, period_days: int) -> bool:
    """True when the document holds ``is_anomaly: true`` for this signal and window (contract §5), read by hand."""
    entry: Any = document.get("anomalies")
    for key in (signal, f"{period_days}d"):
        entry = entry.get(key) if isinstance(entry, dict) else None
    return isinstance(entry, dict) and entry.get("is_anomaly") is True
