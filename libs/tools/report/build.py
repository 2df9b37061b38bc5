"""The report command's work: read the stored entries, build the episodes, write the files.

I/O stays here, at the edges: one query for the entries (through the
configured reader), one small index-served query per plotted episode (the
``plot`` picture needs the coin's values and the window before the period),
and the files of contract §11. Everything between is pure:
:mod:`libs.tools.report.entries` (documents to frame), :mod:`libs.models.episodes`
(the episodes), :mod:`libs.tools.report.shaping` (JSON and counts) and
:mod:`libs.tools.report.page` (the HTML).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from pymongo.collection import Collection

from libs.helpers.constants_helper import SIGNALS, Settings
from libs.helpers.mongodb_helper import Reader
from libs.models.episodes import build_episodes
from libs.tools.plot import EpisodeMark, plot_signal
from libs.tools.report.entries import read_entries
from libs.tools.report.page import PLOTTED, PageView, Plot, render_page, worst_episode
from libs.tools.report.scope import ReportArgumentError, ReportScope
from libs.tools.report.shaping import ReportCounts, episodes_json, report_counts

PAGE_NAME = "index.html"
JSON_NAME = "episodes.json"
PLOTS_DIR = "plots"
#: The name of a picture this command writes (:func:`_file_name`): only these are replaced in ``plots/``.
PLOT_FILE = re.compile(rf"[0-9]{{2}}-[A-Za-z0-9._-]+-(?:{'|'.join(SIGNALS)})-[1-9][0-9]*d\.png")
#: The temporary directory a report is written into before it is moved into place.
STAGING_PREFIX = ".report-partial-"


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it holds."""

    page: Path
    episodes_file: Path
    counts: ReportCounts
    top: str

    def summary_line(self, scope: ReportScope) -> str:
        """The one line the command prints under the page's path."""
        counts = self.counts
        period = f"{scope.since:%Y-%m-%d %H:%M} to {scope.as_of:%Y-%m-%d %H:%M} UTC"
        left_out = (
            f"; {counts.unusable:,} stored entries left out (their numbers cannot be used)" if counts.unusable else ""
        )
        if not counts.episodes:
            return (
                f"nothing flagged from {period} ({counts.entries:,} entries of {counts.coins_read:,} coins read)"
                f"{left_out}"
            )
        return (
            f"{counts.episodes:,} episodes on {counts.coins_with_episodes:,} of {counts.coins_read:,} coins "
            f"({counts.spike_episodes:,} spikes, {counts.dip_episodes:,} dips; {counts.flagged_observations:,} "
            f"flagged observations) from {period}; worst: {self.top}{left_out}"
        )


def _file_name(rank: int, coin_id: str, signal: str, period_days: int) -> str:
    safe_coin = re.sub(r"[^A-Za-z0-9._-]+", "_", coin_id)[:80]
    return f"{rank:02d}-{safe_coin}-{signal}-{period_days}d.png"


def _peak_k(entries: pd.DataFrame, episode: pd.Series, default: float) -> float:
    """The k the peak was judged with (a request may set its own), so the drawn fences are the flag's."""
    if "k" not in entries:
        return default
    at_peak = (
        (entries["coin_id"] == episode["coin_id"])
        & (entries["signal"] == episode["signal"])
        & (entries["period_days"] == episode["period_days"])
        & (entries["timestamp"] == episode["peak_timestamp"])
    )
    found = entries.loc[at_peak, "k"].dropna()
    return float(found.iloc[0]) if len(found) else default


def _plots(
    collection: Collection,
    episodes: pd.DataFrame,
    entries: pd.DataFrame,
    scope: ReportScope,
    settings: Settings,
    directory: Path,
) -> tuple[Plot, ...]:
    directory.mkdir(parents=True, exist_ok=True)
    plots = []
    for rank, episode in enumerate(episodes.head(PLOTTED).itertuples(index=False), start=1):
        name = _file_name(rank, episode.coin_id, episode.signal, int(episode.period_days))
        path = directory / name
        plot_signal(
            collection,
            coin_id=episode.coin_id,
            signal=episode.signal,
            period_days=int(episode.period_days),
            out=path,
            deviation_limit=_peak_k(entries, pd.Series(episode._asdict()), settings.deviation_limit),
            min_observations=settings.min_observations,
            since=scope.since,
            until=scope.as_of,
            episode=EpisodeMark(
                start=pd.Timestamp(episode.start).to_pydatetime(),
                end=pd.Timestamp(episode.end).to_pydatetime(),
                peak=pd.Timestamp(episode.peak_timestamp).to_pydatetime(),
                label=f"episode #{rank}",
            ),
            title=f"#{rank} {episode.coin_id}: {episode.signal}, {int(episode.period_days)}-day window",
        )
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        plots.append(Plot(rank=rank, data_uri=f"data:image/png;base64,{data}", file_name=name))
    return tuple(plots)


