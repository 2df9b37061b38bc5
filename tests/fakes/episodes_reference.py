"""A plain-Python reference of contract §9 and §11 (direction, severity, levels, episodes, raises).

Deliberately naive: one entry at a time, dicts and lists, Python's ``sorted``;
it shares nothing with the vectorised :mod:`libs.models.episodes` it checks.
Entries are dicts with ``coin_id, signal, period_days, timestamp`` (datetime),
``value, q1, q3, lower, upper`` (float or None) and ``is_anomaly``
(True / False / None).
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from tests.fakes.reference import usable_number

#: contract §9's defaults, written out again here (not imported from the code under test).
RATIO_SIGNALS = {"latest_price", "volume", "market_cap"}
DEFAULT_FLOORS = {
    "volatility_index": 2.0,
    "market_cap_score": 1.0,
    "liquidity_risk_score": 1.0,
    "volatility_risk_score": 1.0,
}


@dataclass(frozen=True)
class Rules:
    """The settings of contract §9, as plain values."""

    relative_floor: float = 0.01
    floors: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOORS))
    min_severity: float = 3.0
    factor: float = 2.0
    memory_hours: float = 24.0
    lookback_hours: float = 24.0


DEFAULTS = Rules()


def _number(x: Any) -> float:
    return math.nan if x is None else float(x)


def direction_of(entry: dict[str, Any]) -> str | None:
    """'spike', 'dip' or None: flagged only when is_anomaly is true and the value lies beyond a fence."""
    if entry.get("is_anomaly") is not True:
        return None
    value, lower, upper = _number(entry["value"]), _number(entry["lower"]), _number(entry["upper"])
    if value > upper:
        return "spike"
    if value < lower:
        return "dip"
    return None


def severity_of(entry: dict[str, Any], rules: Rules = DEFAULTS) -> float | None:
    """contract §9's severity by its formulas, one entry at a time; None when not flagged or without a scale."""
    direction = direction_of(entry)
    if direction is None:
        return None
    value, q1, q3 = _number(entry["value"]), _number(entry["q1"]), _number(entry["q3"])
    lower, upper = _number(entry["lower"]), _number(entry["upper"])
    if entry["signal"] in RATIO_SIGNALS:
        if not (q1 > 0 and value > 0):
            return None
        spread = max(_ln_ratio(q3, q1), math.log(1 + rules.relative_floor))
        beyond = _ln_ratio(value, upper) if direction == "spike" else _ln_ratio(lower, value)
    else:
        spread = max(q3 - q1, rules.floors.get(entry["signal"], 0.0))
        beyond = value - upper if direction == "spike" else lower - value
    if spread == 0:
        return None
    try:
        return min(beyond / spread, sys.float_info.max)  # beyond float64: the largest float, as the contract says
    except OverflowError:
        return sys.float_info.max


def _ln_ratio(a: float, b: float) -> float:
    """ln(a / b) of two positive floats to 50 significant digits (decimal arithmetic on their exact values)."""
    with localcontext() as context:
        context.prec = 50
        return float((Decimal(a) / Decimal(b)).ln())


def level_of(severity: float | None, rules: Rules = DEFAULTS) -> int:
    """contract §9's level: how many thresholds m, m·f, m·f², … the severity reaches (counted one by one)."""
    if severity is None or severity < rules.min_severity:
        return 0
    if rules.factor <= 1:
        return 1
    level = 0
    while severity >= rules.min_severity * rules.factor**level:
        level += 1
    return level


def is_flat(entry: dict[str, Any]) -> bool:
    return direction_of(entry) is not None and _number(entry["q3"]) - _number(entry["q1"]) == 0


def _beyond(entry: dict[str, Any]) -> float:
    if direction_of(entry) == "spike":
        return _number(entry["value"]) - _number(entry["upper"])
    return _number(entry["lower"]) - _number(entry["value"])


def _by_key(entries: list[dict[str, Any]]) -> dict[tuple, list[tuple[int, dict[str, Any]]]]:
    by_key: dict[tuple, list[tuple[int, dict[str, Any]]]] = {}
    for position, entry in enumerate(entries):
        key = (entry["coin_id"], entry["signal"], int(entry["period_days"]))
        by_key.setdefault(key, []).append((position, entry))
    return by_key


