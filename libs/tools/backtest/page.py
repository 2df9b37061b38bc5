"""The backtest's page (contract §12): one HTML file that opens with no network.

Pure: it takes what the backtest computed and returns the page's text. Styles
are inline (one ``<style>`` element), the chart is inline SVG, and no script
runs (a bar's numbers show as its tooltip, from an SVG ``<title>``), in the
house style of the analysts' report. Top to bottom: the period, the source
and the settings; the counts (alerts, alerts per coin-day, observations,
events caught); alerts over the period as a bar chart stacked by level, with
the known events shaded; the events table; alerts by signal and the busiest
days; the most severe alerts.

The chart stays readable from a week to years: one bar a day up to
:data:`DAILY_UP_TO_DAYS` days, one a week (Monday to Sunday) up to
:data:`WEEKLY_UP_TO_DAYS`, one a month beyond, so it never holds more than a
few hundred bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from libs.tools.backtest.build import BacktestResult, EventOutcome, alert_dates, alert_times, busiest_days
from libs.tools.pages import BASE_STYLE, direction_badge, format_value, when

#: Alerts listed in the most-severe table (alerts.json holds them all).
MOST_SEVERE = 50
#: Up to this many days the chart has a bar a day; then a week, then (beyond WEEKLY_UP_TO_DAYS) a month.
DAILY_UP_TO_DAYS = 120
WEEKLY_UP_TO_DAYS = 6 * 365
#: Levels drawn in their own colour; higher ones join the last.
STACKED_LEVELS = 4
_LEVEL_COLOURS = ("#f3a683", "#e8684a", "#c62828", "#7b1010")

_CHART_WIDTH, _CHART_HEIGHT = 1200, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 28, 40


@dataclass(frozen=True)
class PageView:
    """Everything the page shows."""

    result: BacktestResult
    #: Where the observations came from (``file …`` or the store, without credentials).
    source: str
    generated_at: datetime


@dataclass(frozen=True)
class Buckets:
    """The chart's bars: each bucket's first day, its alerts by level (rows: buckets), and its width in words."""

    starts: np.ndarray  # datetime64[D]
    ends: np.ndarray  # datetime64[D], inclusive
    by_level: np.ndarray  # int64, (buckets, STACKED_LEVELS)
    unit: str  # "day", "week" or "month"


def chart_buckets(result: BacktestResult) -> Buckets:
    """Alerts per day, week or month over the whole period (empty buckets included), stacked by level."""
    first = np.datetime64(result.scope.since, "D")
    last = np.datetime64(result.scope.as_of, "D")
    days = int((last - first).astype(np.int64)) + 1
    if days <= DAILY_UP_TO_DAYS:
        unit, starts = "day", np.arange(first, last + 1, dtype="datetime64[D]")
        ends = starts
    elif days <= WEEKLY_UP_TO_DAYS:
        monday = first - ((first.astype(np.int64) + 3) % 7)  # 1970-01-01 was a Thursday
        unit, starts = "week", np.arange(monday, last + 1, 7, dtype="datetime64[D]")
        ends = starts + 6
    else:
        months = np.arange(first.astype("datetime64[M]"), last.astype("datetime64[M]") + 1, dtype="datetime64[M]")
        unit, starts = "month", months.astype("datetime64[D]")
        ends = (months + 1).astype("datetime64[D]") - 1
    by_level = np.zeros((len(starts), STACKED_LEVELS), dtype=np.int64)
    table = result.ranked
    if len(table):
        dates = alert_times(table).astype("datetime64[D]")
        bucket = np.searchsorted(starts, dates, side="right") - 1
        level = np.clip(table["level"].to_numpy(dtype=np.int64), 1, STACKED_LEVELS) - 1
        np.add.at(by_level, (bucket, level), 1)
    return Buckets(starts=starts, ends=ends, by_level=by_level, unit=unit)


def _axis_top(most: int, lines: int = 4) -> int:
    """The y axis's top: ``lines`` gridlines a whole, round step apart (1, 2, 2.5, 3, 4, 5, 6, 8 × 10^k)
    covering ``most``, so every gridline is labelled with a whole number of alerts."""
    wanted = max(1, -(-most // lines))
    power = 10 ** (len(str(wanted)) - 1)
    steps = (s * power for s in (1, 2, 2.5, 3, 4, 5, 6, 8, 10) if float(s * power).is_integer())
    return int(next(step for step in steps if step >= wanted)) * lines


def _ticks(buckets: Buckets) -> list[tuple[int, str]]:
    """(bucket index, label) of the x axis: weeks on short periods, months, quarters or years on long ones."""
    starts = buckets.starts
    count = len(starts)
    if buckets.unit == "day" and count <= 31:
        return [(i, f"{pd.Timestamp(starts[i]):%b %d}") for i in range(0, count, max(1, count // 8))]
    if buckets.unit == "day":
        return [
            (i, f"{pd.Timestamp(starts[i]):%b %d}") for i in range(count) if pd.Timestamp(starts[i]).weekday() == 0
        ][::2]
    months = starts.astype("datetime64[M]")
    new_month = np.r_[True, months[1:] != months[:-1]]
    span_months = int((months[-1] - months[0]).astype(np.int64)) + 1
    every = 1 if span_months <= 14 else 3 if span_months <= 48 else 12
    ticks = []
    for i in np.flatnonzero(new_month).tolist():
        stamp = pd.Timestamp(starts[i])
        if i == 0 and stamp.day > 7:  # the first bucket starts mid-month: its month is not on the axis
            continue
        month_index = stamp.year * 12 + stamp.month - 1
        if month_index % every:
            continue
        label = f"{stamp:%Y}" if every == 12 else f"{stamp:%b}" if stamp.month != 1 else f"{stamp:%b %Y}"
        ticks.append((i, label))
    return ticks


def _chart(result: BacktestResult) -> str:
    buckets = chart_buckets(result)
    totals = buckets.by_level.sum(axis=1)
    top = _axis_top(int(totals.max()) if len(totals) else 0)
    width, height = _CHART_WIDTH - _LEFT - _RIGHT, _CHART_HEIGHT - _TOP - _BOTTOM
    step = width / max(len(buckets.starts), 1)
    gap = 1.0 if step >= 4 else 0.0
    parts = [
        f'<svg id="per-day" class="chart" viewBox="0 0 {_CHART_WIDTH} {_CHART_HEIGHT}" width="100%" '
        f'role="img" aria-label="alerts per {buckets.unit}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):  # grid and y labels
        y = _TOP + height * (1 - fraction)
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_LEFT + width}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="ylab" x="{_LEFT - 6}" y="{y + 4:.1f}">{round(top * fraction):,}</text>')
    parts.extend(_event_bands(result, buckets, step, height))
    for i, counts in enumerate(buckets.by_level.tolist()):
        total = sum(counts)
        x = _LEFT + i * step
        start, end = pd.Timestamp(buckets.starts[i]), pd.Timestamp(buckets.ends[i])
        when = f"{start:%Y-%m-%d}" if buckets.unit == "day" else f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"
        levels = ", ".join(
            f"level {level + 1}{'+' if level + 1 == STACKED_LEVELS else ''}: {count}"
            for level, count in enumerate(counts)
            if count
        )
        title = f"{when}: {total:,} alert{'s' if total != 1 else ''}" + (f" ({levels})" if levels else "")
        parts.append(f'<g class="bar"><title>{escape(title)}</title>')
        parts.append(f'<rect class="hit" x="{x:.2f}" y="{_TOP}" width="{max(step, 0.5):.2f}" height="{height}"/>')
        base = _TOP + height
        for level, count in enumerate(counts):
            if not count:
                continue
            tall = height * count / top
            base -= tall
            parts.append(
                f'<rect x="{x + gap / 2:.2f}" y="{base:.2f}" width="{max(step - gap, 0.5):.2f}" '
                f'height="{tall:.2f}" fill="{_LEVEL_COLOURS[level]}"/>'
            )
        parts.append("</g>")
    for i, label in _ticks(buckets):
        x = _LEFT + i * step
        parts.append(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP + height}" y2="{_TOP + height + 5}"/>')
        parts.append(f'<text class="xlab" x="{x:.1f}" y="{_TOP + height + 18}">{escape(label)}</text>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT + width}" y1="{_TOP + height}" y2="{_TOP + height}"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{colour}"></i>level {level + 1}{"+" if level + 1 == STACKED_LEVELS else ""}</span>'
        for level, colour in enumerate(_LEVEL_COLOURS)
    )
    if result.events:
        legend += '<span><i class="event"></i>a known event\'s span (numbered as in the events table)</span>'
    return (
        f'<div class="chart-box"><div class="legend">alerts per {buckets.unit} · {legend}</div>{"".join(parts)}</div>'
    )


def _event_bands(result: BacktestResult, buckets: Buckets, step: float, height: float) -> list[str]:
    """Each event's span shaded behind the bars, numbered as in the events table."""
    if not result.events:
        return []
    first, last = buckets.starts[0], buckets.ends[-1]
    bands = []
    for number, outcome in enumerate(result.events, start=1):
        onset = np.datetime64(outcome.event.onset, "D")
        end = np.datetime64(outcome.event.end, "D")
        if end < first or onset > last:
            continue
        left = max(int(np.searchsorted(buckets.starts, onset, side="right")) - 1, 0)
        right = max(int(np.searchsorted(buckets.starts, end, side="right")) - 1, left)
        x = _LEFT + left * step
        span = max((right - left + 1) * step, 3.0)
        title = f"{number}. {outcome.event.name}: {'caught' if outcome.caught else 'not caught'}"
        bands.append(
            f'<g class="event"><title>{escape(title)}</title>'
            f'<rect x="{x:.2f}" y="{_TOP}" width="{span:.2f}" height="{height}"/>'
            f'<text x="{x + span / 2:.2f}" y="{_TOP - 8}">{number}</text></g>'
        )
    return bands


