"""The local commands, driven through ``libs.cli.main`` as a user would run them."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from matplotlib.image import imread

from libs.cli import main
from libs.tools.local.demo import INVALID_BODIES
from libs.tools.local.sqs_endpoint import peek_messages
from libs.tools.synthetic import synthetic_documents
from tests.conftest import REPO
from tests.fakes.reference import stored_flag

END = datetime(2024, 11, 1)


@pytest.fixture
def seeded(store):
    documents, planted = synthetic_documents(coins=5, days=32, per_day=3, end=END, seed=9)
    store.insert_many(documents)
    return store, planted


def queue_args(sqs_endpoint, queues) -> list[str]:
    return ["--queue-url", queues.url, "--endpoint-url", sqs_endpoint.url]


def test_demo_runs_the_pipeline_and_its_report_adds_up(store, sqs, tmp_path, capsys):
    # when the demo runs on a small universe: three real coins of data/ and six synthetic ones
    status = main(
        [
            "demo",
            "--market-coins",
            "terra-luna,ftx-token,solana",
            "--coins",
            "6",
            "--days",
            "32",
            "--per-day",
            "3",
            "--coins-per-message",
            "4",
            "--seed",
            "5",
            "--out-dir",
            str(tmp_path),
        ]
    )

    # then it succeeds and its report accounts for every message: 11 event days (Terra 7, FTX 4; the
    # Celsius freeze is on none of these coins) + 2 latest + 2 backfill + the invalid ones
    out = capsys.readouterr().out
    assert status == 0
    assert "seeded 1,671 documents: 1,095 of real market history (3 coins, daily, 2022; market data: CoinGecko)" in out
    sent, processed, dead = map(int, re.search(r"sent (\d+) = processed (\d+) \+ dead-lettered (\d+)", out).groups())
    assert (sent, processed, dead) == (11 + 4 + len(INVALID_BODIES), 15, len(INVALID_BODIES))
    assert "11 latest-mode for the real coins at 11 moments of 2022 (Terra LUNA/UST collapse 05-08..05-14; " in out
    # and each dead-lettered message is reported with the reason the function logged for it
    assert len(re.findall(r"^  dead-lettered ", out, flags=re.MULTILINE)) == len(INVALID_BODIES)
    assert "periods: entry 0 must be a JSON integer" in out and "colour: is not a known key" in out
    # and the planted-anomaly count agrees with the flags in the store, looked up plant by plant
    _, planted = synthetic_documents(coins=6, days=32, per_day=3, seed=5, end=datetime(2022, 12, 31, 16))
    found = sum(
        any(
            stored_flag(store.find_one({"coin_id": p.coin_id, "timestamp": p.timestamp}), p.signal, period)
            for period in (3, 7, 30)
        )
        for p in planted
    )
    assert f"planted anomalies found: {found} of {len(planted)} " in out and found >= 0.9 * len(planted)
    # and the plot is LUNA's price through 2022, and the function's log lines went to a file
    plot = Path(re.search(r"plot: (\S+\.png) \(terra-luna, latest_price, 30-day window: ", out).group(1))
    assert plot.name == "demo-terra-luna-latest_price-30d.png" and imread(plot).shape[:2] == (480, 1100)
    # and the analysts' report of the collapses is written, and said where and over what
    page = Path(
        re.search(
            r"^report: (\S+index\.html) \(period 2022-05-08 to 2022-11-11, .*\)\n  \d+ episodes on ", out, re.M
        ).group(1)
    )
    assert page.exists() and json.loads((page.parent / "episodes.json").read_text())
    log_lines = (tmp_path / "demo-function.log").read_text().splitlines()
    assert sum('"message rejected"' in line for line in log_lines) == 5 * len(INVALID_BODIES)
    # and its report ends with the alerts its local topic's queue received: what the function published,
    # each event's under its name, then the top five of the others
    published = sum(json.loads(line).get("alerts_published", 0) for line in log_lines if line.startswith("{"))
    received = int(
        re.search(r"^alerts received on the local SNS topic \S+ \(via its subscribed queue\): (\d+)", out, re.M)[1]
    )
    assert received == published > 0
    by_event = re.findall(r"^  (Terra LUNA/UST collapse|FTX/FTT collapse) \(.*\): (\d+) alerts?$", out, re.M)
    assert [name for name, _ in by_event] == ["Terra LUNA/UST collapse", "FTX/FTT collapse"]
    event_lines = re.findall(
        r"^    2022-\d\d-\d\d 00:00  (?:terra-luna|ftx-token|solana)  \w+  (?:spike|dip)", out, re.M
    )
    others = re.search(r"^  the other (\d+), the top five by severity:$", out, re.M)
    assert len(event_lines) == sum(int(n) for _, n in by_event)
    assert len(event_lines) + (int(others[1]) if others else 0) == received


def test_demo_refuses_a_market_coin_the_data_does_not_hold_in_one_line(store, tmp_path, capsys):
    # when the demo is asked for a real coin that has no 2022 rows in data/
    status = main(["demo", "--market-coins", "terra-luna,no-such-coin", "--out-dir", str(tmp_path)])

    # then it stops before seeding, with one error line and no traceback (exit 2)
    err = capsys.readouterr().err
    assert status == 2 and store.count_documents({}) == 0
    assert err.startswith("error: ") and "no rows of 'no-such-coin' in 2022" in err and "Traceback" not in err


def test_enqueue_splits_the_coins_and_sends_every_message(sqs, sqs_endpoint, queues, capsys):
    status = main(
        [
            "enqueue",
            *queue_args(sqs_endpoint, queues),
            "--coins",
            "a,b,c,d,e",
            "--coins-per-message",
            "2",
            "--as-of",
            "2024-11-01",
            "--periods",
            "3,7",
            "--request-id",
            "ops-1",
        ]
    )

    assert status == 0 and "sent 3 of 3 messages" in capsys.readouterr().out
    bodies = sorted((json.loads(m["Body"]) for m in peek_messages(sqs, queues.url)), key=lambda b: b["coin_ids"])
    assert bodies == [
        {"periods": [3, 7], "as_of": "2024-11-01", "request_id": "ops-1", "coin_ids": chunk}
        for chunk in (["a", "b"], ["c", "d"], ["e"])
    ]


def test_enqueue_defaults_to_the_coins_in_the_store(seeded, sqs, sqs_endpoint, queues, capsys):
    status = main(["enqueue", *queue_args(sqs_endpoint, queues), "--coins-per-message", "2"])

    assert status == 0 and "5 coins from the store" in capsys.readouterr().out
    coins = sorted(c for m in peek_messages(sqs, queues.url) for c in json.loads(m["Body"])["coin_ids"])
    assert coins == [f"coin-{i:04d}" for i in range(5)]


def test_enqueue_refuses_an_invalid_request_and_sends_nothing(sqs, sqs_endpoint, queues, capsys):
    status = main(["enqueue", *queue_args(sqs_endpoint, queues), "--coins", "a", "--periods", "0"])

    assert status == 2 and "periods" in capsys.readouterr().err
    assert peek_messages(sqs, queues.url) == []


def test_poll_until_empty_processes_what_enqueue_sent_and_plot_draws_it(
    seeded, sqs, sqs_endpoint, queues, tmp_path, capsys
):
    # given a backfill request per coin on the queue
    store, planted = seeded
    main(
        [
            "enqueue",
            *queue_args(sqs_endpoint, queues),
            "--coins-per-message",
            "1",
            "--since",
            "2024-10-25",
            "--as-of",
            "2024-11-01",
        ]
    )

    # when poll runs until the queue is drained
    status = main(["poll", *queue_args(sqs_endpoint, queues), "--until-empty", "--wait-seconds", "0"])

    # then every message was processed and deleted, and the flags are in the store
    out = capsys.readouterr().out
    assert status == 0 and "5 deliveries: 5 processed and deleted, 0 failed" in out and "(queue drained)" in out
    assert store.count_documents({"anomalies": {"$exists": True}}) == store.count_documents(
        {"timestamp": {"$gte": datetime(2024, 10, 25), "$lte": END}}
    )
    # and plot draws a planted coin's signal with its flags
    plant = planted[0]
    out_file = tmp_path / "plot.png"
    assert main(["plot", "--coin", plant.coin_id, "--signal", plant.signal, "--out", str(out_file)]) == 0
    assert "flagged" in capsys.readouterr().out and imread(out_file).shape[:2] == (480, 1100)


def test_plot_of_an_unknown_coin_fails_with_a_clear_message(store, tmp_path, capsys):
    assert main(["plot", "--coin", "nope", "--signal", "volume", "--out", str(tmp_path / "x.png")]) == 2
    assert "no observations of coin 'nope'" in capsys.readouterr().err


def test_invoke_prints_the_handlers_answer_for_a_saved_event(store, capsys):
    assert main(["invoke", str(REPO / "events" / "batch-with-invalid.json")]) == 0

    response = json.loads(capsys.readouterr().out)
    assert response == {
        "batchItemFailures": [{"itemIdentifier": "batch-with-invalid-1"}, {"itemIdentifier": "batch-with-invalid-2"}]
    }


def test_every_command_has_help(capsys):
    for command in ("demo", "invoke", "local-queue", "enqueue", "poll", "plot", "ensure-indexes"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
    assert "--until-empty" in capsys.readouterr().out


def test_local_queue_serves_the_declared_queue_pair_and_prints_its_urls(sqs, capsys):
    assert main(["local-queue", "--serve-seconds", "0", "--max-receive-count", "3"]) == 0

    printed = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines())
    queue_url, dlq_url = printed["queue"].strip(), printed["dlq"].strip()
    assert queue_url.startswith(printed["endpoint"].strip()) and queue_url.endswith("/crypto-risk-anomaly-dev-requests")
    attributes = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName="crypto-risk-anomaly-dev-requests")["QueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert attributes["VisibilityTimeout"] == "720" and json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 3
    assert dlq_url.endswith("/crypto-risk-anomaly-dev-requests-dlq")


def test_enqueue_reads_a_coins_file_and_names_one_it_cannot_read(sqs, sqs_endpoint, queues, tmp_path, capsys):
    coins_file = tmp_path / "coins.txt"
    coins_file.write_text("# majors\nbitcoin\n\nethereum\n")

    assert main(["enqueue", *queue_args(sqs_endpoint, queues), "--coins-file", str(coins_file)]) == 0
    assert main(["enqueue", *queue_args(sqs_endpoint, queues), "--coins-file", str(tmp_path / "missing.txt")]) == 2

    assert [json.loads(m["Body"])["coin_ids"] for m in peek_messages(sqs, queues.url)] == [["bitcoin", "ethereum"]]
    assert "cannot read --coins-file" in capsys.readouterr().err


def test_ensure_indexes_reports_the_index(store, capsys):
    assert main(["ensure-indexes"]) == 0
    assert "coin_id_1_timestamp_1" in capsys.readouterr().out
    assert "coin_id_1_timestamp_1" in store.index_information()


def test_saved_events_are_sqs_events():
    from libs.batch import check_sqs_event

    for path in sorted((REPO / "events").glob("*.json")):
        assert check_sqs_event(json.loads(path.read_text())), path
