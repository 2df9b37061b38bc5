"""The backtest's computations (contract §12): a history frame in, alerts, summary and events out.

Pure: no I/O. The alerts come from :func:`libs.models.raises.range_raises`
(every entry of the period that raises its episode, judged with the range
engine, the memory before ``since`` included) and :mod:`libs.alerts.build`
(``alert_table`` / ``alerts_of``), the code the handler publishes with, so a
backtest cannot disagree with production; ``ALERT_MAX_PER_MESSAGE`` is not
applied (it depends on how requests are split into messages) and
``request_id`` is null. Everything after that is counting over the alert
table, one row per alert, with array operations: no Python loop runs per
observation (the only per-alert loop is ``alerts_of`` building the bodies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from libs.alerts.build import alert_table, alerts_of
from libs.helpers.constants_helper import SIGNALS, Settings
from libs.models.episodes import iso_utc_ms
from libs.models.model import ModelParams
from libs.models.raises import empty_raises, range_raises
from libs.tools.backtest.scope import BacktestScope
from libs.tools.market_data import MarketEvent

#: How many days ``busiest_days`` lists (contract §12).
BUSIEST_DAYS = 10
_MS_PER_DAY = 86_400_000
_MS_PER_HOUR = 3_600_000
#: The order of alerts.json (contract §12).
_TIME_ORDER = ["timestamp", "coin_id", "signal", "direction"]


@dataclass(frozen=True)
class PeriodCounts:
    """What the period holds: coins with an observation in it, their coin-days, and its rows."""

    coins: int
    #: The sum over coins of the days between their first and last observation in the period.
    coin_days: float
    observations: int


@dataclass(frozen=True)
class EventOutcome:
    """One known event against the alerts: whether any alert of its coins falls in its span, and the first."""

    event: MarketEvent
    #: Alerts for the event's coins stamped in ``[onset, onset + hours]``.
    alerts: int
    first_alert: datetime | None
    #: Whether the event's span overlaps the backtest's period at all (an event outside it cannot be caught).
    in_period: bool

    @property
    def caught(self) -> bool:
        return self.alerts > 0

    @property
    def lag_hours(self) -> float | None:
        """Hours from the onset to the first alert (None when not caught)."""
        if self.first_alert is None:
            return None
        return (self.first_alert - self.event.onset).total_seconds() / 3600

    def as_json(self) -> dict[str, Any]:
        """The summary's ``events`` entry (contract §12)."""
        onset, first = iso_utc_ms(
            np.array([self.event.onset, self.first_alert or self.event.onset], dtype="datetime64[ms]")
        )
        hours = self.event.hours
        return {
            "name": self.event.name,
            "coin_ids": list(self.event.coin_ids),
            "onset": onset,
            "hours": int(hours) if float(hours).is_integer() else hours,
            "caught": self.caught,
            "first_alert": first if self.first_alert is not None else None,
            "lag_hours": self.lag_hours,
        }


