"""The backtest command's I/O: read the observations (store or file), write the outputs whole.

Reading: one query of the scores collection through the configured reader
(driver or Data API), shaped like the function's own (``coin_id`` first, so
the ``{coin_id: 1, timestamp: 1}`` index serves it, ``{"$gt": ""}`` when no
coins are named), reaching back ``ALERT_MEMORY_HOURS`` plus the longest
window before ``since``; the cursor is streamed through
:func:`libs.models.history.documents_to_history` a chunk at a time, so years
of hourly documents are never held as a list of dicts. Or, with ``--input``,
:func:`libs.tools.scores_csv.read_scores_csv`, cut to the same reach. Nothing
is ever written to the store: the backtest has no collection to write with.

Writing: the three files go into a fresh directory beside ``--out`` and are
moved into place only once all are written, so a failed run (a bad input, an
unreachable store, a full disk) leaves no half-written output and the
previous run's files as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from libs.errors import ConfigError
from libs.helpers.constants_helper import EMBEDDED_URI_SCHEME, Settings, get_settings, load_settings
from libs.helpers.mongodb_helper import Reader
from libs.models.history import documents_to_history
from libs.tools.backtest.build import BacktestResult, backtest
from libs.tools.backtest.page import PageView, render_page
from libs.tools.backtest.scope import BacktestArgumentError, BacktestScope
from libs.tools.market_data import MARKET_CSV, read_events
from libs.tools.scores_csv import read_scores_csv

ALERTS_NAME = "alerts.json"
SUMMARY_NAME = "summary.json"
PAGE_NAME = "index.html"


@dataclass(frozen=True)
class BacktestOutput:
    """What the command wrote, and what it found."""

    result: BacktestResult
    directory: Path

    @property
    def page(self) -> Path:
        return self.directory / PAGE_NAME


#: The variables of the store's connection (contract §7): a backtest of a file needs none of them.
CONNECTION_VARIABLES = (
    "MONGODB_URI",
    "MONGODB_RSKYCLUSTER_HOST",
    "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME",
    "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD",
    "MONGODB_RSKYCLUSTER_DATABASE",
    "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION",
)


def backtest_settings(*, reads_store: bool) -> Settings:
    """The configuration of contract §7; a backtest of a file runs without a store configured.

    The alerts depend on the model, severity and alert settings only, so
    ``--input`` reads them with the embedded store as the (unused) connection
    when the connection settings are missing or malformed, instead of stopping
    at them; a malformed value of any other variable still stops it.
    """
    try:
        return get_settings()
    except ConfigError as exc:
        if reads_store or exc.variable not in CONNECTION_VARIABLES:
            raise
    return load_settings({**os.environ, "MONGODB_URI": EMBEDDED_URI_SCHEME})


def reach_start(scope: BacktestScope, settings: Settings) -> datetime:
    """Exclusive lower bound of every timestamp the backtest needs.

    The steps of the alert memory before ``since`` decide whether the
    period's first steps raise (contract §9), and each is judged with its own
    trailing window: ``since − ALERT_MEMORY_HOURS − longest window``.
    """
    return scope.since - timedelta(hours=settings.alert_memory_hours) - timedelta(days=max(scope.periods_days))


def store_query(scope: BacktestScope, settings: Settings) -> tuple[dict[str, Any], dict[str, int]]:
    """Filter and projection of the backtest's one query (the shape of ``mongodb_helper.history_query``)."""
    coins: dict[str, Any] = {"$in": list(scope.coin_ids)} if scope.coin_ids else {"$gt": ""}
    query = {"coin_id": coins, "timestamp": {"$gt": reach_start(scope, settings), "$lte": scope.as_of}}
    # _id stays: the Data API reader pages by it; the loader drops it (ids_since lies after every row).
    projection = {"_id": 1, "coin_id": 1, "timestamp": 1, **{signal: 1 for signal in scope.signals}}
    return query, projection


def read_store(reader: Reader, scope: BacktestScope, settings: Settings) -> pd.DataFrame:
    """The scope's observations from the store: one streamed, index-served query, as the model's frame."""
    query, projection = store_query(scope, settings)
    history = documents_to_history(
        reader.find(query, projection), scope.signals, ids_since=scope.as_of + timedelta(milliseconds=1)
    )
    return history.frame.drop(columns="_id")


