"""The demo end to end on real market data (contract §8, §13): what it seeds, sends, judges, receives and reports.

One run on a few real coins of ``data/`` (LUNA, FTT and SOL, bitcoin for the
Celsius freeze, tether as a calm control) and a few synthetic coins. The test
is about the wiring, not about which alerts today's rules raise: the real
coins' 2022 history is in the store as the file holds it; a latest-mode
message went out and was processed for every day of each 2022 event; the
flags written on the real coins equal the numpy reference; the alerts the
local topic received are exactly those printed under each event; the report
page covers the LUNA and FTT collapses and lists their episodes first.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime, timedelta

import pytest

from libs.helpers.constants_helper import load_settings
from libs.tools.local.alerts_inbox import alert_line
from libs.tools.local.demo import (
    INVALID_BODIES,
    DemoOptions,
    alerts_by_event,
    format_report,
    run_demo,
)
from tests.fakes.market import MARKET_SIGNALS, market_slice
from tests.fakes.reference import expected_written

MARKET_COINS = ("terra-luna", "ftx-token", "solana", "bitcoin", "tether")
#: Every day of the three events of 2022 in data/events.csv: Terra (6 days), Celsius (1), FTX (3), each with
#: the row that closes its last day.
EVENT_DAYS = (
    [datetime(2022, 5, 8) + timedelta(days=d) for d in range(7)]
    + [datetime(2022, 6, 13), datetime(2022, 6, 14)]
    + [datetime(2022, 11, 8) + timedelta(days=d) for d in range(4)]
)


def _stamp(alert: dict) -> datetime:
    return datetime.strptime(alert["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run on a small universe; the store it seeded, and its report."""
    from libs.helpers.constants_helper import reset_settings
    from libs.helpers.mongodb_helper import get_collection
    from libs.tools.embedded_store import reset_embedded_store

    reset_embedded_store()
    reset_settings()
    out_dir = tmp_path_factory.mktemp("demo")
    options = DemoOptions(coins=4, days=32, per_day=3, coins_per_message=2, out_dir=out_dir, market_coins=MARKET_COINS)
    settings = load_settings({"MONGODB_URI": "mongomock://"})
    collection = get_collection()
    report = run_demo(options, collection, settings)
    documents = list(collection.find({}))
    yield report, documents, out_dir
    reset_embedded_store()


def test_the_real_history_of_2022_is_seeded_as_the_file_holds_it(demo_run):
    # given the demo's store
    report, documents, _ = demo_run
    real = [doc for doc in documents if doc["coin_id"] in MARKET_COINS]

    # then it holds every row of 2022 of those coins, each value as the file has it and no missing one
    expected = market_slice(MARKET_COINS, datetime(2022, 1, 1), datetime(2022, 12, 31, 23, 59))
    assert len(real) == len(expected) == 5 * 365 == report.market_documents
    by_key = {(doc["coin_id"], doc["timestamp"]): doc for doc in real}
    for row in expected.to_dict("records"):
        doc = by_key[(row["coin_id"], row["timestamp"].to_pydatetime())]
        for signal in MARKET_SIGNALS:
            assert doc.get(signal) == (None if row[signal] != row[signal] else row[signal])
    # and ftx-token's missing market caps (zero in the source, empty in the file) are absent fields
    ftt_after = [d for d in real if d["coin_id"] == "ftx-token" and d["timestamp"] >= datetime(2022, 11, 14)]
    assert ftt_after and all("market_cap" not in d for d in ftt_after)


def test_every_message_is_accounted_for_and_each_event_day_was_judged(demo_run):
    # given the demo's report
    report, documents, _ = demo_run

    # then it sent one latest-mode message per event day for the real coins, besides the synthetic ones
    assert [r.event.name for r in report.replays] == [
        "Terra LUNA/UST collapse",
        "Celsius freeze and 3AC",
        "FTX/FTT collapse",
    ]
    assert sorted(m for r in report.replays for m in r.moments) == EVENT_DAYS
    assert report.sent_market_latest == len(EVENT_DAYS)
    synthetic = report.sent_latest + report.sent_backfill
    assert report.sent == len(INVALID_BODIES) + len(EVENT_DAYS) + synthetic and (report.sent_latest, synthetic) == (
        2,
        4,
    )
    assert report.accounted and report.processed == report.sent - len(INVALID_BODIES)
    # and exactly the real observations stamped on those days were judged, every coin on every day
    judged = {(d["coin_id"], d["timestamp"]) for d in documents if "anomalies" in d and d["coin_id"] in MARKET_COINS}
    assert judged == {(coin, day) for coin in MARKET_COINS for day in EVENT_DAYS}


