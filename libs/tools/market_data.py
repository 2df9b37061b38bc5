"""The repository's real market data (contract §13): how ``data/coingecko-daily.csv.gz`` is made, and its events.

``python -m libs.tools.market_data SOURCE_DIR`` turns the per-coin CSV files
of CoinGecko daily history (``date,price,total_volume,market_cap,coin_name``,
as the Currensee project holds them) into the one score CSV of contract §12
that the repository carries, byte for byte the same on every run over the same
source (data/README.md says what is changed and why). Numbers are copied as
the source writes them, never re-printed, so nothing is rounded on the way.

:func:`read_events` reads ``data/events.csv``, the known events the data
spans, for the demo and ``backtest --events``; :func:`market_documents` turns
the file's rows into the documents the demo seeds.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from libs.errors import AnomalyServiceError, InvalidRequest
from libs.helpers.constants_helper import SIGNALS
from libs.request import parse_moment

#: Where the repository keeps its data (beside libs/, never in the Lambda package).
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
MARKET_CSV = DATA_DIR / "coingecko-daily.csv.gz"
EVENTS_CSV = DATA_DIR / "events.csv"

#: The columns of every source file, in this order.
SOURCE_COLUMNS = ("date", "price", "total_volume", "market_cap", "coin_name")
#: Source column -> signal (contract §2); the order is the output's.
SIGNAL_OF = {"price": "latest_price", "total_volume": "volume", "market_cap": "market_cap"}
OUTPUT_HEADER = "coin_id,timestamp," + ",".join(SIGNAL_OF.values())
#: The first day copied: the data set covers 2020 to 2023 (contract §13).
FIRST_DAY = "2020-01-01"
#: A fixed gzip header (no file name, time 0) and level, so the same source gives the same bytes.
GZIP_LEVEL = 9


class MarketDataError(AnomalyServiceError):
    """A source folder or events file that is not what the conversion expects; names the file."""


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert` wrote, in numbers (data/README.md quotes them)."""

    out: Path
    rows: int
    coins: int
    first_day: str
    last_day: str
    market_caps_zero: int
    empty_cells: int

    def summary(self) -> str:
        return (
            f"wrote {self.out}: {self.rows:,} rows, {self.coins} coins, {self.first_day} to {self.last_day}; "
            f"{self.market_caps_zero:,} market caps of 0 left empty, {self.empty_cells} cells empty in the source"
        )


def convert(source_dir: Path | str, out: Path | str = MARKET_CSV, *, first_day: str = FIRST_DAY) -> Conversion:
    """Write the score CSV (gzip) of every ``*.csv`` file in ``source_dir`` from ``first_day`` on.

    Per file: the header must be :data:`SOURCE_COLUMNS` and ``coin_name`` the
    file's name; a row's day is the first 10 characters of ``date`` (written
    ``2023-05-25`` or ``2023-05-25 00:00:00.000``), stamped 00:00 UTC; a
    ``market_cap`` of 0 is missing, so its cell is left empty; other cells are
    copied as written. The output is sorted by ``coin_id`` then ``timestamp``;
    a coin with two rows on one day, a cell that is not a number or a day that
    is not a date stops the conversion (:class:`MarketDataError`).
    """
    source_dir, out = Path(source_dir), Path(out)
    paths = sorted(source_dir.glob("*.csv"))
    if not paths:
        raise MarketDataError(f"{source_dir}: no *.csv files")
    frames = [_coin_rows(path, first_day) for path in paths]
    rows = pd.concat(frames, ignore_index=True).sort_values(["coin_id", "timestamp"], kind="stable")
    twice = rows.duplicated(["coin_id", "timestamp"])
    if twice.any():
        first = rows[twice].iloc[0]
        raise MarketDataError(f"{source_dir}: {first['coin_id']} has two rows on {first['timestamp'][:10]}")
    lines = rows["coin_id"].str.cat([rows[column] for column in ("timestamp", *SIGNAL_OF.values())], sep=",")
    text = "\n".join([OUTPUT_HEADER, *lines.tolist()]) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        out.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as zipped,
    ):
        zipped.write(text.encode("ascii"))
    days = rows["timestamp"].str[:10]
    return Conversion(
        out=out,
        rows=len(rows),
        coins=rows["coin_id"].nunique(),
        first_day=days.min() if len(rows) else "",
        last_day=days.max() if len(rows) else "",
        market_caps_zero=int(sum(frame.attrs["market_caps_zero"] for frame in frames)),
        empty_cells=int(sum(frame.attrs["empty_cells"] for frame in frames)),
    )


