"""Which of a message's flags start an episode, judged from the data (contract §9).

A flag of coin *c*, signal *s*, window *P* and direction *d* at time *t*
starts an episode unless *c*'s previous step for *s* (the nearest earlier
timestamp with a value of *s*) lies at most ``ANOMALY_LATEST_LOOKBACK_HOURS``
before *t* and is flagged for *P* in direction *d*. The previous step is
judged here by the model's own code (:func:`libs.models.model.judge_signal`)
over the loaded history, never read from stored flags, so alerts are a pure
function of the data and the request, like the flags. Direction, severity
and the start rule itself are :mod:`libs.models.episodes`' (``classify``,
``episode_starts``): the report reads the same definitions.

Why it stays cheap (bench/episode_starts.py): only the flagged entries'
previous steps are judged, and for each signal only over the rows of the
coins flagged for it and for the periods flagged for it, so the work is a
small fraction of the model's; a message without flags costs one pass over
the results' flag column. The frame is the loader's
(:class:`libs.models.history.History`): sorted by ``coin_id`` then
``timestamp``, so a coin's rows are one contiguous block, found by binary
search on the coin column (the blocks used are checked to be one coin in time
order). No Python loop runs over coins or rows; only signals are looped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd

from libs.models.episodes import classify, episode_starts
from libs.models.model import ModelParams, judge_signal, sort_rows

#: Columns of :func:`starting_flags`: the model's result columns, the entry's coin and time, and its class.
START_COLUMNS = (
    "row",
    "coin_id",
    "signal",
    "period_days",
    "timestamp",
    "direction",
    "value",
    "q1",
    "q3",
    "lower",
    "upper",
    "n",
    "k",
    "severity",
    "flat_window",
)

#: What :func:`libs.models.episodes.episode_starts` reads of a step.
_STEP_COLUMNS = ("coin_id", "signal", "period_days", "timestamp", "direction")
_NUMBERS = ("value", "q1", "q3", "lower", "upper", "n", "k")

_UNSORTED = "the history frame must be sorted by coin_id, then timestamp (as the loader returns it)"


def empty_starts() -> pd.DataFrame:
    """A :func:`starting_flags` frame with no rows."""
    return pd.DataFrame({name: np.empty(0, dtype=dtype) for name, dtype in _START_DTYPES.items()}, copy=False)


_START_DTYPES = {
    "row": np.intp,
    "coin_id": object,
    "signal": object,
    "period_days": np.int64,
    "timestamp": "datetime64[ms]",
    "direction": object,
    **dict.fromkeys(("value", "q1", "q3", "lower", "upper"), np.float64),
    "n": np.int64,
    "k": np.float64,
    "severity": np.float64,
    "flat_window": bool,
}


def flagged_entries(results: pd.DataFrame, coin_ids: np.ndarray, stamps: np.ndarray) -> pd.DataFrame:
    """The flagged rows of model ``results`` with :data:`START_COLUMNS`.

    ``coin_ids`` and ``stamps`` are indexed by ``results["row"]`` (the judged
    frame's coin and timestamp columns). Only the rows the model marked are
    classified (contract §9), so a message without flags costs one pass.
    """
    return _flagged(results, lambda rows: (coin_ids[rows], stamps[rows]))


def _flagged(results: pd.DataFrame, locate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """:func:`flagged_entries`, with ``locate(rows)`` giving the coin ids and timestamps of result rows."""
    marked = np.flatnonzero(results["is_anomaly"].to_numpy(dtype=bool, na_value=False))
    if len(marked) == 0:
        return empty_starts()
    numbers = {name: results[name].to_numpy()[marked] for name in _NUMBERS}
    fences = {name: numbers[name] for name in ("value", "q1", "q3", "lower", "upper")}
    classes = classify(pd.DataFrame({**fences, "is_anomaly": np.ones(len(marked), dtype=bool)}, copy=False))
    direction = classes["direction"].to_numpy(dtype=object)
    kept = np.flatnonzero(pd.notna(direction))
    rows = results["row"].to_numpy()[marked][kept]
    coin_ids, stamps = locate(rows)
    columns = {
        "row": rows,
        "coin_id": coin_ids,
        "signal": results["signal"].to_numpy(dtype=object)[marked][kept],
        "period_days": results["period_days"].to_numpy(dtype=np.int64)[marked][kept],
        "timestamp": stamps,
        "direction": direction[kept],
        **{name: values[kept] for name, values in numbers.items()},
        "severity": classes["severity"].to_numpy(dtype=np.float64)[kept],
        "flat_window": classes["flat_window"].to_numpy(dtype=bool)[kept],
    }
    return pd.DataFrame(columns, copy=False)


def starting_flags(
    frame: pd.DataFrame, params: ModelParams, results: pd.DataFrame, lookback_hours: int
) -> pd.DataFrame:
    """The flagged entries of ``results`` that start an episode (contract §9), with :data:`START_COLUMNS`.

    ``frame`` is the loader's history frame (sorted by ``coin_id``, then
    ``timestamp``) reaching back far enough to judge every previous step that
    lies within ``lookback_hours`` of a judged observation
    (:meth:`libs.request.RiskRequest.history_start` with ``previous_steps``);
    ``results`` is what the model returned for ``params`` on that frame.
    Rows keep the order of ``results``.
    """
    coins = frame["coin_id"].to_numpy()
    stamps = frame["timestamp"].to_numpy()
    flagged = flagged_entries(results, coins, stamps)
    if flagged.empty:
        return flagged
    lookback = np.timedelta64(timedelta(hours=lookback_hours)).astype(stamps.dtype.str.replace("M8", "m8"))
    series = _Series.gather(frame, coins, flagged, lookback)
    previous_timestamp, previous = series.previous_steps(params, flagged["period_days"].to_numpy(), lookback)
    steps = {name: flagged[name].to_numpy() for name in _STEP_COLUMNS}
    steps = pd.DataFrame({**steps, "previous_timestamp": previous_timestamp}, copy=False)
    starts = episode_starts(steps, previous, lookback_hours)
    return flagged.iloc[np.flatnonzero(starts)].reset_index(drop=True)


class _Series:
    """The flagged (coin, signal) series stacked into one short history, so that few model calls judge them all.

    Series *b* is one coin's values of one signal over what its flags' previous
    steps can need: from ``lookback`` plus its longest flagged period before
    its earliest flag, copied from the coin's block of the sorted frame.
    ``history`` has ``coin_id`` = *b* (an int, so the model's keys never
    compare strings), ``timestamp`` and ``value``; ``target`` locates each flag in it.
    """

    def __init__(self, history: pd.DataFrame, coin_ids: np.ndarray, signals: np.ndarray, target: np.ndarray) -> None:
        self.history = history
        self.coin_ids = coin_ids
        self.signals = signals
        self.target = target

    @classmethod
    def gather(cls, frame: pd.DataFrame, coins: np.ndarray, flagged: pd.DataFrame, lookback: np.timedelta64) -> _Series:
        rows = flagged["row"].to_numpy()
        row_coins = coins[rows]
        coin_ids = np.unique(row_coins)
        lo = np.searchsorted(coins, coin_ids, side="left")
        hi = np.searchsorted(coins, coin_ids, side="right")
        coin = np.searchsorted(coin_ids, row_coins)
        in_block = (lo[coin] <= rows) & (rows < hi[coin])
        if not (in_block.all() and (coins[lo] == coin_ids).all() and (coins[hi - 1] == coin_ids).all()):
            raise ValueError(_UNSORTED)
        signal_codes, signal_names = pd.factorize(flagged["signal"].to_numpy())
        # one series per (signal, coin) pair flagged, numbered in (signal, coin) order: a signal's are contiguous
        pair = signal_codes.astype(np.int64) * len(coin_ids) + coin
        pairs, series_of_flag = np.unique(pair, return_inverse=True)
        series_signal, series_coin = np.divmod(pairs, len(coin_ids))
        stamps = frame["timestamp"].to_numpy()
        reach = stamps[rows] - lookback - flagged["period_days"].to_numpy() * np.timedelta64(1, "D")
        earliest = np.full(len(pairs), np.datetime64("9999-12-31"), dtype=reach.dtype)
        np.minimum.at(earliest, series_of_flag, reach)
        begin = _first_after(stamps, lo[series_coin], hi[series_coin], earliest)
        lengths = hi[series_coin] - begin
        first = np.cumsum(lengths) - lengths
        total = int(lengths.sum())
        series = np.repeat(np.arange(len(pairs), dtype=np.int32), lengths)
        positions = _ranges(begin, hi[series_coin])
        segment = np.append(first, total)[np.searchsorted(series_signal, np.arange(len(signal_names) + 1))]
        values = np.empty(total, dtype=np.float64)
        for code, name in enumerate(signal_names):
            start, stop = segment[code], segment[code + 1]
            values[start:stop] = frame[name].to_numpy(dtype=np.float64)[positions[start:stop]]
        history = pd.DataFrame({"coin_id": series, "timestamp": stamps[positions], "value": values}, copy=False)
        target = first[series_of_flag] + rows - begin[series_of_flag]
        return cls(history, coin_ids[series_coin], np.asarray(signal_names, dtype=object)[series_signal], target)

    def previous_steps(
        self, params: ModelParams, flag_periods: np.ndarray, lookback: np.timedelta64
    ) -> tuple[np.ndarray, pd.DataFrame]:
        """Each flag's previous timestamp (NaT if none), and the flagged entries of the observations at
        the previous steps lying within ``lookback`` of a flag, each judged for the periods of the flags
        it follows (steps farther back cannot continue an episode, so they are not judged).
        """
        history, target = self.history, self.target
        flagged_at = np.zeros(len(history), dtype=bool)
        flagged_at[target] = True
        periods = tuple(int(p) for p in np.unique(flag_periods))
        rows = sort_rows(history, flagged_at, periods)
        if rows is None or not rows.presorted:
            raise ValueError(_UNSORTED)
        keys, series = rows.keys, rows.codes
        stamps = history["timestamp"].to_numpy()
        present = np.flatnonzero(~np.isnan(history["value"].to_numpy()))
        present_keys = keys[present]
        # the last row with a value before the flag's (series, timestamp): its previous step, if of that series
        last = np.searchsorted(present_keys, keys[target], side="left") - 1
        last_row = present[np.maximum(last, 0)]
        found = (last >= 0) & (series[last_row] == series[target])
        previous_timestamp = np.where(found, stamps[last_row], np.datetime64("NaT")).astype(stamps.dtype)
        close = found & (stamps[target] - stamps[last_row] <= lookback)
        # the observations at a previous step: the run of equal keys ending at ``last`` (ties: a few rows)
        run_start = np.searchsorted(present_keys, present_keys[np.maximum(last, 0)], side="left")
        results = []
        for period in periods:  # each previous step is judged for the periods of the flags it follows
            mine = close & (flag_periods == period)
            if not mine.any():
                continue
            judged = np.zeros(len(history), dtype=bool)
            judged[present[_ranges(run_start[mine], last[mine] + 1)]] = True
            own = ModelParams(("value",), (period,), params.deviation_limit, params.min_observations)
            results.append(judge_signal(history, replace(rows, judged=judged), "value", own))
        if not results:
            return previous_timestamp, empty_starts()
        judged_results = pd.concat(results, ignore_index=True)
        judged_results["signal"] = self.signals[series[judged_results["row"].to_numpy()]]
        previous = _flagged(judged_results, lambda at: (self.coin_ids[series[at]], stamps[at]))
        return previous_timestamp, previous


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Every position of the ranges ``[starts[i], stops[i])``, concatenated."""
    lengths = stops - starts
    return np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)


def _first_after(stamps: np.ndarray, lo: np.ndarray, hi: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """For each i, the first position in ``[lo[i], hi[i])`` stamped after ``bound[i]`` (``hi[i]`` if none).

    Each range is one coin's block, in time order: a bisection run on all
    ranges at once, one step per halving (about 20 steps for a million rows).
    """
    lo, hi = lo.copy(), hi.copy()
    while (active := lo < hi).any():
        middle = (lo + hi) // 2
        after = stamps[np.minimum(middle, len(stamps) - 1)] > bound
        hi = np.where(active & after, middle, hi)
        lo = np.where(active & ~after, middle + 1, lo)
    return lo
