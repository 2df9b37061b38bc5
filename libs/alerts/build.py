"""Alerts from episode starts (contract §10): pure, frames in, values out, no I/O.

One alert per (coin, signal, timestamp, direction) at which at least one
requested window starts an episode. Its ``windows`` are those starting windows
by ascending period, each with its own severity; the alert's ``severity`` is
the highest finite one, ``flat_window`` is true when every listed window is
flat. Observations sharing the timestamp share every window (their windows
hold the same values), so "the most severe one" is simply the one farthest
beyond the fence; its value and numbers are the alert's.

Choices where the spec is silent (docs/alerts.md): the ``alert_id`` is the
SHA-256 of the JSON array ``[coin_id, signal, timestamp, direction]``; the
alert's *lead window* (named in the Subject, and whose value the alert carries)
is the one of highest finite severity, or when all are flat the one farthest
beyond its fence, the shorter period on a tie; ranking ties end with the
direction (``dip`` before ``spike``); ``severity`` in the message attributes
is rounded to 5 decimals and capped at 10^9, the range SNS filter policies
compare.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from libs.models.episodes import SPIKE, iso_utc_ms

#: SNS asks for a Subject "less than 100 characters long" (the spec's "at most 100" allows it).
MAX_SUBJECT_CHARS = 99
#: SNS filter policies compare numbers from -10^9 to 10^9 with 5 decimal places.
MAX_ATTRIBUTE_SEVERITY = 1e9
#: Characters SNS and SQS accept in a String attribute; anything else becomes U+FFFD.
_ATTRIBUTE_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_KEYS = ("coin_id", "signal", "timestamp", "direction")
_WINDOW_NUMBERS = ("q1", "q3", "lower", "upper")


@dataclass(frozen=True)
class Alert:
    """One alert: its JSON body, and what SNS needs besides (Subject, attributes, FIFO group)."""

    alert_id: str
    coin_id: str
    signal: str
    timestamp: str
    direction: str
    value: float | None
    severity: float | None
    flat_window: bool
    windows: tuple[dict[str, Any], ...]
    request_id: str
    subject: str

    def body(self) -> dict[str, Any]:
        """The message body of contract §10, keys in its order."""
        return {
            "alert_id": self.alert_id,
            "coin_id": self.coin_id,
            "signal": self.signal,
            "timestamp": self.timestamp,
            "direction": self.direction,
            "value": self.value,
            "severity": self.severity,
            "flat_window": self.flat_window,
            "windows": [dict(window) for window in self.windows],
            "request_id": self.request_id,
        }

    def message(self) -> str:
        """The body as JSON text (never NaN or Infinity: non-finite numbers are null)."""
        return json.dumps(self.body(), allow_nan=False)

    def attributes(self) -> dict[str, dict[str, str]]:
        """SNS message attributes for subscription filter policies; ``severity`` absent when flat."""
        attributes = {
            "coin_id": {"DataType": "String", "StringValue": _attribute_text(self.coin_id)},
            "signal": {"DataType": "String", "StringValue": self.signal},
            "direction": {"DataType": "String", "StringValue": self.direction},
        }
        if self.severity is not None:
            shown = min(self.severity, MAX_ATTRIBUTE_SEVERITY)
            attributes["severity"] = {"DataType": "Number", "StringValue": f"{shown:.5f}"}
        return attributes


@dataclass(frozen=True)
class AlertPlan:
    """What a message publishes: the alerts in publishing order, and what it leaves out and why."""

    alerts: tuple[Alert, ...]
    #: Episode starts found (alerts before any filter).
    starts: int
    #: Alerts below ``ALERT_MIN_SEVERITY`` with no flat window: not published, by design.
    below_min_severity: int
    #: Alerts that passed the threshold but exceeded ``ALERT_MAX_PER_MESSAGE``: not published.
    withheld: int


def alert_id(coin_id: str, signal: str, timestamp: str, direction: str) -> str:
    """The deterministic id of an alert: SHA-256 (hex) of the JSON array of its four keys."""
    key = json.dumps([coin_id, signal, timestamp, direction], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def alert_table(starts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per alert, and one per listed window, from :func:`libs.models.starts.starting_flags`.

    The alert table has ``coin_id, signal, timestamp`` (ISO text),
    ``direction, value, severity`` (NaN when every window is flat),
    ``flat_window`` (every listed window flat), ``any_flat`` (some window
    flat: it alerts whatever its severity) and ``lead_period``; the windows
    table has ``alert`` (the alert's row) and, by ascending period, each
    window's ``period_days, q1, q3, lower, upper, n, k, severity``.
    """
    flat = starts["flat_window"].to_numpy(dtype=bool)
    entries = starts.assign(
        timestamp=iso_utc_ms(starts["timestamp"].to_numpy()),
        # episodes.classify already caps an overflowing ratio at the largest float
        severity=np.where(flat, np.nan, starts["severity"].to_numpy(dtype=np.float64)),
        beyond=np.where(
            starts["direction"].to_numpy() == SPIKE,
            starts["value"].to_numpy() - starts["upper"].to_numpy(),
            starts["lower"].to_numpy() - starts["value"].to_numpy(),
        ),
    )
    entries["alert"] = entries.groupby(list(_KEYS), sort=True, dropna=False).ngroup()
    # observations at one timestamp share the window: the most severe is the one farthest beyond it
    entries = entries.sort_values(["alert", "period_days", "beyond"], ascending=[True, True, False], kind="stable")
    windows = entries.drop_duplicates(["alert", "period_days"], keep="first").reset_index(drop=True)
    flat = windows["flat_window"].to_numpy(dtype=bool)
    lead_order = windows.assign(
        _severity=np.where(flat, 0.0, -windows["severity"].to_numpy()),
        _beyond=np.where(flat, -windows["beyond"].to_numpy(), 0.0),
    ).sort_values(["alert", "flat_window", "_severity", "_beyond", "period_days"], kind="stable")
    lead = lead_order.drop_duplicates("alert", keep="first").set_index("alert").sort_index()
    flat_by_alert = windows.groupby("alert")["flat_window"]
    table = pd.DataFrame(
        {
            **{key: lead[key].to_numpy() for key in _KEYS},
            "value": lead["value"].to_numpy(dtype=np.float64),
            "severity": lead["severity"].to_numpy(dtype=np.float64),
            "flat_window": flat_by_alert.all().sort_index().to_numpy(dtype=bool),
            "any_flat": flat_by_alert.any().sort_index().to_numpy(dtype=bool),
            "lead_period": lead["period_days"].to_numpy(dtype=np.int64),
        }
    )
    return table, windows[["alert", "period_days", *_WINDOW_NUMBERS, "n", "k", "severity"]]


