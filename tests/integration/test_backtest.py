"""The backtest command (contract §12) as a user runs it: on the repository's real market data, on the
embedded store, and on bad input.

On data/ the project's acceptance criteria are asserted: with the default
settings every known event of data/events.csv is caught, alerts stay at or
below 0.05 per coin-day, and no stablecoin price alert is among the ten most
severe. The store path must give what the file path gives on the same data,
with one index-shaped query and not one write.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from libs.cli import main
from libs.helpers import constants_helper, mongodb_helper
from libs.helpers.constants_helper import load_settings
from libs.helpers.mongodb_helper import DriverReader
from libs.tools.backtest.run import run_backtest, store_query
from libs.tools.backtest.scope import backtest_scope
from libs.tools.market_data import market_documents
from libs.tools.scores_csv import read_scores_csv
from tests.fakes.backtest_reference import reference_busiest_days, reference_counts, reference_events
from tests.fakes.market import EVENTS_CSV, MARKET_CSV
from tests.fakes.network import closed_port

#: Stablecoins (pegged to a dollar): their price alerts are peg noise unless the peg breaks.
STABLECOINS = {
    "tether",
    "usd-coin",
    "dai",
    "binance-usd",
    "frax",
    "true-usd",
    "paxos-standard",
    "pax-dollar",
    "gemini-dollar",
    "terrausd",
    "usdd",
    "first-digital-usd",
}


def run(*arguments: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["backtest", *arguments])
    return status, out.getvalue(), err.getvalue()


def read_events_plainly(path: Path) -> list[dict[str, Any]]:
    """data/events.csv read with nothing but string splitting (it holds no quoted cells)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    events = []
    for line in lines[1:]:
        name, coins, onset, hours = line.split(",")
        events.append(
            {
                "name": name,
                "coin_ids": coins.split(),
                "onset": datetime.strptime(onset, "%Y-%m-%dT%H:%M:%SZ"),
                "hours": int(hours),
            }
        )
    return events


