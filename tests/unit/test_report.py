"""Unit tests of the report's pure parts: its arguments, reading stored entries, the JSON and the page.

Expectations come from plain Python written here (nested loops over the
documents, ``strftime``) and from the independent reference of episodes in
``tests/fakes/episodes_reference.py``, never from the modules under test.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.helpers.constants_helper import SIGNALS
from libs.models.episodes import build_episodes, iso_utc_ms
from libs.models.severity import SeverityScale
from libs.tools.pages import format_value
from libs.tools.report.entries import ENTRY_COLUMNS, documents_to_entries, entries_query, flagged_rows
from libs.tools.report.page import PageView, Plot, format_duration, render_page, worst_episode
from libs.tools.report.scope import ReportArgumentError, report_scope
from libs.tools.report.shaping import episodes_json, report_counts
from tests.fakes.episodes_reference import (
    assert_same_json,
    direction_of,
    reference_episodes,
    reference_json,
    reference_stored_entries,
    reference_unusable_count,
)
from tests.fakes.examples import examples

T0 = datetime(2024, 10, 20)
NOW = datetime(2024, 11, 1, 12, 30, 15, 123456)
K = 1.5
LOOKBACK = 24
SCALE = SeverityScale()


# --- plain-Python helpers: the function's documents and the expected answers -----------------------


def stored_entry(value: float, q1: float | None, q3: float | None, k: float = K) -> dict[str, Any]:
    """An entry as contract §5 writes it, judged by the rule of contract §4 (None quartiles: insufficient)."""
    if q1 is None or q3 is None:
        return {
            "is_anomaly": None,
            "value": value,
            "q1": None,
            "q3": None,
            "lower": None,
            "upper": None,
            "n": 2,
            "k": k,
        }
    lower, upper = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    flag = value < lower or value > upper
    return {"is_anomaly": flag, "value": value, "q1": q1, "q3": q3, "lower": lower, "upper": upper, "n": 9, "k": k}


def plain_entries(
    documents: list[dict[str, Any]], signals: tuple[str, ...], periods: tuple[int, ...] | None
) -> list[dict[str, Any]]:
    """Every stored entry of the wanted signals (and windows), walked document by document."""
    return reference_stored_entries(documents, signals, periods)


def frame_rows(frame: pd.DataFrame) -> list[tuple]:
    """The entries frame as sortable tuples (None for NaN / NA)."""
    assert list(frame.columns) == list(ENTRY_COLUMNS)
    rows = []
    for row in frame.astype(object).itertuples(index=False):
        values = []
        for name, value in zip(ENTRY_COLUMNS, row):
            if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                values.append(None)
            elif name == "timestamp":
                values.append(pd.Timestamp(value).to_pydatetime())
            else:
                values.append(value)
        rows.append(tuple(values))
    return sorted(rows, key=repr)


def plain_rows(entries: list[dict[str, Any]]) -> list[tuple]:
    return sorted((tuple(entry[name] for name in ENTRY_COLUMNS) for entry in entries), key=repr)


def expected_json(entries: list[dict[str, Any]], lookback: int = LOOKBACK) -> list[dict[str, Any]]:
    """contract §11's JSON of the reference's episodes."""
    return reference_json(entries, lookback)


def scope(**kwargs: Any):
    return report_scope(now=NOW, **kwargs)


# --- the arguments ---------------------------------------------------------------------------------


def test_defaults_are_now_and_a_week_before():
    got = scope()
    # rounded inwards to BSON's milliseconds: the same stored times as [now - 7 days, now]
    assert got.as_of == datetime(2024, 11, 1, 12, 30, 15, 123000)
    assert got.since == datetime(2024, 10, 25, 12, 30, 15, 124000)
    assert got.coin_ids is None and got.signals == SIGNALS and got.periods_days is None


@pytest.mark.parametrize(
    "since, as_of, expected_since, expected_as_of",
    [
        ("2024-10-25", "2024-11-01", datetime(2024, 10, 25), datetime(2024, 11, 1, 23, 59, 59, 999000)),
        ("20241025T060000Z", "20241101", datetime(2024, 10, 25, 6), datetime(2024, 11, 1, 23, 59, 59, 999000)),
        ("2024-10-25T08:00:00+02:00", "2024-11-01T12:00:00Z", datetime(2024, 10, 25, 6), datetime(2024, 11, 1, 12)),
        (None, "2024-11-01T12:00:00", datetime(2024, 10, 25, 12), datetime(2024, 11, 1, 12)),
        (None, "2024-11-01", datetime(2024, 10, 26), datetime(2024, 11, 1, 23, 59, 59, 999000)),
    ],
)
def test_dates_take_the_formats_of_the_request(since, as_of, expected_since, expected_as_of):
    got = scope(since=since, as_of=as_of)
    assert (got.since, got.as_of) == (expected_since, expected_as_of)


def test_filters_are_kept_deduplicated_and_in_the_contract_order():
    got = scope(coin_ids=["b", "a", "b"], signals=["volume", "latest_price"], periods="7,3,7")
    assert got.coin_ids == ("b", "a")
    assert got.signals == ("latest_price", "volume")
    assert got.periods_days == (3, 7)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"since": "yesterday"}, "--since is not an ISO-8601 date or datetime"),
        ({"as_of": "2024-13-01"}, "--as-of is not an ISO-8601"),
        ({"since": "2024-11-02", "as_of": "2024-11-01"}, "--since must not be after --as-of"),
        ({"signals": ["volume", "price"]}, "--signals: entry 1 ('price') is not one of latest_price,"),
        ({"periods": "0"}, "--periods must be a comma-separated list of whole days from 1 to 365, got '0'"),
        ({"periods": "7.5"}, "--periods must be a comma-separated list of whole days from 1 to 365, got '7.5'"),
        ({"periods": "3,,7"}, "--periods must be a comma-separated list"),
        ({"coin_ids": []}, "no coin ids given"),
    ],
)
def test_a_bad_argument_is_named(arguments, message):
    with pytest.raises(ReportArgumentError, match=re.escape(message)):
        scope(**arguments)


# --- the one query ------------------------------------------------------------------------------------


def test_the_query_names_coin_id_first_and_reads_only_the_requested_entries():
    wanted = scope(since="2024-10-25", as_of="2024-11-01", coin_ids=["b", "a"], signals=["volume"], periods="3,7")

    query, projection = entries_query(wanted)

    assert list(query)[0] == "coin_id" and query["coin_id"] == {"$in": ["b", "a"]}
    assert query["timestamp"] == {"$gte": wanted.since, "$lte": wanted.as_of}
    assert projection == {"_id": 1, "coin_id": 1, "timestamp": 1, "anomalies.volume.3d": 1, "anomalies.volume.7d": 1}


def test_without_filters_the_query_matches_every_coin_and_reads_every_window_of_every_signal():
    query, projection = entries_query(scope())

    assert list(query)[0] == "coin_id" and query["coin_id"] == {"$gt": ""}
    assert set(projection) == {"_id", "coin_id", "timestamp"} | {f"anomalies.{s}" for s in SIGNALS}


# --- stored entries to a frame, and episodes to JSON, against the references ---------------------------

SMALL_SIGNALS = ("latest_price", "volume")
SMALL_PERIODS = (3, 7)

entry_cells = st.tuples(
    st.sampled_from([-40.0, 0.0, 5.0, 15.0, 20.0, 35.0, 60.0, 500.0]),
    st.sampled_from([None, 10.0]),
    st.sampled_from([0.0, 10.0]),  # iqr 0: a flat window
)
cells = st.one_of(
    st.none(),  # nothing stored for this window
    st.just("junk"),  # hand-edited: not a sub-document
    entry_cells,
    # hand-edited numbers: one of them missing, a string, a boolean, NaN or an object (contract §11)
    st.tuples(
        entry_cells,
        st.sampled_from(["value", "q1", "q3", "lower", "upper"]),
        st.sampled_from(["absent", None, "10", True, math.nan, {"$numberDouble": "1"}]),
    ),
)
observations = st.lists(
    st.tuples(st.sampled_from(["coin-a", "coin-b"]), st.integers(0, 120), st.lists(cells, min_size=4, max_size=4)),
    max_size=40,
)


def documents_of(drawn: list[tuple[str, int, list[Any]]]) -> list[dict[str, Any]]:
    documents = []
    for coin, hour, stored in drawn:
        anomalies: dict[str, Any] = {"evaluated_at": T0}
        for position, cell in enumerate(stored):
            signal, period = SMALL_SIGNALS[position // 2], SMALL_PERIODS[position % 2]
            if cell is None:
                continue
            if cell == "junk":
                anomalies[signal] = "junk" if position % 2 else {f"{period}d": 42}
                continue
            corrupt = None
            if isinstance(cell[0], tuple):
                cell, *corrupt = cell
            value, q1, iqr = cell
            windows = anomalies.get(signal) if isinstance(anomalies.get(signal), dict) else {}
            anomalies[signal] = windows
            entry = windows[f"{period}d"] = stored_entry(value, q1, None if q1 is None else q1 + iqr)
            if corrupt:
                name, junk = corrupt
                if junk == "absent":
                    del entry[name]
                else:
                    entry[name] = junk
        documents.append({"coin_id": coin, "timestamp": T0 + timedelta(hours=hour), "anomalies": anomalies})
    return documents


@settings(max_examples=examples(150), deadline=None)
@given(observations, st.sampled_from([None, (3,), (7, 3)]))
def test_stored_entries_become_the_frame_and_the_episodes_the_reference_builds(drawn, periods):
    # given documents as the function writes them, with gaps, ties, flat windows and junk
    documents = documents_of(drawn)
    wanted = scope(signals=list(SMALL_SIGNALS), periods=",".join(map(str, periods)) if periods else None)

    # when they are read and shaped
    stored = documents_to_entries(iter(documents), wanted.signals, wanted.periods_days)
    frame = stored.frame
    got = episodes_json(build_episodes(frame, LOOKBACK, SCALE))

    # then the frame holds exactly the usable stored entries, the others are counted, and the JSON is the
    # reference's episodes
    expected_entries = plain_entries(documents, SMALL_SIGNALS, periods)
    assert frame_rows(frame) == plain_rows(expected_entries)
    assert stored.unusable == reference_unusable_count(documents, SMALL_SIGNALS, periods)
    assert_same_json(got, expected_json(expected_entries))
    json.dumps(got, allow_nan=False)  # valid JSON: no NaN slips through


def test_unusable_documents_and_odd_values_add_nothing_or_nan():
    # given documents without a usable coin or time, and entries with odd numbers
    good = stored_entry(60.0, 10.0, 20.0)
    documents = [
        {"coin_id": "", "timestamp": T0, "anomalies": {"volume": {"7d": good}}},
        {"coin_id": 7, "timestamp": T0, "anomalies": {"volume": {"7d": good}}},
        {"coin_id": "a\udcff", "timestamp": T0, "anomalies": {"volume": {"7d": good}}},  # not UTF-8 when stored
        {"coin_id": "a", "timestamp": "2024-10-20", "anomalies": {"volume": {"7d": good}}},
        {"coin_id": "a", "timestamp": T0, "anomalies": "junk"},
        {"coin_id": "a", "timestamp": T0},
        {"coin_id": "b", "timestamp": T0, "anomalies": {"volume": {"7d": {**good, "k": math.inf}}}},
        {"coin_id": "c", "timestamp": T0, "anomalies": {"volume": {"7d": {**good, "is_anomaly": 1}, "7days": good}}},
        {"coin_id": "d", "timestamp": T0, "anomalies": {"volume": {"7d": {**stored_entry(60.0, None, None)}}}},
        {"coin_id": "e", "timestamp": T0, "anomalies": {"volume": {"7d": {**good, "value": 60}}}},
    ]
    # when
    stored = documents_to_entries(documents, ["volume"])
    frame = stored.frame
    # then b, c, d and e give a row, with NaN where k is not a number and NA for a non-boolean or null flag
    assert frame_rows(frame) == plain_rows(plain_entries(documents, ("volume",), None))
    assert frame["coin_id"].tolist() == ["b", "c", "d", "e"] and stored.unusable == 0
    assert np.isnan(frame["k"].iloc[0]) and frame["value"].iloc[3] == 60.0
    assert frame["is_anomaly"].isna().tolist() == [False, True, True, False]


@pytest.mark.parametrize(
    "changes",
    [
        {"q1": None},  # a spike above its upper fence with no usable q1: was reported as a flat window
        {"q1": "10"},
        {"q3": True},
        {"lower": math.nan},
        {"upper": {"$numberDouble": "35"}},
        {"value": "60"},
        {"value": None, "is_anomaly": None},  # insufficient, but without its value
    ],
    ids=repr,
)
def test_an_entry_whose_numbers_cannot_be_used_is_left_out_and_counted(changes):
    # given a coin's two flagged steps, the second of which has numbers that cannot be used
    entry = {**stored_entry(60.0, 10.0, 20.0), **changes}
    documents = [
        {"coin_id": "a", "timestamp": T0, "anomalies": {"volume": {"7d": stored_entry(60.0, 10.0, 20.0)}}},
        {"coin_id": "a", "timestamp": T0 + timedelta(hours=1), "anomalies": {"volume": {"7d": entry}}},
    ]
    # when
    stored = documents_to_entries(documents, ["volume"])
    episodes = build_episodes(stored.frame, LOOKBACK, SCALE)
    counts = report_counts(stored.frame, episodes, ("volume",), SCALE, unusable=stored.unusable)
    got = episodes_json(episodes)
    # then only the first step is an episode (ln(60 / 35) / ln 2: nothing flat), the other entry counted aside
    assert stored.unusable == counts.unusable == 1 and len(stored.frame) == counts.entries == 1
    assert [(e["observations"], e["peak_severity"], e["flat_window"]) for e in got] == [
        (1, pytest.approx(math.log(60 / 35) / math.log(2)), False)
    ]


#: An entry as the function writes one (its numbers usable), whose flag the cases below set.
WRITTEN = stored_entry(60.0, 10.0, 20.0)


@pytest.mark.parametrize(
    "anomalies, flagged",
    [
        ({"volume": {"7d": {**WRITTEN, "is_anomaly": True}}}, True),
        ({"volume": {"7d": {**WRITTEN, "is_anomaly": False}}}, False),
        ({"volume": {"7d": {**WRITTEN, "is_anomaly": None}}}, False),
        ({"volume": {"7d": {**WRITTEN, "is_anomaly": 1}}}, False),
        ({"volume": {"3d": {**WRITTEN, "is_anomaly": True}}}, False),
        ({"latest_price": {"7d": {**WRITTEN, "is_anomaly": True}}}, False),
        ({"evaluated_at": T0}, False),
        (None, False),
    ],
)
def test_a_document_is_flagged_for_a_signal_and_window_exactly_when_is_anomaly_is_true(anomalies, flagged):
    # given one stored document (the plot and the demo read flags this way, with the documents' ids)
    document = {"_id": "doc-1", "coin_id": "a", "timestamp": T0}
    if anomalies is not None:
        document["anomalies"] = anomalies
    # when its volume entries of the 7-day window are read
    frame = documents_to_entries([document], ["volume"], [7], with_ids=True).frame
    # then its id is among the flagged rows' exactly when it holds is_anomaly: true there
    assert list(frame.columns) == ["_id", *ENTRY_COLUMNS]
    assert frame.loc[flagged_rows(frame), "_id"].tolist() == (["doc-1"] if flagged else [])


def test_nothing_stored_gives_an_empty_frame_with_the_columns_build_episodes_takes():
    frame = documents_to_entries([], SIGNALS).frame
    assert list(frame.columns) == list(ENTRY_COLUMNS) and frame.empty
    assert episodes_json(build_episodes(frame, LOOKBACK, SCALE)) == []


def test_a_flat_window_is_measured_against_the_floor_and_without_one_ranks_last():
    # given a mild volume spike and a broken flat volume window (+20 %) at the same coin
    documents = [
        {"coin_id": "a", "timestamp": T0, "anomalies": {"volume": {"7d": stored_entry(36.0, 10.0, 20.0)}}},
        {"coin_id": "a", "timestamp": T0, "anomalies": {"volume": {"3d": stored_entry(6.0, 5.0, 5.0)}}},
    ]
    frame = documents_to_entries(documents, SIGNALS).frame
    # when: with the default floor of 1 %, and with no floor
    floored = episodes_json(build_episodes(frame, LOOKBACK, SCALE))
    bare = episodes_json(build_episodes(frame, LOOKBACK, SeverityScale(relative_floor=0.0)))
    # then: ln(6 / 5) / ln(1.01) ranks the flat window's break first; without a floor it has no severity, last
    mild = math.log(36 / 35) / math.log(2)
    assert [(e["period_days"], e["peak_severity"], e["flat_window"]) for e in floored] == [
        (3, pytest.approx(math.log(1.2) / math.log(1.01)), True),
        (7, pytest.approx(mild), False),
    ]
    assert [(e["period_days"], e["peak_severity"], e["flat_window"]) for e in bare] == [
        (7, pytest.approx(mild), False),
        (3, None, True),
    ]
    assert bare[1]["peak_timestamp"] == "2024-10-20T00:00:00.000Z"


def test_the_worst_episode_is_the_first_ranked_said_once_for_the_page_and_the_summary():
    # given a broken flat window (ranked first: 20 % against a 1 % floor) and a mild spike
    documents = [
        {"coin_id": "a", "timestamp": T0, "anomalies": {"volume": {"7d": stored_entry(36.0, 10.0, 20.0)}}},
        {"coin_id": "a", "timestamp": T0, "anomalies": {"volume": {"3d": stored_entry(6.0, 5.0, 5.0)}}},
    ]
    episodes = build_episodes(documents_to_entries(documents, SIGNALS).frame, LOOKBACK, SCALE)
    # when it is put in words / then once, for the summary line and the page's card alike
    worst = worst_episode(episodes)
    assert worst.headline == "a volume 3-day spike (severity 18.32, flat window, peak 6.00 at 2024-10-20 00:00)"
    assert worst_episode(episodes.iloc[1:]).severity == "severity 0.04"
    assert worst_episode(episodes.iloc[:0]) is None


def test_times_are_iso_utc_with_milliseconds_and_z():
    times = [datetime(2024, 11, 1, 12, 0, 0, 123456), datetime(1999, 12, 31, 23, 59, 59)]
    assert iso_utc_ms(pd.Series(times)) == ["2024-11-01T12:00:00.123Z", "1999-12-31T23:59:59.000Z"]


# --- the counts -------------------------------------------------------------------------------------------


def test_counts_agree_with_counting_by_hand():
    # given random documents
    rng = np.random.default_rng(3)
    drawn = [
        (
            f"coin-{rng.integers(4)}",
            int(rng.integers(0, 200)),
            [(float(rng.choice([0.0, 15.0, 60.0])), 10.0, 10.0) if rng.random() < 0.8 else None for _ in range(4)],
        )
        for _ in range(300)
    ]
    documents = documents_of(drawn)
    entries = plain_entries(documents, SMALL_SIGNALS, None)
    frame = documents_to_entries(documents, SMALL_SIGNALS).frame
    episodes = build_episodes(frame, LOOKBACK, SCALE)
    # when
    counts = report_counts(frame, episodes, SMALL_SIGNALS, SCALE)
    # then
    flagged = [e for e in entries if direction_of(e)]
    reference = reference_episodes(entries, LOOKBACK)
    assert counts.episodes == len(reference)
    assert counts.spike_episodes == sum(e["direction"] == "spike" for e in reference)
    assert counts.coins_with_episodes == len({e["coin_id"] for e in reference})
    assert counts.coins_read == len({e["coin_id"] for e in entries})
    assert (counts.entries, counts.flagged) == (len(entries), len(flagged))
    assert counts.flagged_observations == len({(e["coin_id"], e["timestamp"]) for e in flagged})
    by_hand = {}
    for e in entries:
        cell = by_hand.setdefault((e["signal"], e["period_days"]), [0, 0])
        cell[0] += 1
        cell[1] += bool(direction_of(e))
    table = {(r.signal, r.period_days): [r.judged, r.flagged] for r in counts.by_window.itertuples()}
    assert table == by_hand
    assert list(counts.by_window["signal"]) == sorted(counts.by_window["signal"], key=SMALL_SIGNALS.index)


# --- the page -----------------------------------------------------------------------------------------------


def page_of(documents: list[dict[str, Any]], plots: int = 0) -> tuple[str, pd.DataFrame]:
    wanted = scope(since="2024-10-19", as_of="2024-10-27")
    stored = documents_to_entries(documents, wanted.signals, wanted.periods_days)
    frame = stored.frame
    episodes = build_episodes(frame, LOOKBACK, SCALE)
    view = PageView(
        scope=wanted,
        generated_at=NOW,
        lookback_hours=LOOKBACK,
        source="risk.scores",
        counts=report_counts(frame, episodes, wanted.signals, SCALE, unusable=stored.unusable),
        episodes=episodes,
        plots=tuple(Plot(rank, "data:image/png;base64,AAAA", f"{rank:02d}.png") for rank in range(1, plots + 1)),
    )
    return render_page(view), episodes


def spike_documents(coins: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "coin_id": coin,
            "timestamp": T0 + timedelta(hours=i),
            "anomalies": {"volume": {"7d": stored_entry(60.0 + i, 10.0, 20.0)}},
        }
        for i, coin in enumerate(coins)
    ]


def test_the_page_lists_every_episode_in_rank_order_and_links_the_plotted_ones():
    html, episodes = page_of(spike_documents([f"coin-{i}" for i in range(12)]), plots=10)

    rows = re.findall(r'<tr(?: class="top")?><td class="n rank">(.*?)</td><td class="coin">(.*?)</td>', html)
    assert [coin for _, coin in rows] == episodes["coin_id"].tolist()
    assert [rank for rank, _ in rows[:10]] == [
        f'<a href="#plot-{r}" title="see the plot">{r}</a>' for r in range(1, 11)
    ]
    assert [rank for rank, _ in rows[10:]] == ["11", "12"]
    assert all(f'id="plot-{r}"' in html for r in range(1, 11))


def test_the_page_needs_no_network_and_escapes_what_it_shows():
    html, _ = page_of(spike_documents(['<script>alert("x")</script>']), plots=1)

    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r"""(?:src|href)=["'](?:https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html


def test_an_empty_period_says_so():
    html, _ = page_of([])
    assert "No stored entries in this period" in html and 'id="episodes"' not in html

    quiet = [{"coin_id": "a", "timestamp": T0, "anomalies": {"volume": {"7d": stored_entry(15.0, 10.0, 20.0)}}}]
    html, _ = page_of(quiet)
    assert "Nothing flagged" in html and 'id="episodes"' not in html and 'id="left-out"' not in html

    broken = [{"coin_id": "a", "timestamp": T0, "anomalies": {"volume": {"7d": {"is_anomaly": True, "value": 9}}}}]
    html, _ = page_of(broken)
    assert "No usable stored entries in this period" in html
    assert '<p class="muted" id="left-out">1 stored entry was left out' in html


@pytest.mark.parametrize(
    "value, text",
    [
        (23_548_599_469.3, "23.5 B"),
        (2_130_000.0, "2.13 M"),
        (3168.4, "3,168"),
        (63.456, "63.46"),
        (0.0123456, "0.01235"),
        (math.nan, "—"),
    ],
)
def test_values_read_at_a_glance(value, text):
    assert format_value(value) == text


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "single"), (45 * 60, "45 min"), (6 * 3600, "6 h"), (36 * 3600, "1 d 12 h"), (48 * 3600, "2 d")],
)
def test_durations_read_at_a_glance(seconds, text):
    assert format_duration(seconds) == text