def _cards(result: BacktestResult) -> str:
    counts = result.counts
    levels = " · ".join(f"level {level}: {count:,}" for level, count in result.by_level().items()) or "none"
    cards = [
        ("Alerts", f"{result.alerts:,}", levels),
        (
            "Alerts per coin-day",
            f"{result.alerts_per_coin_day:.4f}",
            f"{counts.coin_days:,.1f} coin-days on {counts.coins:,} coins",
        ),
        (
            "Observations",
            f"{counts.observations:,}",
            f"stamped in the period; {len(result.signals)} signals with values",
        ),
    ]
    if result.events is not None:
        caught = sum(outcome.caught for outcome in result.events)
        cards.append(("Events caught", f"{caught} of {len(result.events)}", "an alert of its coins in its span"))
    return "\n".join(
        f'<div class="card"><div class="label">{escape(label)}</div><div class="big">{escape(value)}</div>'
        f'<div class="small">{escape(detail)}</div></div>'
        for label, value, detail in cards
    )


def _setting_text(value: Any) -> str:
    if isinstance(value, dict):
        return " · ".join(f"{key} {number:g}" for key, number in value.items()) or "none"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


_WIDE = ' class="wide"'


def _settings(result: BacktestResult) -> str:
    rows = "".join(
        f"<div{_WIDE if isinstance(value, dict) else ''}><dt>{escape(name)}</dt>"
        f"<dd>{escape(_setting_text(value))}</dd></div>"
        for name, value in result.settings.items()
    )
    return f'<dl class="settings">{rows}</dl>'


