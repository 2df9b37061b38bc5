"""The one reader of score CSV files (contract §12): the backtest's ``--input``, the demo's market data, tests.

A file holds a header line with ``coin_id``, ``timestamp`` and any of the
seven signals (contract §2), then one observation a line. :func:`read_scores_csv`
returns the frame the model takes, as :mod:`libs.models.history` builds it from
documents, so a file and the store are judged alike. Anything malformed raises
:class:`MalformedCsv` naming the file and its line (the header is line 1).

The rules (docs/data.md states them for the people who write such files):

- **Header**: the column names, each once; ``coin_id`` and ``timestamp`` are
  required, every other name must be a signal. An unknown column is an error,
  not ignored: a misspelt ``volumes`` would otherwise quietly judge nothing.
- **Cells**: comma-separated, quoted as RFC 4180 says (a cell holding a comma,
  quote or line break is enclosed in ``"``, its quotes doubled); a quote
  anywhere else, a carriage return that does not end a line, or a row with
  another number of cells than the header is malformed. Lines end in LF or
  CRLF; blank lines are skipped (as ``csv.DictReader`` skips them); a UTF-8
  byte-order mark is ignored; the text must be UTF-8.
- **coin_id**: any non-empty text, kept as it is.
- **timestamp**: ISO-8601 read exactly as a request's ``as_of`` is (contract
  §3, :func:`libs.request.parse_moment`): a datetime, or a date meaning the
  start of that UTC day; no offset means UTC, an offset is converted to UTC;
  from 1970-01-01 to the year 9999 (beyond pandas' nanosecond range), kept to
  the millisecond (rounded down, as BSON stores it).
- **signals**: empty is missing; otherwise a decimal number (``-1.5e-3``,
  ``.5``, spaces around it ignored). ``nan``, ``inf`` and other words are not
  numbers. A number beyond float64's range reads as infinite, which contract
  §2 calls missing, so it is missing.

How it stays fast (1.3 million hourly rows in about a second, docs/data.md):
the file is read into memory once; its structure (line feeds, commas and
quotes outside quoted cells, cells per row) is checked with numpy over the raw
bytes, which also gives every row its line number; pandas' C parser then
converts the cells, the signals straight to float64 and ``coin_id`` and
``timestamp`` as categories, so each distinct timestamp text is parsed once.
No Python code runs per row; only when a cell is bad is its column read again
as text to find the first bad one.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from libs.errors import AnomalyServiceError, InvalidRequest
from libs.helpers.constants_helper import SIGNALS
from libs.models.history import TIMESTAMP_DTYPE, empty_history
from libs.request import EARLIEST_MOMENT, parse_moment

#: The two columns every file must have; the signals are optional.
KEY_COLUMNS = ("coin_id", "timestamp")

_LF, _CR, _QUOTE, _COMMA = (ord(c) for c in '\n\r",')
_BOM = b"\xef\xbb\xbf"
#: A signal cell that is a number: what pandas' C parser reads as a float, less the words (inf, infinity).
_DECIMAL = r"[ \t]*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[ \t]*"
#: Timestamp texts of the common shapes, which pandas' ISO-8601 parser reads as ``parse_moment`` does
#: (tests/unit/test_scores_csv.py checks that it does); any other text goes to ``parse_moment`` itself.
_COMMON_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?")
_EPOCH = datetime(1970, 1, 1)
_EARLIEST_MS = (EARLIEST_MOMENT - _EPOCH) // timedelta(milliseconds=1)


class MalformedCsv(AnomalyServiceError):
    """A score CSV that cannot be read as contract §12 says; names the file and, where there is one, the line."""

    kind = "input"
    caller_fault = True

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}: line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def read_scores_csv(path: Path | str) -> pd.DataFrame:
    """The observations of a score CSV file (gzip when its name ends in ``.gz``) as the model's frame.

    Returns the columns ``coin_id`` (text, in the dtype the loader gives it),
    ``timestamp`` (``datetime64[ms]``, naive UTC) and one float64 column per
    signal the header names, in the order of ``SIGNALS`` (NaN where missing),
    sorted by ``coin_id`` then ``timestamp`` (rows sharing both keep their
    file order) with a fresh ``RangeIndex``: the frame
    :func:`libs.models.history.documents_to_history` builds from documents,
    without ``_id``. Raises :class:`MalformedCsv`.
    """
    path = Path(path)
    data = _read_bytes(path)
    layout = _Layout.scan(data, path)
    signals = [signal for signal in SIGNALS if signal in layout.header]
    cells = _parse_cells(data, path, layout, signals)

    columns = {
        signal: _signal_values(cells[signal].to_numpy(np.float64), signal, data, path, layout) for signal in signals
    }
    coin_ids = _column_categories(cells["coin_id"])
    coin_codes = cells["coin_id"].cat.codes.to_numpy()
    empty = np.flatnonzero((coin_codes < 0) | (coin_ids[coin_codes] == ""))
    if empty.size:
        raise MalformedCsv(path, int(layout.row_lines[empty[0]]), "coin_id is empty")
    ticks = _timestamp_ticks(cells["timestamp"], path, layout)

    coin_rank = np.empty(len(coin_ids), dtype=np.int64)
    coin_rank[np.argsort(coin_ids, kind="stable")] = np.arange(len(coin_ids))
    ranks = coin_rank[coin_codes]
    order = None if _is_sorted(ranks, ticks) else np.lexsort((ticks, ranks))
    names, stamps = coin_ids[coin_codes], ticks.view(TIMESTAMP_DTYPE)
    if order is not None:
        names, stamps = names[order], stamps[order]
        columns = {signal: values[order] for signal, values in columns.items()}
    if not len(names):
        return empty_history(signals).drop(columns="_id")
    frame = pd.DataFrame(columns, copy=False)  # built as the loader builds it, so the dtypes are the same
    frame.insert(0, "coin_id", names)
    frame.insert(1, "timestamp", stamps)
    return frame


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as compressed:
                data = compressed.read()
        else:
            data = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise MalformedCsv(path, None, f"is not a readable gzip file ({exc})") from None
    except OSError as exc:
        raise MalformedCsv(path, None, f"cannot be read ({exc.strerror or exc})") from None
    return data[len(_BOM) :] if data.startswith(_BOM) else data


@dataclass(frozen=True)
class _Layout:
    """The checked structure of a file: its column names and the line each data row starts on."""

    header: tuple[str, ...]
    row_lines: np.ndarray

    @classmethod
    def scan(cls, data: bytes, path: Path) -> _Layout:
        """Check the structure with array operations over the bytes; raise at the first malformed line."""
        buf = np.frombuffer(data, dtype=np.uint8)
        size = len(buf)
        line_feeds = np.flatnonzero(buf == _LF)

        def line_of(offset: np.ndarray | int) -> int:
            return int(np.searchsorted(line_feeds, offset)) + 1  # the line feeds before it, plus one

        if size and int(buf.max()) >= 0x80:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedCsv(path, line_of(exc.start), "is not UTF-8 text") from None
        problems: list[tuple[int, str]] = []  # (line, reason): the earliest is raised
        quotes = np.flatnonzero(buf == _QUOTE)
        commas = np.flatnonzero(buf == _COMMA)
        returns = np.flatnonzero(buf == _CR)
        ends = line_feeds
        if quotes.size:
            problems += _quote_problems(buf, quotes, line_of)
            if quotes.size % 2:
                problems.append((line_of(quotes[-1]), "a quoted cell is not closed"))
                quotes = quotes[:-1]

            def outside(offsets: np.ndarray) -> np.ndarray:
                return offsets[np.searchsorted(quotes, offsets) % 2 == 0]

            ends, commas, returns = outside(line_feeds), outside(commas), outside(returns)
        bare = returns[(returns + 1 >= size) | (buf[np.minimum(returns + 1, size - 1)] != _LF)]
        if bare.size:
            problems.append((line_of(bare[0]), "a carriage return that does not end the line"))

        starts = np.concatenate(([0], ends + 1))
        stops = np.concatenate((ends, [size]))
        if starts[-1] == size:  # a final line feed ends the last row: nothing follows it
            starts, stops = starts[:-1], stops[:-1]
        lengths = stops - starts
        blank = (lengths == 0) | ((lengths == 1) & (buf[np.minimum(starts, max(size - 1, 0))] == _CR))
        if not starts.size or blank[0]:
            problems.append((1, "no header: the first line is empty"))
            raise MalformedCsv(path, *_earliest(problems))
        header_text = data[starts[0] : stops[0]].decode("utf-8", errors="replace").rstrip("\r")
        header = tuple(next(csv.reader(io.StringIO(header_text, newline=""))))
        problems += [(1, reason) for reason in _header_problems(header)]
        cells = np.bincount(np.searchsorted(ends, commas), minlength=len(starts)) + 1
        wrong = np.flatnonzero((cells != len(header)) & ~blank)
        if wrong.size:
            row = wrong[0]
            count = int(cells[row])
            problems.append(
                (line_of(starts[row]), f"{count} cell{'' if count == 1 else 's'} where the header has {len(header)}")
            )
        if problems:
            raise MalformedCsv(path, *_earliest(problems))
        data_rows = np.flatnonzero(~blank)[1:]
        return cls(header=header, row_lines=np.searchsorted(line_feeds, starts[data_rows]) + 1)


def _earliest(problems: list[tuple[int, str]]) -> tuple[int, str]:
    """The problem on the lowest line; on one line, the first found (quotes, line ends, header, cells)."""
    return min(problems, key=lambda problem: problem[0])


def _quote_problems(
    buf: np.ndarray, quotes: np.ndarray, line_of: Callable[[np.ndarray | int], int]
) -> list[tuple[int, str]]:
    """Quotes that RFC 4180 does not allow; ``quotes`` are their offsets (opening ones at even positions).

    An opening quote starts a cell (it follows the start of the file, a comma
    or a line feed) or is the second of a doubled quote inside a quoted cell
    (it follows a closing quote); a closing quote ends the cell (a comma, a
    line end or the end of the file follows it) or is the first of a doubled one.
    """
    size = len(buf)
    opening, closing = quotes[0::2], quotes[1::2]
    before = buf[np.maximum(opening - 1, 0)]
    doubled_second = np.isin(opening - 1, closing)
    bad_open = ~((opening == 0) | (before == _COMMA) | (before == _LF) | doubled_second)
    after = buf[np.minimum(closing + 1, size - 1)]
    doubled_first = np.isin(closing + 1, opening)
    bad_close = ~((closing == size - 1) | (after == _COMMA) | (after == _LF) | (after == _CR) | doubled_first)
    problems = []
    if bad_open.any():
        problems.append((line_of(opening[bad_open][0]), "a quote inside a cell that does not start with one"))
    if bad_close.any():
        problems.append((line_of(closing[bad_close][0]), "text after the closing quote of a cell"))
    return problems


def _header_problems(header: tuple[str, ...]) -> list[str]:
    problems = [f"column {name!r} appears more than once" for name in dict.fromkeys(header) if header.count(name) > 1]
    unknown = [name for name in header if name not in KEY_COLUMNS and name not in SIGNALS]
    if unknown:
        problems.append(
            f"unknown column {unknown[0]!r} (a header holds coin_id, timestamp and any of {', '.join(SIGNALS)})"
        )
    missing = [name for name in KEY_COLUMNS if name not in header]
    if missing:
        problems.append(f"the header has no {' and no '.join(missing)} column")
    return problems[:1]


def _parse_cells(data: bytes, path: Path, layout: _Layout, signals: list[str]) -> pd.DataFrame:
    """The cells converted by pandas' C parser: the keys as categories, the signals as float64."""
    try:
        cells = pd.read_csv(
            io.BytesIO(data),
            engine="c",
            encoding="utf-8",
            dtype={"coin_id": "category", "timestamp": "category", **dict.fromkeys(signals, np.float64)},
            keep_default_na=False,
            na_values={signal: [""] for signal in signals},
            skip_blank_lines=True,
        )
    except ValueError as exc:  # a signal cell that is not a number (or, never seen, something the scan missed)
        raise _first_bad_number(data, path, layout, signals) or MalformedCsv(path, None, str(exc)) from None
    if len(cells) != len(layout.row_lines):  # the scan and the parser must agree on what a row is
        raise MalformedCsv(path, None, f"read {len(cells)} rows where its lines hold {len(layout.row_lines)}")
    return cells


