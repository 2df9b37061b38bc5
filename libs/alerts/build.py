"""Alerts from raises (contract §10): pure, frames in, values out, no I/O.

One alert per (coin, signal, timestamp, direction) at which at least one
window raises its episode (:mod:`libs.models.raises`). Its ``windows`` are
those raising windows by ascending period, each with its own severity and
level; the alert's ``severity`` and ``level`` are the highest among them and
``flat_window`` is true when every listed window is flat. Observations sharing
the timestamp share every window (their windows hold the same values), and the
raise rule already picked the most severe of them: its value and numbers are
the alert's.

Choices where the contract is silent (docs/alerts.md): the ``alert_id`` is
the SHA-256 of the JSON array ``[coin_id, signal, timestamp, direction]``;
the alert's *lead window* (named in the Subject) is the one of highest
severity, the shorter period on a tie; the ``severity`` message attribute is
rounded to 5 decimals and capped at 10^9, the range SNS filter policies
compare.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from libs.jsonvalues import floats_or_none
from libs.models.episodes import iso_utc_ms, ranked_by_severity

#: SNS asks for a Subject "less than 100 characters long".
MAX_SUBJECT_CHARS = 99
#: SNS filter policies compare numbers from -10^9 to 10^9 with 5 decimal places.
MAX_ATTRIBUTE_NUMBER = 1e9

#: Characters SNS and SQS refuse in a String attribute.
_ATTRIBUTE_REFUSED = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

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
    level: int
    flat_window: bool
    windows: tuple[dict[str, Any], ...]
    request_id: str | None
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
            "level": self.level,
            "flat_window": self.flat_window,
            "windows": [dict(window) for window in self.windows],
            "request_id": self.request_id,
        }

    def message(self) -> str:
        """The body as JSON text (never NaN or Infinity: non-finite numbers are null)."""
        return json.dumps(self.body(), allow_nan=False)

    def attributes(self) -> dict[str, dict[str, str]]:
        """SNS message attributes for subscription filter policies (``level >= 2`` routes deepening crashes)."""
        attributes = {
            "coin_id": {"DataType": "String", "StringValue": attribute_text(self.coin_id)},
            "signal": {"DataType": "String", "StringValue": self.signal},
            "direction": {"DataType": "String", "StringValue": self.direction},
            "level": {"DataType": "Number", "StringValue": str(self.level)},
        }
        if self.severity is not None:
            shown = min(self.severity, MAX_ATTRIBUTE_NUMBER)
            attributes["severity"] = {"DataType": "Number", "StringValue": f"{shown:.5f}"}
        return attributes


@dataclass(frozen=True)
class AlertPlan:
    """What a message publishes: the alerts in publishing order, and how many the cap withheld."""

    alerts: tuple[Alert, ...]
    #: Alerts beyond ``ALERT_MAX_PER_MESSAGE``: raised, but not published (the ones an operator would miss).
    withheld: int


def alert_id(coin_id: str, signal: str, timestamp: str, direction: str) -> str:
    """The deterministic id of an alert: SHA-256 (hex) of the JSON array of its four keys."""
    key = json.dumps([coin_id, signal, timestamp, direction], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def alert_table(raises: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per alert, ranked (contract §10), and one row per listed window.

    ``raises`` has :data:`libs.models.raises.RAISE_COLUMNS`, at most one row
    per (coin, signal, period, timestamp, direction). The alert table has
    ``coin_id, signal, timestamp`` (ISO text), ``direction, value, severity,
    level, flat_window, lead_period`` and ``alert`` (its key into the windows
    table), ranked by severity descending, then coin_id, signal, timestamp and
    direction (``dip`` before ``spike``); the windows table has ``alert`` and,
    by ascending period, each window's ``period_days, q1, q3, lower, upper,
    n, k, severity, level``.
    """
    windows = raises.assign(timestamp=iso_utc_ms(raises["timestamp"].to_numpy()))
    windows["alert"] = windows.groupby(list(_KEYS), sort=True).ngroup()
    windows = windows.sort_values(["alert", "period_days"], kind="stable").reset_index(drop=True)
    severity = windows["severity"].to_numpy(dtype=np.float64)
    lead = (
        windows.assign(_negative=np.where(np.isnan(severity), np.inf, -severity))
        .sort_values(["alert", "_negative", "period_days"], kind="stable")
        .drop_duplicates("alert", keep="first")
        .set_index("alert")
        .sort_index()
    )
    by_alert = windows.groupby("alert")
    table = pd.DataFrame(
        {
            "alert": lead.index.to_numpy(),
            **{key: lead[key].to_numpy() for key in _KEYS},
            "value": lead["value"].to_numpy(dtype=np.float64),
            "severity": by_alert["severity"].max().sort_index().to_numpy(dtype=np.float64),
            "level": by_alert["level"].max().sort_index().to_numpy(dtype=np.int64),
            "flat_window": by_alert["flat_window"].all().sort_index().to_numpy(dtype=bool),
            "lead_period": lead["period_days"].to_numpy(dtype=np.int64),
        }
    )
    ranked = ranked_by_severity(table, "severity", ["coin_id", "signal", "timestamp", "direction"])
    return ranked, windows[["alert", "period_days", *_WINDOW_NUMBERS, "n", "k", "severity", "level"]]


