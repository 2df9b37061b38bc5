"""Pure shaping of the report: episodes as contract §11's JSON, and the counts the page shows.

Frames in, plain values out; no I/O. Times are written as contract §10
says (ISO-8601 UTC with milliseconds and ``Z``), formatted a column at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from libs.jsonvalues import floats_or_none
from libs.models.episodes import EPISODE_COLUMNS, iso_utc_ms
from libs.models.frames import empty_frame
from libs.models.severity import DIP, SPIKE, SeverityScale, classify


def severity_text(severity: float, flat: bool, decimals: int = 2) -> str:
    """How the page and the summary line show an episode's peak severity (contract §9's units of spread).

    A null severity (no scale: a ratio window reaching zero, or a spread of 0
    without a floor) reads "severity unknown"; a flat window is said beside
    its severity, since with a floor it has one.
    """
    shown = f"severity {severity:.{decimals}f}" if math.isfinite(severity) else "severity unknown"
    return f"{shown}, flat window" if flat else shown


def episodes_json(episodes: pd.DataFrame) -> list[dict[str, Any]]:
    """The episodes frame of :func:`~libs.models.episodes.build_episodes` as contract §11's JSON array.

    Keys in the contract's order; ``peak_severity`` null where the peak has no
    severity scale; rows kept in the frame's (ranked) order.
    """
    if episodes.empty:
        return []
    columns: dict[str, list[Any]] = {
        "coin_id": episodes["coin_id"].astype(str).tolist(),
        "signal": episodes["signal"].astype(str).tolist(),
        "period_days": episodes["period_days"].astype(int).tolist(),
        "direction": episodes["direction"].astype(str).tolist(),
        "start": iso_utc_ms(episodes["start"]),
        "end": iso_utc_ms(episodes["end"]),
        "observations": episodes["observations"].astype(int).tolist(),
        "peak_timestamp": iso_utc_ms(episodes["peak_timestamp"]),
        "peak_value": floats_or_none(episodes["peak_value"]),
        "peak_severity": floats_or_none(episodes["peak_severity"]),
        "flat_window": episodes["flat_window"].astype(bool).tolist(),
    }
    return [dict(zip(EPISODE_COLUMNS, row)) for row in zip(*(columns[name] for name in EPISODE_COLUMNS))]


@dataclass(frozen=True)
class ReportCounts:
    """What the page's summary shows.

    ``by_window`` has one row per (signal, period_days) with an entry: how many
    entries were read (``judged``), how many are flagged (``flagged``) and of
    those how many are spikes and dips; ordered by the given signal order, then
    period. ``unusable`` counts the stored entries left out because their
    numbers cannot be used (contract §11); they are in no other count.
    """

    episodes: int
    spike_episodes: int
    dip_episodes: int
    flat_episodes: int
    coins_with_episodes: int
    coins_read: int
    entries: int
    flagged: int
    flagged_observations: int
    by_window: pd.DataFrame
    unusable: int = 0


def report_counts(
    entries: pd.DataFrame,
    episodes: pd.DataFrame,
    signal_order: tuple[str, ...],
    scale: SeverityScale,
    *,
    unusable: int = 0,
) -> ReportCounts:
    """Counts of episodes, coins and flagged entries (by signal × window), all vectorised."""
    classes = classify(entries, scale) if not entries.empty else empty_frame({"direction": object})
    direction = classes["direction"]
    flagged = direction.notna().to_numpy()
    table = pd.DataFrame(
        {
            "signal": entries["signal"].to_numpy(dtype=object),
            "period_days": entries["period_days"].to_numpy(dtype=np.int64),
            "judged": 1,
            "flagged": flagged.astype(np.int64),
            "spikes": (direction == SPIKE).to_numpy(dtype=np.int64),
            "dips": (direction == DIP).to_numpy(dtype=np.int64),
        }
    )
    by_window = table.groupby(["signal", "period_days"], as_index=False, sort=False).sum()
    rank = {signal: position for position, signal in enumerate(signal_order)}
    by_window = by_window.assign(_rank=by_window["signal"].map(rank).fillna(len(rank)))
    by_window = by_window.sort_values(["_rank", "period_days"]).drop(columns="_rank").reset_index(drop=True)
    # An observation counts once however many of its signals and windows are flagged.
    flagged_observations = entries.loc[flagged, ["coin_id", "timestamp"]].drop_duplicates().shape[0]
    return ReportCounts(
        episodes=len(episodes),
        spike_episodes=int((episodes["direction"] == SPIKE).sum()),
        dip_episodes=int((episodes["direction"] == DIP).sum()),
        flat_episodes=int(episodes["flat_window"].sum()),
        coins_with_episodes=int(episodes["coin_id"].nunique()),
        coins_read=int(entries["coin_id"].nunique()),
        entries=len(entries),
        flagged=int(flagged.sum()),
        flagged_observations=int(flagged_observations),
        by_window=by_window,
        unusable=unusable,
    )