def _coin_rows(path: Path, first_day: str) -> pd.DataFrame:
    """One source file's rows from ``first_day`` on, as output cells (text)."""
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, engine="c")
    except (OSError, ValueError) as exc:
        raise MarketDataError(f"{path}: cannot be read ({exc})") from None
    if tuple(raw.columns) != SOURCE_COLUMNS:
        raise MarketDataError(f"{path}: the header is {','.join(raw.columns)}, expected {','.join(SOURCE_COLUMNS)}")
    other = raw["coin_name"] != path.stem
    if other.any():
        raise MarketDataError(f"{path}: line {int(other.to_numpy().argmax()) + 2}: coin_name is not {path.stem!r}")
    day = raw["date"].str[:10]
    not_a_day = pd.to_datetime(day, format="%Y-%m-%d", errors="coerce").isna()
    if not_a_day.any():
        raise MarketDataError(f"{path}: line {int(not_a_day.to_numpy().argmax()) + 2}: date is not a date")
    raw = raw[(day >= first_day).to_numpy()]
    day = day[raw.index]
    for column in SIGNAL_OF:
        cells = raw[column]
        bad = (cells != "") & pd.to_numeric(cells, errors="coerce").isna()
        if bad.any():
            raise MarketDataError(
                f"{path}: line {int(bad.idxmax()) + 2}: {column} {cells[bad.idxmax()]!r} is not a number"
            )
    market_cap_zero = pd.to_numeric(raw["market_cap"], errors="coerce") == 0
    rows = pd.DataFrame(
        {
            "coin_id": raw["coin_name"],
            "timestamp": day + "T00:00:00Z",
            **{signal: raw[column] for column, signal in SIGNAL_OF.items()},
        }
    )
    rows.loc[market_cap_zero, "market_cap"] = ""
    rows.attrs["market_caps_zero"] = int(market_cap_zero.sum())
    rows.attrs["empty_cells"] = int((raw[list(SIGNAL_OF)] == "").to_numpy().sum())
    return rows


def market_documents(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Score documents (contract §2) of a frame :func:`libs.tools.scores_csv.read_scores_csv` returned.

    Each holds ``coin_id``, ``timestamp`` (a naive UTC ``datetime``) and the
    signals whose value is not missing: a NaN cell is an absent field, as a
    producer would write it. For seeding a store (the demo), not for the
    Lambda path.
    """
    stamps = frame["timestamp"].dt.to_pydatetime().tolist()
    documents = [{"coin_id": coin, "timestamp": stamp} for coin, stamp in zip(frame["coin_id"].tolist(), stamps)]
    for signal in (column for column in frame.columns if column in SIGNALS):
        values = frame[signal].to_numpy(dtype=np.float64)
        present = np.flatnonzero(~np.isnan(values))
        for row, value in zip(present.tolist(), values[present].tolist()):
            documents[row][signal] = value
    return documents


@dataclass(frozen=True)
class MarketEvent:
    """A known event: its coins, and the span ``[onset, onset + hours]`` in which an alert would catch it."""

    name: str
    coin_ids: tuple[str, ...]
    onset: datetime
    hours: float

    @property
    def end(self) -> datetime:
        return self.onset + timedelta(hours=self.hours)

    def covers(self, coin_id: str, moment: datetime) -> bool:
        return coin_id in self.coin_ids and self.onset <= moment <= self.end


#: The columns of an events file (contract §12's ``--events``).
EVENT_COLUMNS = ("name", "coin_ids", "onset", "hours")


def read_events(path: Path | str = EVENTS_CSV) -> list[MarketEvent]:
    """The events of an events CSV (``name,coin_ids,onset,hours``; coin ids space-separated), in file order.

    ``onset`` takes the formats of contract §3 (naive UTC; a date is the start
    of its day); ``hours`` is a finite number ≥ 0. Raises :class:`MarketDataError`
    naming the file and line.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != EVENT_COLUMNS:
                raise MarketDataError(f"{path}: line 1: the header must be {','.join(EVENT_COLUMNS)}")
            return [_event(row, path, reader.line_num) for row in reader]
    except (OSError, UnicodeDecodeError) as exc:
        raise MarketDataError(f"{path}: cannot be read ({exc})") from None


def _event(row: dict[str, str | None], path: Path, line: int) -> MarketEvent:
    if None in row or any(value is None for value in row.values()):
        raise MarketDataError(f"{path}: line {line}: expected {len(EVENT_COLUMNS)} cells")
    coin_ids = tuple(str(row["coin_ids"]).split())
    if not row["name"] or not coin_ids:
        raise MarketDataError(f"{path}: line {line}: an event needs a name and at least one coin id")
    try:
        onset = parse_moment(str(row["onset"]), "onset", date_means_end_of_day=False)
    except InvalidRequest as exc:
        raise MarketDataError(f"{path}: line {line}: onset {exc.reason}") from None
    try:
        hours = float(str(row["hours"]))
    except ValueError:
        hours = float("nan")
    if not 0 <= hours < float("inf"):
        raise MarketDataError(f"{path}: line {line}: hours must be a number of hours, at least 0")
    return MarketEvent(name=str(row["name"]), coin_ids=coin_ids, onset=onset, hours=hours)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m libs.tools.market_data SOURCE_DIR [--out FILE]``: regenerate the data file."""
    parser = argparse.ArgumentParser(
        prog="python -m libs.tools.market_data",
        description="Convert CoinGecko daily CSV files (one per coin) into the repository's score CSV (gzip).",
    )
    parser.add_argument("source_dir", help="the folder of per-coin CSV files (coingecko50-daily)")
    parser.add_argument("--out", default=str(MARKET_CSV), help=f"the file to write (default {MARKET_CSV})")
    parser.add_argument("--first-day", default=FIRST_DAY, help=f"the first day copied (default {FIRST_DAY})")
    args = parser.parse_args(argv)
    try:
        result = convert(args.source_dir, args.out, first_day=args.first_day)
    except AnomalyServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