@dataclass(frozen=True)
class BacktestResult:
    """Everything the backtest found, ready to be written."""

    scope: BacktestScope
    #: The signals judged: the requested ones with at least one value in what was read.
    signals: tuple[str, ...]
    counts: PeriodCounts
    #: One row per alert, most severe first (``libs.alerts.build.alert_table``'s ranking), and its windows.
    ranked: pd.DataFrame
    windows: pd.DataFrame
    events: tuple[EventOutcome, ...] | None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def alerts(self) -> int:
        return len(self.ranked)

    @property
    def alerts_per_coin_day(self) -> float:
        return self.alerts / self.counts.coin_days if self.counts.coin_days > 0 else 0.0

    def alert_bodies(self) -> list[dict[str, Any]]:
        """alerts.json: each alert's body of contract §10 (``request_id`` null), in time order."""
        in_time = self.ranked.sort_values(_TIME_ORDER, kind="stable")
        return [alert.body() for alert in alerts_of(in_time, self.windows, None)]

    def by_signal(self) -> dict[str, int]:
        """Alerts per signal, in the order of contract §2, non-zero ones only."""
        counts = self.ranked["signal"].value_counts()
        return {signal: int(counts[signal]) for signal in SIGNALS if signal in counts.index}

    def by_level(self) -> dict[str, int]:
        """Alerts per level (the alert's, its highest window's), ascending, keys as strings."""
        counts = self.ranked["level"].value_counts().sort_index()
        return {str(int(level)): int(count) for level, count in counts.items() if count}

    def summary(self) -> dict[str, Any]:
        """summary.json (contract §12), plus ``settings``: what the alerts were computed with."""
        since, as_of = iso_utc_ms(np.array([self.scope.since, self.scope.as_of], dtype="datetime64[ms]"))
        summary: dict[str, Any] = {
            "since": since,
            "as_of": as_of,
            "coins": self.counts.coins,
            "coin_days": self.counts.coin_days,
            "observations": self.counts.observations,
            "alerts": self.alerts,
            "alerts_per_coin_day": self.alerts_per_coin_day,
            "by_signal": self.by_signal(),
            "by_level": self.by_level(),
            "busiest_days": busiest_days(alert_dates(self.ranked)),
        }
        if self.events is not None:
            summary["events"] = [outcome.as_json() for outcome in self.events]
        summary["settings"] = self.settings
        return summary

    def summary_line(self) -> str:
        """The one line the command prints."""
        scope, counts = self.scope, self.counts
        levels = ", ".join(f"level {level}: {count:,}" for level, count in self.by_level().items())
        line = (
            f"{self.alerts:,} alerts from {_when(scope.since)} to {_when(scope.as_of)} UTC on {counts.coins:,} coins "
            f"({counts.coin_days:,.1f} coin-days, {counts.observations:,} observations): "
            f"{self.alerts_per_coin_day:.4f} alerts per coin-day"
        )
        if levels:
            line += f" ({levels})"
        if self.events is not None:
            line += f"; events caught: {sum(o.caught for o in self.events)} of {len(self.events)}"
        return line

    def event_lines(self) -> list[str]:
        """One line per event for the command's output, in the events file's order."""
        lines = []
        for outcome in self.events or ():
            event = outcome.event
            head = f"  {event.name} ({' '.join(event.coin_ids)}; {_when(event.onset)} + {event.hours:g} h): "
            if outcome.first_alert is not None and outcome.lag_hours is not None:
                lines.append(
                    f"{head}caught, {outcome.alerts:,} alerts, the first at {_when(outcome.first_alert)} "
                    f"({outcome.lag_hours:,.1f} h after the onset)"
                )
            else:
                lines.append(head + ("not caught" if outcome.in_period else "not caught: outside the period"))
        return lines


def _when(moment: datetime) -> str:
    """Minutes, or seconds and milliseconds when the moment is not on a minute (a date's end: 23:59:59.999)."""
    if moment.second == 0 and moment.microsecond == 0:
        return f"{moment:%Y-%m-%d %H:%M}"
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def judged_signals(scope: BacktestScope, frame: pd.DataFrame) -> tuple[str, ...]:
    """The scope's signals with at least one value in the frame: those that can alert.

    A file's header may name fewer than seven, and the store's documents may
    carry none of a signal; either way a signal without values raises nothing,
    so the store and a file holding the same observations judge the same ones.
    """
    return tuple(
        signal for signal in scope.signals if signal in frame.columns and bool(frame[signal].notna().to_numpy().any())
    )


def judging_settings(scope: BacktestScope, signals: Sequence[str], settings: Settings) -> dict[str, Any]:
    """The configuration the alerts were computed with, by variable name (contract §7), for the page and JSON."""
    return {
        "signals": list(signals),
        "ANOMALY_PERIODS": list(scope.periods_days),
        "QUANTILE_DEVIATION_LIMIT": settings.deviation_limit,
        "ANOMALY_MIN_OBSERVATIONS": settings.min_observations,
        "ANOMALY_LATEST_LOOKBACK_HOURS": settings.latest_lookback_hours,
        "SEVERITY_RELATIVE_FLOOR": settings.severity_relative_floor,
        "SEVERITY_ABSOLUTE_FLOORS": dict(settings.severity_absolute_floors),
        "ALERT_MIN_SEVERITY": settings.alert_min_severity,
        "ALERT_ESCALATION_FACTOR": settings.alert_escalation_factor,
        "ALERT_MEMORY_HOURS": settings.alert_memory_hours,
    }