def _episodes_of(members: list[tuple[int, dict[str, Any]]], direction: str, lookback: timedelta):
    """The episodes of one key in one direction: lists of (step time, [(position, entry) flagged at it])."""
    episodes: list[list[tuple[datetime, list[tuple[int, dict[str, Any]]]]]] = []
    current: list[tuple[datetime, list[tuple[int, dict[str, Any]]]]] = []
    previous_step: datetime | None = None
    previous_flagged = False
    for step in sorted({entry["timestamp"] for _, entry in members}):
        at_step = [(p, e) for p, e in members if e["timestamp"] == step and direction_of(e) == direction]
        flagged = bool(at_step)
        continues = flagged and previous_flagged and previous_step is not None and step - previous_step <= lookback
        if not continues and current:
            episodes.append(current)
            current = []
        if flagged:
            current.append((step, at_step))
        previous_step = step
        previous_flagged = flagged
    if current:
        episodes.append(current)
    return episodes


def reference_episodes(
    entries: list[dict[str, Any]], lookback_hours: float, rules: Rules = DEFAULTS
) -> list[dict[str, Any]]:
    """Episodes as contract §9 and §11 define them, ranked; one dict per episode."""
    episodes = []
    for key, members in _by_key(entries).items():
        for direction in ("spike", "dip"):
            for episode in _episodes_of(members, direction, timedelta(hours=lookback_hours)):
                flagged = [pe for _, at_step in episode for pe in at_step]
                episodes.append(_episode(key, direction, flagged, rules))
    return sorted(
        episodes,
        key=lambda e: (
            e["peak_severity"] is None,
            -(e["peak_severity"] or 0.0),
            e["coin_id"],
            e["signal"],
            e["period_days"],
            e["start"],
            e["direction"],
        ),
    )


def _episode(key: tuple, direction: str, members: list[tuple[int, dict[str, Any]]], rules: Rules) -> dict[str, Any]:
    finite = [(p, e) for p, e in members if severity_of(e, rules) is not None]
    if finite:
        best_severity = max(severity_of(e, rules) for _, e in finite)
        candidates = [(p, e) for p, e in finite if severity_of(e, rules) == best_severity]
    else:
        candidates = list(members)
    first_time = min(e["timestamp"] for _, e in candidates)
    candidates = [(p, e) for p, e in candidates if e["timestamp"] == first_time]
    farthest = max(_beyond(e) for _, e in candidates)
    candidates = [(p, e) for p, e in candidates if _beyond(e) == farthest]
    _, peak = min(candidates, key=lambda pe: pe[0])
    times = [e["timestamp"] for _, e in members]
    return {
        "coin_id": key[0],
        "signal": key[1],
        "period_days": key[2],
        "direction": direction,
        "start": min(times),
        "end": max(times),
        "observations": len(members),
        "peak_timestamp": peak["timestamp"],
        "peak_value": _number(peak["value"]),
        "peak_severity": severity_of(peak, rules),
        "flat_window": is_flat(peak),
    }


def reference_raises(entries: list[dict[str, Any]], rules: Rules = DEFAULTS) -> list[dict[str, Any]]:
    """contract §9's raises, step by step: the most severe entry of each raising (step, direction), with
    ``direction``, ``severity``, ``level`` and ``flat_window`` added. Plain loops over steps and episodes."""
    raises = []
    lookback, memory = timedelta(hours=rules.lookback_hours), timedelta(hours=rules.memory_hours)
    for _key, members in _by_key(entries).items():
        for direction in ("spike", "dip"):
            for episode in _episodes_of(members, direction, lookback):
                levels: list[tuple[datetime, int]] = []
                for step, at_step in episode:

                    def rank(pe: tuple[int, dict[str, Any]]) -> tuple:
                        severity = severity_of(pe[1], rules)
                        return (severity is not None, severity or 0.0, _beyond(pe[1]), -pe[0])

                    _, best = max(at_step, key=rank)
                    severity = severity_of(best, rules)
                    level = level_of(severity, rules)
                    earlier = [lv for when, lv in levels if step - when <= memory]
                    if level >= 1 and all(lv < level for lv in earlier):
                        raises.append(
                            {
                                **best,
                                "direction": direction,
                                "severity": severity,
                                "level": level,
                                "flat_window": is_flat(best),
                            }
                        )
                    levels.append((step, level))
    return raises


