"""The analysts' page (contract §11): one HTML file that opens with no network.

Pure: it takes what the report computed and returns the page's text. Styles
are inline (one ``<style>`` element), pictures come in as ``data:`` URIs, and
no script runs, so the page looks the same from a laptop, a mail attachment
or a file share. What is on it, top to bottom: the period and filters, the
counts, the ranked episode table and the top ten episodes' plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

import numpy as np
import pandas as pd

from libs.tools.pages import BASE_STYLE, direction_badge, format_value, when
from libs.tools.report.scope import ReportScope
from libs.tools.report.shaping import ReportCounts, severity_text

#: Episodes listed in the page's table; every one is in episodes.json.
MAX_TABLE_ROWS = 1_000
#: Episodes plotted (contract §11: the top ten).
PLOTTED = 10
#: The severity bar's length in pixels: the report's worst finite severity gets the longest.
_BAR_MIN_PX, _BAR_MAX_PX = 3, 64


@dataclass(frozen=True)
class Plot:
    """One plotted episode: its rank (1-based), its picture as a data URI and the PNG file's name."""

    rank: int
    data_uri: str
    file_name: str


@dataclass(frozen=True)
class PageView:
    """Everything the page shows."""

    scope: ReportScope
    generated_at: datetime
    lookback_hours: int
    source: str
    counts: ReportCounts
    episodes: pd.DataFrame
    plots: tuple[Plot, ...]


def _time_format(scope: ReportScope) -> str:
    """Table times: month, day and time; the year too when the period spans two years."""
    return "%b %d %H:%M" if scope.since.year == scope.as_of.year else "%Y %b %d %H:%M"


def _period(scope: ReportScope) -> str:
    return f"{when(scope.since)} → {when(scope.as_of)} UTC"


def format_duration(seconds: float) -> str:
    """How long an episode lasted, first to last flagged observation: 45 min, 6 h, 2 d 6 h."""
    if seconds <= 0:
        return "single"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h"
    return f"{hours // 24} d {hours % 24} h" if hours % 24 else f"{hours // 24} d"


def _severity(severity: float, flat: bool, scale: float) -> str:
    flat_tag = ' <span class="flat" title="the window was flat (IQR 0)">flat</span>' if flat else ""
    if not np.isfinite(severity):
        return f'<span class="flat" title="no severity scale for this window">unknown</span>{flat_tag}'
    # Log scale: severities run from a fraction of a spread to hundreds, and the small ones matter too.
    share = min(np.log1p(severity) / np.log1p(scale), 1.0) if scale > 0 else 0.0
    return (
        f'<span class="sev"><span class="bar" style="width:{_BAR_MIN_PX + share * (_BAR_MAX_PX - _BAR_MIN_PX):.0f}px">'
        "</span>"
        f'<span class="num">{severity:.2f}</span></span>{flat_tag}'
    )


@dataclass(frozen=True)
class WorstEpisode:
    """The report's worst episode (the first: episodes are ranked worst first), in words.

    The page's card and the command's summary line both say it this way.
    """

    coin_id: str
    what: str  # "volume 7-day spike"
    severity: str  # "severity 767.57", "severity 12.40, flat window" or "severity unknown"
    peak: str  # "39.1 M at 2024-11-01 00:00"

    @property
    def headline(self) -> str:
        """One line: ``coin-0005 market_cap 3-day spike (severity 767.57, peak 39.1 M at 2024-11-01 00:00)``."""
        return f"{self.coin_id} {self.what} ({self.severity}, peak {self.peak})"


def worst_episode(episodes: pd.DataFrame) -> WorstEpisode | None:
    """The first of the ranked episodes, or None when there is none."""
    if episodes.empty:
        return None
    top = episodes.iloc[0]
    return WorstEpisode(
        coin_id=str(top["coin_id"]),
        what=f"{top['signal']} {int(top['period_days'])}-day {top['direction']}",
        severity=severity_text(float(top["peak_severity"]), bool(top["flat_window"])),
        peak=f"{format_value(float(top['peak_value']))} at {pd.Timestamp(top['peak_timestamp']):%Y-%m-%d %H:%M}",
    )


