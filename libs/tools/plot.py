"""One coin's signal over time with its rolling Tukey fences and the flagged points (a PNG).

The fences are the model's own, computed for every observation of the coin
(the band is what a request judging that point would compare it with); the
red points are the flags *written in the store*, so the picture shows what
the function did, not what it would do. Drawn with matplotlib's Agg canvas
directly: no pyplot, no GUI backend, no global state.

The report (``libs/tools/report/``) draws the same picture over its period, with an
episode's span shaded and its peak ringed (:class:`EpisodeMark`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pymongo.collection import Collection

from libs.helpers.mongodb_helper import coin_documents
from libs.models.history import documents_to_history
from libs.models.model import ModelParams, judge
from libs.tools.report.entries import documents_to_entries, flagged_rows

#: Signals that span orders of magnitude: drawn on a log scale when all values are positive.
LOG_SCALE_SIGNALS = ("latest_price", "volume", "market_cap")
FIGURE_INCHES = (11.0, 4.8)
DPI = 100
FLAG_COLOUR = "#d62728"
EPISODE_COLOUR = "#f5b700"
#: Share of a given period added each side of the picture.
X_MARGIN = 0.02


@dataclass(frozen=True)
class PlotSummary:
    path: Path
    coin_id: str
    signal: str
    period_days: int
    points: int
    flagged: int


@dataclass(frozen=True)
class EpisodeMark:
    """An episode to mark on the picture: its first and last flagged times and its peak (naive UTC)."""

    start: datetime
    end: datetime
    peak: datetime
    label: str = "episode"


def compact_number(value: float, *, precise: bool = False) -> str:
    """A number people read without decoding powers of ten: 20 M, 1.5 B, 45,000, 0.06.

    Axis labels use the shortest form; ``precise`` keeps three significant digits
    for large values and two decimals (four significant digits below 1) for small ones.
    """
    magnitude = abs(value)
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if magnitude >= scale:
            return f"{value / scale:{'.3g' if precise else 'g'}} {suffix}"
    if magnitude >= 1_000:
        return f"{value:,.0f}"
    if not precise:
        return f"{value:g}"
    return f"{value:.2f}" if magnitude >= 1 else f"{value:.4g}"


def plot_signal(
    collection: Collection,
    *,
    coin_id: str,
    signal: str,
    period_days: int,
    out: Path,
    deviation_limit: float,
    min_observations: int,
    since: datetime | None = None,
    until: datetime | None = None,
    episode: EpisodeMark | None = None,
    title: str | None = None,
) -> PlotSummary:
    """Write the PNG to ``out``; raises ``ValueError`` naming the coin when it has no observations.

    With ``since``/``until`` only observations stamped in ``[since, until]``
    are drawn (the fences still see the ``period_days`` before ``since``);
    ``episode`` shades its span and rings its peak.
    """
    after = since - timedelta(days=period_days) if since is not None else None
    documents = coin_documents(collection, coin_id, signal, after=after, until=until)
    frame = documents_to_history(documents, (signal,)).frame
    stamps = frame["timestamp"]
    shown = np.ones(len(frame), dtype=bool) if since is None else (stamps >= since).to_numpy()
    if not shown.any():
        period = "" if since is None else f" from {since.isoformat()}"
        raise ValueError(f"no observations of coin {coin_id!r} in the store{period}")
    params = ModelParams((signal,), (period_days,), deviation_limit, min_observations)
    fences = judge(frame, shown, params)
    stored = documents_to_entries(documents, (signal,), (period_days,), with_ids=True).frame
    flagged_ids = set(stored.loc[flagged_rows(stored), "_id"].tolist())
    flagged = frame["_id"].isin(flagged_ids).to_numpy() & shown

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    times, values = stamps.to_numpy(), frame[signal].to_numpy()
    fence_times = times[fences["row"].to_numpy()]
    if episode is not None:
        _mark_episode(axes, episode, times[shown])
    axes.fill_between(
        fence_times,
        fences["lower"].to_numpy(),
        fences["upper"].to_numpy(),
        color="#9ecae1",
        alpha=0.5,
        label=f"{period_days}-day fences (k={deviation_limit:g})",
        linewidth=0,
    )
    drawn = shown & np.isfinite(values)  # a missing value does not break the line
    axes.plot(times[drawn], values[drawn], color="#404040", linewidth=0.8, marker=".", markersize=3, label=signal)
    if flagged.any():
        axes.scatter(
            times[flagged],
            values[flagged],
            s=40,
            color=FLAG_COLOUR,
            edgecolors="black",
            linewidths=0.5,
            zorder=3,
            label=f"flagged ({int(flagged.sum())})",
        )
    if episode is not None:
        at_peak = shown & (times == np.datetime64(episode.peak, "ms"))
        if at_peak.any():
            axes.scatter(
                times[at_peak], values[at_peak], s=160, facecolors="none", edgecolors="black", linewidths=1.5, zorder=4
            )
    finite = values[drawn]
    if signal in LOG_SCALE_SIGNALS and finite.size and (finite > 0).all():
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_minor_formatter(NullFormatter())
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: compact_number(value)))
    if since is not None and until is not None:  # the whole period, with a margin so an edge episode shows
        margin = (until - since) * X_MARGIN
        axes.set_xlim(date2num(since - margin), date2num(until + margin))
    # A coin id is any text (contract §3): shown as it is, never read as matplotlib math text ("usd$$").
    axes.set_title(title or f"{coin_id}: {signal}, {period_days}-day Tukey fences and written flags", parse_math=False)
    axes.set_xlabel("time (UTC)")
    axes.legend(loc="best", fontsize="small")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # a character the font lacks is drawn as a box: not worth a line on stderr
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        figure.tight_layout()
        figure.savefig(out, format="png")
    return PlotSummary(out, coin_id, signal, period_days, points=int(shown.sum()), flagged=int(flagged.sum()))


def _mark_episode(axes: Any, episode: EpisodeMark, times: np.ndarray) -> None:
    """Shade the episode's span, widened by half a step each side so a one-observation episode shows too."""
    steps = np.diff(times).astype("timedelta64[ms]").astype(np.int64)
    span_ms = int((times[-1] - times[0]).astype("timedelta64[ms]").astype(np.int64)) if len(times) > 1 else 0
    half_step_ms = max(int(np.median(steps)) // 2 if steps.size else 0, span_ms // 200, 30 * 60 * 1000)
    pad = timedelta(milliseconds=half_step_ms)
    axes.axvspan(
        episode.start - pad, episode.end + pad, color=EPISODE_COLOUR, alpha=0.3, linewidth=0, label=episode.label
    )