def _walk_stored_entries(
    documents: Iterable[dict[str, Any]],
    signals: Iterable[str],
    periods: Iterable[int] | None,
    since: datetime | None,
    as_of: datetime | None,
) -> list[dict[str, Any]]:
    wanted_periods = None if periods is None else set(periods)
    rows = []
    for doc in documents:
        coin, stamp = doc.get("coin_id"), doc.get("timestamp")
        if not isinstance(coin, str) or not coin or not isinstance(stamp, datetime):
            continue
        try:
            coin.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: bytes the driver could not decode
            continue
        if (since is not None and stamp < since) or (as_of is not None and stamp > as_of):
            continue
        anomalies = doc.get("anomalies")
        if not isinstance(anomalies, dict):
            continue
        for signal in signals:
            windows = anomalies.get(signal)
            if not isinstance(windows, dict):
                continue
            for key, stored in windows.items():
                if not re.fullmatch(r"[1-9][0-9]{0,2}d", key) or not isinstance(stored, dict):
                    continue
                if wanted_periods is not None and int(key[:-1]) not in wanted_periods:
                    continue
                numbers = {
                    name: usable_number(stored.get(name)) for name in ("value", "q1", "q3", "lower", "upper", "k")
                }
                flag = stored.get("is_anomaly")
                rows.append(
                    {
                        "coin_id": coin,
                        "signal": signal,
                        "period_days": int(key[:-1]),
                        "timestamp": stamp,
                        **numbers,
                        "is_anomaly": flag if isinstance(flag, bool) else None,
                    }
                )
    return rows


def entry_is_usable(entry: dict[str, Any]) -> bool:
    """contract §11: a value, and for a judged entry (is_anomaly true or false) all four fences, are numbers."""
    needed = ("value",) if entry["is_anomaly"] is None else ("value", "q1", "q3", "lower", "upper")
    return all(entry[name] is not None for name in needed)


def reference_stored_entries(
    documents: Iterable[dict[str, Any]],
    signals: Iterable[str],
    periods: Iterable[int] | None = None,
    since: datetime | None = None,
    as_of: datetime | None = None,
) -> list[dict[str, Any]]:
    """contract §5's stored entries walked document by document, as entry dicts for the functions above.

    Only documents with a non-empty, decodable string ``coin_id`` and a date
    ``timestamp`` (in ``[since, as_of]`` when given) count; an entry is a
    sub-document under ``anomalies.<signal>.<P>d``; a number that is not a
    finite number (int, float, Decimal128, never a boolean) is None, a flag
    that is not a boolean is None; an entry whose numbers cannot be used
    (:func:`entry_is_usable`) is left out (contract §11).
    """
    return [e for e in _walk_stored_entries(documents, signals, periods, since, as_of) if entry_is_usable(e)]


def reference_unusable_count(
    documents: Iterable[dict[str, Any]],
    signals: Iterable[str],
    periods: Iterable[int] | None = None,
    since: datetime | None = None,
    as_of: datetime | None = None,
) -> int:
    """How many stored entries :func:`reference_stored_entries` leaves out."""
    return sum(not entry_is_usable(e) for e in _walk_stored_entries(documents, signals, periods, since, as_of))


def iso_ms(moment: datetime) -> str:
    """contract §10's time format, by strftime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reference_json(
    entries: list[dict[str, Any]], lookback_hours: float, rules: Rules = DEFAULTS
) -> list[dict[str, Any]]:
    """contract §11's episodes.json of the reference's episodes."""
    return [
        {
            **episode,
            "start": iso_ms(episode["start"]),
            "end": iso_ms(episode["end"]),
            "peak_timestamp": iso_ms(episode["peak_timestamp"]),
        }
        for episode in reference_episodes(entries, lookback_hours, rules)
    ]


def assert_same_json(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Episodes JSON equal to the reference's: same keys in the same order, floats to 12 digits."""
    import pytest

    assert [list(e) for e in got] == [list(e) for e in expected]
    for mine, theirs in zip(got, expected, strict=True):
        for key, value in theirs.items():
            if key in ("peak_value", "peak_severity") and value is not None:
                assert mine[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert mine[key] == value, key