def by_severity(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first (null severities last), then coin_id, signal, timestamp, direction (contract §10)."""
    return sorted(
        bodies,
        key=lambda b: (
            b["severity"] is None,
            -(b["severity"] or 0.0),
            b["coin_id"],
            b["signal"],
            b["timestamp"],
            b["direction"],
        ),
    )


# --- the real market data ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def market_run(tmp_path_factory):
    """The worked example of docs/backtest.md: the whole of data/ with its events, default settings."""
    out = tmp_path_factory.mktemp("market") / "backtest"
    constants_helper.reset_settings()
    status, stdout, stderr = run(
        "--input",
        str(MARKET_CSV),
        "--since",
        "2020-01-01",
        "--as-of",
        "2023-05-25",
        "--events",
        str(EVENTS_CSV),
        "--out",
        str(out),
    )
    assert status == 0, stderr
    alerts = json.loads((out / "alerts.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    return out, stdout, alerts, summary


def test_on_real_markets_every_known_event_is_caught(market_run):
    _, stdout, alerts, summary = market_run
    events = summary["events"]
    assert [e["name"] for e in events] == [e["name"] for e in read_events_plainly(EVENTS_CSV)]
    assert events == reference_events(alerts, read_events_plainly(EVENTS_CSV))
    missed = [e["name"] for e in events if not e["caught"]]
    assert missed == []
    assert stdout.splitlines()[0].endswith(f"events caught: {len(events)} of {len(events)}")


def test_on_real_markets_alerts_stay_at_or_below_one_in_twenty_coin_days(market_run):
    _, _, alerts, summary = market_run
    assert summary["alerts"] == len(alerts) > 0
    assert summary["coins"] == 50 and summary["observations"] == 56_279
    assert summary["alerts_per_coin_day"] == pytest.approx(len(alerts) / summary["coin_days"], rel=1e-12)
    assert summary["alerts_per_coin_day"] <= 0.05


def test_on_real_markets_no_stablecoin_price_alert_is_among_the_ten_most_severe(market_run):
    _, _, alerts, _ = market_run
    top = by_severity(alerts)[:10]
    assert [
        (a["coin_id"], a["timestamp"]) for a in top if a["coin_id"] in STABLECOINS and a["signal"] == "latest_price"
    ] == []


def test_on_real_markets_the_outputs_hold_what_the_contract_says(market_run):
    out, stdout, alerts, summary = market_run
    # alerts.json: bodies of contract §10 with a null request_id, in time order, each alert once
    assert all(list(a) == [*ALERT_KEYS] and a["request_id"] is None for a in alerts)
    order = [(a["timestamp"], a["coin_id"], a["signal"], a["direction"]) for a in alerts]
    assert order == sorted(order) and len({a["alert_id"] for a in alerts}) == len(alerts)
    assert all("2020-01-01T00:00:00.000Z" <= a["timestamp"] <= "2023-05-25T23:59:59.999Z" for a in alerts)
    # summary.json: the period, and counts that the reference recomputes from alerts.json
    assert (summary["since"], summary["as_of"]) == ("2020-01-01T00:00:00.000Z", "2023-05-25T23:59:59.999Z")
    counts = reference_counts(alerts)
    assert summary["by_signal"] == counts["by_signal"] and summary["by_level"] == counts["by_level"]
    assert summary["busiest_days"] == reference_busiest_days(alerts)
    # the command printed one summary line, a line per event and where the page is
    lines = stdout.splitlines()
    assert len(lines) == 2 + len(summary["events"]) and lines[-1] == f"backtest: {out / 'index.html'}"
    assert lines[0].startswith(f"{len(alerts):,} alerts from 2020-01-01 00:00 to 2023-05-25 23:59:59.999 UTC")
    assert (out / "index.html").stat().st_size > 10_000
    assert "data/coingecko-daily.csv.gz (market data: CoinGecko)" in (out / "index.html").read_text()  # its credit
    assert sorted(p.name for p in out.parent.iterdir()) == ["backtest"]  # no staging directory left


ALERT_KEYS = (
    "alert_id",
    "coin_id",
    "signal",
    "timestamp",
    "direction",
    "value",
    "severity",
    "level",
    "flat_window",
    "windows",
    "request_id",
)


# --- the store --------------------------------------------------------------------------------

SLICE_COINS = ("terra-luna", "tether", "ftx-token", "bitcoin")


@pytest.fixture
def market_slice_csv(tmp_path) -> Path:
    """Four coins of data/ from 2022-02-01 to 2022-12-31, as the lines of the file (gzip), byte for byte."""
    with gzip.open(MARKET_CSV, "rt", encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
    kept = [lines[0]] + [
        line for line in lines[1:] if line.split(",")[0] in SLICE_COINS and "2022-02-01" <= line.split(",")[1] < "2023"
    ]
    path = tmp_path / "slice.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.writelines(kept)
    return path


@pytest.fixture
def seeded_store(store, market_slice_csv):
    store.insert_many(market_documents(read_scores_csv(market_slice_csv)))
    return store


def snapshot(store) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    return list(store.find({})), store.index_information(), store.database.list_collection_names()


PERIOD = ("--since", "2022-04-15", "--as-of", "2022-11-30T12:00:00Z", "--events", str(EVENTS_CSV))


def test_the_store_gives_what_the_file_gives_and_is_not_written(seeded_store, market_slice_csv, tmp_path):
    # given: the same observations in the embedded store and in a file
    before = snapshot(seeded_store)
    # when: the backtest reads each
    from_store = run(*PERIOD, "--out", str(tmp_path / "store"))
    from_file = run("--input", str(market_slice_csv), *PERIOD, "--out", str(tmp_path / "file"))
    # then: the same alerts and the same summary, and the store is as it was
    assert from_store[0] == 0 and from_file[0] == 0, from_store[2] + from_file[2]
    for name in ("alerts.json", "summary.json"):
        assert (tmp_path / "store" / name).read_text() == (tmp_path / "file" / name).read_text(), name
    alerts = json.loads((tmp_path / "store" / "alerts.json").read_text())
    assert {a["coin_id"] for a in alerts} >= {"terra-luna", "ftx-token"}
    assert from_store[1].splitlines()[0] == from_file[1].splitlines()[0]
    assert snapshot(seeded_store) == before


class RecordingReader(DriverReader):
    """The driver reader, remembering each query (and counting the documents it streams)."""

    def __init__(self, collection) -> None:
        super().__init__(collection)
        self.queries: list[tuple[dict[str, Any], dict[str, int]]] = []
        self.streamed = 0

    def find(self, query, projection):
        self.queries.append((query, projection))
        for document in super().find(query, projection):
            self.streamed += 1
            yield document


@pytest.mark.parametrize("coins", [None, ["terra-luna", "tether"]])
def test_the_store_is_read_with_one_index_shaped_query_reaching_back_memory_and_the_longest_window(
    seeded_store, tmp_path, coins
):
    # given
    settings = load_settings({"MONGODB_URI": "mongomock://", "ALERT_MEMORY_HOURS": "36"})
    scope = backtest_scope(
        now=datetime(2024, 1, 1),
        default_periods=settings.periods_days,
        since="2022-05-01",
        as_of="2022-05-31",
        coin_ids=coins,
        signals=["latest_price", "volume"],
    )
    reader = RecordingReader(seeded_store)
    # when
    output = run_backtest(scope, settings, tmp_path / "out", generated_at=datetime(2024, 1, 1), reader=reader)
    # then: one query, coin_id first, from since − 36 h − 30 days (exclusive) to as_of, streamed
    ((query, projection),) = reader.queries
    assert list(query) == ["coin_id", "timestamp"]
    assert query["coin_id"] == ({"$gt": ""} if coins is None else {"$in": coins})
    assert query["timestamp"] == {
        "$gt": datetime(2022, 5, 1) - timedelta(hours=36) - timedelta(days=30),
        "$lte": datetime(2022, 5, 31, 23, 59, 59, 999000),
    }
    assert projection == {"_id": 1, "coin_id": 1, "timestamp": 1, "latest_price": 1, "volume": 1}
    expected = seeded_store.count_documents({k: v for k, v in query.items()})
    assert reader.streamed == expected > 0
    assert output.result.counts.coins == (len(SLICE_COINS) if coins is None else 2)


def test_an_unreachable_store_exits_2_without_leaking_the_uri_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "MONGODB_URI", f"mongodb://svc-user:S3cret-Pa55@127.0.0.1:{closed_port()}/?directConnection=true"
    )
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_DATABASE", "risk")
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION", "scores")
    monkeypatch.setenv("MONGODB_SERVER_SELECTION_TIMEOUT_MS", "300")
    constants_helper.reset_settings()
    mongodb_helper.reset_client()
    try:
        status, out, err = run("--out", str(tmp_path / "out"))
    finally:
        mongodb_helper.reset_client()
        constants_helper.reset_settings()
    assert status == 2 and err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "S3cret-Pa55" not in err + out and "svc-user" not in err + out
    assert out == "" and list(tmp_path.iterdir()) == []


def test_a_file_needs_no_store_configured_and_the_store_path_says_what_is_missing(tmp_path, monkeypatch):
    # given: no connection settings at all
    for name in ("MONGODB_URI", "MONGODB_RSKYCLUSTER_HOST"):
        monkeypatch.delenv(name, raising=False)
    constants_helper.reset_settings()
    path = tmp_path / "scores.csv"
    path.write_text("coin_id,timestamp,volume\na,2024-01-01T00:00:00Z,1\n")
    try:
        # when / then: a file is backtested; the store cannot be
        file_status, _, file_err = run("--input", str(path), "--as-of", "2024-01-02", "--out", str(tmp_path / "a"))
        store_status, _, store_err = run("--as-of", "2024-01-02", "--out", str(tmp_path / "b"))
    finally:
        constants_helper.reset_settings()
    assert file_status == 0, file_err
    assert store_status == 2 and store_err.startswith("error: configuration error in MONGODB_RSKYCLUSTER_HOST")


# --- bad input --------------------------------------------------------------------------------

GOOD = "coin_id,timestamp,latest_price,volume\na,2024-01-01T00:00:00Z,1.5,10\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (GOOD + "a,2024-01-01T01:00:00Z,1.6\n", "scores.csv: line 3: 3 cells where the header has 4"),
        (GOOD + "a,2024-01-01T01:00:00Z,1.6,1,5\n", "scores.csv: line 3: 5 cells where the header has 4"),
        (GOOD + "\na,2024-01-01T01:00:00Z,1.6,abc\n", "scores.csv: line 4: volume 'abc' is not a number"),
        (GOOD + "a,yesterday,1.6,1\n", "scores.csv: line 3: timestamp is not an ISO-8601 date or datetime"),
        ("coin_id,latest_price\na,1\n", "scores.csv: line 1: "),
        ("coin_id,timestamp,volumes\n", "scores.csv: line 1: unknown column 'volumes'"),
    ],
)
def test_a_malformed_file_exits_2_naming_its_line(tmp_path, content, message):
    path = tmp_path / "scores.csv"
    path.write_text(content)
    status, out, err = run("--input", str(path), "--out", str(tmp_path / "out"))
    assert status == 2 and err.startswith(f"error: {tmp_path}/{message}"), err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert out == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--input", "/nonexistent/scores.csv"], "/nonexistent/scores.csv: cannot be read"),
        (["--since", "last week"], "--since is not an ISO-8601 date or datetime"),
        (["--since", "2024-01-02", "--as-of", "2024-01-01"], "--since must not be after --as-of"),
        (["--signals", "price"], "--signals: entry 0 ('price') is not one of"),
        (["--signals", "volatility_index"], "--signals: 'volatility_index' is not a column of"),
        (["--periods", "0,7"], "--periods must be a comma-separated list of whole days"),
        (["--coins-file", "/nonexistent/coins.txt"], "cannot read --coins-file"),
        (["--events", "/nonexistent/events.csv"], "/nonexistent/events.csv: cannot be read"),
    ],
)
def test_a_bad_argument_exits_2_with_one_clear_line(tmp_path, arguments, message):
    path = tmp_path / "scores.csv"
    path.write_text(GOOD)
    given = ["--input", str(path), *arguments] if "--input" not in arguments else arguments
    status, out, err = run(*given, "--out", str(tmp_path / "out"))
    assert status == 2 and err.startswith("error: ") and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert out == "" and not (tmp_path / "out").exists()


def test_a_malformed_events_file_exits_2_naming_its_line(tmp_path):
    scores, events = tmp_path / "scores.csv", tmp_path / "events.csv"
    scores.write_text(GOOD)
    events.write_text("name,coin_ids,onset,hours\nok,a,2024-01-01,24\nbad,a,soon,24\n")
    status, out, err = run("--input", str(scores), "--events", str(events), "--out", str(tmp_path / "out"))
    assert status == 2 and err.strip() == f"error: {events}: line 3: onset is not an ISO-8601 date or datetime: 'soon'"
    assert out == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("out_text", ["", "  "])
def test_an_empty_out_is_refused(tmp_path, out_text):
    path = tmp_path / "scores.csv"
    path.write_text(GOOD)
    status, out, err = run("--input", str(path), "--out", out_text)
    assert status == 2 and err.strip() == "error: --out must name a directory (it was empty)" and out == ""


@pytest.mark.parametrize("inside", [False, True], ids=["a-file", "under-a-file"])
def test_an_out_that_cannot_be_a_directory_exits_2(tmp_path, inside):
    path = tmp_path / "scores.csv"
    path.write_text(GOOD)
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    status, out, err = run("--input", str(path), "--out", str(taken / "backtest" if inside else taken))
    assert status == 2 and err.startswith("error: --out ") and "Traceback" not in err and out == ""
    assert taken.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv", "taken"]


def test_a_rerun_replaces_the_outputs_whole_and_a_failed_one_leaves_them_as_they_were(tmp_path):
    # given: a first backtest, and a file of the user's beside its outputs
    path = tmp_path / "scores.csv"
    path.write_text(
        GOOD + "".join(f"a,2024-01-0{1 + h // 24}T{h % 24:02d}:00:00Z,1.5,{10 + h % 3}\n" for h in range(1, 40))
    )
    out = tmp_path / "out"
    assert run("--input", str(path), "--as-of", "2024-01-02", "--out", str(out))[0] == 0
    (out / "notes.txt").write_text("mine")
    first = {name: (out / name).read_text() for name in ("alerts.json", "summary.json", "index.html")}
    # when: a second run over another period
    assert run("--input", str(path), "--as-of", "2024-01-01T12:00", "--out", str(out))[0] == 0
    second = {name: (out / name).read_text() for name in first}
    # then: every output replaced, the user's file kept, no staging directory left
    assert (
        json.loads(second["summary.json"])["as_of"]
        == "2024-01-01T12:00:00.000Z"
        != json.loads(first["summary.json"])["as_of"]
    )
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scores.csv"]
    # when: a run that fails on its input
    path.write_text(GOOD + "a,2024-01-01T01:00:00Z,x,1\n")
    status, _, _ = run("--input", str(path), "--out", str(out))
    # then: the outputs of the run before are untouched
    assert status == 2 and {name: (out / name).read_text() for name in first} == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "scores.csv"]


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["backtest", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--input",
        "--since",
        "--as-of",
        "--coins",
        "--coins-file",
        "--signals",
        "--periods",
        "--events",
        "--out",
    ):
        assert option in text


def test_the_data_api_backend_reads_what_the_driver_reads(seeded_store, tmp_path, monkeypatch):
    # given: the same store behind the loopback Data API endpoint, and the backtest configured to read through it
    from libs.helpers.data_api_helper import reset_data_api_reader
    from libs.tools.loopback.data_api_server import DataApiServer

    assert run(*PERIOD, "--out", str(tmp_path / "driver"))[0] == 0
    endpoint = DataApiServer(collection=seeded_store, api_key="dak-backtest").start()
    for name, value in {
        "MONGODB_READ_BACKEND": "data_api",
        "MONGODB_DATA_API_URL": endpoint.url,
        "MONGODB_RSKYCLUSTER_DATA_API_KEY": "dak-backtest",
        "MONGODB_RSKYCLUSTER_DATA_SOURCE": "mongodb-atlas",
        "MONGODB_DATA_API_PAGE_SIZE": "500",
    }.items():
        monkeypatch.setenv(name, value)
    constants_helper.reset_settings()
    try:
        # when
        status, _, err = run(*PERIOD, "--out", str(tmp_path / "data_api"))
    finally:
        endpoint.stop()
        reset_data_api_reader()
        constants_helper.reset_settings()
    # then: the same outputs, read in pages over HTTP with the backtest's one query
    assert status == 0, err
    for name in ("alerts.json", "summary.json"):
        assert (tmp_path / "data_api" / name).read_text() == (tmp_path / "driver" / name).read_text(), name
    assert len(endpoint.requests) > 1 and list(endpoint.requests[0].body["filter"])[0] == "coin_id"


@pytest.mark.mongodb
@pytest.mark.skipif(not os.environ.get("MONGODB_TEST_URI"), reason="needs a real server: set MONGODB_TEST_URI")
def test_on_a_real_server_the_backtest_query_is_served_by_the_index():
    from pymongo import MongoClient

    from libs.helpers.mongodb_helper import ensure_indexes

    client = MongoClient(os.environ["MONGODB_TEST_URI"], serverSelectionTimeoutMS=5000)
    collection = client["crypto_risk_anomaly_test"]["backtest_scores"]
    collection.drop()
    try:
        as_of = datetime(2024, 11, 1)
        collection.insert_many(
            [{"coin_id": f"c{i % 7}", "timestamp": as_of - timedelta(hours=i), "volume": 1.0} for i in range(500)]
        )
        ensure_indexes(collection)
        settings = load_settings({"MONGODB_URI": "mongomock://"})
        for coins in (None, ["c1", "c2"]):
            scope = backtest_scope(now=as_of, default_periods=settings.periods_days, coin_ids=coins)
            query, projection = store_query(scope, settings)
            plan = collection.find(query, projection).explain()["queryPlanner"]["winningPlan"]
            assert "IXSCAN" in str(plan) and "COLLSCAN" not in str(plan)
    finally:
        collection.drop()
        client.close()
