"""The anomaly model: Tukey fences over trailing time windows (contract §4).

Pure functions, frames in and frames out, no I/O. Latest mode and range mode
share one code path: a mask says which rows are judged, and every judged row
is compared with its own window ``(t − P days, t]`` of its coin's non-missing
values, observations stamped exactly ``t`` included.

How it stays vectorised: rows are sorted once by (coin, timestamp) and given
one integer key that orders them the same way, so each judged row's window is
a contiguous slice ``[lo, hi)`` of that order, found for all rows at once with
``searchsorted``. The quartiles of many slices are then taken together by
gathering them into a padded matrix and sorting its rows
(:func:`window_quartiles`), with numpy's linear interpolation reproduced
operation for operation so the results equal ``np.percentile`` to the bit.
When the windows are many and overlap (a backfill), ranking each coin's
values once and selecting order statistics from the ranks is cheaper:
:mod:`libs.models.order_statistics` does that, to the same bit-exact result,
and :func:`_ranking_pays` picks the cheaper engine per signal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from libs.models.frames import empty_frame
from libs.models.order_statistics import lerp, quantile_positions, ranked_window_quartiles

#: Columns of the frame :func:`judge` returns, one row per judged row × signal × period, and their dtypes.
RESULT_DTYPES: dict[str, Any] = {
    "row": np.intp,
    "signal": object,
    "period_days": np.int64,
    "value": np.float64,
    "n": np.int64,
    "q1": np.float64,
    "q3": np.float64,
    "lower": np.float64,
    "upper": np.float64,
    "is_anomaly": "boolean",
    "k": np.float64,
}
RESULT_COLUMNS = tuple(RESULT_DTYPES)

#: Cells of one padded window matrix (about 25 bytes of temporaries each); bounds the model's memory.
MAX_WINDOW_CELLS = 1 << 20

_INT64_HEADROOM = 1 << 62


@dataclass(frozen=True)
class ModelParams:
    """What the model needs besides the data: the request and the configuration."""

    signals: tuple[str, ...]
    periods_days: tuple[int, ...]
    deviation_limit: float
    min_observations: int


def select_latest(
    frame: pd.DataFrame, as_of: datetime, lookback_hours: float, coin_ids: Iterable[str] | None = None
) -> np.ndarray:
    """Mask of latest-mode judged rows: each coin's newest observation in ``(as_of − lookback, as_of]``.

    Several observations sharing that newest timestamp are all judged.
    """
    stamps = frame["timestamp"].to_numpy()
    in_window = (stamps > np.datetime64(as_of - timedelta(hours=lookback_hours))) & (stamps <= np.datetime64(as_of))
    candidates = np.flatnonzero(in_window)  # a day out of a month: the grouping below stays small
    coins = frame["coin_id"].to_numpy()[candidates]
    if coin_ids is not None:
        wanted = pd.Index(list(coin_ids)).get_indexer(coins) >= 0
        candidates, coins = candidates[wanted], coins[wanted]
    newest = pd.Series(stamps[candidates]).groupby(coins, sort=False).transform("max").to_numpy()
    judged = np.zeros(len(frame), dtype=bool)
    judged[candidates[stamps[candidates] == newest]] = True
    return judged


def select_range(
    frame: pd.DataFrame, since: datetime, as_of: datetime, coin_ids: Iterable[str] | None = None
) -> np.ndarray:
    """Mask of range-mode judged rows: every observation with ``since ≤ t ≤ as_of``."""
    stamps = frame["timestamp"]
    judged = (stamps >= since) & (stamps <= as_of)
    if coin_ids is not None:
        judged &= frame["coin_id"].isin(list(coin_ids))
    return judged.to_numpy(dtype=bool)


def _quantile_of_sorted_rows(rows: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """The ``q`` quantile of each row's first ``counts`` values (rows sorted ascending)."""
    below, above, gamma = quantile_positions(counts, q)
    picks = np.arange(len(rows))
    return lerp(rows[picks, below], rows[picks, above], gamma)