def _event_rows(events: tuple[EventOutcome, ...]) -> str:
    rows = []
    for number, outcome in enumerate(events, start=1):
        event = outcome.event
        if outcome.caught:
            verdict = '<span class="yes">✓ caught</span>'
            first = when(outcome.first_alert) if outcome.first_alert else "—"
            lag = f"{outcome.lag_hours:,.1f} h"
        else:
            verdict = (
                '<span class="no">✗ not caught</span>'
                if outcome.in_period
                else '<span class="muted">outside the period</span>'
            )
            first, lag = "—", "—"
        rows.append(
            f'<tr><td class="n">{number}</td><td class="name">{escape(event.name)}</td>'
            f'<td>{escape(" ".join(event.coin_ids))}</td><td class="t">{when(event.onset)}</td>'
            f'<td class="n">{event.hours:g} h</td><td>{verdict}</td><td class="n">{outcome.alerts:,}</td>'
            f'<td class="t">{first}</td><td class="n">{lag}</td></tr>'
        )
    return "\n".join(rows)


def _events(result: BacktestResult) -> str:
    if result.events is None:
        return ""
    return (
        '<section id="events"><h2>Known events</h2>'
        '<p class="muted">An event is caught when an alert for one of its coins is stamped in its span, from its '
        "onset to onset + hours; the lag is from the onset to the first such alert.</p>"
        '<div class="box"><table id="events-table" class="grid"><thead><tr><th class="n">#</th><th>event</th>'
        '<th>coins</th><th>onset</th><th class="n">span</th><th>caught</th><th class="n">alerts in span</th>'
        '<th>first alert</th><th class="n">lag</th></tr></thead>'
        f"<tbody>\n{_event_rows(result.events)}\n</tbody></table></div></section>"
    )


