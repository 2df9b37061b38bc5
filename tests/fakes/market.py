"""The repository's real market data (``data/``) for tests: one cached reading, and an independent one.

:func:`market_frame` is the file read once per test session by the reader
under test (``libs.tools.scores_csv``), :func:`market_slice` a part of it;
:func:`csv_module_rows` reads it again with nothing but the standard library,
so a test can check the one against the other.
"""

from __future__ import annotations

import csv
import functools
import gzip
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from libs.tools.scores_csv import read_scores_csv

REPO = Path(__file__).resolve().parents[2]
MARKET_CSV = REPO / "data" / "coingecko-daily.csv.gz"
EVENTS_CSV = REPO / "data" / "events.csv"
#: The source folder the file is made from (CoinGecko's per-coin CSV files), named by ``MARKET_SOURCE_DIR``;
#: the regeneration tests skip where it is not given.
SOURCE_DIR = Path(os.environ.get("MARKET_SOURCE_DIR", "").strip() or "/nonexistent/market-source")
MARKET_SIGNALS = ("latest_price", "volume", "market_cap")


@functools.cache
def _market_frame() -> pd.DataFrame:
    return read_scores_csv(MARKET_CSV)


def market_frame() -> pd.DataFrame:
    """The whole repository file as the model's frame (a copy: callers may change it)."""
    return _market_frame().copy()


def market_slice(coin_ids: tuple[str, ...] | list[str], since: datetime, until: datetime) -> pd.DataFrame:
    """The rows of ``coin_ids`` stamped in ``[since, until]``, with a fresh index."""
    frame = _market_frame()
    keep = frame["coin_id"].isin(list(coin_ids)) & frame["timestamp"].between(since, until)
    return frame[keep].reset_index(drop=True)


def csv_module_rows(path: Path = MARKET_CSV) -> list[dict[str, Any]]:
    """Every row of a score CSV read with ``gzip`` + ``csv`` + ``float`` + ``strptime``: the independent reading."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = []
        for row in csv.DictReader(handle):
            record: dict[str, Any] = {
                "coin_id": row["coin_id"],
                "timestamp": datetime.strptime(row["timestamp"], "%Y-%m-%dT%H:%M:%SZ"),
            }
            for signal in MARKET_SIGNALS:
                record[signal] = float(row[signal]) if row[signal] != "" else math.nan
            rows.append(record)
    return rows