def _signal_texts(data: bytes, signal: str) -> np.ndarray:
    column = pd.read_csv(
        io.BytesIO(data), engine="c", encoding="utf-8", usecols=[signal], dtype=object, na_filter=False
    )[signal]
    return column.to_numpy(dtype=object)


def _not_decimal(texts: np.ndarray) -> np.ndarray:
    return ~pd.Series(texts, dtype=object).str.fullmatch(_DECIMAL).to_numpy(dtype=bool)


def _first_bad_number(data: bytes, path: Path, layout: _Layout, signals: list[str]) -> MalformedCsv | None:
    """The error for the first cell (in file order) that is neither empty nor a number, if any."""
    first: tuple[int, str, str] | None = None
    for signal in signals:
        texts = _signal_texts(data, signal)
        bad = np.flatnonzero((texts != "") & _not_decimal(texts))
        if bad.size and (first is None or bad[0] < first[0]):
            first = (int(bad[0]), signal, texts[bad[0]])
    if first is None:
        return None
    row, signal, text = first
    return MalformedCsv(path, int(layout.row_lines[row]), f"{signal} {_short(text)!r} is not a number")


def _signal_values(values: np.ndarray, signal: str, data: bytes, path: Path, layout: _Layout) -> np.ndarray:
    """Float64 values with NaN where missing; a word the parser read as infinite (``inf``) is malformed."""
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        texts = _signal_texts(data, signal)[infinite]
        words = np.flatnonzero(_not_decimal(texts))
        if words.size:
            row = infinite[words[0]]
            raise MalformedCsv(
                path, int(layout.row_lines[row]), f"{signal} {_short(texts[words[0]])!r} is not a number"
            )
        values = values.copy()
        values[infinite] = np.nan  # beyond float64: missing, as contract §2 says of ±inf
    return values