def _small_tables(result: BacktestResult) -> str:
    by_signal = "".join(
        f'<tr><th scope="row">{escape(signal)}</th><td class="n">{count:,}</td></tr>'
        for signal, count in result.by_signal().items()
    )
    by_level = "".join(
        f'<tr><th scope="row">level {escape(level)}</th><td class="n">{count:,}</td></tr>'
        for level, count in result.by_level().items()
    )
    busiest = "".join(
        f'<tr><td class="t">{escape(day["date"])}</td><td class="n">{day["alerts"]:,}</td></tr>'
        for day in busiest_days(alert_dates(result.ranked))
    )
    return (
        '<section id="breakdown" class="two">'
        '<div class="box"><h3>Alerts by signal</h3><table id="by-signal" class="grid"><tbody>'
        f"{by_signal or '<tr><td>none</td></tr>'}</tbody></table>"
        '<h3 class="spaced">Alerts by level</h3><table id="by-level" class="grid"><tbody>'
        f"{by_level or '<tr><td>none</td></tr>'}</tbody></table></div>"
        '<div class="box"><h3>Busiest days</h3><table id="busiest" class="grid"><thead><tr><th>day (UTC)</th>'
        f'<th class="n">alerts</th></tr></thead><tbody>{busiest or "<tr><td>none</td></tr>"}</tbody></table></div>'
        "</section>"
    )


def _severity(severity: float) -> str:
    return f"{severity:,.2f}" if np.isfinite(severity) else '<span class="muted">unknown</span>'


def _periods_of(result: BacktestResult, alerts: np.ndarray) -> dict[int, str]:
    """Each listed alert's raising windows, ``7d/30d``."""
    windows = result.windows.loc[result.windows["alert"].isin(alerts)]
    return {
        int(alert): "/".join(f"{int(p)}d" for p in periods)
        for alert, periods in windows.groupby("alert")["period_days"]
    }


def _most_severe(result: BacktestResult) -> str:
    shown = result.ranked.head(MOST_SEVERE)
    if shown.empty:
        return ""
    periods = _periods_of(result, shown["alert"].to_numpy())
    times = alert_times(shown)
    rows = []
    for rank, row in enumerate(shown.itertuples(index=False), start=1):
        flat = (
            ' <span class="flat" title="every raising window was flat (IQR 0)">flat</span>' if row.flat_window else ""
        )
        rows.append(
            f'<tr><td class="n">{rank}</td><td class="coin">{escape(str(row.coin_id))}</td>'
            f'<td>{escape(str(row.signal))}</td><td class="t">{when(times[rank - 1])}</td>'
            f'<td>{direction_badge(str(row.direction))}</td><td class="n lvl">{int(row.level)}</td>'
            f'<td class="n">{_severity(float(row.severity))}{flat}</td>'
            f'<td class="n">{escape(format_value(float(row.value)))}</td>'
            f"<td>{periods.get(int(row.alert), '')}</td></tr>"
        )
    more = (
        f'<p class="muted small">The {len(shown):,} most severe of {result.alerts:,}; alerts.json holds them all.</p>'
        if result.alerts > len(shown)
        else ""
    )
    return (
        '<section id="severe"><h2>Most severe alerts</h2>'
        '<p class="muted">Severity: how far beyond its fence the value lies, in units of its window\'s spread '
        "(on the log scale for prices, volumes and market caps); the level is what a subscription filter routes "
        "on.</p>"
        '<div class="box scroll"><table id="most-severe" class="grid"><thead><tr><th class="n">#</th><th>coin</th>'
        '<th>signal</th><th>time (UTC)</th><th>direction</th><th class="n">level</th><th class="n">severity</th>'
        f'<th class="n">value</th><th>windows</th></tr></thead><tbody>\n{"".join(rows)}\n</tbody></table></div>'
        f"{more}</section>"
    )


def _empty(result: BacktestResult) -> str:
    if result.counts.observations == 0:
        return (
            '<div class="empty"><strong>No observations in this period.</strong> Nothing is stamped from '
            f"{when(result.scope.since)} to {when(result.scope.as_of)} UTC for these filters: check the dates, "
            "the coins and the input.</div>"
        )
    return (
        '<div class="empty ok"><strong>No alerts.</strong> '
        f"{result.counts.observations:,} observations of {result.counts.coins:,} coins were judged and none would "
        "have raised an alert under these settings.</div>"
    )