def select(table: pd.DataFrame, min_severity: float, max_per_message: int) -> tuple[np.ndarray, int, int]:
    """Which alerts go out, in publishing order; and how many fell below the threshold, and how many the cap withheld.

    An alert passes when its severity is at least ``min_severity`` or one of
    its windows is flat; those that pass are ranked by severity descending,
    flat ones last, then coin_id, signal, timestamp and direction, and the
    first ``max_per_message`` go out.
    """
    passes = table["any_flat"].to_numpy(dtype=bool) | (table["severity"].to_numpy() >= min_severity)
    eligible = table.loc[passes]
    ranked = eligible.assign(_severity=-eligible["severity"].fillna(0.0)).sort_values(
        ["flat_window", "_severity", "coin_id", "signal", "timestamp", "direction"], kind="stable"
    )
    chosen = ranked.index.to_numpy()[:max_per_message]
    return chosen, int(len(table) - len(eligible)), int(len(eligible) - len(chosen))


def plan_alerts(starts: pd.DataFrame, request_id: str, min_severity: float, max_per_message: int) -> AlertPlan:
    """The alerts a message publishes (contract §10), from its episode starts."""
    if starts.empty:
        return AlertPlan(alerts=(), starts=0, below_min_severity=0, withheld=0)
    table, windows = alert_table(starts)
    chosen, below, withheld = select(table, min_severity, max_per_message)
    return AlertPlan(
        alerts=tuple(alerts_at(table, windows, chosen, request_id)),
        starts=len(table),
        below_min_severity=below,
        withheld=withheld,
    )


def alerts_at(table: pd.DataFrame, windows: pd.DataFrame, positions: np.ndarray, request_id: str) -> list[Alert]:
    """The :class:`Alert` values of the table rows at ``positions`` (a few: at most a message's cap)."""
    listed = windows.loc[windows["alert"].isin(positions)]
    by_alert: dict[int, list[dict[str, Any]]] = {}
    for row in listed.itertuples(index=False):
        by_alert.setdefault(int(row.alert), []).append(
            {
                "period_days": int(row.period_days),
                **{name: _number(getattr(row, name)) for name in _WINDOW_NUMBERS},
                "n": int(row.n),
                "k": _number(row.k),
                "severity": _number(row.severity),
            }
        )
    alerts = []
    for position in positions.tolist():
        row = table.iloc[position]
        severity = _number(row["severity"])
        coin_id, signal, timestamp, direction = (str(row[key]) for key in _KEYS)
        alerts.append(
            Alert(
                alert_id=alert_id(coin_id, signal, timestamp, direction),
                coin_id=coin_id,
                signal=signal,
                timestamp=timestamp,
                direction=direction,
                value=_number(row["value"]),
                severity=severity,
                flat_window=bool(row["flat_window"]),
                windows=tuple(by_alert[position]),
                request_id=request_id,
                subject=subject(coin_id, signal, direction, severity, int(row["lead_period"])),
            )
        )
    return alerts


def subject(coin_id: str, signal: str, direction: str, severity: float | None, period_days: int) -> str:
    """One line of at most :data:`MAX_SUBJECT_CHARS`: ``bitcoin volume spike: 4.2 IQR above the 7-day fence``.

    A flat window broken reads ``bitcoin volume spike: flat 7-day window broken``;
    a coin id too long for the line is cut with ``...``; characters that cannot
    be printed on one line become ``?``.
    """
    if severity is None:
        tail = f" {signal} {direction}: flat {period_days}-day window broken"
    else:
        side = "above" if direction == SPIKE else "below"
        shown = f"{severity:.1f}" if severity < 1e5 else f"{severity:.2e}"
        tail = f" {signal} {direction}: {shown} IQR {side} the {period_days}-day fence"
    coin = "".join(ch if ch.isprintable() else "?" for ch in coin_id).strip() or "?"
    room = MAX_SUBJECT_CHARS - len(tail)
    if len(coin) > room:
        coin = coin[: max(room - 3, 1)] + "..."
    return (coin + tail)[:MAX_SUBJECT_CHARS]


def _number(value: Any) -> float | None:
    """A float for JSON, or None when missing or not finite (JSON has no NaN or Infinity)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _attribute_text(text: str) -> str:
    return _ATTRIBUTE_TEXT.sub("\ufffd", text)
