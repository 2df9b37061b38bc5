"""One coin's signal over time with its rolling Tukey fences and the flagged points (a PNG).

The fences are the model's own, computed for every observation of the coin
(the band is what a request judging that point would compare it with); the
red points are the flags *written in the store*, so the picture shows what
the function did, not what it would do. Drawn with matplotlib's Agg canvas
directly: no pyplot, no GUI backend, no global state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymongo.collection import Collection

from libs.helpers.mongodb_helper import coin_documents
from libs.models.history import documents_to_history
from libs.models.model import ModelParams, judge

#: Signals that span orders of magnitude: drawn on a log scale when all values are positive.
LOG_SCALE_SIGNALS = ("latest_price", "volume", "market_cap")
FIGURE_INCHES = (11.0, 4.8)
DPI = 100
FLAG_COLOUR = "#d62728"


@dataclass(frozen=True)
class PlotSummary:
    path: Path
    coin_id: str
    signal: str
    period_days: int
    points: int
    flagged: int


def written_flag(document: dict[str, Any], signal: str, period_days: int) -> bool:
    """True when the store holds ``is_anomaly: true`` for this signal and period on the document."""
    entry: Any = document.get("anomalies")
    for key in (signal, f"{period_days}d"):
        entry = entry.get(key) if isinstance(entry, dict) else None
    return isinstance(entry, dict) and entry.get("is_anomaly") is True


def plot_signal(
    collection: Collection,
    *,
    coin_id: str,
    signal: str,
    period_days: int,
    out: Path,
    deviation_limit: float,
    min_observations: int,
) -> PlotSummary:
    """Write the PNG to ``out``; raises ``ValueError`` naming the coin when it has no observations."""
    documents = coin_documents(collection, coin_id, signal)
    frame = documents_to_history(documents, (signal,)).frame
    if frame.empty:
        raise ValueError(f"no observations of coin {coin_id!r} in the store")
    params = ModelParams((signal,), (period_days,), deviation_limit, min_observations)
    fences = judge(frame, np.ones(len(frame), dtype=bool), params)
    flagged_ids = {doc["_id"] for doc in documents if written_flag(doc, signal, period_days)}
    flagged = frame["_id"].isin(flagged_ids).to_numpy()

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    times, values = frame["timestamp"].to_numpy(), frame[signal].to_numpy()
    fence_times = frame["timestamp"].to_numpy()[fences["row"].to_numpy()]
    axes.fill_between(
        fence_times,
        fences["lower"].to_numpy(),
        fences["upper"].to_numpy(),
        color="#9ecae1",
        alpha=0.5,
        label=f"{period_days}-day fences (k={deviation_limit:g})",
        linewidth=0,
    )
    axes.plot(times, values, color="#404040", linewidth=0.8, marker=".", markersize=3, label=signal)
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
    finite = values[np.isfinite(values)]
    if signal in LOG_SCALE_SIGNALS and finite.size and (finite > 0).all():
        axes.set_yscale("log")
    axes.set_title(f"{coin_id}: {signal}, {period_days}-day Tukey fences and written flags")
    axes.set_xlabel("time (UTC)")
    axes.legend(loc="upper left", fontsize="small")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return PlotSummary(out, coin_id, signal, period_days, points=len(frame), flagged=int(flagged.sum()))