def _column_categories(column: pd.Series) -> np.ndarray:
    return np.asarray(column.cat.categories, dtype=object)


def _timestamp_ticks(column: pd.Series, path: Path, layout: _Layout) -> np.ndarray:
    """Milliseconds since the epoch (int64) of every row's timestamp, each distinct text parsed once."""
    texts = _column_categories(column)
    codes = column.cat.codes.to_numpy()
    ticks, bad = parse_timestamps(texts)
    rows = np.flatnonzero((codes < 0) | bad[codes])
    if rows.size:
        row = rows[0]
        text = texts[codes[row]] if codes[row] >= 0 else ""
        raise MalformedCsv(path, int(layout.row_lines[row]), f"timestamp {_timestamp_reason(text)}")
    return ticks[codes]


def parse_timestamps(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds since the epoch (int64, rounded down) of ISO-8601 texts, and which texts are not timestamps.

    Reads each text as :func:`libs.request.parse_moment` reads a request's
    ``as_of`` (a date is the start of its day). The common shapes
    (``2022-05-10``, ``2022-05-10T00:00:00Z``, ``…+02:00``, ``…12:00:00.123``)
    go through pandas' ISO-8601 parser at once; any other text, and any the
    parser refuses, through ``parse_moment`` itself.
    """
    ticks = np.zeros(len(texts), dtype=np.int64)
    parsed = np.zeros(len(texts), dtype=bool)
    common = np.flatnonzero(pd.Series(texts, dtype=object).str.fullmatch(_COMMON_TIMESTAMP).to_numpy(dtype=bool))
    if common.size:
        moments = pd.to_datetime(pd.Index(texts[common]), format="ISO8601", utc=True, errors="coerce")
        values = moments.tz_convert(None).to_numpy()
        read = ~np.isnat(values)
        ticks[common[read]] = values[read].astype(TIMESTAMP_DTYPE).view(np.int64)  # numpy rounds down
        parsed[common[read]] = True
    for i in np.flatnonzero(~parsed).tolist():  # the uncommon shapes: rare, one per distinct text
        try:
            moment = parse_moment(texts[i], "timestamp", date_means_end_of_day=False)
        except InvalidRequest:
            continue
        ticks[i] = (moment - _EPOCH) // timedelta(milliseconds=1)
        parsed[i] = True
    return ticks, ~parsed | (ticks < _EARLIEST_MS)


def _timestamp_reason(text: str) -> str:
    """Why ``text`` is no timestamp, in the words a request's ``as_of`` gets (contract §3)."""
    try:
        parse_moment(text, "timestamp", date_means_end_of_day=False)
    except InvalidRequest as exc:
        return exc.reason
    return f"is not an ISO-8601 date or datetime: {_short(text)!r}"  # pragma: no cover - pandas refused it alone


def _is_sorted(ranks: np.ndarray, ticks: np.ndarray) -> bool:
    if len(ranks) < 2:
        return True
    rank_step, tick_step = np.diff(ranks), np.diff(ticks)
    return bool(((rank_step > 0) | ((rank_step == 0) & (tick_step >= 0))).all())


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