def _cards(counts: ReportCounts, episodes: pd.DataFrame) -> str:
    kinds = f"{counts.spike_episodes:,} spikes · {counts.dip_episodes:,} dips"
    if counts.flat_episodes:
        kinds += f" · {counts.flat_episodes:,} flat-window"
    share = counts.flagged / counts.entries if counts.entries else 0.0
    top = worst_episode(episodes)
    worst, worst_detail = (top.coin_id, f"{top.what} · {top.severity}") if top else ("—", "nothing flagged")
    cards = [
        ("Episodes", f"{counts.episodes:,}", kinds, "big"),
        ("Coins affected", f"{counts.coins_with_episodes:,}", f"of {counts.coins_read:,} coins judged", "big"),
        (
            "Flagged observations",
            f"{counts.flagged_observations:,}",
            f"{counts.flagged:,} flags in {counts.entries:,} judged values ({share:.1%})",
            "big",
        ),
        ("Worst episode", worst, worst_detail, "big name"),
    ]
    return "\n".join(
        f'<div class="card"><div class="label">{label}</div><div class="{css}">{escape(value)}</div>'
        f'<div class="small">{escape(detail)}</div></div>'
        for label, value, detail, css in cards
    )


def _by_window(by_window: pd.DataFrame) -> str:
    if by_window.empty:
        return ""
    periods = sorted(by_window["period_days"].unique().tolist())
    head = "".join(f'<th class="n">{p}-day</th>' for p in periods)
    cells = by_window.set_index(["signal", "period_days"])
    rows = []
    for signal in dict.fromkeys(by_window["signal"].tolist()):
        row = [f'<th scope="row">{escape(signal)}</th>']
        for period in periods:
            if (signal, period) not in cells.index:
                row.append('<td class="n muted">—</td>')
                continue
            cell = cells.loc[(signal, period)]
            flagged, judged = int(cell["flagged"]), int(cell["judged"])
            hot = " hot" if flagged else ""
            row.append(
                f'<td class="n{hot}" title="{int(cell["spikes"])} spikes, {int(cell["dips"])} dips">'
                f'{flagged:,}<span class="of"> / {judged:,}</span></td>'
            )
        rows.append(f"<tr>{''.join(row)}</tr>")
    totals = by_window.groupby("period_days")[["flagged", "judged"]].sum()
    total = "".join(
        f'<td class="n">{int(totals.loc[p, "flagged"]):,}<span class="of"> / {int(totals.loc[p, "judged"]):,}</span></td>'
        for p in periods
    )
    return (
        '<div class="window-table"><table id="by-window" class="grid"><thead><tr><th>signal</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f'<tfoot><tr><th scope="row">all signals</th>{total}</tr></tfoot></table>'
        '<p class="muted small">flagged / judged observations per signal and window</p></div>'
    )


def _span(start: str, end: str, start_day: str, end_day: str) -> str:
    """``Oct 30 12:00 → Nov 01 00:00``, ``Oct 30 12:00 → 18:00`` within a day, or the one time."""
    if start == end:
        return start
    return f"{start} → {end[len(end_day) + 1 :] if start_day == end_day else end}"


def _episode_rows(episodes: pd.DataFrame, plotted: set[int], time_format: str) -> str:
    shown = episodes.head(MAX_TABLE_ROWS)
    severities = shown["peak_severity"].to_numpy(dtype=float)
    finite = severities[np.isfinite(severities)]
    scale = float(finite.max()) if finite.size else 0.0
    seconds = (shown["end"] - shown["start"]).dt.total_seconds().to_numpy()
    day_format = time_format.rsplit(" ", 1)[0]
    columns = zip(
        range(1, len(shown) + 1),
        shown["coin_id"].astype(str),
        shown["signal"].astype(str),
        shown["period_days"].astype(int),
        shown["direction"].astype(str),
        severities,
        shown["flat_window"].astype(bool),
        shown["peak_value"].to_numpy(dtype=float),
        shown["peak_timestamp"].dt.strftime(time_format),
        shown["start"].dt.strftime(time_format),
        shown["end"].dt.strftime(time_format),
        shown["start"].dt.strftime(day_format),
        shown["end"].dt.strftime(day_format),
        shown["observations"].astype(int),
        seconds,
    )
    rows = []
    for (
        rank,
        coin,
        signal,
        period,
        direction,
        severity,
        flat,
        value,
        peak,
        start,
        end,
        day0,
        day1,
        count,
        span,
    ) in columns:
        link = f'<a href="#plot-{rank}" title="see the plot">{rank}</a>' if rank in plotted else str(rank)
        top = ' class="top"' if rank in plotted else ""
        rows.append(
            f'<tr{top}><td class="n rank">{link}</td><td class="coin">{escape(coin)}</td>'
            f'<td>{escape(signal)}</td><td class="n">{period}-day</td><td>{direction_badge(direction)}</td>'
            f'<td>{_severity(severity, flat, scale)}</td><td class="n">{escape(format_value(value))}</td>'
            f'<td class="t">{peak}</td><td class="t">{_span(start, end, day0, day1)}</td>'
            f'<td class="n">{count}</td><td class="n">{format_duration(span)}</td></tr>'
        )
    return "\n".join(rows)


