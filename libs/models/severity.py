"""Direction, severity and level of a judged entry (contract §9): the one definition alerts, report and backtest share.

Pure and vectorised: arrays in, arrays out, no I/O.

Why two scales. Measured on real markets, severity in raw IQR units ranked
stablecoin tick noise (a near-flat window divided by a near-zero IQR) above
LUNA's 99.99 % fall, which could never score far (a dip on a raw scale cannot
pass zero). So *ratio signals* (prices, volumes, market caps: positive
quantities that move by multiples) are measured on the log scale, in units of
the window's log spread ``ln(q3 / q1)``, floored at ``ln(1 + relative_floor)``
(a stablecoin pinned at its peg is not allowed a spread under 1 %). *Level
signals* (the scores and ``volatility_index``, already percentages) are
measured linearly, in units of ``max(iqr, floor)`` with a floor in the
signal's own units. Where a scale does not exist (a ratio window reaching
zero or below, or a spread of 0 with no floor) severity is NaN: unknown, ranked
after every finite one, never alerting.

Levels turn a severity into a small integer an operator can route on: level
*j + 1* from ``min_severity · factor^j`` up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from libs.helpers.constants_helper import RATIO_SIGNALS, default

#: The two directions of a flag.
SPIKE = "spike"
DIP = "dip"
DIRECTIONS = (SPIKE, DIP)


_LARGEST = np.finfo(np.float64).max
_SMALLEST = np.nextafter(0.0, 1.0)


@dataclass(frozen=True)
class SeverityScale:
    """The floors of the two scales (``SEVERITY_RELATIVE_FLOOR``, ``SEVERITY_ABSOLUTE_FLOORS``)."""

    relative_floor: float = default("severity_relative_floor")
    #: ``(signal, floor)`` pairs of level signals; a level signal not named has floor 0.
    absolute_floors: tuple[tuple[str, float], ...] = default("severity_absolute_floors")

    def floor_of(self, signal: str) -> float:
        """The absolute floor of a level signal (0 when not named)."""
        return dict(self.absolute_floors).get(signal, 0.0)


@dataclass(frozen=True)
class RaiseRules:
    """When a flagged step raises its episode (``ALERT_MIN_SEVERITY``, ``ALERT_ESCALATION_FACTOR``,
    ``ALERT_MEMORY_HOURS``; episodes link steps at most ``ANOMALY_LATEST_LOOKBACK_HOURS`` apart)."""

    min_severity: float = default("alert_min_severity")
    escalation_factor: float = default("alert_escalation_factor")
    memory_hours: float = default("alert_memory_hours")
    lookback_hours: float = default("latest_lookback_hours")


def severity(
    signals: np.ndarray | str,
    value: np.ndarray,
    q1: np.ndarray,
    q3: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    direction: np.ndarray,
    scale: SeverityScale,
) -> np.ndarray:
    """How far beyond its fence each flagged value lies, in units of its window's spread (NaN: no scale).

    ``signals`` is one name or an object array of names, one per entry; the
    numbers are float64 arrays of one length; ``direction`` holds ``"spike"``,
    ``"dip"`` or None (not flagged: NaN). A finite result is always above 0
    and at most the largest float64.

    Ratio signals: ``ln(value / upper) / S`` for a spike and ``ln(lower / value) / S``
    for a dip, ``S = max(ln(q3 / q1), ln(1 + relative_floor))``, NaN when
    ``q1 <= 0`` or ``value <= 0``. The logs of ratios are taken as
    ``log1p((a − b) / b)``, accurate to the last bits for values a hair
    beyond the fence (``ln(a / b)`` keeps only the rounding of ``a / b``
    there), and as ``ln a − ln b`` where the quotient overflows. Level signals: ``(value − upper) / S`` or ``(lower − value) / S``,
    ``S = max(q3 − q1, floor)``. Either scale: NaN when ``S`` is 0.
    """
    value, q1, q3, lower, upper = (np.asarray(column, dtype=np.float64) for column in (value, q1, q3, lower, upper))
    direction = np.asarray(direction, dtype=object)
    spike = direction == SPIKE
    dip = direction == DIP
    if isinstance(signals, str):  # one signal: two scalars instead of a lookup per entry
        ratio = np.full(len(value), signals in RATIO_SIGNALS)
        floors = np.full(len(value), scale.floor_of(signals))
    else:
        names = np.asarray(signals, dtype=object)
        ratio = np.isin(names, RATIO_SIGNALS)
        floors = pd.Series(names).map(dict(scale.absolute_floors)).fillna(0.0).to_numpy(dtype=np.float64)
    out = np.full(len(value), np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        on_log = ratio & (spike | dip) & (q1 > 0) & (value > 0)
        if on_log.any():
            spread = np.maximum(_log_ratio(q3[on_log], q1[on_log]), np.log1p(scale.relative_floor))
            beyond = np.where(
                spike[on_log], _log_ratio(value[on_log], upper[on_log]), _log_ratio(lower[on_log], value[on_log])
            )
            out[on_log] = _bounded(beyond, spread)
        linear = ~ratio & (spike | dip)
        if linear.any():
            spread = np.maximum(q3[linear] - q1[linear], floors[linear])
            beyond = np.where(spike[linear], value[linear] - upper[linear], lower[linear] - value[linear])
            out[linear] = _bounded(beyond, spread)
    return out


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``ln(a / b)`` for positive ``a, b``: ``log1p((a − b) / b)``, or ``ln a − ln b`` where that overflows."""
    relative = (a - b) / b
    return np.where(np.isfinite(relative), np.log1p(relative), np.log(a) - np.log(b))


