"""Steps, episodes and raises (contract §9): the report's episodes and what alerts publish, from one definition.

Pure and vectorised, frames in and arrays or frames out, no I/O. The report
builds whole episodes from stored entries (:func:`build_episodes`); the
function and the backtest ask which flagged steps *raise* their episode
(:func:`raising`), judged from the data. Both read the same steps and links.

How it stays vectorised: keys (coin, signal, period) are factorised to
integers once and the rows sorted once by (key, timestamp); a step is a change
of key or timestamp in that order, the link between a step and the one before
it is a comparison of neighbouring cells, and an episode id is a cumulative
sum of episode starts. Only the two directions, and for raises the distinct
levels present, are looped over. Times are int64 milliseconds, as MongoDB
keeps them, so any date up to the year 9999 keeps its own time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from libs.models.frames import empty_frame
from libs.models.severity import DIRECTIONS, RaiseRules, SeverityScale, beyond_fence, classify, levels, numbers

#: Columns of the frame :func:`build_episodes` returns, in this order (contract §11), and their dtypes.
EPISODE_DTYPES = {
    "coin_id": object,
    "signal": object,
    "period_days": np.int64,
    "direction": object,
    "start": "datetime64[ms]",
    "end": "datetime64[ms]",
    "observations": np.int64,
    "peak_timestamp": "datetime64[ms]",
    "peak_value": np.float64,
    "peak_severity": np.float64,
    "flat_window": bool,
}
EPISODE_COLUMNS = tuple(EPISODE_DTYPES)

_KEYS = ("coin_id", "signal", "period_days")
_MS_PER_HOUR = 3_600_000


def iso_utc_ms(times: pd.Series | np.ndarray) -> list[str]:
    """``2024-11-01T12:00:00.000Z`` for each naive-UTC time, truncated to the millisecond as BSON stores it.

    How alerts (contract §10), the report (§11) and the backtest (§12) write
    times. Works in milliseconds throughout: a time is never widened to
    nanoseconds, whose range ends in 2262.
    """
    stamps = np.asarray(times)
    if stamps.dtype.kind != "M":
        stamps = pd.to_datetime(pd.Series(times)).to_numpy()
    stamps = stamps.astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(stamps, unit="ms"), "Z").tolist()


def milliseconds(times: pd.Series | np.ndarray) -> np.ndarray:
    """Naive-UTC times of any numpy unit as int64 milliseconds since the epoch."""
    return np.asarray(times).astype("datetime64[ms]").view(np.int64)


def hours_ms(hours: float) -> int:
    """A number of hours in whole milliseconds."""
    return int(round(float(hours) * _MS_PER_HOUR))


def key_codes(entries: pd.DataFrame) -> np.ndarray:
    """One int64 per (coin_id, signal, period_days), equal exactly where the three are."""
    codes = [pd.factorize(entries[key])[0].astype(np.int64) for key in _KEYS]
    key = codes[0]
    for code in codes[1:]:
        key = key * (int(code.max()) + 1 if len(code) else 1) + code
    return key


@dataclass(frozen=True)
class Steps:
    """Rows in (key, timestamp) order and the steps they fall on.

    ``order`` sorts the rows; ``step_of`` gives each sorted row its step;
    ``key`` and ``stamp`` are each step's; ``linked`` says the step follows the
    step before it of the same key by at most the lookback.
    """

    order: np.ndarray
    step_of: np.ndarray
    key: np.ndarray
    stamp: np.ndarray
    linked: np.ndarray

    @classmethod
    def of(cls, key: np.ndarray, stamp_ms: np.ndarray, lookback_ms: int) -> Steps:
        order = np.lexsort((stamp_ms, key))
        sorted_key, sorted_stamp = key[order], stamp_ms[order]
        new_step = np.ones(len(order), dtype=bool)
        new_step[1:] = (sorted_key[1:] != sorted_key[:-1]) | (sorted_stamp[1:] != sorted_stamp[:-1])
        step_key, step_stamp = sorted_key[new_step], sorted_stamp[new_step]
        linked = np.zeros(len(step_key), dtype=bool)
        linked[1:] = (step_key[1:] == step_key[:-1]) & (step_stamp[1:] - step_stamp[:-1] <= lookback_ms)
        return cls(order, np.cumsum(new_step) - 1, step_key, step_stamp, linked)

    def episodes(self, flagged: np.ndarray) -> np.ndarray:
        """The episode of each flagged step (ids from 0 in step order; -1 where not flagged).

        A flagged step starts an episode unless the step before it is linked
        to it and flagged too.
        """
        previous = np.zeros_like(flagged)
        previous[1:] = flagged[:-1]
        starts = flagged & ~(self.linked & previous)
        return np.where(flagged, np.cumsum(starts) - 1, -1)


def _best_rows(
    step: np.ndarray, severity: np.ndarray, stamp: np.ndarray | None, beyond: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """Indices (into the given arrays) of the best row of each group ``step``: a finite severity before a
    null one, then the higher severity, then (when given) the earlier time, the farther beyond the fence,
    the earlier position."""
    finite = np.isfinite(severity)
    keys = [position, -beyond]
    if stamp is not None:
        keys.append(stamp)
    keys += [np.where(finite, -severity, 0.0), ~finite, step]
    ranked = np.lexsort(keys)
    first = np.ones(len(ranked), dtype=bool)
    first[1:] = step[ranked][1:] != step[ranked][:-1]
    return ranked[first]


def raising(judged: pd.DataFrame, scale: SeverityScale, rules: RaiseRules, signal: str | None = None) -> pd.DataFrame:
    """Which flagged steps raise their episode (contract §9), and how.

    ``judged`` has one row per judged entry with ``coin_id, signal,
    period_days, timestamp`` (naive UTC), ``value, q1, q3, lower, upper`` and
    ``is_anomaly``: every step the rule needs, i.e. for each step asked about,
    every step of its (coin, signal, period) in the ``rules.memory_hours``
    before it, each judged from its own window. Unflagged entries matter: they
    end episodes.

    A step's severity in a direction is the highest among its entries flagged
    that way, and its level :func:`~libs.models.severity.levels` of it. A
    flagged step raises when its level is at least 1 and higher than the level
    of every earlier step of the same episode at most ``memory_hours`` before
    it. Returns, on ``judged``'s index, ``direction``, ``severity``,
    ``flat_window`` (:func:`~libs.models.severity.classify`), ``level`` (the
    entry's own) and ``raises``: true on exactly one entry per raising
    (step, direction), the most severe one (then the farthest beyond its fence,
    then the first). ``signal``: as for :func:`~libs.models.severity.classify`.
    """
    classes = classify(judged, scale, signal)
    direction = classes["direction"].to_numpy(dtype=object)
    severity = classes["severity"].to_numpy(dtype=np.float64)
    entry_level = levels(severity, rules)
    raises = np.zeros(len(judged), dtype=bool)
    if len(judged):
        beyond = beyond_fence(direction, numbers(judged, "value"), numbers(judged, "lower"), numbers(judged, "upper"))
        steps = Steps.of(key_codes(judged), milliseconds(judged["timestamp"]), hours_ms(rules.lookback_hours))
        sorted_direction = direction[steps.order]
        for name in DIRECTIONS:
            mine = np.flatnonzero(sorted_direction == name)
            if len(mine) == 0:
                continue
            rows = steps.order[mine]
            row_step = steps.step_of[mine]
            pick = _best_rows(row_step, severity[rows], None, beyond[rows], mine)
            best, best_step = rows[pick], row_step[pick]
            flagged = np.zeros(len(steps.key), dtype=bool)
            flagged[best_step] = True
            step_level = np.zeros(len(steps.key), dtype=np.int64)
            step_level[best_step] = entry_level[best]
            raised = _raised(steps, steps.episodes(flagged), step_level, hours_ms(rules.memory_hours))
            raises[best[raised[best_step]]] = True
    return classes.assign(level=entry_level, raises=raises)


def _raised(steps: Steps, episode: np.ndarray, level: np.ndarray, memory_ms: int) -> np.ndarray:
    """Per step: flagged, level ≥ 1, and no earlier step of its episode within ``memory_ms`` has a level as high.

    The most recent earlier step of level ≥ ℓ decides for a step of level ℓ
    (if it is outside the episode or the memory, every other one is too), and
    it is found for all steps of one level at once with a running maximum of
    positions: one pass per distinct level present.
    """
    flagged = np.flatnonzero(episode >= 0)
    result = np.zeros(len(episode), dtype=bool)
    if len(flagged) == 0:
        return result
    flagged_level, flagged_episode, flagged_stamp = level[flagged], episode[flagged], steps.stamp[flagged]
    positions = np.arange(len(flagged))
    for value in np.unique(flagged_level[flagged_level >= 1]):
        at_least = np.where(flagged_level >= value, positions, -1)
        latest = np.maximum.accumulate(at_least)
        before = np.full(len(flagged), -1)
        before[1:] = latest[:-1]
        asked = np.flatnonzero(flagged_level == value)
        earlier = before[asked]
        found = earlier >= 0
        blocked = np.zeros(len(asked), dtype=bool)
        blocked[found] = (flagged_episode[earlier[found]] == flagged_episode[asked[found]]) & (
            flagged_stamp[asked[found]] - flagged_stamp[earlier[found]] <= memory_ms
        )
        result[flagged[asked[~blocked]]] = True
    return result


def build_episodes(entries: pd.DataFrame, lookback_hours: float, scale: SeverityScale) -> pd.DataFrame:
    """The episodes of contract §9 over stored entries, ranked as contract §11 says.

    ``entries`` has one row per (observation, signal, period) with columns
    ``coin_id, signal, period_days, timestamp`` (naive UTC) and the inputs of
    :func:`~libs.models.severity.classify`. Every row is a step candidate: a
    step of (coin, signal, period) is a distinct timestamp with an entry,
    flagged in a direction when any entry at it is flagged that way (two
    observations at one timestamp can make it both a spike step and a dip
    step). An episode is a maximal run of consecutive steps flagged in one
    direction, each at most ``lookback_hours`` after the step before it.

    The peak is the flagged entry of highest finite severity, the earliest on
    a tie (then, at one timestamp, the one farthest beyond its fence, then
    input order); when none has a finite severity, the first flagged step's
    entry farthest beyond its fence, with ``peak_severity`` NaN.
    ``flat_window`` is the peak's. ``observations`` counts the episode's
    flagged entries. Rows come sorted by ``peak_severity`` descending (NaN
    last), then coin_id, signal, period_days, start, and direction (the tie
    the contract leaves open).
    """
    if entries.empty:
        return empty_frame(EPISODE_DTYPES)
    classes = classify(entries, scale)
    direction = classes["direction"].to_numpy(dtype=object)
    severity = classes["severity"].to_numpy(dtype=np.float64)
    flat = classes["flat_window"].to_numpy(dtype=bool)
    beyond = beyond_fence(direction, numbers(entries, "value"), numbers(entries, "lower"), numbers(entries, "upper"))
    stamp = milliseconds(entries["timestamp"])
    steps = Steps.of(key_codes(entries), stamp, hours_ms(lookback_hours))
    sorted_direction = direction[steps.order]
    parts = []
    for name in DIRECTIONS:
        in_direction = sorted_direction == name
        if not in_direction.any():
            continue
        rows = steps.order[in_direction]
        flagged = np.zeros(len(steps.key), dtype=bool)
        flagged[steps.step_of[in_direction]] = True
        episode = steps.episodes(flagged)[steps.step_of[in_direction]]
        peak = rows[_best_rows(episode, severity[rows], stamp[rows], beyond[rows], rows)]
        count = np.bincount(episode)
        start = np.full(len(count), np.iinfo(np.int64).max)
        np.minimum.at(start, episode, stamp[rows])
        end = np.full(len(count), np.iinfo(np.int64).min)
        np.maximum.at(end, episode, stamp[rows])
        keys = entries.iloc[peak]
        parts.append(
            pd.DataFrame(
                {
                    "coin_id": keys["coin_id"].to_numpy(dtype=object),
                    "signal": keys["signal"].to_numpy(dtype=object),
                    "period_days": keys["period_days"].to_numpy(dtype=np.int64),
                    "direction": name,
                    "start": start.view("datetime64[ms]"),
                    "end": end.view("datetime64[ms]"),
                    "observations": count.astype(np.int64),
                    "peak_timestamp": stamp[peak].view("datetime64[ms]"),
                    "peak_value": numbers(keys, "value"),
                    "peak_severity": severity[peak],
                    "flat_window": flat[peak],
                }
            )
        )
    if not parts:
        return empty_frame(EPISODE_DTYPES)
    return ranked_by_severity(
        pd.concat(parts, ignore_index=True), "peak_severity", ["coin_id", "signal", "period_days", "start", "direction"]
    )[list(EPISODE_COLUMNS)]


def ranked_by_severity(frame: pd.DataFrame, severity: str, then: list[str]) -> pd.DataFrame:
    """``frame`` sorted by ``severity`` descending with NaN after every finite one, then by ``then``.

    The one ranking rule of contract §9: the report's episodes, the alerts'
    cap and the backtest's most severe alerts all sort with it.
    """
    values = frame[severity].to_numpy(dtype=np.float64)
    ranking = frame.assign(_unknown=np.isnan(values), _negative=np.where(np.isnan(values), 0.0, -values))
    ranking = ranking.sort_values(["_unknown", "_negative", *then], kind="stable")
    return ranking.drop(columns=["_unknown", "_negative"]).reset_index(drop=True)
