"""Which entries raise their episode, judged from the data: for a latest-mode message, and for a backtest.

The rule is :func:`libs.models.episodes.raising` (contract §9): a flagged
step raises when its level is at least 1 and higher than the level of every
earlier step of its episode within ``ALERT_MEMORY_HOURS``. Those earlier steps
are judged here by the model's own code, each with its own trailing window,
never read from stored flags: raises are a pure function of the data and the
request, like the flags.

- :func:`message_raises` (latest mode): only the message's entries of level
  ≥ 1 can raise, so only their coins' steps in the memory before them are
  judged, for the signals and periods that reached a level; a quiet message
  costs one pass over its flags.
- :func:`range_raises` (the backtest): every observation of a period is
  judged with the range engine, the memory before the period included, and
  the same rule runs over all of it at once, a signal at a time.

Both return entries with :data:`RAISE_COLUMNS`, the input of
:mod:`libs.alerts.build`, so a backtest reports exactly what the handler would
publish.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from libs.models.episodes import hours_ms, raising
from libs.models.frames import empty_frame
from libs.models.model import ModelParams, SortedRows, judge_signal, sort_rows
from libs.models.severity import RaiseRules, SeverityScale, classify, levels

#: Columns of a raises frame: the entry's keys, the model's numbers, and its class.
RAISE_COLUMNS = (
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
    "level",
    "flat_window",
)

_DTYPES = {
    "coin_id": object,
    "signal": object,
    "period_days": np.int64,
    "timestamp": "datetime64[ms]",
    "direction": object,
    **dict.fromkeys(("value", "q1", "q3", "lower", "upper"), np.float64),
    "n": np.int64,
    "k": np.float64,
    "severity": np.float64,
    "level": np.int64,
    "flat_window": bool,
}


def empty_raises() -> pd.DataFrame:
    """A raises frame with no rows."""
    return empty_frame(_DTYPES)


def _entries(frame: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Model results with their coin and time, in the shape :func:`~libs.models.episodes.raising` reads."""
    rows = results["row"].to_numpy()
    return results.assign(
        coin_id=frame["coin_id"].to_numpy(dtype=object)[rows],
        timestamp=frame["timestamp"].to_numpy()[rows].astype("datetime64[ms]"),
    )


def _raising_entries(
    judged: pd.DataFrame, signal: str, scale: SeverityScale, rules: RaiseRules, keep: np.ndarray
) -> pd.DataFrame:
    """The entries of ``judged`` (all of ``signal``) that raise, among the rows ``keep`` marks, with
    :data:`RAISE_COLUMNS`."""
    classes = raising(judged, scale, rules, signal)
    chosen = classes["raises"].to_numpy(dtype=bool) & keep
    if not chosen.any():
        return empty_raises()
    picked = judged.loc[chosen]
    picked_classes = classes.loc[chosen]
    return pd.DataFrame(
        {
            **{name: picked[name].to_numpy() for name in ("coin_id", "signal", "period_days", "timestamp")},
            "direction": picked_classes["direction"].to_numpy(dtype=object),
            **{name: picked[name].to_numpy(dtype=np.float64) for name in ("value", "q1", "q3", "lower", "upper")},
            "n": picked["n"].to_numpy(dtype=np.int64),
            "k": picked["k"].to_numpy(dtype=np.float64),
            "severity": picked_classes["severity"].to_numpy(dtype=np.float64),
            "level": picked_classes["level"].to_numpy(dtype=np.int64),
            "flat_window": picked_classes["flat_window"].to_numpy(dtype=bool),
        }
    ).astype(_DTYPES)