def _bounded(beyond: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """``beyond / spread`` as a severity: NaN where the spread is 0, else in ``(0, largest float64]``."""
    ratio = beyond / spread
    return np.where(spread > 0, np.clip(ratio, _SMALLEST, _LARGEST), np.nan)


def levels(severities: np.ndarray, rules: RaiseRules) -> np.ndarray:
    """The level of each severity (int64): 0 when NaN or below ``min_severity``, else the number of
    ``j >= 0`` with ``severity >= min_severity · factor^j`` (1 for every such severity when ``factor <= 1``).

    Computed from logarithms, then corrected against the thresholds themselves,
    so a severity exactly on a threshold gets that threshold's level.
    """
    severities = np.asarray(severities, dtype=np.float64)
    result = np.zeros(len(severities), dtype=np.int64)
    minimum, factor = rules.min_severity, rules.escalation_factor
    reached = np.isfinite(severities) & (severities >= minimum)
    if not reached.any():
        return result
    if factor <= 1:
        result[reached] = 1
        return result
    found = severities[reached]
    with np.errstate(over="ignore"):
        steps = np.floor((np.log(found) - np.log(minimum)) / np.log(factor)).astype(np.int64)
        steps = np.maximum(steps, 0)
        steps -= (minimum * factor ** steps.astype(np.float64) > found) & (steps > 0)
        steps += minimum * factor ** (steps + 1).astype(np.float64) <= found
    result[reached] = steps + 1
    return result


def classify(entries: pd.DataFrame, scale: SeverityScale, signal: str | None = None) -> pd.DataFrame:
    """Direction, severity and flatness of every entry (contract §9).

    ``entries`` holds ``signal`` and the float columns ``value, q1, q3, lower,
    upper`` and ``is_anomaly`` (True / False / NA). An entry is flagged when
    ``is_anomaly`` is true *and* its value lies beyond a fence (an entry marked
    anomalous whose value sits inside its fences, which only hand-edited data
    can hold, is not flagged, so every flag has a direction).

    Returns a frame on the same index with ``direction`` ("spike", "dip" or
    None), ``severity`` (:func:`severity`; NaN when not flagged) and
    ``flat_window`` (flagged with ``q3 == q1``: information only, a flat window
    has a finite severity wherever the scale has a floor). ``signal``, when the
    caller knows every entry is of that one signal, spares a lookup per entry.
    """
    value, q1, q3, lower, upper = (numbers(entries, name) for name in ("value", "q1", "q3", "lower", "upper"))
    marked = entries["is_anomaly"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    spike = marked & (value > upper)
    dip = marked & ~spike & (value < lower)
    direction = np.full(len(entries), None, dtype=object)
    direction[spike] = SPIKE
    direction[dip] = DIP
    names = signal if signal is not None else entries["signal"].to_numpy(dtype=object)
    severities = severity(names, value, q1, q3, lower, upper, direction, scale)
    return pd.DataFrame(
        {
            "direction": pd.Series(direction, index=entries.index, dtype=object),
            "severity": pd.Series(severities, index=entries.index, dtype=np.float64),
            "flat_window": pd.Series((spike | dip) & (q3 - q1 == 0), index=entries.index, dtype=bool),
        },
        index=entries.index,
    )


def numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64, NaN where it is not a number."""
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def beyond_fence(direction: np.ndarray, value: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """How far each flagged value lies beyond its fence in the signal's units (the tie-break among equals)."""
    return np.where(np.asarray(direction, dtype=object) == SPIKE, value - upper, lower - value)
