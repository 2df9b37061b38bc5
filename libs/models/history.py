"""Turning score documents into the model's history frame.

The frame is what every read backend hands the model, so that the model sees
identical data whichever way it was read. Classifying junk values happens here,
once: a signal value is a number only if it is an int (not a bool), a float or
a Decimal128 and is finite (SPEC section 2); anything else becomes NaN, which
the model treats as missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

try:  # bson ships with pymongo; the model itself does not need it.
    from bson.decimal128 import Decimal128
except ImportError:  # pragma: no cover - pymongo is a run-time requirement
    Decimal128 = None  # type: ignore[assignment,misc]

#: The frame's dtype for timestamps: MongoDB keeps milliseconds.
TIMESTAMP_DTYPE = "datetime64[ms]"


@dataclass(frozen=True)
class History:
    """Usable documents as a frame, and how many were skipped.

    ``frame`` has the columns ``_id``, ``coin_id``, ``timestamp`` (naive UTC,
    ``datetime64[ms]``) and one float column per requested signal (NaN where
    missing), sorted by ``coin_id`` then ``timestamp`` (ties keep their read
    order) with a fresh ``RangeIndex``.
    """

    frame: pd.DataFrame
    read: int
    skipped: int


def as_number(value: Any) -> float:
    """A signal value as a float, or NaN when SPEC section 2 calls it missing."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, float):
        return value if math.isfinite(value) else math.nan
    if isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            return math.nan
        return number if math.isfinite(number) else math.nan
    if Decimal128 is not None and isinstance(value, Decimal128):
        try:
            number = float(value.to_decimal())
        except (ValueError, OverflowError):
            return math.nan
        return number if math.isfinite(number) else math.nan
    return math.nan


def _as_utc_naive(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo is not None else value


def _signal_column(values: list[Any]) -> np.ndarray:
    # Plain finite floats are by far the common case; everything else takes the slow path.
    column = np.array([v if type(v) is float else as_number(v) for v in values], dtype=np.float64)
    column[~np.isfinite(column)] = np.nan
    return column


def empty_frame(signals: Sequence[str]) -> pd.DataFrame:
    """A history frame with no rows and the right columns and dtypes."""
    columns: dict[str, Any] = {
        "_id": pd.Series([], dtype=object),
        "coin_id": pd.Series([], dtype=object),
        "timestamp": pd.Series([], dtype=TIMESTAMP_DTYPE),
    }
    columns.update({signal: pd.Series([], dtype=np.float64) for signal in signals})
    return pd.DataFrame(columns)


def documents_to_history(documents: Iterable[dict[str, Any]], signals: Sequence[str]) -> History:
    """Build the model's frame from documents as pymongo returns them.

    Documents without a non-empty string ``coin_id`` or a date ``timestamp``
    are skipped and counted.
    """
    docs = documents if isinstance(documents, list) else list(documents)
    coin_ids = [d.get("coin_id") for d in docs]
    timestamps = [d.get("timestamp") for d in docs]
    usable = np.fromiter(
        ((type(c) is str and c != "") and isinstance(t, datetime) for c, t in zip(coin_ids, timestamps)),
        dtype=bool,
        count=len(docs),
    )
    skipped = int(len(docs) - usable.sum())
    if skipped:
        keep = np.flatnonzero(usable).tolist()
        docs = [docs[i] for i in keep]
        coin_ids = [coin_ids[i] for i in keep]
        timestamps = [timestamps[i] for i in keep]
    if not docs:
        return History(empty_frame(signals), read=len(usable), skipped=skipped)
    if any(t.tzinfo is not None for t in timestamps):
        timestamps = [_as_utc_naive(t) for t in timestamps]
    coins = np.array(coin_ids, dtype=object)
    stamps = np.array(timestamps, dtype=TIMESTAMP_DTYPE)
    codes, _ = pd.factorize(coins, sort=True)
    order = np.lexsort((stamps.view(np.int64), codes))
    columns: dict[str, Any] = {
        "_id": np.array([d.get("_id") for d in docs], dtype=object)[order],
        "coin_id": coins[order],
        "timestamp": stamps[order],
    }
    for signal in signals:
        columns[signal] = _signal_column([d.get(signal) for d in docs])[order]
    return History(pd.DataFrame(columns), read=len(usable), skipped=skipped)