def plan_alerts(raises: pd.DataFrame, request_id: str | None, max_per_message: int | None) -> AlertPlan:
    """The alerts a message publishes (contract §10), most severe first, at most ``max_per_message``."""
    if raises.empty:
        return AlertPlan(alerts=(), withheld=0)
    table, windows = alert_table(raises)
    chosen = table if max_per_message is None else table.head(max_per_message)
    return AlertPlan(alerts=tuple(alerts_of(chosen, windows, request_id)), withheld=len(table) - len(chosen))


def alerts_of(table: pd.DataFrame, windows: pd.DataFrame, request_id: str | None) -> list[Alert]:
    """The :class:`Alert` values of the rows of an alert table, in its order."""
    listed = windows.loc[windows["alert"].isin(table["alert"])]
    numbers = {name: floats_or_none(listed[name]) for name in (*_WINDOW_NUMBERS, "k", "severity")}
    periods, counts, levels = (listed[name].to_numpy(dtype=np.int64).tolist() for name in ("period_days", "n", "level"))
    by_alert: dict[int, list[dict[str, Any]]] = {}
    for position, alert in enumerate(listed["alert"].to_numpy().tolist()):
        by_alert.setdefault(alert, []).append(
            {
                "period_days": periods[position],
                **{name: numbers[name][position] for name in _WINDOW_NUMBERS},
                "n": counts[position],
                "k": numbers["k"][position],
                "severity": numbers["severity"][position],
                "level": levels[position],
            }
        )
    values, severities = floats_or_none(table["value"]), floats_or_none(table["severity"])
    alerts = []
    for position, row in enumerate(table.itertuples(index=False)):
        coin_id, signal, timestamp, direction = (
            str(row.coin_id),
            str(row.signal),
            str(row.timestamp),
            str(row.direction),
        )
        level, severity = int(row.level), severities[position]
        alerts.append(
            Alert(
                alert_id=alert_id(coin_id, signal, timestamp, direction),
                coin_id=coin_id,
                signal=signal,
                timestamp=timestamp,
                direction=direction,
                value=values[position],
                severity=severity,
                level=level,
                flat_window=bool(row.flat_window),
                windows=tuple(by_alert[int(row.alert)]),
                request_id=request_id,
                subject=subject(coin_id, signal, direction, level, severity, int(row.lead_period)),
            )
        )
    return alerts


def subject(coin_id: str, signal: str, direction: str, level: int, severity: float | None, period_days: int) -> str:
    """One ASCII line under 100 characters a person reads at a glance.

    ``terra-luna latest_price dip, level 3: severity 13.5 beyond the 30-day fence``.
    SNS refuses a Subject that is not ASCII, holds a control character or
    does not begin with a letter, digit or punctuation: characters outside
    printable ASCII in the coin id are escaped (``\\u00e9``), and a coin id
    too long for the line is cut and ends in ``...``.
    """
    shown = "unknown" if severity is None else f"{severity:.1f}" if severity < 1e5 else f"{severity:.2e}"
    tail = f" {signal} {direction}, level {level}: severity {shown} beyond the {period_days}-day fence"
    coin = "".join(ch if " " <= ch <= "~" else _escaped(ch) for ch in coin_id).strip() or "?"
    room = MAX_SUBJECT_CHARS - len(tail)
    if len(coin) > room:
        coin = coin[: max(room - 3, 1)] + "..."
    return (coin + tail)[:MAX_SUBJECT_CHARS]


def _escaped(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def attribute_text(text: str) -> str:
    """``text`` with every character SNS and SQS refuse in a String attribute replaced by U+FFFD."""
    return _ATTRIBUTE_REFUSED.sub("\ufffd", text)