def _episode_table(episodes: pd.DataFrame, plotted: set[int], time_format: str) -> str:
    more = ""
    if len(episodes) > MAX_TABLE_ROWS:
        more = (
            f'<p class="muted">The table lists the first {MAX_TABLE_ROWS:,} of {len(episodes):,} episodes; '
            "episodes.json holds them all.</p>"
        )
    return (
        '<div class="scroll"><table id="episodes" class="grid">'
        "<thead><tr>"
        '<th class="n">#</th><th>coin</th><th>signal</th><th class="n">window</th><th>direction</th>'
        '<th title="how far beyond its fence the peak lies, in units of its window\'s spread">severity</th>'
        '<th class="n">peak value</th><th>peak at</th><th>flagged from → to</th>'
        '<th class="n" title="flagged observations in the episode">flagged</th>'
        '<th class="n" title="first to last flagged observation">lasted</th>'
        f"</tr></thead><tbody>\n{_episode_rows(episodes, plotted, time_format)}\n</tbody></table></div>{more}"
    )


def _figures(view: PageView) -> str:
    episodes = view.episodes
    figures = []
    for plot in view.plots:
        episode = episodes.iloc[plot.rank - 1]
        severity = severity_text(float(episode["peak_severity"]), bool(episode["flat_window"]))
        count = int(episode["observations"])
        span = f"{when(episode['start'])} → {when(episode['end'])}, " if episode["start"] != episode["end"] else ""
        facts = (
            f"{direction_badge(str(episode['direction']))} · {escape(severity)} · "
            f"{count} flagged observation{'s' if count != 1 else ''}, {span}"
            f"peak {escape(format_value(float(episode['peak_value'])))} at {when(episode['peak_timestamp'])}"
        )
        figures.append(
            f'<figure id="plot-{plot.rank}" class="plot">'
            f'<figcaption><span class="badge">#{plot.rank}</span> <strong>{escape(str(episode["coin_id"]))}</strong> · '
            f"{escape(str(episode['signal']))} · {int(episode['period_days'])}-day window"
            f'<span class="facts">{facts}</span></figcaption>'
            f'<img src="{plot.data_uri}" alt="{escape(str(episode["coin_id"]))} {escape(str(episode["signal"]))} '
            f'over the period, its fences and flags, the episode shaded" width="1100" height="480">'
            f'<div class="small muted">also as <code>plots/{escape(plot.file_name)}</code></div></figure>'
        )
    return "\n".join(figures)


def _left_out(counts: ReportCounts) -> str:
    """The stored entries left out because their numbers cannot be used (contract §11), when there are any."""
    if not counts.unusable:
        return ""
    return (
        f'<p class="muted" id="left-out">{counts.unusable:,} stored '
        f"entr{'y was' if counts.unusable == 1 else 'ies were'} left out: a <code>value</code>, or for a judged "
        "entry a <code>q1</code>, <code>q3</code>, <code>lower</code> or <code>upper</code>, missing or not a "
        "number. They are in no count, episode or plot of this page.</p>"
    )


def _empty_state(counts: ReportCounts, scope: ReportScope) -> str:
    if counts.entries == 0 and counts.unusable:
        return (
            '<div class="empty"><strong>No usable stored entries in this period.</strong> '
            f"Every entry stamped from {when(scope.since)} to {when(scope.as_of)} UTC for these filters has "
            "numbers that cannot be used (above): check what wrote them.</div>"
        )
    if counts.entries == 0:
        return (
            '<div class="empty"><strong>No stored entries in this period.</strong> '
            f"Nothing the function judged is stamped from {when(scope.since)} to {when(scope.as_of)} UTC "
            "for these filters: "
            "check the dates, or whether the function has run for them.</div>"
        )
    return (
        '<div class="empty ok"><strong>Nothing flagged.</strong> '
        f"{counts.entries:,} entries of {counts.coins_read:,} coins were judged in this period and none is an "
        "anomaly.</div>"
    )


