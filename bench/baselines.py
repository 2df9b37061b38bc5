"""What the service's figures are compared with: each a plain way of doing the same job.

- :func:`numpy_latest_bound`: latest mode's lower bound. The windows are
  located beforehand (not timed); the timed part only gathers each judged
  row's trailing windows into NaN-padded matrices and takes
  ``np.nanpercentile`` of all of them, one vectorised call per signal and period.
- :func:`naive_latest`: the straightforward implementation, a Python loop over
  coins, signals and periods that filters the frame and calls
  ``Series.quantile``.
- :func:`pandas_range_primitive`: range mode's bare pandas primitive, one
  time-based groupby-rolling quantile pass per signal, period and quartile
  over exactly the rows that the judged rows' windows need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class LatestWindows:
    """Row ranges ``[lo, hi)`` of the frame (missing values included) per period, for the judged rows."""

    lo: dict[int, np.ndarray]
    hi: np.ndarray


def locate_latest_windows(frame: pd.DataFrame, judged: np.ndarray, periods: Sequence[int]) -> LatestWindows:
    """The bound's untimed preparation: each judged row's window as a row range (frame sorted by coin, time)."""
    codes, _ = pd.factorize(frame["coin_id"].to_numpy())
    ticks = frame["timestamp"].to_numpy().astype("datetime64[ms]").astype(np.int64)
    span = int(ticks.max() - ticks.min()) + 400 * 86_400_000
    keys = codes.astype(np.int64) * span + (ticks - ticks.min() + 366 * 86_400_000)
    rows = np.flatnonzero(judged)
    hi = np.searchsorted(keys, keys[rows], side="right")
    lo = {p: np.searchsorted(keys, keys[rows] - p * 86_400_000, side="right") for p in periods}
    return LatestWindows(lo, hi)


def numpy_latest_bound(frame: pd.DataFrame, windows: LatestWindows, signals: Sequence[str]) -> dict:
    """q1 and q3 of every judged row's windows by ``np.nanpercentile`` over gathered matrices."""
    out = {}
    for signal in signals:
        values = frame[signal].to_numpy()
        for period, lo in windows.lo.items():
            width = int((windows.hi - lo).max())
            positions = lo[:, None] + np.arange(width)[None, :]
            inside = positions < windows.hi[:, None]
            matrix = np.where(inside, values[np.minimum(positions, len(values) - 1)], np.nan)
            out[signal, period] = np.nanpercentile(matrix, [25, 75], axis=1)
    return out


def naive_latest(
    frame: pd.DataFrame,
    as_of: datetime,
    lookback_hours: int,
    signals: Sequence[str],
    periods: Sequence[int],
    min_observations: int,
) -> dict:
    """The straightforward loop; returns ``{(coin, signal, period): (q1, q3) or None}``."""
    out = {}
    for coin in frame["coin_id"].unique():
        coin_rows = frame[frame["coin_id"] == coin]
        recent = coin_rows[
            (coin_rows["timestamp"] > as_of - timedelta(hours=lookback_hours)) & (coin_rows["timestamp"] <= as_of)
        ]
        if recent.empty:
            continue
        newest = recent["timestamp"].max()
        for signal in signals:
            if math.isnan(recent.loc[recent["timestamp"] == newest, signal].iloc[-1]):
                continue
            for period in periods:
                window = frame[
                    (frame["coin_id"] == coin)
                    & (frame["timestamp"] > newest - timedelta(days=period))
                    & (frame["timestamp"] <= newest)
                ][signal].dropna()
                out[coin, signal, period] = (
                    (window.quantile(0.25), window.quantile(0.75)) if len(window) >= min_observations else None
                )
    return out


def pandas_range_primitive(
    frame: pd.DataFrame, since: datetime, signals: Sequence[str], periods: Sequence[int]
) -> dict:
    """One groupby-rolling quantile pass per signal, period and quartile over the rows the windows need."""
    out = {}
    for period in periods:
        needed = frame[frame["timestamp"] > since - timedelta(days=period)]
        rolling = needed.groupby("coin_id", sort=False).rolling(f"{period}D", on="timestamp", closed="right")
        for signal in signals:
            for q in (0.25, 0.75):
                out[signal, period, q] = rolling[signal].quantile(q)
    return out
