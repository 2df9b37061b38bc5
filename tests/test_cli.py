"""Local commands that belong to the core: invoke and ensure-indexes."""

from __future__ import annotations

import json
from datetime import datetime

from libs.cli import main
from tests.conftest import REPO


def test_invoke_runs_a_saved_event_and_prints_the_response(store, capsys):
    store.insert_many([{"coin_id": "coin-0000", "timestamp": datetime(2024, 11, 1, h), "volume": float(h)}
                       for h in range(24)])

    status = main(["invoke", str(REPO / "events" / "batch-with-invalid.json")])

    out = capsys.readouterr().out
    response = json.loads(out[out.index('{\n  "batchItemFailures"'):])
    assert status == 0
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == [
        "batch-with-invalid-1", "batch-with-invalid-2"]
    assert store.find_one({"timestamp": datetime(2024, 11, 1, 23)})["anomalies"]["volume"]["3d"]["n"] == 24


def test_ensure_indexes_reports_the_index(store, capsys):
    assert main(["ensure-indexes"]) == 0
    assert "coin_id_1_timestamp_1" in capsys.readouterr().out
    assert "coin_id_1_timestamp_1" in store.index_information()


def test_saved_events_are_sqs_events():
    from libs.batch import check_sqs_event

    for path in sorted((REPO / "events").glob("*.json")):
        assert check_sqs_event(json.loads(path.read_text())), path