def read_file(path: Path, scope: BacktestScope, settings: Settings) -> pd.DataFrame:
    """The scope's observations from a score CSV file (contract §12), cut to what the store query would return.

    A signal that ``--signals`` names must be a column of the file (judging a
    column that is not there would report "no alerts" for the wrong reason).
    """
    frame = read_scores_csv(path)
    if scope.signals_given:
        absent = [signal for signal in scope.signals if signal not in frame.columns]
        if absent:
            raise BacktestArgumentError(f"--signals: {absent[0]!r} is not a column of {path}")
    stamps = frame["timestamp"].to_numpy()
    keep = (stamps > np.datetime64(reach_start(scope, settings), "ms")) & (stamps <= np.datetime64(scope.as_of, "ms"))
    if scope.coin_ids is not None:
        keep &= frame["coin_id"].isin(list(scope.coin_ids)).to_numpy()
    if keep.all():
        return frame
    return frame.loc[keep].reset_index(drop=True)


def check_out(text: str) -> Path:
    """``--out`` as a directory path; refuses an empty one and a file in the way before any work is done."""
    if not text.strip():
        raise BacktestArgumentError("--out must name a directory (it was empty)")
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise BacktestArgumentError(f"--out {out}: is not a directory")
    return out


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A fresh directory beside ``out`` to write into; its files replace ``out``'s on success.

    When ``out`` does not exist the directory is renamed to it (one atomic
    step); otherwise each file replaces its namesake with ``os.replace`` and
    other files in ``out`` are left alone. On any failure the staging
    directory is removed and ``out`` is untouched. A file-system refusal
    (no permission, a full disk) becomes a :class:`BacktestArgumentError`
    naming ``--out``.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise _cannot_write(out, exc) from None
    try:
        yield staging
        if not out.exists():
            staging.rename(out)
            return
        for written in sorted(staging.iterdir()):
            os.replace(written, out / written.name)
        staging.rmdir()
    except OSError as exc:
        raise _cannot_write(out, exc) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _cannot_write(out: Path, exc: OSError) -> BacktestArgumentError:
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else ""
    return BacktestArgumentError(f"--out {out}: cannot write the backtest there: {exc.strerror or exc}{where}")


def alerts_text(bodies: list[dict[str, Any]]) -> str:
    """alerts.json: a JSON array, one alert a line (greppable, and a year of alerts stays a few MB)."""
    if not bodies:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(body, allow_nan=False) for body in bodies) + "\n]\n"


def run_backtest(
    scope: BacktestScope,
    settings: Settings,
    out: Path,
    *,
    generated_at: datetime,
    input_path: Path | None = None,
    events_path: Path | None = None,
    reader: Reader | None = None,
) -> BacktestOutput:
    """Read, compute and write ``alerts.json``, ``summary.json`` and ``index.html`` under ``out``.

    Reads ``input_path`` when given, else the store through ``reader``.
    Raises an :class:`~libs.errors.AnomalyServiceError` (a malformed file or
    events file naming its line, an unreachable store, an unwritable
    ``out``); nothing is written then.
    """
    events = read_events(events_path) if events_path is not None else None
    if input_path is not None:
        frame = read_file(input_path, scope, settings)
        source = f"file {input_path}" + (" (market data: CoinGecko)" if _is_market_data(input_path) else "")
    else:
        if reader is None:
            raise ValueError("a reader is needed to read the store")
        frame = read_store(reader, scope, settings)
        source = f"the store, {settings.database}.{settings.collection}"
    result = backtest(frame, scope, settings, events)
    del frame
    alerts = alerts_text(result.alert_bodies())
    summary = json.dumps(result.summary(), indent=2, allow_nan=False) + "\n"
    page = render_page(PageView(result=result, source=source, generated_at=generated_at))
    with staged(out) as staging:  # after the reading: a bad input or an unreachable store leaves nothing behind
        (staging / ALERTS_NAME).write_text(alerts, encoding="utf-8")
        (staging / SUMMARY_NAME).write_text(summary, encoding="utf-8")
        (staging / PAGE_NAME).write_text(page, encoding="utf-8")
    return BacktestOutput(result=result, directory=out)


def _is_market_data(path: Path | str) -> bool:
    """Whether ``path`` is the repository's real market data, which is shown with its credit (contract §13)."""
    return Path(path).resolve() == MARKET_CSV.resolve()
