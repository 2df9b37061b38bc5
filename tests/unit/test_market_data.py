"""The repository's market data (contract §13): made reproducibly from its source, with its papers and events."""

from __future__ import annotations

import gzip
from datetime import datetime

import pytest

from libs.tools.market_data import (
    MarketDataError,
    convert,
    main,
    read_events,
)
from tests.fakes.market import EVENTS_CSV, MARKET_CSV, REPO, SOURCE_DIR, market_frame

SOURCE_HEADER = "date,price,total_volume,market_cap,coin_name\n"


def write_source(folder, files: dict[str, str]):
    folder.mkdir(exist_ok=True)
    for coin, rows in files.items():
        (folder / f"{coin}.csv").write_text(SOURCE_HEADER + rows)
    return folder


# --------------------------------------------------------------------------- the repository's copy


@pytest.mark.skipif(not SOURCE_DIR.exists(), reason=f"the source folder {SOURCE_DIR} is absent")
def test_the_repository_file_is_regenerated_byte_for_byte_from_its_source(tmp_path):
    # given the source folder / when converted again
    result = convert(SOURCE_DIR, tmp_path / "again.csv.gz")

    # then the bytes are those in the repository, and the counts those data/README.md states
    assert (tmp_path / "again.csv.gz").read_bytes() == MARKET_CSV.read_bytes()
    assert (result.rows, result.coins, result.first_day, result.last_day) == (56_279, 50, "2020-01-01", "2023-05-25")
    assert result.market_caps_zero == 996
    readme = (REPO / "data" / "README.md").read_text()
    assert "56,279 rows, 50 coins" in readme and "(996 rows" in readme


@pytest.mark.skipif(not SOURCE_DIR.exists(), reason=f"the source folder {SOURCE_DIR} is absent")
def test_the_licence_is_the_sources_verbatim():
    assert (REPO / "data" / "LICENSE.md").read_bytes() == (SOURCE_DIR / "LICENSE.md").read_bytes()


def test_the_data_travels_with_its_licence_and_credit():
    licence = (REPO / "data" / "LICENSE.md").read_text()
    readme = (REPO / "data" / "README.md").read_text()
    assert licence.startswith("MIT License") and "Alissa Troiano" in licence
    assert "market data: CoinGecko" in readme and "LICENSE.md" in readme


def test_the_events_lie_inside_the_data_and_name_its_coins():
    # given the events file and the market data
    events = read_events(EVENTS_CSV)
    frame = market_frame()
    coins = set(frame["coin_id"])

    # then the six events of contract §13 are there, each on coins with rows through its whole span
    assert [e.name for e in events] == [
        "COVID crash",
        "May 2021 crash",
        "Terra LUNA/UST collapse",
        "Celsius freeze and 3AC",
        "FTX/FTT collapse",
        "USDC depeg (SVB)",
    ]
    for event in events:
        assert set(event.coin_ids) <= coins, event.name
        # onset at 00:00 UTC, hours a whole number of days (data/README.md: 24 x the days the event lasted)
        assert event.onset.time() == datetime.min.time() and event.hours % 24 == 0 and event.hours > 0
        for coin in event.coin_ids:
            rows = frame[(frame["coin_id"] == coin) & frame["timestamp"].between(event.onset, event.end)]
            assert len(rows) == event.hours // 24 + 1, (event.name, coin)
    terra = events[2]
    assert (terra.coin_ids, terra.onset, terra.end) == (("terra-luna",), datetime(2022, 5, 8), datetime(2022, 5, 14))


# --------------------------------------------------------------------------- the conversion


