"""The score CSV reader (contract §12): what it reads, what it refuses, and the line it names.

Every malformed case is written both plain and gzip-compressed; the line
numbers are the file's physical lines (the header is line 1), counted in the
test from the text itself. The repository's market file is compared, value
for value, with a reading by the standard library alone.
"""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import AnomalyServiceError, InvalidRequest
from libs.helpers.constants_helper import SIGNALS
from libs.models.history import documents_to_history
from libs.request import parse_moment
from libs.tools.scores_csv import MalformedCsv, parse_timestamps, read_scores_csv
from tests.fakes.examples import examples
from tests.fakes.market import MARKET_CSV, MARKET_SIGNALS, csv_module_rows

HEADER = "coin_id,timestamp,latest_price,volume\n"


@pytest.fixture(params=["plain", "gzip"])
def write_csv(request, tmp_path):
    """Write text (or bytes) to a ``.csv`` file, or a ``.csv.gz`` one, and return its path."""

    def write(content: str | bytes, name: str = "scores"):
        data = content.encode("utf-8") if isinstance(content, str) else content
        if request.param == "gzip":
            path = tmp_path / f"{name}.csv.gz"
            path.write_bytes(gzip.compress(data))
        else:
            path = tmp_path / f"{name}.csv"
            path.write_bytes(data)
        return path

    return write


def line_of(text: str, marker: str) -> int:
    """The 1-based physical line of ``text`` that is the first to start with ``marker``."""
    return text[: text.index("\n" + marker) + 1].count("\n") + 1


# --------------------------------------------------------------------------- the repository's file


def test_the_repository_file_equals_a_reading_by_the_standard_library():
    # given the market file, read by csv + float + strptime, row for row
    expected = csv_module_rows(MARKET_CSV)

    # when the reader reads it
    frame = read_scores_csv(MARKET_CSV)

    # then the columns, dtypes, order and every value agree exactly (NaN where the cell is empty)
    assert list(frame.columns) == ["coin_id", "timestamp", *MARKET_SIGNALS]
    assert frame["timestamp"].dtype == "datetime64[ms]" and isinstance(frame.index, pd.RangeIndex)
    assert all(frame[s].dtype == np.float64 for s in MARKET_SIGNALS)
    assert len(frame) == len(expected) == 56_279
    assert frame["coin_id"].tolist() == [row["coin_id"] for row in expected]
    assert frame["timestamp"].dt.to_pydatetime().tolist() == [row["timestamp"] for row in expected]
    for signal in MARKET_SIGNALS:
        np.testing.assert_array_equal(frame[signal].to_numpy(), np.array([row[signal] for row in expected]))
    # and the file is sorted as the loader sorts: by coin_id, then timestamp
    keys = [(row["coin_id"], row["timestamp"]) for row in expected]
    assert keys == sorted(keys) and frame["coin_id"].nunique() == 50


# --------------------------------------------------------------------------- what it reads


def test_the_frame_is_the_one_the_loader_builds_from_the_same_documents(write_csv):
    # given observations out of order, two sharing coin and time, a missing value and an offset
    text = HEADER + (
        "sol,2024-03-02T00:00:00Z,150.5,1e9\n"
        "btc,2024-03-01T12:00:00+02:00,,2.5\n"
        "btc,2024-03-01T10:00:00Z,61000,3.5\n"
        "sol,2024-03-01,149,\n"
        "btc,2024-03-01T10:00:00Z,60999.5,4\n"
    )
    documents = [
        {"_id": 1, "coin_id": "sol", "timestamp": datetime(2024, 3, 2), "latest_price": 150.5, "volume": 1e9},
        {"_id": 2, "coin_id": "btc", "timestamp": datetime(2024, 3, 1, 10), "volume": 2.5},
        {"_id": 3, "coin_id": "btc", "timestamp": datetime(2024, 3, 1, 10), "latest_price": 61000.0, "volume": 3.5},
        {"_id": 4, "coin_id": "sol", "timestamp": datetime(2024, 3, 1), "latest_price": 149.0},
        {"_id": 5, "coin_id": "btc", "timestamp": datetime(2024, 3, 1, 10), "latest_price": 60999.5, "volume": 4.0},
    ]

    # when the file is read, and the documents loaded
    frame = read_scores_csv(write_csv(text))
    loaded = documents_to_history(documents, ("latest_price", "volume")).frame.drop(columns="_id")

    # then both give the same frame: columns, dtypes, sorting (ties in file order), values
    pd.testing.assert_frame_equal(frame, loaded)
    assert frame["volume"].tolist()[:3] == [2.5, 3.5, 4.0]