def render_page(view: PageView) -> str:
    """The whole page as HTML text (UTF-8)."""
    result = view.result
    scope = result.scope
    period = f"{when(scope.since)} → {when(scope.as_of)} UTC"
    coins = "all" if scope.coin_ids is None else ", ".join(scope.coin_ids)
    if len(coins) > 200:
        coins = coins[:199] + "…"
    body = f"{_most_severe(result)}{_small_tables(result)}" if result.alerts else _empty(result)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Backtest · {escape(period)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>Backtest: the alerts that would have been</h1>
<p class="period">{escape(period)}</p>
<dl class="filters">
<div><dt>coins</dt><dd>{escape(coins)}</dd></div>
<div><dt>source</dt><dd>{escape(view.source)}</dd></div>
<div><dt>generated</dt><dd>{view.generated_at:%Y-%m-%d %H:%M} UTC</dd></div>
</dl>
</header>
<main>
<section id="counts"><div class="cards">{_cards(result)}</div></section>
<section id="settings"><h2>Settings</h2>
<p class="muted">What every latest-mode message would have run with (contract §7); ALERT_MAX_PER_MESSAGE is not
applied, since it depends on how requests are split into messages.</p>
{_settings(result)}</section>
<section id="chart"><h2>Alerts over the period</h2>{_chart(result)}</section>
{_events(result)}
{body}
</main>
<footer>
<p><strong>How to read it.</strong> These are the alerts latest-mode messages would have published had one run
at the time of every observation, each alert once: a flagged observation raises its episode when its level is at
least 1 and higher than every earlier step of the episode within ALERT_MEMORY_HOURS. Levels start at
ALERT_MIN_SEVERITY and each next one at ALERT_ESCALATION_FACTOR times the one before. Times are UTC. Every alert
is in <code>alerts.json</code> beside this page, the counts in <code>summary.json</code>.</p>
</footer>
</body>
</html>
"""


_STYLE = (
    """
:root { --ink:#1d2733; --muted:#5d6b7a; --line:#e3e8ee; --bg:#f6f8fa; --card:#fff;
  --spike:#c62828; --dip:#1565c0; --accent:#0b5cad; }
"""
    + BASE_STYLE
    + """
h3 { font-size:14px; margin:2px 0 6px; }
h3.spaced { margin-top:18px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(220px, 1fr)); gap:14px; }
.settings { display:grid; grid-template-columns:repeat(auto-fill, minmax(300px, 1fr)); gap:4px 24px; margin:0;
  background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 16px; font-size:13px; }
.settings div.wide { grid-column:1 / -1; }
.settings div { display:flex; justify-content:space-between; gap:12px; border-bottom:1px dotted var(--line); }
.settings dt { color:var(--muted); font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:12px; }
.settings dd { margin:0; font-variant-numeric:tabular-nums; text-align:right; }
.chart-box { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px 4px; }
.legend { font-size:12px; color:var(--muted); display:flex; flex-wrap:wrap; gap:4px 16px; align-items:center; }
.legend i { display:inline-block; width:12px; height:12px; border-radius:2px; margin-right:5px; vertical-align:-2px; }
.legend i.event { background:#cfe3f7; border:1px solid #8db6de; }
svg.chart { display:block; font-size:12px; }
svg.chart .grid { stroke:#e9edf1; stroke-width:1; }
svg.chart .axis, svg.chart .tick { stroke:#9aa7b4; stroke-width:1; }
svg.chart .ylab { text-anchor:end; fill:var(--muted); }
svg.chart .xlab { text-anchor:middle; fill:var(--muted); }
svg.chart .hit { fill:transparent; }
svg.chart .bar:hover .hit { fill:#eef5ff; }
svg.chart g.event rect { fill:#cfe3f7; fill-opacity:.75; stroke:#8db6de; stroke-width:.5; }
svg.chart g.event text { text-anchor:middle; fill:#0b5cad; font-weight:600; }
.box { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:8px 12px; }
.scroll { max-height:720px; overflow:auto; padding:0; }
.two { display:grid; grid-template-columns:repeat(auto-fit, minmax(320px, 1fr)); gap:14px; margin-top:20px; }
.grid th[scope=row] { font-weight:500; }
.grid tbody tr:nth-child(even) { background:#fafbfc; }
.grid td.coin, .grid td.name { font-weight:600; }
.grid td.t { color:#3b4856; }
.grid td.lvl { font-weight:600; }
.yes { color:#1b7a3a; font-weight:600; }
.no { color:var(--spike); font-weight:600; }
"""
)