def period_counts(
    frame: pd.DataFrame, since: datetime, as_of: datetime, coin_ids: Sequence[str] | None = None
) -> PeriodCounts:
    """Coins, coin-days and observations of the frame's rows stamped in ``[since, as_of]`` (of ``coin_ids``).

    A coin's coin-days are the days from its first to its last observation in
    the period (0 for a coin seen once), so a rate per coin-day does not
    count days before a coin was listed or after it stopped trading.
    """
    stamps = frame["timestamp"].to_numpy().astype("datetime64[ms]")
    inside = (stamps >= np.datetime64(since, "ms")) & (stamps <= np.datetime64(as_of, "ms"))
    if coin_ids is not None:
        inside &= frame["coin_id"].isin(list(coin_ids)).to_numpy()
    observations = int(np.count_nonzero(inside))
    if not observations:
        return PeriodCounts(coins=0, coin_days=0.0, observations=0)
    codes, _ = pd.factorize(frame["coin_id"].to_numpy()[inside])
    ticks = stamps[inside].view(np.int64)
    first = np.full(codes.max() + 1, np.iinfo(np.int64).max)
    last = np.full(codes.max() + 1, np.iinfo(np.int64).min)
    np.minimum.at(first, codes, ticks)
    np.maximum.at(last, codes, ticks)
    return PeriodCounts(coins=len(first), coin_days=int((last - first).sum()) / _MS_PER_DAY, observations=observations)


def alert_times(table: pd.DataFrame) -> np.ndarray:
    """The alerts' timestamps (ISO text ending in ``Z`` in the table) as ``datetime64[ms]``."""
    texts = table["timestamp"].to_numpy(dtype=str)
    return np.char.rstrip(texts, "Z").astype("datetime64[ms]") if len(texts) else np.empty(0, "datetime64[ms]")


def alert_dates(table: pd.DataFrame) -> np.ndarray:
    """Each alert's UTC day, ``YYYY-MM-DD``."""
    return alert_times(table).astype("datetime64[D]").astype(str)


def busiest_days(dates: np.ndarray, top: int = BUSIEST_DAYS) -> list[dict[str, Any]]:
    """The ``top`` days with most alerts, ``[{"date", "alerts"}]``, most first, then by date."""
    if not len(dates):
        return []
    days, counts = np.unique(dates, return_counts=True)  # days sorted: the lexsort's tie-break by date
    order = np.lexsort((days, -counts))[:top]
    return [{"date": str(days[i]), "alerts": int(counts[i])} for i in order]


def event_outcomes(
    table: pd.DataFrame, events: Sequence[MarketEvent], since: datetime, as_of: datetime
) -> tuple[EventOutcome, ...]:
    """Each event against the alerts (contract §12): those of its coins stamped in ``[onset, onset + hours]``."""
    times = alert_times(table)
    coins = table["coin_id"].to_numpy(dtype=object)
    outcomes = []
    for event in events:  # a handful of events, each one vectorised pass over the alerts
        onset = np.datetime64(event.onset, "ms")
        end = onset + np.timedelta64(int(round(event.hours * _MS_PER_HOUR)), "ms")
        caught = np.isin(coins, list(event.coin_ids)) & (times >= onset) & (times <= end)
        first = times[caught].min() if caught.any() else None
        outcomes.append(
            EventOutcome(
                event=event,
                alerts=int(np.count_nonzero(caught)),
                first_alert=None if first is None else first.astype(datetime),
                in_period=bool(onset <= np.datetime64(as_of, "ms") and end >= np.datetime64(since, "ms")),
            )
        )
    return tuple(outcomes)


def backtest(
    frame: pd.DataFrame,
    scope: BacktestScope,
    settings: Settings,
    events: Sequence[MarketEvent] | None = None,
) -> BacktestResult:
    """The alerts latest-mode messages would have published at every observation of the period (contract §12).

    ``frame`` is a history frame (``coin_id``, ``timestamp``, a float column
    per signal; sorted by coin then time) of the scope's coins reaching back
    ``ALERT_MEMORY_HOURS`` plus the longest window before ``since``: what
    :mod:`libs.tools.backtest.run` reads from the store or the file.
    """
    signals = judged_signals(scope, frame)
    params = ModelParams(signals, scope.periods_days, settings.deviation_limit, settings.min_observations)
    raises = (
        range_raises(
            frame,
            params,
            scope.since,
            scope.as_of,
            settings.severity_scale,
            settings.raise_rules,
            coin_ids=scope.coin_ids,
        )
        if signals
        else empty_raises()
    )
    ranked, windows = alert_table(raises)
    return BacktestResult(
        scope=scope,
        signals=signals,
        counts=period_counts(frame, scope.since, scope.as_of, scope.coin_ids),
        ranked=ranked,
        windows=windows,
        events=None if events is None else event_outcomes(ranked, events, scope.since, scope.as_of),
        settings=judging_settings(scope, signals, settings),
    )