def test_convert_applies_the_documented_changes_and_nothing_else(tmp_path):
    # given two coins' files: both date styles, a market cap of 0, an empty cell, rows before the first day
    source = write_source(
        tmp_path / "src",
        {
            "zeta": (
                "2019-12-31 00:00:00.000,1.5,10,100,zeta\n"
                "2020-01-02 00:00:00.000,1.25,20,0.0,zeta\n"
                "2020-01-01 00:00:00.000,9.722410112328183e-10,30,300.0000000000001,zeta\n"
            ),
            "alpha": "2020-01-01,2,,0,alpha\n",
        },
    )

    # when converted
    result = convert(source, tmp_path / "out.csv.gz")

    # then the rows are sorted, dated 00:00 UTC, cells copied verbatim, market cap 0 and empty cells empty
    text = gzip.decompress((tmp_path / "out.csv.gz").read_bytes()).decode()
    assert text == (
        "coin_id,timestamp,latest_price,volume,market_cap\n"
        "alpha,2020-01-01T00:00:00Z,2,,\n"
        "zeta,2020-01-01T00:00:00Z,9.722410112328183e-10,30,300.0000000000001\n"
        "zeta,2020-01-02T00:00:00Z,1.25,20,\n"
    )
    assert (result.rows, result.coins, result.market_caps_zero, result.empty_cells) == (3, 2, 2, 1)
    # and a second run writes the same bytes (no time or name in the gzip header)
    again = convert(source, tmp_path / "other-name.csv.gz")
    assert (tmp_path / "other-name.csv.gz").read_bytes() == (tmp_path / "out.csv.gz").read_bytes()
    assert again.rows == 3


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a": "2020-01-01,1,2,3,b\n"}, r"a\.csv: line 2: coin_name is not 'a'"),
        ({"a": "2020-01-01,1,2,3,a\n2020-01-01 00:00:00.000,1,2,3,a\n"}, r"a has two rows on 2020-01-01"),
        ({"a": "2020-01-01,1,2,3,a\n2020-01-02,1,two,3,a\n"}, r"a\.csv: line 3: total_volume 'two' is not a number"),
        ({"a": "2020-01-01,1,2,3,a\n2020-13-01,1,2,3,a\n"}, r"a\.csv: line 3: date is not a date"),
    ],
    ids=["another coin", "a day twice", "not a number", "not a date"],
)
def test_convert_refuses_a_source_it_cannot_copy_faithfully(tmp_path, files, message):
    source = write_source(tmp_path / "src", files)

    with pytest.raises(MarketDataError, match=message):
        convert(source, tmp_path / "out.csv.gz")
    assert not (tmp_path / "out.csv.gz").exists()


def test_convert_refuses_another_header_and_an_empty_folder(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(MarketDataError, match="no \\*.csv files"):
        convert(tmp_path / "src", tmp_path / "out.csv.gz")
    (tmp_path / "src" / "a.csv").write_text("day,price\n2020-01-01,1\n")
    with pytest.raises(MarketDataError, match=r"a\.csv: the header is day,price, expected date,price"):
        convert(tmp_path / "src", tmp_path / "out.csv.gz")


def test_the_command_prints_a_summary_or_one_error_line(tmp_path, capsys):
    # given a good source and a bad one
    good = write_source(tmp_path / "good", {"a": "2020-01-01,1,2,3,a\n"})
    bad = write_source(tmp_path / "bad", {"a": "2020-01-01,1,2,3,b\n"})

    # when the command runs on each
    assert main([str(good), "--out", str(tmp_path / "out.csv.gz")]) == 0
    printed = capsys.readouterr()
    assert main([str(bad), "--out", str(tmp_path / "out2.csv.gz")]) == 2
    failed = capsys.readouterr()

    # then a summary, and a single error line without a traceback
    assert "1 rows, 1 coins, 2020-01-01 to 2020-01-01" in printed.out
    assert failed.err.startswith("error: ") and failed.err.count("\n") == 1 and "Traceback" not in failed.err


# --------------------------------------------------------------------------- events files


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,coins,onset,hours\n", r"line 1: the header must be name,coin_ids,onset,hours"),
        ("name,coin_ids,onset,hours\nx,a,2022-01-01\n", r"line 2: expected 4 cells"),
        ("name,coin_ids,onset,hours\nx,a,2022-01-01,24,9\n", r"line 2: expected 4 cells"),
        ("name,coin_ids,onset,hours\nx, ,2022-01-01,24\n", r"line 2: an event needs a name and at least one coin"),
        ("name,coin_ids,onset,hours\nx,a,soon,24\n", r"line 2: onset is not an ISO-8601"),
        ("name,coin_ids,onset,hours\nx,a,2022-01-01,-1\n", r"line 2: hours must be a number of hours, at least 0"),
        ("name,coin_ids,onset,hours\nx,a,2022-01-01,inf\n", r"line 2: hours must be"),
    ],
    ids=["header", "short", "long", "no coins", "onset", "negative hours", "infinite hours"],
)
def test_a_malformed_events_file_names_its_line(tmp_path, text, message):
    path = tmp_path / "events.csv"
    path.write_text(text)

    with pytest.raises(MarketDataError, match=message):
        read_events(path)


def test_an_event_covers_its_coins_from_onset_to_onset_plus_hours(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("name,coin_ids,onset,hours\nx,a b,2022-01-01T06:00:00+02:00,1.5\n")

    (event,) = read_events(path)

    assert event.coin_ids == ("a", "b") and event.onset == datetime(2022, 1, 1, 4)
    assert event.covers("b", datetime(2022, 1, 1, 5, 30)) and event.covers("a", datetime(2022, 1, 1, 4))
    assert not event.covers("a", datetime(2022, 1, 1, 5, 30, 1)) and not event.covers("c", datetime(2022, 1, 1, 5))