def test_signal_columns_follow_the_signal_order_whatever_the_header_order(write_csv):
    # given a header naming every signal, in reverse, before the keys
    names = list(reversed(SIGNALS))
    text = ",".join([*names, "timestamp", "coin_id"]) + "\n" + ",".join(str(i) for i in range(7)) + ",2024-01-01,a\n"

    # when read
    frame = read_scores_csv(write_csv(text))

    # then the columns are the keys, then the signals in contract order, each with its own cell
    assert list(frame.columns) == ["coin_id", "timestamp", *SIGNALS]
    assert [frame[s].iloc[0] for s in SIGNALS] == [float(names.index(s)) for s in SIGNALS]


def test_timestamps_offsets_dates_basic_format_and_far_years(write_csv):
    # given ISO-8601 texts of several shapes, one beyond pandas' nanosecond range (year 3000)
    stamps = [
        ("2024-03-01T12:00:00Z", datetime(2024, 3, 1, 12)),
        ("2024-03-01T12:00:00+05:30", datetime(2024, 3, 1, 6, 30)),
        ("2024-03-01 12:00", datetime(2024, 3, 1, 12)),
        ("2024-03-01", datetime(2024, 3, 1)),  # a date is the start of its day
        ("20240301T120000Z", datetime(2024, 3, 1, 12)),  # basic format, as a request takes it
        ("2024-03-01t12:00:00-01:00", datetime(2024, 3, 1, 13)),
        ("2024-03-01T12:00:00.123999Z", datetime(2024, 3, 1, 12, 0, 0, 123000)),  # to the ms, rounded down
        ("2024-03-01T12:00:00.000999999Z", datetime(2024, 3, 1, 12)),
        ("3000-01-01T00:00:00.5Z", datetime(3000, 1, 1, 0, 0, 0, 500000)),
        ("9999-12-31T23:59:59.999Z", datetime(9999, 12, 31, 23, 59, 59, 999000)),
    ]
    text = HEADER + "".join(f"c{i:02d},{stamp},{i},\n" for i, (stamp, _) in enumerate(stamps))

    # when read
    frame = read_scores_csv(write_csv(text))

    # then each keeps its own time, in UTC, at millisecond resolution
    assert frame["timestamp"].dtype == "datetime64[ms]"
    ticks = frame["timestamp"].to_numpy().astype(np.int64).tolist()
    expected = [(moment - datetime(1970, 1, 1)) // timedelta(milliseconds=1) for _, moment in stamps]
    assert ticks == expected


def test_numbers_empty_cells_spaces_and_numbers_beyond_float_range(write_csv):
    # given a decimal number in every form the reader takes, an empty cell and one beyond float64
    cells = ["-1.5e-3", ".5", "5.", "+7", " 2.25 ", "1E3", "0001", "", "1e400", "-1e400", "4.9e-324"]
    text = HEADER + "".join(f"c{i:02d},2024-01-01,{cell},\n" for i, cell in enumerate(cells))

    # when read
    frame = read_scores_csv(write_csv(text))

    # then each is float() of its text; empty and infinite ones are missing (contract §2: ±inf is missing)
    expected = [float(c) if c and math.isfinite(float(c)) else math.nan for c in cells]
    np.testing.assert_array_equal(frame["latest_price"].to_numpy(), np.array(expected))
    assert frame["volume"].isna().all()


def test_quoted_cells_crlf_blank_lines_and_a_byte_order_mark(write_csv):
    # given CRLF line ends, a UTF-8 BOM, blank lines, and coin ids holding a comma, a quote and a line break
    text = (
        "\ufeffcoin_id,timestamp,volume\r\n"
        '"a,b",2024-01-01,1\r\n'
        "\r\n"
        '"say ""hi""",2024-01-01,2\r\n'
        "\n"
        '"two\nlines",2024-01-01,"3"\r\n'
        "ünï,2024-01-01,4\r\n"
    )

    # when read
    frame = read_scores_csv(write_csv(text))

    # then the cells are the texts the quoting stands for, and the blank lines are no rows
    assert frame["coin_id"].tolist() == ["a,b", 'say "hi"', "two\nlines", "ünï"]
    assert frame["volume"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_header_without_rows_gives_an_empty_frame_with_the_right_columns(write_csv):
    frame = read_scores_csv(write_csv("coin_id,timestamp,market_cap\n"))

    assert list(frame.columns) == ["coin_id", "timestamp", "market_cap"] and frame.empty
    assert frame["timestamp"].dtype == "datetime64[ms]" and frame["market_cap"].dtype == np.float64


# --------------------------------------------------------------------------- what it refuses, and where

#: (name, file text, how the offending line starts (None: line 1), what the message says)
MALFORMED = [
    ("short row", HEADER + "a,2024-01-01,1,2\nb,2024-01-01,1\n", "b,", "3 cells where the header has 4"),
    ("long row", HEADER + "a,2024-01-01,1,2\nb,2024-01-01,1,2,3\n", "b,", "5 cells where the header has 4"),
    ("blank lines count", HEADER + "a,2024-01-01,1,2\n\n\n\nb,x,1,2\n", "b,", "timestamp is not an ISO-8601"),
    (
        "line breaks inside quotes count",
        HEADER + '"a\nb\nc",2024-01-01,1,2\nd,2024-01-01,1,oops\n',
        "d,",
        "volume 'oops' is not a number",
    ),
    ("not a number", HEADER + "a,2024-01-01,1,2\nb,2024-01-01,1.2.3,2\n", "b,", "latest_price '1.2.3' is not a number"),
    ("nan is not a number", HEADER + "a,2024-01-01,nan,2\n", "a,", "latest_price 'nan' is not a number"),
    ("inf is not a number", HEADER + "a,2024-01-01,1,2\nb,2024-01-01,1,-Infinity\n", "b,", "volume '-Infinity'"),
    ("a comma decimal", HEADER + 'a,2024-01-01,"1,5",2\n', "a,", "latest_price '1,5' is not a number"),
    ("the first bad cell", HEADER + "a,2024-01-01,1,x\nb,2024-01-01,y,2\n", "a,", "volume 'x' is not a number"),
    ("no timestamp", HEADER + "a,,1,2\n", "a,", "timestamp is not an ISO-8601 date or datetime: ''"),
    ("words", HEADER + "a,yesterday,1,2\n", "a,", "timestamp is not an ISO-8601 date or datetime: 'yesterday'"),
    ("no such day", HEADER + "a,2024-02-01,1,2\nb,2024-02-30T00:00:00Z,1,2\n", "b,", "timestamp is not an ISO-8601"),
    ("offset on a date", HEADER + "a,2024-02-01Z,1,2\n", "a,", "timestamp is not an ISO-8601"),
    ("before 1970", HEADER + "a,1969-12-31T23:59:59Z,1,2\n", "a,", "timestamp must not be before 1970-01-01"),
    ("empty coin_id", HEADER + "a,2024-01-01,1,2\n,2024-01-01,1,2\n", ",2024", "coin_id is empty"),
    ("no timestamp column", "coin_id,volume\na,1\n", None, "the header has no timestamp column"),
    ("no key columns", "volume\n1\n", None, "the header has no coin_id and no timestamp column"),
    ("unknown column", "coin_id,timestamp,volumes\na,2024-01-01,1\n", None, "unknown column 'volumes'"),
    ("twice the same column", "coin_id,timestamp,volume,volume\na,2024-01-01,1,2\n", None, "'volume' appears more"),
    ("empty file", "", None, "no header: the first line is empty"),
    ("blank first line", "\ncoin_id,timestamp\n", None, "no header: the first line is empty"),
    ("unclosed quote", HEADER + 'a,2024-01-01,1,2\n"b,2024-01-01,1,2\n', '"b', "a quoted cell is not closed"),
    ("quote inside a cell", HEADER + 'a,2024-01-01,1,2\nb"c,2024-01-01,1,2\n', 'b"', "a quote inside a cell"),
    ("text after a quote", HEADER + '"a"b,2024-01-01,1,2\n', '"a', "text after the closing quote"),
    ("bare carriage return", HEADER + "a,2024-01-01,1,2\rb,2024-01-01,1,2\n", "a,", "a carriage return"),
]


@pytest.mark.parametrize(("text", "marker", "reason"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_a_malformed_file_names_its_line(write_csv, text, marker, reason):
    # given a file with one thing wrong
    path = write_csv(text)

    # when read
    with pytest.raises(MalformedCsv) as raised:
        read_scores_csv(path)

    # then the error names the file and the physical line (the header is line 1) and says what is wrong
    line = 1 if marker is None else line_of(text, marker)
    error = raised.value
    assert (error.path, error.line) == (str(path), line)
    assert str(error).startswith(f"{path}: line {line}: ") and reason in error.reason
    assert isinstance(error, AnomalyServiceError)  # the CLI prints it as one "error: ..." line, exit 2


def test_bytes_that_are_not_utf8_name_their_line(write_csv):
    path = write_csv(HEADER.encode() + b"a,2024-01-01,1,2\nb\xff,2024-01-01,1,2\n")

    with pytest.raises(MalformedCsv, match=r": line 3: is not UTF-8 text$"):
        read_scores_csv(path)


def test_an_unreadable_or_broken_file_is_named(tmp_path):
    # given a missing file, and a .gz file that is not gzip
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"coin_id,timestamp\n")

    # then each error names the file (there is no line to name)
    with pytest.raises(MalformedCsv, match=r"missing\.csv: cannot be read") as missing:
        read_scores_csv(tmp_path / "missing.csv")
    with pytest.raises(MalformedCsv, match=r"broken\.csv\.gz: is not a readable gzip file") as bad_gzip:
        read_scores_csv(broken)
    assert missing.value.line is None and bad_gzip.value.line is None


def test_a_large_file_with_one_bad_cell_near_its_end_names_that_line(write_csv):
    # given 20,000 good rows of three coins and one bad cell near the end (the parser's chunks are smaller)
    rows = [f"c{i % 3},2024-01-01T{i % 24:02d}:00:00Z,{i}.5,{i}" for i in range(20_000)]
    rows[19_990] = rows[19_990].rsplit(",", 1)[0] + ",1e5e5"
    text = HEADER + "\n".join(rows) + "\n"

    # when read / then the line is the header plus 19,991 rows
    with pytest.raises(MalformedCsv) as raised:
        read_scores_csv(write_csv(text))
    assert raised.value.line == 19_992 and "volume '1e5e5' is not a number" in str(raised.value)


# --------------------------------------------------------------------------- timestamps: one reading, two paths

_MOMENTS = st.datetimes(min_value=datetime(1970, 1, 1, 0, 0, 1), max_value=datetime(9999, 12, 30))
_OFFSETS = st.one_of(
    st.just(""),
    st.just("Z"),
    st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
        lambda minutes: f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    ),
)


@st.composite
def _timestamp_texts(draw) -> str:
    """Texts of the shapes that take pandas' path (and a few near misses that must not)."""
    moment = draw(_MOMENTS)
    day = moment.strftime("%Y-%m-%d")
    if draw(st.booleans()):
        day = draw(st.sampled_from([day, day[:8] + "31", day[:5] + "02-29", day[:5] + "13-01"]))
    shape = draw(st.sampled_from(["date", "minutes", "seconds", "fraction"]))
    if shape == "date":
        return day
    clock = moment.strftime("%H:%M" if shape == "minutes" else "%H:%M:%S")
    if shape == "fraction":
        clock += "." + draw(st.text("0123456789", min_size=1, max_size=9))
    return f"{day}{draw(st.sampled_from('T '))}{clock}{draw(_OFFSETS)}"


def _by_parse_moment(text: str) -> int | None:
    try:
        moment = parse_moment(text, "timestamp", date_means_end_of_day=False)
    except InvalidRequest:
        return None
    return (moment - datetime(1970, 1, 1)) // timedelta(milliseconds=1)


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(_timestamp_texts(), min_size=1, max_size=20))
def test_timestamps_read_as_a_request_reads_its_as_of(texts):
    # given texts of the common shapes, some not a real day
    # when parsed together (pandas' vectorised path)
    ticks, bad = parse_timestamps(np.array(texts, dtype=object))

    # then each is what contract §3's own parser makes of it, to the millisecond, or refused by both
    expected = [_by_parse_moment(text) for text in texts]
    assert [None if b else int(t) for t, b in zip(ticks, bad)] == expected


def test_uncommon_shapes_take_the_request_parser():
    # given texts pandas' ISO-8601 path does not take: basic format, week dates, spaces around
    texts = np.array(["20240301T1200Z", "2024-W09-5T00:00:00", " 2024-03-01T12:00:00Z ", "2024", "x"], dtype=object)

    # when parsed / then each is what parse_moment makes of it
    ticks, bad = parse_timestamps(texts)
    assert [None if b else int(t) for t, b in zip(ticks, bad)] == [_by_parse_moment(t) for t in texts]
    assert bad.tolist() == [False, False, False, True, True]
    assert datetime.fromtimestamp(int(ticks[1]) / 1000, UTC).replace(tzinfo=None) == datetime(2024, 3, 1)
