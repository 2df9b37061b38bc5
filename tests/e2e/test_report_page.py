"""The analysts' page in a real browser: headless Chromium renders it, its DOM holds the ranked table,
and a screenshot is written (and shows the first plot).

Chromium comes from the distribution's package (``apt-get install -y chromium``; ``.ci/run`` installs
it). Where it cannot be found the test skips and says so. It runs with networking features off and a
throw-away profile: the page must need nothing from the network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from libs.cli import main
from tests.fakes.judged_store import judged_store

WINDOW = (1280, 2000)


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(candidate)
        if path:
            return path
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not found: install the distribution's package (apt-get install -y chromium)",
)


def chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *arguments,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=True)


class EpisodeTable(HTMLParser):
    """The cells of ``table#episodes``'s body rows, and the page's headings and pictures."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.headings: list[str] = []
        self.images: list[str] = []
        self._in_table = self._in_body = self._in_cell = self._in_heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == "episodes":
            self._in_table = True
        elif tag == "tbody" and self._in_table:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._in_cell = True
            self.rows[-1].append("")
        elif tag in ("h1", "h2"):
            self._in_heading = True
            self.headings.append("")
        elif tag == "img":
            self.images.append(attributes.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._in_table:
            self._in_table = self._in_body = False
        elif tag == "td":
            self._in_cell = False
        elif tag in ("h1", "h2"):
            self._in_heading = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.rows[-1][-1] += data
        if self._in_heading:
            self.headings[-1] += data


def test_chromium_renders_the_report_with_its_ranked_table_and_plots(store, tmp_path, capsys):
    # given a report of a week the real handler judged
    seeded = judged_store(store)
    out = tmp_path / "report"
    status = main(
        ["report", "--since", seeded.since.isoformat(), "--as-of", seeded.as_of.isoformat(), "--out", str(out)]
    )
    assert status == 0, capsys.readouterr().err
    episodes = json.loads((out / "episodes.json").read_text())
    url = (out / "index.html").resolve().as_uri()

    # when Chromium loads the page and dumps its DOM
    dom = chromium(tmp_path / "profile-dom", "--dump-dom", url).stdout

    # then the DOM holds the headings and the ranked table, row for row in the JSON's order
    page = EpisodeTable()
    page.feed(dom)
    assert page.headings[:3] == ["Anomaly report", "Ranked episodes", "Top 10 episodes"]
    assert [row[1:4] for row in page.rows] == [[e["coin_id"], e["signal"], f"{e['period_days']}-day"] for e in episodes]
    assert [row[0] for row in page.rows] == [str(rank) for rank in range(1, len(episodes) + 1)]
    assert len(page.images) == 10 and all(src.startswith("data:image/png;base64,") for src in page.images)

    # when it takes a screenshot of the first 2,000 pixels
    screenshot = tmp_path / "report.png"
    chromium(tmp_path / "profile-shot", f"--screenshot={screenshot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", url)

    # then the screenshot is written, the page's size, not blank, and shows the first plot's shaded episode
    image = imread(screenshot)[..., :3]
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    assert image.std() > 0.05
    red, green, blue = (image[..., channel] * 255 for channel in range(3))
    amber = (red > 240) & (green > 215) & (green < 245) & (blue > 155) & (blue < 200)
    assert int(np.count_nonzero(amber)) > 500
    print(f"screenshot: {screenshot}")
