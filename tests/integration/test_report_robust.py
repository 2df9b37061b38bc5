"""The report against hostile input: any coin id, junk entries, more than one page, a failing ``--out``.

Each test runs the command (``libs.cli.main``) over a real transport where the
case is about one: the embedded store whose flags the real handler wrote, the
loopback Data API endpoint, the loopback wire-protocol endpoint serving bytes
pymongo cannot decode, and the real file system.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import escape
from typing import Any

import bson
import pytest
from matplotlib.figure import Figure

from libs.cli import main
from libs.helpers import constants_helper, mongodb_helper
from libs.helpers.data_api_helper import reset_data_api_reader
from libs.tools.loopback.data_api_server import DataApiServer
from libs.tools.loopback.wire_mongo import WireMongoServer
from tests.fakes.judged_store import END, judge_coins

SINCE = END - timedelta(days=7)
#: Coin ids of contract §3 that matplotlib, HTML or a file name could read as something else.
HOSTILE_COINS = (
    "usd$$",
    "$_$",
    r"a$\frac{1}{2}$",
    "$\\alpha^{2}_{x}$ %#&~",
    "<b>&amp;</b>'\"",
    "中文币 🙂",
    "tab\there",
    "../../etc/passwd",
    "$" * 256,
)


def report(capsys, *arguments: str) -> tuple[int, str, str]:
    capsys.readouterr()  # what judging printed (the function's metric lines) is not the report's
    status = main(["report", "--since", SINCE.isoformat(), "--as-of", END.isoformat(), *arguments])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def titles(monkeypatch) -> list[tuple[str, bool]]:
    """The title of every figure saved, and whether matplotlib would read it as math text."""
    seen: list[tuple[str, bool]] = []
    savefig = Figure.savefig

    def recording(self: Figure, *args: Any, **kwargs: Any) -> None:
        title = self.axes[0].title
        seen.append((title.get_text(), title.get_parse_math()))
        savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return seen


def test_any_coin_id_is_reported_and_shown_as_it_is(store, tmp_path, capsys, titles):
    # given judged coins whose ids hold math-text dollars, markup, tabs, slashes and other scripts
    judge_coins(store, HOSTILE_COINS)

    # when the report covers their judged week
    status, out, err = report(capsys, "--out", str(tmp_path))

    # then it succeeds and writes the whole report: the JSON, the page and the ten plots
    assert (status, err) == (0, "")
    episodes = json.loads((tmp_path / "episodes.json").read_text(encoding="utf-8"))
    assert {e["coin_id"] for e in episodes} == set(HOSTILE_COINS)
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 10
    assert len(list((tmp_path / "plots").glob("*.png"))) == 10
    # and each plotted coin id is in its title literally, never parsed as math text
    assert len(titles) == 10
    for rank, ((text, parse_math), episode) in enumerate(zip(titles, episodes), start=1):
        assert text.startswith(f"#{rank} {episode['coin_id']}: ") and parse_math is False
    # and escaped on the page, whatever markup it holds
    assert escape("<b>&amp;</b>'\"") in html and "<b>&amp;</b>" not in html
    assert out.startswith(f"report: {tmp_path / 'index.html'}\n")


def test_the_plot_command_titles_any_coin_id_literally(store, tmp_path, capsys, titles):
    # given a judged coin whose id is math text to matplotlib
    judge_coins(store, ("$_$",))
    capsys.readouterr()

    # when it is plotted on its own
    status = main(["plot", "--coin", "$_$", "--signal", "volume", "--out", str(tmp_path / "p.png")])

    # then the PNG is written and titled with the id as it is
    assert status == 0 and (tmp_path / "p.png").stat().st_size > 0
    assert titles == [("$_$: volume, 7-day Tukey fences and written flags", False)]


@pytest.fixture
def data_api(store, monkeypatch):
    """The loopback Data API endpoint over the embedded store, and a switch to read through it."""
    server = DataApiServer(collection=store, api_key="report-test-key").start()

    def switch(page_size: int) -> None:
        for name, value in {
            "MONGODB_READ_BACKEND": "data_api",
            "MONGODB_DATA_API_URL": server.url,
            "MONGODB_RSKYCLUSTER_DATA_API_KEY": "report-test-key",
            "MONGODB_RSKYCLUSTER_DATA_SOURCE": "mongodb-atlas",
            "MONGODB_DATA_API_PAGE_SIZE": str(page_size),
        }.items():
            monkeypatch.setenv(name, value)
        constants_helper.reset_settings()

    yield server, switch
    server.stop()
    reset_data_api_reader()
    constants_helper.reset_settings()


def test_over_the_data_api_the_report_reads_every_page(store, tmp_path, capsys, data_api):
    # given a judged week of 6 coins (6 × 29 judged documents), and the report over the driver
    server, switch = data_api
    judge_coins(store, tuple(f"coin-{i}" for i in range(6)))
    assert report(capsys, "--out", str(tmp_path / "driver"))[0] == 0

    # when the same report reads through the Data API, 50 documents a page
    switch(page_size=50)
    status, out, err = report(capsys, "--out", str(tmp_path / "data_api"))

    # then it read every page (the page key needs each document's _id) and wrote the very same episodes
    assert (status, err) == (0, "")
    finds = [r for r in server.requests if r.path.endswith("/action/find")]
    assert len(finds) == 5  # 174 documents: three full pages, a partial one, and the empty one that ends it
    assert all(r.body and r.body["projection"].get("_id") == 1 for r in finds)
    driver = json.loads((tmp_path / "driver" / "episodes.json").read_text())
    assert driver and json.loads((tmp_path / "data_api" / "episodes.json").read_text()) == driver


def test_stored_entries_whose_numbers_cannot_be_used_are_left_out_and_counted(store, tmp_path, capsys):
    # given a judged week in which a hand edit broke three flagged entries' numbers and one insufficient value
    judge_coins(store, ("coin-a", "coin-b"))
    flagged = [
        (doc["_id"], f"anomalies.{signal}.{key}")
        for doc in store.find({"anomalies": {"$exists": True}})
        for signal, windows in doc["anomalies"].items()
        if isinstance(windows, dict)
        for key, entry in windows.items()
        if entry["is_anomaly"] is True
    ]
    broken = {"q1": None, "upper": "35", "value": True}
    for (doc_id, path), (name, junk) in zip(flagged, broken.items()):
        store.update_one({"_id": doc_id}, {"$set": {f"{path}.{name}": junk}})
    before = len(flagged)

    # when the report covers the week
    status, out, err = report(capsys, "--out", str(tmp_path))

    # then the three are left out, said in the one-line summary and on the page, and none became a flat window
    assert (status, err) == (0, "")
    summary = out.splitlines()[1]
    assert summary.endswith("; 3 stored entries left out (their numbers cannot be used)")
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<p class="muted" id="left-out">3 stored entries were left out', html)
    episodes = json.loads((tmp_path / "episodes.json").read_text())
    assert not any(e["flat_window"] for e in episodes)
    assert sum(e["observations"] for e in episodes) == before - 3


def not_utf8(document: dict[str, Any], field: str) -> bytes:
    """``document`` as BSON whose string ``field`` starts with the byte 0xFF (not UTF-8; same length)."""
    marker = "X" + document[field][1:]
    raw = bson.encode({**document, field: marker})
    assert raw.count(marker.encode()) == 1
    return raw.replace(marker.encode(), b"\xff" + marker.encode()[1:])


def test_documents_whose_coin_id_is_not_utf8_are_skipped_over_a_real_socket(store, tmp_path, capsys, monkeypatch):
    # given a judged week of two coins, and a wire endpoint serving one coin's documents with an id that is
    # not valid UTF-8 (the driver decodes it with surrogateescape, as the function reads)
    judge_coins(store, ("coin-good", "coin-bad"))
    server = WireMongoServer(store.database.client).__enter__()
    server.raw_documents.update({doc["_id"]: not_utf8(doc, "coin_id") for doc in store.find({"coin_id": "coin-bad"})})
    for name, value in {
        "MONGODB_URI": server.uri,
        "MONGODB_RSKYCLUSTER_DATABASE": store.database.name,
        "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": store.name,
        "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "2000",
    }.items():
        monkeypatch.setenv(name, value)
    constants_helper.reset_settings()
    mongodb_helper.reset_client()
    try:
        # when the report reads that week through the real driver
        status, out, err = report(capsys, "--out", str(tmp_path))
    finally:
        mongodb_helper.reset_client()
        constants_helper.reset_settings()
        server.__exit__(None, None, None)

    # then it succeeds: the undecodable coin's documents were read and skipped, the other coin is reported
    assert (status, err) == (0, "")
    episodes = json.loads((tmp_path / "episodes.json").read_text())
    assert episodes and {e["coin_id"] for e in episodes} == {"coin-good"}
    assert server.received("find")[0].documents == store.count_documents(
        {"timestamp": {"$gte": SINCE}, "anomalies": {"$exists": True}}
    )
    assert (tmp_path / "index.html").exists()
