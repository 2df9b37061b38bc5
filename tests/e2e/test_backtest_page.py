"""The backtest's page in a real browser: headless Chromium renders the worked example of docs/backtest.md
(data/ from 2020 to 2023 with its events), its DOM holds the tables the JSON files hold, and a screenshot
shows the chart's bars and the events' spans.

Chromium comes from the distribution's package (``apt-get install -y chromium``; ``.ci/run`` installs
it). Where it cannot be found the test skips and says so. It runs with networking features off and a
throw-away profile: the page must need nothing from the network.
"""

from __future__ import annotations

import json
from datetime import date
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.image import imread

from libs.cli import main
from tests.e2e.test_report_page import chromium, find_chromium
from tests.fakes.market import EVENTS_CSV, MARKET_CSV

WINDOW = (1280, 2400)

pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="headless Chromium not found: install the distribution's package (apt-get install -y chromium)",
)


class PageTables(HTMLParser):
    """The body rows of every table with an id, the headings, and the chart's bar groups."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.headings: list[str] = []
        self.bars = 0
        self.event_bands = 0
        self._table: str | None = None
        self._in_body = self._in_cell = self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id"):
            self._table = str(attributes["id"])
            self.tables[self._table] = []
        elif tag == "tbody" and self._table:
            self._in_body = True
        elif tag == "tr" and self._in_body and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._in_body and self._table:
            self._in_cell = True
            self.tables[self._table][-1].append("")
        elif tag in ("h1", "h2"):
            self._in_heading = True
            self.headings.append("")
        elif tag == "g" and attributes.get("class") == "bar":
            self.bars += 1
        elif tag == "g" and attributes.get("class") == "event":
            self.event_bands += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table, self._in_body = None, False
        elif tag in ("td", "th"):
            self._in_cell = False
        elif tag in ("h1", "h2"):
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and self._table:
            self.tables[self._table][-1][-1] += data
        if self._in_heading:
            self.headings[-1] += data


def test_chromium_renders_the_backtest_of_real_markets_with_its_chart_and_tables(tmp_path):
    # given the worked example: all of data/, 2020-01-01 to 2023-05-25, with its events
    out = tmp_path / "backtest"
    arguments = ["--input", str(MARKET_CSV), "--since", "2020-01-01", "--as-of", "2023-05-25"]
    assert main(["backtest", *arguments, "--events", str(EVENTS_CSV), "--out", str(out)]) == 0
    alerts = json.loads((out / "alerts.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    url = (out / "index.html").resolve().as_uri()

    # when Chromium loads the page and dumps its DOM
    dom = chromium(tmp_path / "profile-dom", "--dump-dom", url).stdout

    # then the DOM holds the sections, a bar a week over the 3.4 years, and each event's span
    page = PageTables()
    page.feed(dom)
    assert page.headings == [
        "Backtest: the alerts that would have been",
        "Settings",
        "Alerts over the period",
        "Known events",
        "Most severe alerts",
    ]
    first_monday, last_monday = date(2019, 12, 30), date(2023, 5, 22)  # the weeks of 2020-01-01 and 2023-05-25
    assert page.bars == (last_monday - first_monday).days // 7 + 1 == 178
    assert page.event_bands == len(summary["events"]) == 6
    # and the events table says what summary.json says
    events = page.tables["events-table"]
    assert [row[1] for row in events] == [e["name"] for e in summary["events"]]
    assert [row[5].strip() for row in events] == [
        "✓ caught" if e["caught"] else "✗ not caught" for e in summary["events"]
    ]
    # and the most severe alerts are alerts.json's, ranked by severity
    ranked = sorted(alerts, key=lambda a: (-(a["severity"] or -1.0), a["coin_id"], a["signal"], a["timestamp"]))
    severe = page.tables["most-severe"]
    assert len(severe) == 50
    assert [(row[1], row[2], row[5]) for row in severe] == [
        (a["coin_id"], a["signal"], str(a["level"])) for a in ranked[:50]
    ]
    assert [float(row[6].replace(",", "")) for row in severe] == [round(a["severity"], 2) for a in ranked[:50]]
    # and the counts by signal and the busiest days
    assert {row[0]: int(row[1].replace(",", "")) for row in page.tables["by-signal"]} == summary["by_signal"]
    assert [row[0] for row in page.tables["busiest"]] == [day["date"] for day in summary["busiest_days"]]

    # when it takes a screenshot
    screenshot = tmp_path / "backtest.png"
    chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", url)

    # then the screenshot is the page's size, not blank, and shows the bars (level 1's colour) and the spans
    image = imread(screenshot)[..., :3]
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert image.std() > 0.05
    red, green, blue = (image[..., channel] * 255 for channel in range(3))
    level_one = (abs(red - 0xF3) < 12) & (abs(green - 0xA6) < 12) & (abs(blue - 0x83) < 12)
    span = (abs(red - 0xD9) < 14) & (abs(green - 0xE9) < 14) & (abs(blue - 0xF9) < 10)
    assert int(np.count_nonzero(level_one)) > 2_000 and int(np.count_nonzero(span)) > 500
    print(f"screenshot: {screenshot}")