def window_quartiles(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """25th and 75th percentiles of ``values[lo[i]:hi[i]]`` for every i (each slice non-empty).

    Equal, bit for bit, to ``np.percentile(values[lo[i]:hi[i]], [25, 75])``.
    Slices are grouped by length so that padding stays small, and processed in
    chunks of at most :data:`MAX_WINDOW_CELLS` cells.
    """
    counts = hi - lo
    q1 = np.empty(len(lo), dtype=np.float64)
    q3 = np.empty(len(lo), dtype=np.float64)
    if len(lo) == 0:
        return q1, q3
    by_length = np.argsort(counts, kind="stable")[::-1]
    start = 0
    while start < len(by_length):
        width = int(counts[by_length[start]])  # the longest slice left sets the chunk's width
        chunk = by_length[start : start + max(1, MAX_WINDOW_CELLS // width)]
        chunk_lo, chunk_counts = lo[chunk], counts[chunk]
        offsets = np.arange(width)
        inside = offsets[None, :] < chunk_counts[:, None]
        positions = np.where(inside, chunk_lo[:, None] + offsets[None, :], 0)
        windows = np.where(inside, values[positions], np.inf)
        windows.sort(axis=1)
        q1[chunk] = _quantile_of_sorted_rows(windows, chunk_counts, 0.25)
        q3[chunk] = _quantile_of_sorted_rows(windows, chunk_counts, 0.75)
        start += len(chunk)
    return q1, q3


def _sort_keys(frame: pd.DataFrame, max_period_days: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """An int64 key per row ordering rows by (coin, timestamp), and the key units of one day.

    The key is ``coin_code · span + time offset``; offsets start above the
    longest period so that ``t − P`` never reaches into the previous coin.
    Returns the keys, the coin codes, the row order that sorts the keys (None
    when they are sorted already, as the loader's frames are) and the units
    per day.
    """
    stamps = frame["timestamp"].to_numpy()
    unit, _ = np.datetime_data(stamps.dtype)
    per_day = int(np.timedelta64(1, "D").astype(f"timedelta64[{unit}]").astype(np.int64))
    ticks = stamps.view(np.int64)
    codes = _coin_codes(frame["coin_id"].to_numpy())
    if len(ticks) == 0:
        return np.empty(0, dtype=np.int64), codes.astype(np.int32), None, per_day
    headroom = max_period_days * per_day + 1
    first = int(ticks.min())
    span = int(ticks.max()) - first + headroom + 1
    if (int(codes.max()) + 1) * span >= _INT64_HEADROOM:
        raise OverflowError("timestamps span too long a time at this resolution for the model's keys")
    keys = codes.astype(np.int64)
    keys *= span
    keys += ticks
    keys += headroom - first
    order = None if bool(np.all(keys[1:] >= keys[:-1])) else np.argsort(keys, kind="stable")
    return keys, codes.astype(np.int32), order, per_day


def _coin_codes(coins: np.ndarray) -> np.ndarray:
    """A code per row for its coin: numbered runs when rows come grouped by sorted coin (the loader's frames)."""
    try:
        steps = coins[1:] != coins[:-1]
        grouped = bool(np.all(coins[1:][steps] > coins[:-1][steps]))
    except TypeError:  # ids that do not compare (not from the loader): hash them instead
        grouped = False
    if not grouped:
        return pd.factorize(coins, sort=False)[0]
    codes = np.zeros(len(coins), dtype=np.int32)
    np.cumsum(steps, out=codes[1:])
    return codes


def judge(frame: pd.DataFrame, judged: np.ndarray, params: ModelParams) -> pd.DataFrame:
    """Judge the rows of ``frame`` selected by the boolean mask ``judged``.

    ``frame`` holds ``coin_id``, ``timestamp`` (any numpy datetime unit) and a
    float column per signal, NaN where missing. Returns a long frame with
    :data:`RESULT_COLUMNS`: one row per judged row, signal and period for which
    the judged value is present. ``row`` is the position in ``frame``;
    ``is_anomaly`` is a nullable boolean, NA (and the fences NaN) where the
    window holds fewer than ``min_observations`` values.
    """
    rows = sort_rows(frame, judged, params.periods_days)
    return concat_results(judge_one() for _, judge_one in signal_judges(frame, rows, params))


def signal_judges(
    frame: pd.DataFrame, rows: SortedRows | None, params: ModelParams
) -> Iterator[tuple[str, Callable[[], pd.DataFrame]]]:
    """``(signal, judge_one)`` for each requested signal, in order; ``judge_one()`` returns its results.

    The one place signals are iterated. Signals are judged independently, so
    judging them one call at a time changes no result; the rows are sorted
    once (:func:`sort_rows`, by the caller, who may reuse them), for all of
    them. Handing out a call rather than a result lets the caller time and
    trace each signal's work (ops asked for processing time per signal)
    without the model knowing.
    """
    for signal in params.signals:
        if rows is None:
            yield signal, empty_results
        else:
            yield signal, functools.partial(judge_signal, frame, rows, signal, params)


def concat_results(blocks: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Results frames stacked in order (empty ones dropped), or :func:`empty_results`."""
    non_empty = [block for block in blocks if len(block)]
    if not non_empty:
        return empty_results()
    return non_empty[0] if len(non_empty) == 1 else pd.concat(non_empty, ignore_index=True)


@dataclass(frozen=True)
class SortedRows:
    """The frame's rows in (coin, timestamp) order: keys, coin codes, judged mask, and where each came from.

    Built once per frame by :func:`sort_rows` and shared by every signal, so a
    caller judging signals one at a time (to time each) pays for the sort once.
    """

    keys: np.ndarray
    codes: np.ndarray
    judged: np.ndarray
    order: np.ndarray
    per_day: int
    presorted: bool


def sort_rows(frame: pd.DataFrame, judged: np.ndarray, periods_days: Sequence[int]) -> SortedRows | None:
    """The rows of ``frame`` ordered for judging, or None when nothing is to be judged."""
    judged = np.asarray(judged, dtype=bool)
    if len(judged) != len(frame):
        raise ValueError("the judged mask must have one entry per frame row")
    if not judged.any() or not periods_days:
        return None
    keys, codes, order, per_day = _sort_keys(frame, max(periods_days))
    if order is None:  # sorted already: no copies
        return SortedRows(keys, codes, judged, np.arange(len(keys)), per_day, presorted=True)
    return SortedRows(keys[order], codes[order], judged[order], order, per_day, presorted=False)


def judge_signal(frame: pd.DataFrame, rows: SortedRows, signal: str, params: ModelParams) -> pd.DataFrame:
    """:func:`judge` for one signal, over rows prepared by :func:`sort_rows` (empty frame when none judged)."""
    values = frame[signal].to_numpy(dtype=np.float64)
    return concat_results(_judge_signal(values if rows.presorted else values[rows.order], rows, signal, params))


#: Relative costs behind :func:`_ranking_pays`, in units of one gathered-and-sorted window cell
#: (measured with bench/: about 20 ns a cell, 300 ns to rank a value, 1 µs to select a window's quartiles).
RANK_COST_PER_VALUE = 15
RANK_COST_PER_WINDOW = 50


def _ranking_pays(cells: int, windows: int, values: int) -> bool:
    """Whether ranking the signal's ``values`` once beats gathering ``cells`` window cells."""
    return cells > RANK_COST_PER_VALUE * values + RANK_COST_PER_WINDOW * windows


def _judge_signal(values: np.ndarray, rows: SortedRows, signal: str, params: ModelParams) -> list[pd.DataFrame]:
    present = ~np.isnan(values)
    targets = np.flatnonzero(rows.judged & present)
    if len(targets) == 0:
        return []
    window_keys = rows.keys[present]
    window_values = values[present]
    target_keys = rows.keys[targets]
    hi = np.searchsorted(window_keys, target_keys, side="right")
    los = [
        np.searchsorted(window_keys, target_keys - period * rows.per_day, side="right")
        for period in params.periods_days
    ]
    enough = [hi - lo >= params.min_observations for lo in los]
    quartiles = _quartiles(window_values, lambda: rows.codes[present], hi, los, enough)
    value = values[targets]
    k = params.deviation_limit
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("n", "q1", "q3", "lower", "upper", "flag", "na")}
    for lo, sufficient, (q1, q3) in zip(los, enough, quartiles):
        with np.errstate(over="ignore"):  # beyond float64 a fence is ±inf, which is what float64 gives
            iqr = q3 - q1
            lower = q1 - k * iqr
            upper = q3 + k * iqr
        for name, column in (
            ("n", hi - lo),
            ("q1", q1),
            ("q3", q3),
            ("lower", lower),
            ("upper", upper),
            ("flag", (value < lower) | (value > upper)),
            ("na", ~sufficient),
        ):
            parts[name].append(column)
    # one frame per signal, periods stacked: building a frame costs more than the numbers in a small message
    periods = len(params.periods_days)
    flags = pd.arrays.BooleanArray(np.concatenate(parts["flag"]), np.concatenate(parts["na"]))
    return [
        pd.DataFrame(
            {
                "row": np.tile(rows.order[targets], periods),
                "signal": signal,
                "period_days": np.repeat(np.asarray(params.periods_days, dtype=np.int64), len(targets)),
                "value": np.tile(value, periods),
                "n": np.concatenate(parts["n"]),
                "q1": np.concatenate(parts["q1"]),
                "q3": np.concatenate(parts["q3"]),
                "lower": np.concatenate(parts["lower"]),
                "upper": np.concatenate(parts["upper"]),
                "is_anomaly": flags,
                "k": k,
            }
        )
    ]


def _quartiles(
    values: np.ndarray,
    groups: Callable[[], np.ndarray],
    hi: np.ndarray,
    los: list[np.ndarray],
    enough: list[np.ndarray],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per period, q1 and q3 of each window ``values[lo:hi]`` that has enough values (NaN elsewhere).

    ``groups`` gives each value's coin code, built only if the ranked engine is chosen.
    """
    cells = sum(int((hi - lo)[ok].sum()) for lo, ok in zip(los, enough))
    windows = sum(int(ok.sum()) for ok in enough)
    results = []
    if _ranking_pays(cells, windows, len(values)):
        q1_all, q3_all = ranked_window_quartiles(
            values,
            groups(),
            np.concatenate([lo[ok] for lo, ok in zip(los, enough)]),
            np.concatenate([hi[ok] for ok in enough]),
        )
        start = 0
        for ok in enough:
            q1, q3 = np.full(len(hi), np.nan), np.full(len(hi), np.nan)
            stop = start + int(ok.sum())
            q1[ok], q3[ok] = q1_all[start:stop], q3_all[start:stop]
            results.append((q1, q3))
            start = stop
        return results
    for lo, ok in zip(los, enough):
        q1, q3 = np.full(len(hi), np.nan), np.full(len(hi), np.nan)
        q1[ok], q3[ok] = window_quartiles(values, lo[ok], hi[ok])
        results.append((q1, q3))
    return results


def empty_results() -> pd.DataFrame:
    """A results frame with no rows and the columns and dtypes of :data:`RESULT_DTYPES`."""
    return empty_frame(RESULT_DTYPES)


def judged_mask(
    frame: pd.DataFrame,
    *,
    as_of: datetime,
    since: datetime | None,
    lookback_hours: float,
    coin_ids: Sequence[str] | None,
) -> np.ndarray:
    """The judged rows for a request: range mode when ``since`` is given, else latest mode."""
    if since is None:
        return select_latest(frame, as_of, lookback_hours, coin_ids)
    return select_range(frame, since, as_of, coin_ids)