def test_the_flags_written_on_the_real_coins_equal_the_numpy_reference(demo_run):
    # given the real coins' documents, the judged ones among them
    _, documents, _ = demo_run
    by_coin = defaultdict(list)
    for doc in documents:
        by_coin[doc["coin_id"]].append(doc)
    judged = [d for coin in MARKET_COINS for d in by_coin[coin] if "anomalies" in d]

    # then every entry is what a plain numpy percentile over its exact window gives
    checked = flagged = 0
    for doc in judged:
        for signal in MARKET_SIGNALS:
            for period in (3, 7, 30):
                expected = expected_written(by_coin[doc["coin_id"]], doc, signal, period, 1.5, 4)
                assert doc["anomalies"].get(signal, {}).get(f"{period}d") == expected, (doc["coin_id"], signal)
                checked += expected is not None
                flagged += bool(expected and expected["is_anomaly"])
        # one value a day: the 3-day window holds 3 values, too few to judge (contract §4)
        assert all(entry["is_anomaly"] is None for entry in (doc["anomalies"][s]["3d"] for s in ("latest_price",)))
    assert checked == len(judged) * 9 - 3 * sum("market_cap" not in d for d in judged) and flagged > 0
    # and LUNA's price is a 30-day dip on every day of its collapse
    luna = [d for d in judged if d["coin_id"] == "terra-luna" and d["timestamp"] <= datetime(2022, 5, 14)]
    assert len(luna) == 7 and all(d["anomalies"]["latest_price"]["30d"]["is_anomaly"] for d in luna)


def test_the_alerts_received_are_printed_under_their_event(demo_run):
    # given the alerts the local topic's queue received, and the printed report
    report, _, _ = demo_run
    printed = format_report(report)

    # when they are grouped by event
    grouped, others = alerts_by_event(report)

    # then each event's alerts are its coins' alerts stamped in its span, the others the rest
    assert sum(len(alerts) for _, alerts in grouped) + len(others) == len(report.alerts) > 0
    for replay, alerts in grouped:
        for alert in alerts:
            assert alert["coin_id"] in replay.event.coin_ids
            assert replay.event.onset <= _stamp(alert) <= replay.event.end
    assert not any(r.event.covers(a["coin_id"], _stamp(a)) for a in others for r in report.replays)
    # and the printed section lists each event with its count and one line per alert, in time order
    section = printed[printed.index("alerts received on the local SNS topic") :]
    for replay, alerts in grouped:
        header = re.search(rf"^  {re.escape(replay.event.name)} \(.*\): (\d+) alerts?$", section, re.M)
        assert header is not None and int(header[1]) == len(alerts)
        lines = section[header.end() :].splitlines()[1 : len(alerts) + 1]
        assert lines == [f"    {alert_line(alert)}" for alert in alerts]
    assert (
        f"received on the local SNS topic crypto-risk-anomaly-alerts (via its subscribed queue): {len(report.alerts)}"
        in section
    )


def test_the_report_page_covers_the_luna_and_ftt_collapses_and_ranks_their_episodes_first(demo_run):
    # given the report the demo wrote, and what it printed about it
    report, _, out_dir = demo_run
    printed = format_report(report)
    episodes = json.loads((out_dir / "report" / "episodes.json").read_text())

    # then its period runs from LUNA's onset to the end of FTT's collapse, over every coin, and says so
    assert "(period 2022-05-08 to 2022-11-11, from the Terra LUNA/UST collapse to the FTX/FTT collapse; " in printed
    assert "every coin)" in printed and {e["coin_id"] for e in episodes} == set(MARKET_COINS)
    assert all("2022-05-08" <= e["start"][:10] and e["end"][:10] <= "2022-11-11" for e in episodes)
    # and, unfiltered, the two collapses rank first: LUNA's price dip on top, LUNA's and FTT's in the top four
    top = episodes[:5]
    assert (top[0]["coin_id"], top[0]["signal"], top[0]["direction"]) == ("terra-luna", "latest_price", "dip")
    assert {e["coin_id"] for e in episodes[:4]} == {"terra-luna", "ftx-token"}
    assert top == report.report_top and (out_dir / "report" / "index.html").exists()
    assert "market data: CoinGecko" in (out_dir / "report" / "index.html").read_text()  # the real coins credited
    # and the plot is LUNA's price through 2022
    assert report.plot is not None and report.plot.path.name == "demo-terra-luna-latest_price-30d.png"
    assert report.plot.path.exists()


def test_an_alert_line_shows_when_what_how_deep_and_which_windows():
    # given an alert body of today, and one with the level the alerting rules add
    alert = {
        "coin_id": "terra-luna",
        "signal": "latest_price",
        "timestamp": "2022-05-12T00:00:00.000Z",
        "direction": "dip",
        "severity": 13.52,
        "level": 3,
        "windows": [{"period_days": 7}, {"period_days": 30}],
    }

    # then each reads on one line: when, what, how deep (level and severity) and which windows raised it
    assert alert_line(alert) == "2022-05-12 00:00  terra-luna  latest_price  dip  level 3  severity 13.5  (7d/30d)"