@contextmanager
def _staged(out_dir: Path) -> Iterator[Path]:
    """A temporary directory to write the report into, moved into ``out_dir`` once it is complete.

    contract §11: a failure leaves no half-written report. A new ``out_dir`` is the staging
    directory (made beside it) renamed, in one step; into an existing one (an earlier report, or
    a directory of the user's) the staging directory is made inside it and its files replace
    ours one by one, the page last: ``episodes.json``, ``index.html`` and the pictures an earlier
    report left in ``plots/`` (by their names, :data:`PLOT_FILE`). Nothing else there is touched.
    On a failure the staging directory, and any parent directory made for ``out_dir``, are removed.
    """
    existing = out_dir.is_dir()
    if out_dir.exists() and not existing:
        raise NotADirectoryError(20, "not a directory", str(out_dir))
    made = [] if existing else _make_parents(out_dir.parent)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir if existing else out_dir.parent))
    try:
        yield staging
        if existing:
            _replace_files(staging, out_dir)
        else:
            os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in reversed(made):
            try:
                directory.rmdir()
            except OSError:
                break
        raise


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not directory.exists() and directory != directory.parent:
        missing.append(directory)
        directory = directory.parent
    for parent in reversed(missing):
        parent.mkdir()
    return list(reversed(missing))


def _replace_files(staging: Path, out_dir: Path) -> None:
    plots = out_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    for earlier in plots.iterdir():  # an earlier report's pictures: the new ones replace them all
        if PLOT_FILE.fullmatch(earlier.name) and earlier.is_file():
            earlier.unlink()
    for picture in sorted((staging / PLOTS_DIR).iterdir()):
        os.replace(picture, plots / picture.name)
    os.replace(staging / JSON_NAME, out_dir / JSON_NAME)
    os.replace(staging / PAGE_NAME, out_dir / PAGE_NAME)
    shutil.rmtree(staging)


@contextmanager
def _writing(out_dir: Path) -> Iterator[None]:
    """Turn a file-system refusal under ``out_dir`` (a file in the way, no permission) into a bad ``--out``.

    contract §11: a bad argument fails with a clear message (exit 2), not a traceback.
    """
    try:
        yield
    except OSError as exc:
        name = str(exc.filename or "")
        if STAGING_PREFIX in name:  # say where the file was going, not where it was being written first
            name = str(out_dir / name.split(STAGING_PREFIX, 1)[1].partition(os.sep)[2])
        where = f" ({name})" if name and name != str(out_dir) else ""
        raise ReportArgumentError(
            f"--out {out_dir}: cannot write the report there: {exc.strerror or exc}{where}"
        ) from None


def write_report(
    scope: ReportScope,
    settings: Settings,
    out_dir: Path,
    *,
    reader: Reader,
    collection: Collection,
    generated_at: datetime,
    credit: str = "",
) -> ReportResult:
    """Read, build and write ``episodes.json``, ``index.html`` and the plots under ``out_dir``.

    ``credit`` is said beside the page's source (the demo's real coins: "market data: CoinGecko").

    Raises :class:`~libs.errors.StoreUnavailable` when the store cannot be read, and
    :class:`~libs.tools.report.scope.ReportArgumentError` when ``out_dir`` cannot be written. Either
    way nothing is left behind: the files are written into a temporary directory first (:func:`_staged`).
    """
    stored = read_entries(reader, scope)
    entries = stored.frame
    episodes = build_episodes(entries, settings.latest_lookback_hours, settings.severity_scale)
    counts = report_counts(entries, episodes, scope.signals, settings.severity_scale, unusable=stored.unusable)
    episodes_file = out_dir / JSON_NAME
    page = out_dir / PAGE_NAME
    # after the query: an unreachable store leaves nothing behind
    with _writing(out_dir), _staged(out_dir) as staging:
        (staging / JSON_NAME).write_text(
            json.dumps(episodes_json(episodes), indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        plots = _plots(collection, episodes, entries, scope, settings, staging / PLOTS_DIR)
        view = PageView(
            scope=scope,
            generated_at=generated_at,
            lookback_hours=settings.latest_lookback_hours,
            source=f"{settings.database}.{settings.collection}" + (f" ({credit})" if credit else ""),
            counts=counts,
            episodes=episodes,
            plots=plots,
        )
        (staging / PAGE_NAME).write_text(render_page(view), encoding="utf-8")
    worst = worst_episode(episodes)
    return ReportResult(page=page, episodes_file=episodes_file, counts=counts, top=worst.headline if worst else "")
