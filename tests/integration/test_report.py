"""The report command over the embedded store, whose flags the real handler wrote.

Expected episodes come from the plain-Python reference over the documents as
they are stored (read back with an ordinary ``find``), never from the report's
own modules.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta

import pytest
from matplotlib.image import imread

from libs.cli import main
from libs.helpers import constants_helper, mongodb_helper
from libs.helpers.constants_helper import SIGNALS
from libs.helpers.mongodb_helper import DriverReader
from libs.tools.plot import DPI, FIGURE_INCHES
from libs.tools.report.build import write_report
from libs.tools.report.scope import report_scope
from tests.fakes.episodes_reference import assert_same_json, reference_json, reference_stored_entries
from tests.fakes.judged_store import FLAT_COIN, judged_store
from tests.fakes.network import closed_port

LOOKBACK = 24


@pytest.fixture
def judged(store):
    return store, judged_store(store)


def expected(store, since: datetime, as_of: datetime, coins=None, signals=SIGNALS, periods=None):
    documents = list(store.find({} if coins is None else {"coin_id": {"$in": coins}}))
    entries = reference_stored_entries(documents, signals, periods, since=since, as_of=as_of)
    return reference_json(entries, LOOKBACK), entries


def run(capsys, *arguments: str) -> tuple[int, str, str]:
    status = main(["report", *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_report_holds_the_reference_episodes_the_counts_and_ten_plots(judged, tmp_path, capsys):
    # given a store the handler judged over the last 7 days
    store, seeded = judged

    # when the report covers a period that starts inside the judged week
    since = seeded.since + timedelta(days=2)
    status, out, _ = run(capsys, "--since", since.isoformat(), "--as-of", "2024-11-01", "--out", str(tmp_path))

    # then episodes.json is the reference's, built only from entries stamped since then
    assert status == 0
    got = json.loads((tmp_path / "episodes.json").read_text())
    want, entries = expected(store, since, datetime(2024, 11, 1, 23, 59, 59, 999000))
    assert len(got) > 10
    assert_same_json(got, want)
    assert all(episode["start"] >= since.strftime("%Y-%m-%dT%H:%M:%S.000Z") for episode in got)
    # and the broken flat window is there, measured against the floor: a severity, ranked by it, said flat
    flat = [e for e in got if e["flat_window"]]
    assert flat and {e["coin_id"] for e in flat} == {FLAT_COIN}
    assert all(e["peak_severity"] is not None and e["peak_severity"] > 0 for e in flat)
    # and it says where the page is, and one line that adds up
    page = tmp_path / "index.html"
    assert out.splitlines()[0] == f"report: {page}"
    coins = len({e["coin_id"] for e in got})
    flagged_points = len({(e["coin_id"], e["timestamp"]) for e in entries if e["is_anomaly"]})
    assert f"{len(got):,} episodes on {coins} of {len(seeded.coins)} coins" in out.splitlines()[1]
    assert f"{flagged_points:,} flagged observations" in out.splitlines()[1]
    # and the page ranks every episode in the JSON's order, with ten plots embedded and beside it
    html = page.read_text()
    table = re.findall(r'<td class="coin">(.*?)</td><td>(.*?)</td><td class="n">(\d+)-day</td>', html)
    assert table == [(e["coin_id"], e["signal"], str(e["period_days"])) for e in got]
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 10
    plots = sorted((tmp_path / "plots").glob("*.png"))
    assert [p.name[:2] for p in plots] == [f"{r:02d}" for r in range(1, 11)]
    assert imread(plots[0]).shape[:2] == (FIGURE_INCHES[1] * DPI, FIGURE_INCHES[0] * DPI)
    assert plots[0].name == f"01-{got[0]['coin_id']}-{got[0]['signal']}-{got[0]['period_days']}d.png"


def test_filters_narrow_the_query_and_the_episodes(judged, tmp_path, capsys):
    store, seeded = judged
    coins_file = tmp_path / "coins.txt"
    coins_file.write_text(f"# watch list\n{seeded.coins[1]}\n\n{seeded.coins[3]}\n{FLAT_COIN}\n")

    status, _, _ = run(
        capsys,
        "--coins-file",
        str(coins_file),
        "--signals",
        "volume,latest_price",
        "--periods",
        "7,3",
        "--since",
        seeded.since.isoformat(),
        "--as-of",
        seeded.as_of.isoformat(),
        "--out",
        str(tmp_path / "out"),
    )

    assert status == 0
    got = json.loads((tmp_path / "out" / "episodes.json").read_text())
    want, _ = expected(
        store,
        seeded.since,
        seeded.as_of,
        coins=[seeded.coins[1], seeded.coins[3], FLAT_COIN],
        signals=("latest_price", "volume"),
        periods=(3, 7),
    )
    assert got and {e["signal"] for e in got} <= {"volume", "latest_price"}
    assert_same_json(got, want)


def test_one_query_reads_the_entries_and_names_coin_id_first(judged, tmp_path, settings):
    store, seeded = judged

    class CountingReader(DriverReader):
        def __init__(self, collection):
            super().__init__(collection)
            self.queries = []

        def find(self, query, projection):
            self.queries.append(query)
            return super().find(query, projection)

    reader = CountingReader(store)
    scope = report_scope(now=seeded.as_of, coin_ids=seeded.coins[:2])

    result = write_report(scope, settings, tmp_path, reader=reader, collection=store, generated_at=seeded.as_of)

    assert len(reader.queries) == 1 and list(reader.queries[0])[0] == "coin_id"
    assert result.page.exists() and result.counts.coins_read == 2


def test_nothing_stored_in_the_period_is_an_empty_report_and_success(judged, tmp_path, capsys):
    # given a period before anything was judged
    status, out, _ = run(capsys, "--since", "2024-10-01", "--as-of", "2024-10-10", "--out", str(tmp_path))

    assert status == 0
    assert json.loads((tmp_path / "episodes.json").read_text()) == []
    assert "No stored entries in this period" in (tmp_path / "index.html").read_text()
    assert "nothing flagged from 2024-10-01 00:00 to 2024-10-10 23:59 UTC (0 entries of 0 coins read)" in out
    assert not list((tmp_path / "plots").glob("*.png"))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--since", "last week"], "--since is not an ISO-8601 date or datetime"),
        (["--since", "2024-11-02", "--as-of", "2024-11-01"], "--since must not be after --as-of"),
        (["--signals", "price"], "--signals: entry 0 ('price') is not one of"),
        (["--periods", "0,7"], "--periods must be a comma-separated list of whole days from 1 to 365, got '0,7'"),
        (["--coins-file", "/nonexistent/coins.txt"], "cannot read --coins-file"),
    ],
)
def test_a_bad_argument_exits_2_with_a_clear_message(store, tmp_path, capsys, arguments, message):
    status, out, err = run(capsys, *arguments, "--out", str(tmp_path / "out"))

    assert status == 2 and err.startswith("error: ") and message in err
    assert out == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", [False, True], ids=["a-file", "under-a-file"])
def test_an_out_that_cannot_be_a_directory_exits_2_with_a_clear_message(store, tmp_path, capsys, inside):
    # given --out naming an existing file, or a path under one
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    out_dir = taken / "report" if inside else taken

    # when
    status, out, err = run(capsys, "--out", str(out_dir))

    # then the argument is named, nothing is written, and there is no traceback
    assert status == 2 and err.startswith("error: --out ") and "Traceback" not in err
    assert out == "" and taken.read_text() == "not a directory"


def test_coins_and_a_coins_file_together_are_refused(store, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--coins", "a", "--coins-file", "f", "--out", str(tmp_path)])
    assert exit_.value.code == 2


def test_an_unreachable_store_exits_2_without_leaking_the_uri(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(
        "MONGODB_URI", f"mongodb://svc-user:S3cret-Pa55@127.0.0.1:{closed_port()}/?directConnection=true"
    )
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_DATABASE", "risk")
    monkeypatch.setenv("MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION", "scores")
    monkeypatch.setenv("MONGODB_SERVER_SELECTION_TIMEOUT_MS", "300")
    constants_helper.reset_settings()
    mongodb_helper.reset_client()
    try:
        status, out, err = run(capsys, "--out", str(tmp_path / "out"))
    finally:
        mongodb_helper.reset_client()
        constants_helper.reset_settings()

    assert status == 2 and err.startswith("error: ") and "ServerSelectionTimeoutError" in err
    assert "S3cret-Pa55" not in err + out and "svc-user" not in err + out
    assert not (tmp_path / "out" / "index.html").exists()


@pytest.mark.mongodb
@pytest.mark.skipif(not os.environ.get("MONGODB_TEST_URI"), reason="needs a real server: set MONGODB_TEST_URI")
def test_on_a_real_server_the_entries_query_is_served_by_the_index():
    from pymongo import MongoClient

    from libs.helpers.mongodb_helper import ensure_indexes
    from libs.tools.report.entries import entries_query

    client = MongoClient(os.environ["MONGODB_TEST_URI"], serverSelectionTimeoutMS=5000)
    collection = client["crypto_risk_anomaly_test"]["report_scores"]
    collection.drop()
    try:
        as_of = datetime(2024, 11, 1)
        collection.insert_many(
            [
                {
                    "coin_id": f"c{i % 7}",
                    "timestamp": as_of - timedelta(hours=i),
                    "anomalies": {"volume": {"7d": {"is_anomaly": False, "value": 1.0}}},
                }
                for i in range(500)
            ]
        )
        ensure_indexes(collection)
        for coins in (None, ["c1", "c2"]):
            query, projection = entries_query(report_scope(now=as_of, coin_ids=coins))
            plan = collection.find(query, projection).explain()["queryPlanner"]["winningPlan"]
            assert "IXSCAN" in str(plan) and "COLLSCAN" not in str(plan)
    finally:
        collection.drop()
        client.close()


def test_dates_after_2262_keep_their_own_time_in_the_episodes_and_the_page(store, tmp_path, capsys):
    # given: a coin judged by the real handler in the year 2300, past the end of nanosecond time, with a spike
    import handler
    from libs.tools.local.lambda_context import LocalContext
    from tests.fakes.sqs import sqs_event

    end = datetime(2300, 1, 10)
    hours = [end - timedelta(hours=6 * i) for i in range(40)][::-1]
    store.insert_many(
        [{"coin_id": "far", "timestamp": t, "volume": 100.0 + i % 4} for i, t in enumerate(hours[:-1])]
        + [{"coin_id": "far", "timestamp": end, "volume": 400.0}]
    )
    body = {"since": (end - timedelta(days=2)).isoformat(), "as_of": end.isoformat(), "signals": ["volume"]}
    assert handler.handler(sqs_event(body), LocalContext()) == {"batchItemFailures": []}

    # when the report covers those days
    status, out, _ = run(capsys, "--since", "2300-01-08", "--as-of", "2300-01-10", "--out", str(tmp_path))

    # then the spike's episode is stamped in 2300, as the reference says, on the page too
    assert status == 0, out
    got = json.loads((tmp_path / "episodes.json").read_text())
    want, _ = expected(store, datetime(2300, 1, 8), datetime(2300, 1, 10, 23, 59, 59, 999000))
    assert_same_json(got, want)
    assert got and all(e["peak_timestamp"].startswith("2300-01-") for e in got)
    assert "2300-01-10T00:00:00.000Z" in {e["peak_timestamp"] for e in got}
    assert "2300-01-10" in (tmp_path / "index.html").read_text()