def render_page(view: PageView) -> str:
    """The whole page as HTML text (UTF-8)."""
    scope, counts = view.scope, view.counts
    filters = scope.describe()
    plotted = {plot.rank for plot in view.plots}
    if counts.episodes:
        body = (
            '<section id="ranked"><h2>Ranked episodes</h2>'
            '<p class="muted">Worst first: by how far the peak lies beyond its fence, in units of its window\'s '
            "spread (on the log scale for prices, volumes and market caps); episodes without a severity scale "
            "come last. The first ten link to their plots below.</p>"
            f"{_episode_table(view.episodes, plotted, _time_format(scope))}</section>"
            f'<section id="top"><h2>Top {len(view.plots)} episodes</h2>'
            "<p class=\"muted\">Each coin's signal over the period with the window's Tukey fences (blue band), "
            "the observations the function flagged (red) and the episode shaded (amber), its peak ringed.</p>"
            f"{_figures(view)}</section>"
        )
    else:
        body = _empty_state(counts, scope)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Anomaly report · {escape(_period(scope))}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>Anomaly report</h1>
<p class="period">{escape(_period(scope))}</p>
<dl class="filters">
<div><dt>coins</dt><dd>{escape(_short(filters["coins"]))}</dd></div>
<div><dt>signals</dt><dd>{escape(filters["signals"])}</dd></div>
<div><dt>windows</dt><dd>{escape(filters["windows"])}</dd></div>
<div><dt>source</dt><dd>{escape(view.source)}</dd></div>
<div><dt>generated</dt><dd>{view.generated_at:%Y-%m-%d %H:%M} UTC</dd></div>
</dl>
</header>
<main>
<section id="counts" class="overview">
<div class="cards">{_cards(counts, view.episodes)}</div>
{_by_window(counts.by_window)}
{_left_out(counts)}
</section>
{body}
</main>
<footer>
<p><strong>How to read it.</strong> An <em>episode</em> is a run of consecutive observations of one coin's
signal flagged for one window in the same direction, each at most {view.lookback_hours} h after the one before.
<em>Severity</em> is how far the peak lies beyond the fence it crossed, in units of its window's spread:
for prices, volumes and market caps on the log scale (ln(value / fence) over ln(q3 / q1), at least
<code>SEVERITY_RELATIVE_FLOOR</code>), for the scores and the volatility index in their own units (over the
IQR, at least the signal's <code>SEVERITY_ABSOLUTE_FLOORS</code>). Times are UTC.
Every episode, in this order, is in <code>episodes.json</code> beside this page.</p>
</footer>
</body>
</html>
"""


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_STYLE = (
    """
:root { --ink:#1d2733; --muted:#5d6b7a; --line:#e3e8ee; --bg:#f6f8fa; --card:#fff;
  --spike:#c62828; --dip:#1565c0; --amber:#f5b700; --accent:#0b5cad; }
"""
    + BASE_STYLE
    + """
.overview { display:flex; flex-wrap:wrap; gap:20px; align-items:flex-start; }
.cards { display:grid; grid-template-columns:repeat(2, minmax(200px, 1fr)); gap:14px; flex:1 1 480px; }
.card .name { font-size:22px; line-height:36px; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.window-table { flex:0 1 auto; background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:8px 12px; }
.grid td.hot { color:var(--spike); font-weight:600; }
.grid .of { color:var(--muted); font-weight:400; font-size:12px; }
.grid tfoot th, .grid tfoot td { border-bottom:0; font-weight:600; }
#by-window th[scope=row] { font-weight:500; }
.scroll { max-height:640px; overflow:auto; background:var(--card); border:1px solid var(--line); border-radius:8px; }
#episodes tbody tr:nth-child(even) { background:#fafbfc; }
#episodes tbody tr:hover { background:#eef5ff; }
#episodes tr.top td.rank a { display:inline-block; min-width:22px; text-align:center; border-radius:10px;
  background:var(--accent); color:#fff; text-decoration:none; font-weight:600; font-size:12px; }
#episodes td.coin { font-weight:600; }
#episodes td.t { color:#3b4856; }
.sev { display:inline-flex; align-items:center; gap:8px; min-width:120px; }
.sev .bar { display:inline-block; height:8px; border-radius:4px; background:linear-gradient(90deg,#f3a683,#c62828);
  flex:0 0 auto; }
.sev .num { font-weight:600; }
figure.plot { margin:0 0 22px; background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:12px 14px; }
figure.plot figcaption { font-size:15px; margin-bottom:8px; }
figure.plot .facts { display:block; font-size:13px; color:var(--muted); margin-top:2px; }
figure.plot img { display:block; max-width:100%; height:auto; }
.badge { display:inline-block; background:var(--accent); color:#fff; border-radius:10px; padding:0 8px;
  font-size:13px; font-weight:600; }
"""
)
