"""Severity, direction, steps, episodes and episode starts (contract §9).

Pure and vectorised, frames in and frames out, no I/O: the function uses it
for alerts (which flags *start* an episode) and the report uses it for stored
entries (whole episodes), so both read one set of definitions.

How it stays vectorised: keys (coin, signal, period) are factorised to
integers once and the rows sorted once by (key, timestamp); a step is then a
change of key or timestamp in that order, the link between a step and the one
before it is a comparison of neighbouring array cells, and an episode id is a
cumulative sum of episode starts. Only the two directions are looped over.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The two directions of a flag (contract §9).
SPIKE = "spike"
DIP = "dip"
DIRECTIONS = (SPIKE, DIP)

#: Columns of the frame :func:`build_episodes` returns, in this order (contract §11).
EPISODE_COLUMNS = (
    "coin_id",
    "signal",
    "period_days",
    "direction",
    "start",
    "end",
    "observations",
    "peak_timestamp",
    "peak_value",
    "peak_severity",
    "flat_window",
)

_KEYS = ("coin_id", "signal", "period_days")


def iso_utc_ms(times: pd.Series | np.ndarray) -> list[str]:
    """``2024-11-01T12:00:00.000Z`` for each naive-UTC time (truncated to the millisecond, as BSON stores it).

    How alerts (contract §10) and the report (section 11) both write times.
    """
    stamps = np.asarray(times, dtype="datetime64[ns]").astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(stamps, unit="ms"), "Z").tolist()


def _floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _flag_mask(is_anomaly: pd.Series) -> np.ndarray:
    """True exactly where ``is_anomaly`` is true; False, null and NA (insufficient) are not flags."""
    return is_anomaly.astype("boolean").fillna(False).to_numpy(dtype=bool)


def classify(entries: pd.DataFrame) -> pd.DataFrame:
    """Direction, severity and flatness of every entry (contract §9).

    ``entries`` holds float columns ``value, q1, q3, lower, upper`` and
    ``is_anomaly`` (True / False / NA). An entry is flagged when
    ``is_anomaly`` is true *and* its value lies beyond a fence; an entry
    marked anomalous whose value sits inside its fences (only hand-edited data
    can hold one) is treated as not flagged, so every flag has a direction.

    Returns a frame on the same index with ``direction`` ("spike", "dip" or
    None), ``severity`` (IQRs beyond the fence, at most the largest float64;
    NaN when not flagged or when the window was flat) and ``flat_window``
    (flagged with ``iqr == 0``).
    """
    value = _floats(entries, "value")
    q1 = _floats(entries, "q1")
    q3 = _floats(entries, "q3")
    lower = _floats(entries, "lower")
    upper = _floats(entries, "upper")
    marked = _flag_mask(entries["is_anomaly"])
    spike = marked & (value > upper)
    dip = marked & ~spike & (value < lower)
    iqr = q3 - q1
    beyond = np.where(spike, value - upper, np.where(dip, lower - value, np.nan))
    flagged = spike | dip
    flat = flagged & (iqr == 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # a razor-thin window (0 < iqr) can put the ratio beyond float64: it is still a finite severity, not a
        # flat window, so it is written as the largest float ("more IQRs than a float holds"), as alerts do
        severity = np.where(flagged & ~flat, np.minimum(beyond / iqr, np.finfo(np.float64).max), np.nan)
    direction = np.full(len(entries), None, dtype=object)
    direction[spike] = SPIKE
    direction[dip] = DIP
    return pd.DataFrame(
        {
            "direction": pd.Series(direction, index=entries.index, dtype=object),
            "severity": pd.Series(severity, index=entries.index, dtype=float),
            "flat_window": pd.Series(flat, index=entries.index, dtype=bool),
        },
        index=entries.index,
    )


def _empty_episodes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "coin_id": pd.Series([], dtype=object),
            "signal": pd.Series([], dtype=object),
            "period_days": pd.Series([], dtype=np.int64),
            "direction": pd.Series([], dtype=object),
            "start": pd.Series([], dtype="datetime64[ns]"),
            "end": pd.Series([], dtype="datetime64[ns]"),
            "observations": pd.Series([], dtype=np.int64),
            "peak_timestamp": pd.Series([], dtype="datetime64[ns]"),
            "peak_value": pd.Series([], dtype=float),
            "peak_severity": pd.Series([], dtype=float),
            "flat_window": pd.Series([], dtype=bool),
        }
    )


def _lookback_ns(lookback_hours: int) -> int:
    return int(lookback_hours) * 3_600 * 1_000_000_000


def _timestamps_ns(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype="datetime64[ns]").view(np.int64)


def build_episodes(entries: pd.DataFrame, lookback_hours: int) -> pd.DataFrame:
    """The episodes of contract §9 over stored entries, ranked as contract §11 says.

    ``entries`` has one row per (observation, signal, period) with columns
    ``coin_id, signal, period_days, timestamp`` (naive UTC datetimes) and the
    inputs of :func:`classify`. Every row is a step candidate: a step of
    (coin, signal, period) is a distinct timestamp with an entry, flagged in a
    direction when any entry at it is flagged that way (two observations at
    one timestamp can make it both a spike step and a dip step). An episode is
    a maximal run of consecutive steps flagged in one direction, each at most
    ``lookback_hours`` after the step before it.

    The peak is the flagged entry of highest finite severity, the earliest on
    a tie (then, at one timestamp, the one farthest beyond its fence, then
    input order); when every flagged entry is flat, the first flagged one
    (same tie rule), with ``peak_severity`` NaN and ``flat_window`` True.
    ``observations`` counts the episode's flagged entries. Rows come sorted by
    ``peak_severity`` descending (flat-window episodes last), then coin_id,
    signal, period_days, start, and direction (the tie the spec leaves open).
    """
    if entries.empty:
        return _empty_episodes()
    classes = classify(entries)
    direction = classes["direction"].to_numpy(dtype=object)
    severity = classes["severity"].to_numpy(dtype=float)
    value = _floats(entries, "value")
    beyond = np.where(direction == SPIKE, value - _floats(entries, "upper"), _floats(entries, "lower") - value)

    codes = [pd.factorize(entries[key])[0].astype(np.int64) for key in _KEYS]
    group = codes[0]
    for code in codes[1:]:
        group = group * (int(code.max()) + 1) + code
    stamp = _timestamps_ns(entries["timestamp"])

    order = np.lexsort((stamp, group))
    sorted_group = group[order]
    sorted_stamp = stamp[order]
    new_step = np.empty(len(order), dtype=bool)
    new_step[0] = True
    new_step[1:] = (sorted_group[1:] != sorted_group[:-1]) | (sorted_stamp[1:] != sorted_stamp[:-1])
    step_of_row = np.cumsum(new_step) - 1
    step_group = sorted_group[new_step]
    step_stamp = sorted_stamp[new_step]
    linked = np.zeros(len(step_group), dtype=bool)
    linked[1:] = (step_group[1:] == step_group[:-1]) & (
        step_stamp[1:] - step_stamp[:-1] <= _lookback_ns(lookback_hours)
    )

    sorted_direction = direction[order]
    parts = []
    for name in DIRECTIONS:
        in_direction = sorted_direction == name
        if not in_direction.any():
            continue
        rows = order[in_direction]
        steps = step_of_row[in_direction]
        step_flagged = np.zeros(len(step_group), dtype=bool)
        step_flagged[steps] = True
        previous_flagged = np.zeros_like(step_flagged)
        previous_flagged[1:] = step_flagged[:-1]
        starts = step_flagged & ~(linked & previous_flagged)
        episode_of_step = np.cumsum(starts) - 1
        episode = episode_of_step[steps]
        parts.append(_episodes_of(entries, rows, episode, stamp, severity, beyond, name))
    if not parts:
        return _empty_episodes()
    return _ranked(pd.concat(parts, ignore_index=True))


def _episodes_of(
    entries: pd.DataFrame,
    rows: np.ndarray,
    episode: np.ndarray,
    stamp: np.ndarray,
    severity: np.ndarray,
    beyond: np.ndarray,
    direction: str,
) -> pd.DataFrame:
    """One row per episode of one direction from its flagged rows (positions) and their episode ids."""
    row_stamp = stamp[rows]
    row_severity = severity[rows]
    finite = np.isfinite(row_severity)
    # Best first: finite before flat, higher severity, earlier, farther beyond the fence, input order.
    peak_order = np.lexsort((rows, -beyond[rows], row_stamp, np.where(finite, -row_severity, 0.0), ~finite, episode))
    first_of_episode = np.ones(len(peak_order), dtype=bool)
    first_of_episode[1:] = episode[peak_order][1:] != episode[peak_order][:-1]
    peak = peak_order[first_of_episode]
    peak_rows = rows[peak]
    count = np.bincount(episode)
    start = np.full(len(count), np.iinfo(np.int64).max)
    np.minimum.at(start, episode, row_stamp)
    end = np.full(len(count), np.iinfo(np.int64).min)
    np.maximum.at(end, episode, row_stamp)
    keys = entries.iloc[peak_rows]
    return pd.DataFrame(
        {
            "coin_id": keys["coin_id"].to_numpy(dtype=object),
            "signal": keys["signal"].to_numpy(dtype=object),
            "period_days": keys["period_days"].to_numpy(dtype=np.int64),
            "direction": direction,
            "start": start.view("datetime64[ns]"),
            "end": end.view("datetime64[ns]"),
            "observations": count.astype(np.int64),
            "peak_timestamp": row_stamp[peak].view("datetime64[ns]"),
            "peak_value": _floats(keys, "value"),
            "peak_severity": row_severity[peak],
            "flat_window": ~finite[peak],
        }
    )


def _ranked(episodes: pd.DataFrame) -> pd.DataFrame:
    """Sorted as contract §11 says: severity descending, flat-window last, then the keys."""
    ranking = episodes.assign(_negative_severity=-episodes["peak_severity"].fillna(0.0))
    ranking = ranking.sort_values(
        ["flat_window", "_negative_severity", "coin_id", "signal", "period_days", "start", "direction"],
        kind="stable",
    )
    return ranking.drop(columns="_negative_severity").reset_index(drop=True)[list(EPISODE_COLUMNS)]


def episode_starts(flagged: pd.DataFrame, previous: pd.DataFrame, lookback_hours: int) -> np.ndarray:
    """Which flags start an episode (contract §9), as a bool array over ``flagged``'s rows.

    ``flagged`` has ``coin_id, signal, period_days, timestamp, direction,
    previous_timestamp`` (the coin's nearest earlier timestamp with a value of
    the signal, NaT when none). ``previous`` has ``coin_id, signal,
    period_days, timestamp, direction``: the flags of the observations at
    those previous steps, judged from the data. A flag continues an episode
    (False) exactly when its previous step lies at most ``lookback_hours``
    before it and is flagged for the same period in the same direction.
    """
    if flagged.empty:
        return np.zeros(0, dtype=bool)
    stamp = flagged["timestamp"].to_numpy(dtype="datetime64[ns]")
    before = flagged["previous_timestamp"].to_numpy(dtype="datetime64[ns]")
    gap = (stamp - before).astype(np.int64)
    close = ~np.isnat(before) & (gap > 0) & (gap <= _lookback_ns(lookback_hours))
    if previous.empty or not close.any():
        return np.ones(len(flagged), dtype=bool)
    # one integer per (coin, signal, period, step, direction), shared by both sides: a set lookup in numpy
    asked = np.flatnonzero(close)
    wanted = [flagged[name].to_numpy(dtype=object)[asked] for name in ("coin_id", "signal", "direction")]
    wanted += [flagged["period_days"].to_numpy(dtype=np.int64)[asked], before.view(np.int64)[asked]]
    known = [previous[name].to_numpy(dtype=object) for name in ("coin_id", "signal", "direction")]
    known += [previous["period_days"].to_numpy(dtype=np.int64), _timestamps_ns(previous["timestamp"])]
    key = np.zeros(len(asked) + len(previous), dtype=np.int64)
    for mine, theirs in zip(wanted, known):
        codes, uniques = pd.factorize(np.concatenate([mine, theirs]))
        key = pd.factorize(key * len(uniques) + codes)[0].astype(np.int64)
    continued = np.zeros(len(flagged), dtype=bool)
    continued[asked] = np.isin(key[: len(asked)], key[len(asked) :])
    return ~continued