def message_raises(
    frame: pd.DataFrame,
    rows: SortedRows | None,
    params: ModelParams,
    results: pd.DataFrame,
    scale: SeverityScale,
    rules: RaiseRules,
) -> pd.DataFrame:
    """The message's judged entries that raise their episode (latest mode), with :data:`RAISE_COLUMNS`.

    ``frame`` is the loader's history (sorted by ``coin_id`` then ``timestamp``)
    reaching back ``rules.memory_hours`` plus the longest period before the
    earliest judged row; ``rows`` and ``results`` are what the model sorted
    and returned for ``params`` on it (``rows.judged`` marks the judged rows).
    """
    if rows is None or results.empty:
        return empty_raises()
    flagged = results.loc[results["is_anomaly"].to_numpy(dtype=bool, na_value=False)]
    entries = _entries(frame, flagged)
    candidates = entries.loc[levels(classify(entries, scale)["severity"].to_numpy(), rules) >= 1]
    if candidates.empty:
        return empty_raises()
    if not rows.presorted:
        raise ValueError("the history frame must be sorted by coin_id, then timestamp (as the loader returns it)")
    memory = np.timedelta64(hours_ms(rules.memory_hours), "ms")
    parts = []
    for signal, of_signal in candidates.groupby("signal", sort=False):
        # every step of the candidates' coins in the memory before them: each judged with its own window
        judged = _memory_rows(frame, rows, of_signal["row"].to_numpy(), memory)
        periods = tuple(sorted({int(p) for p in of_signal["period_days"]}))
        own = ModelParams((str(signal),), periods, params.deviation_limit, params.min_observations)
        entries = _entries(frame, judge_signal(frame, replace(rows, judged=judged), str(signal), own))
        parts.append(_raising_entries(entries, str(signal), scale, rules, rows.judged[entries["row"].to_numpy()]))
    parts = [part for part in parts if len(part)]
    return pd.concat(parts, ignore_index=True) if parts else empty_raises()


def _memory_rows(frame: pd.DataFrame, rows: SortedRows, targets: np.ndarray, memory: np.timedelta64) -> np.ndarray:
    """Mask of the rows of the targets' coins stamped from ``memory`` before a target's time up to it.

    The frame is sorted by coin then time, so each coin is one block, its
    rows in time order: the block's bounds and the first row inside the
    memory are found by binary search for every target at once.
    """
    stamps = frame["timestamp"].to_numpy()
    codes = rows.codes  # presorted: the frame's own order
    target_codes = codes[targets]
    block_end = np.searchsorted(codes, target_codes, side="right")
    block_start = np.searchsorted(codes, target_codes, side="left")
    keys = rows.keys
    since_keys = keys[targets] - (memory.astype(f"timedelta64[{np.datetime_data(stamps.dtype)[0]}]").astype(np.int64))
    begin = np.maximum(np.searchsorted(keys, since_keys, side="left"), block_start)
    end = np.minimum(np.searchsorted(keys, keys[targets], side="right"), block_end)
    cover = np.zeros(len(frame) + 1, dtype=np.int64)
    np.add.at(cover, begin, 1)
    np.add.at(cover, end, -1)
    return np.cumsum(cover[:-1]) > 0


def range_raises(
    frame: pd.DataFrame,
    params: ModelParams,
    since: datetime,
    as_of: datetime,
    scale: SeverityScale,
    rules: RaiseRules,
    coin_ids: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Every entry stamped in ``[since, as_of]`` that raises its episode, as latest-mode messages run at
    each observation's time would publish them (the backtest of contract §12), with :data:`RAISE_COLUMNS`.

    ``frame`` is a history frame (sorted by coin then time, or not) reaching
    back ``rules.memory_hours`` plus the longest period before ``since``. The
    observations of the memory before ``since`` are judged too (they decide
    whether the first steps of the period raise). Signals are independent, so
    they are judged and ruled one at a time, which bounds the memory used.
    """
    stamps = frame["timestamp"].to_numpy()
    in_memory = (stamps >= np.datetime64(since - timedelta(milliseconds=hours_ms(rules.memory_hours)))) & (
        stamps <= np.datetime64(as_of)
    )
    if coin_ids is not None:
        in_memory &= frame["coin_id"].isin(list(coin_ids)).to_numpy()
    in_period = stamps >= np.datetime64(since)
    rows = sort_rows(frame, in_memory, params.periods_days)
    if rows is None:
        return empty_raises()
    coins = pd.Categorical(frame["coin_id"].to_numpy(dtype=object))
    parts = []
    for signal in params.signals:
        entries = _entries(frame, judge_signal(frame, rows, signal, params))
        if entries.empty:
            continue
        # The episode keys are factorized per entry: categories make that a pass over small codes, not a
        # hash of every coin id and signal name (a year of hourly coins is millions of entries a signal).
        entries["coin_id"] = coins.take(entries["row"].to_numpy())
        entries["signal"] = pd.Categorical.from_codes(np.zeros(len(entries), dtype=np.int8), [signal])
        parts.append(_raising_entries(entries, signal, scale, rules, in_period[entries["row"].to_numpy()]))
    parts = [part for part in parts if len(part)]
    return pd.concat(parts, ignore_index=True) if parts else empty_raises()
