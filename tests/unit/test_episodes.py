"""Unit tests of episodes (contract §9 and §11): steps, links, peaks and ranking, on stored entries.

Every expectation comes from the plain-Python reference in
``tests/fakes/episodes_reference.py`` (or is written down by hand), never from
the vectorised module under test.
"""

from __future__ import annotations

import math
import sys
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.models.episodes import EPISODE_COLUMNS, build_episodes
from libs.models.severity import SeverityScale, classify
from tests.fakes.episodes_reference import DEFAULTS, Rules, direction_of, is_flat, reference_episodes, severity_of
from tests.fakes.examples import examples

T0 = datetime(2024, 10, 1)
K = 1.5
LOOKBACK = 24


def entry(
    hour: float,
    value: float,
    q1: float = 10.0,
    q3: float = 20.0,
    coin: str = "coin-a",
    signal: str = "volatility_index",
    period: int = 7,
    insufficient: bool = False,
) -> dict[str, Any]:
    """One stored entry judged by the rule of contract §4 with k = 1.5."""
    if insufficient:
        return {
            "coin_id": coin,
            "signal": signal,
            "period_days": period,
            "timestamp": T0 + timedelta(hours=hour),
            "value": value,
            "q1": None,
            "q3": None,
            "lower": None,
            "upper": None,
            "is_anomaly": None,
        }
    lower, upper = q1 - K * (q3 - q1), q3 + K * (q3 - q1)
    return {
        "coin_id": coin,
        "signal": signal,
        "period_days": period,
        "timestamp": T0 + timedelta(hours=hour),
        "value": value,
        "q1": q1,
        "q3": q3,
        "lower": lower,
        "upper": upper,
        "is_anomaly": bool(value < lower or value > upper),
    }


def frame(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """Entries as the report's loader hands them over: floats, NaN for null, is_anomaly nullable."""
    data = pd.DataFrame(entries, columns=list(entries[0]) if entries else None)
    for column in ("value", "q1", "q3", "lower", "upper"):
        data[column] = data[column].astype(float)
    data["is_anomaly"] = data["is_anomaly"].astype("boolean")
    data["timestamp"] = pd.to_datetime(data["timestamp"])
    return data


def records(episodes: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame as plain dicts (timestamps as datetimes, NaN severity as None) for comparison."""
    assert list(episodes.columns) == list(EPISODE_COLUMNS)
    rows = []
    for row in episodes.to_dict("records"):
        rows.append(
            {
                **row,
                "period_days": int(row["period_days"]),
                "observations": int(row["observations"]),
                "start": row["start"].to_pydatetime(),
                "end": row["end"].to_pydatetime(),
                "peak_timestamp": row["peak_timestamp"].to_pydatetime(),
                "peak_severity": None if math.isnan(row["peak_severity"]) else row["peak_severity"],
                "flat_window": bool(row["flat_window"]),
            }
        )
    return rows


def assert_same_episodes(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        for key in EPISODE_COLUMNS:
            if key in ("peak_value", "peak_severity") and theirs[key] is not None:
                assert mine[key] == pytest.approx(theirs[key], rel=1e-12), key
            else:
                assert mine[key] == theirs[key], key


#: The default scale: volatility_index (the helper's signal) is linear with floor 2, below these windows' iqr of 10.
SCALE = SeverityScale()
#: A scale without floors: a flat window has no severity.
NO_FLOORS = SeverityScale(relative_floor=0.0, absolute_floors=())


def episodes_of(
    entries: list[dict[str, Any]], lookback: int = LOOKBACK, scale: SeverityScale = SCALE
) -> list[dict[str, Any]]:
    return records(build_episodes(frame(entries), lookback, scale))


# --- classify -------------------------------------------------------------------------------


def test_classify_gives_direction_severity_and_flatness_per_entry():
    # given: a spike, a dip, a normal value, a value on the fence, an insufficient window, a flat window broken
    entries = [
        entry(0, 50.0),  # upper 35, iqr 10: 1.5 IQR above
        entry(1, -10.0),  # lower -5: 0.5 IQR below
        entry(2, 15.0),
        entry(3, 35.0),  # on the bound: normal
        entry(4, 99.0, insufficient=True),
        entry(5, 6.0, q1=5.0, q3=5.0),
    ]
    # when
    classes = classify(frame(entries).set_axis([10, 11, 12, 13, 14, 15]), SCALE)
    # then: linear severities in IQRs (10, above the floor of 2); the flat window's is in units of the floor
    assert list(classes.index) == [10, 11, 12, 13, 14, 15]
    assert list(classes["direction"]) == ["spike", "dip", None, None, None, "spike"]
    severity = classes["severity"].to_numpy()
    assert severity[0] == pytest.approx(1.5) and severity[1] == pytest.approx(0.5)
    assert np.isnan(severity[2:5]).all()
    assert severity[5] == pytest.approx((6.0 - 5.0) / 2.0)
    assert list(classes["flat_window"]) == [False, False, False, False, False, True]


def test_classify_ignores_a_mark_whose_value_sits_inside_its_fences():
    # given: an entry marked anomalous by hand although its value is normal
    marked = {**entry(0, 15.0), "is_anomaly": True}
    # when
    classes = classify(frame([marked]), SCALE)
    # then
    assert classes["direction"].tolist() == [None]
    assert not classes["flat_window"].iloc[0]


# --- episodes on hand-made series -------------------------------------------------------------


def test_a_single_spike_is_one_episode_of_one_observation():
    # given
    series = [entry(h, 15.0) for h in range(5)] + [entry(5, 60.0)] + [entry(h, 15.0) for h in range(6, 9)]
    # when
    got = episodes_of(series)
    # then
    assert got == [
        {
            "coin_id": "coin-a",
            "signal": "volatility_index",
            "period_days": 7,
            "direction": "spike",
            "start": T0 + timedelta(hours=5),
            "end": T0 + timedelta(hours=5),
            "observations": 1,
            "peak_timestamp": T0 + timedelta(hours=5),
            "peak_value": 60.0,
            "peak_severity": 2.5,
            "flat_window": False,
        }
    ]


def test_a_spike_that_persists_is_one_episode_peaking_at_its_most_severe_step():
    # given: three flagged hours in a row (severities 0.5, 3.0, 1.0), then normal again
    series = [entry(0, 15.0), entry(1, 40.0), entry(2, 65.0), entry(3, 45.0), entry(4, 15.0)]
    # when
    got = episodes_of(series)
    # then
    assert len(got) == 1
    episode = got[0]
    assert (episode["start"], episode["end"]) == (T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    assert episode["observations"] == 3
    assert episode["peak_timestamp"] == T0 + timedelta(hours=2)
    assert episode["peak_value"] == 65.0 and episode["peak_severity"] == pytest.approx(3.0)


def test_equal_severities_peak_at_the_earliest():
    got = episodes_of([entry(0, 50.0), entry(1, 50.0)])
    assert got[0]["peak_timestamp"] == T0 and got[0]["observations"] == 2


def test_a_gap_longer_than_the_lookback_splits_and_exactly_the_lookback_joins():
    # given: flagged steps 25 h apart (no step between), and flagged steps exactly 24 h apart
    split = [entry(0, 50.0), entry(25, 50.0)]
    joined = [entry(0, 50.0, coin="coin-b"), entry(24, 50.0, coin="coin-b")]
    # when
    got = episodes_of(split + joined)
    # then
    by_coin = {}
    for episode in got:
        by_coin.setdefault(episode["coin_id"], []).append(episode)
    assert len(by_coin["coin-a"]) == 2
    assert [e["observations"] for e in by_coin["coin-b"]] == [2]
    assert by_coin["coin-b"][0]["end"] == T0 + timedelta(hours=24)


def test_a_normal_step_between_two_flags_ends_the_episode():
    got = episodes_of([entry(0, 50.0), entry(1, 15.0), entry(2, 50.0)])
    assert [(e["start"], e["observations"]) for e in got] == [
        (T0, 1),
        (T0 + timedelta(hours=2), 1),
    ]


def test_an_insufficient_window_is_a_step_that_is_not_flagged():
    got = episodes_of([entry(0, 50.0), entry(1, 99.0, insufficient=True), entry(2, 50.0)])
    assert len(got) == 2


def test_a_dip_is_an_episode_with_direction_dip():
    got = episodes_of([entry(0, 15.0), entry(1, -25.0), entry(2, -10.0)])
    assert len(got) == 1
    assert got[0]["direction"] == "dip"
    assert got[0]["peak_value"] == -25.0 and got[0]["peak_severity"] == pytest.approx(2.0)
    assert got[0]["observations"] == 2


def test_a_flat_window_broken_has_a_severity_in_units_of_its_floor_and_says_it_is_flat():
    # given: a flat window (iqr 0) broken by 2 on volatility_index, whose floor is 2
    flat = [entry(0, 5.0, q1=5.0, q3=5.0), entry(1, 7.0, q1=5.0, q3=5.0), entry(2, 5.0, q1=5.0, q3=5.0)]
    # when
    got = episodes_of(flat)
    # then: severity (7 - 5) / 2; flat_window is information only
    assert len(got) == 1
    assert got[0]["peak_severity"] == pytest.approx(1.0) and got[0]["flat_window"] is True


def test_without_a_floor_a_flat_window_has_no_severity_and_ranks_after_every_finite_one():
    # given: a flat window broken on coin-a (ranks first by name) and a mild spike on coin-z, no floors
    flat = [entry(0, 5.0, q1=5.0, q3=5.0), entry(1, 7.0, q1=5.0, q3=5.0), entry(2, 5.0, q1=5.0, q3=5.0)]
    mild = [entry(0, 36.0, coin="coin-z")]
    # when
    got = episodes_of(flat + mild, scale=NO_FLOORS)
    # then
    assert [e["coin_id"] for e in got] == ["coin-z", "coin-a"]
    assert got[1]["flat_window"] is True and got[1]["peak_severity"] is None
    assert got[1]["peak_value"] == 7.0


def test_a_razor_thin_window_is_not_flat_even_when_its_severity_overflows_a_float():
    # given: no floor, a window with q3 - q1 > 0 but so thin that value beyond it / iqr exceeds float64
    thin = entry(0, 1e300, q1=0.0, q3=1e-300)
    mild = entry(0, 36.0, coin="coin-z")
    assert thin["q3"] - thin["q1"] > 0 and thin["is_anomaly"] is True
    # when
    got = episodes_of([mild, thin], scale=NO_FLOORS)
    # then: the window was not flat (flat means iqr == 0), so the episode has a severity, ranked first
    assert [e["coin_id"] for e in got] == ["coin-a", "coin-z"]
    assert got[0]["flat_window"] is False
    assert got[0]["peak_severity"] == sys.float_info.max  # more spreads than a float holds: the largest float
    assert classify(frame([thin]), NO_FLOORS)["flat_window"].tolist() == [False]


def test_an_episode_mixing_windows_without_and_with_a_severity_peaks_at_the_one_with():
    series = [entry(0, 7.0, q1=5.0, q3=5.0), entry(1, 40.0)]
    got = episodes_of(series, scale=NO_FLOORS)
    assert len(got) == 1
    assert got[0]["flat_window"] is False and got[0]["peak_severity"] == pytest.approx(0.5)
    assert got[0]["peak_timestamp"] == T0 + timedelta(hours=1) and got[0]["observations"] == 2


def test_the_peak_is_the_most_severe_entry_even_when_its_window_is_flat():
    # given: with the floor, the flat window's break (severity 1.0) beats a spike of 0.5
    got = episodes_of([entry(0, 7.0, q1=5.0, q3=5.0), entry(1, 40.0)])
    assert got[0]["peak_timestamp"] == T0 and got[0]["flat_window"] is True


def test_a_ratio_signal_is_measured_on_the_log_scale_and_has_no_severity_at_or_below_zero():
    # given: volume (a ratio signal) spiking to 3x its upper fence, and a dip to a negative value
    spike = entry(0, 105.0, q1=10.0, q3=20.0, signal="volume")
    dip = entry(0, -30.0, q1=10.0, q3=20.0, signal="volume", coin="coin-b")
    # when
    got = {e["coin_id"]: e for e in episodes_of([spike, dip])}
    # then: ln(105 / 35) / ln(20 / 10); no log scale for a value at or below zero
    assert got["coin-a"]["peak_severity"] == pytest.approx(math.log(3.0) / math.log(2.0))
    assert got["coin-b"]["peak_severity"] is None


def test_ties_at_one_timestamp_count_each_flagged_observation_and_peak_at_the_most_severe():
    # given: three observations at hour 1 (two spikes, one normal), one spike at hour 2
    series = [entry(0, 15.0), entry(1, 40.0), entry(1, 70.0), entry(1, 15.0), entry(2, 45.0)]
    # when
    got = episodes_of(series)
    # then
    assert len(got) == 1
    assert got[0]["observations"] == 3
    assert got[0]["peak_value"] == 70.0 and got[0]["peak_timestamp"] == T0 + timedelta(hours=1)


def test_a_spike_and_a_dip_at_one_timestamp_make_two_episodes():
    got = episodes_of([entry(1, 60.0), entry(1, -30.0), entry(2, 60.0)])
    assert sorted((e["direction"], e["observations"]) for e in got) == [("dip", 1), ("spike", 2)]


def test_a_spike_then_an_adjacent_dip_are_two_episodes():
    got = episodes_of([entry(0, 50.0), entry(1, 60.0), entry(2, -20.0), entry(3, -15.0)])
    assert [(e["direction"], e["start"], e["observations"]) for e in got] == [
        ("spike", T0, 2),
        ("dip", T0 + timedelta(hours=2), 2),
    ]


def test_each_period_has_its_own_steps():
    # given: a 30-day entry at hour 1 the 3-day window lacks; the 3-day flags at 0 and 2 stay separate
    series = [entry(0, 50.0, period=3), entry(2, 50.0, period=3)]
    series += [entry(0, 50.0, period=30), entry(1, 15.0, period=30), entry(2, 50.0, period=30)]
    series += [entry(1, 15.0, period=7)]
    got = episodes_of(series)
    assert sorted((e["period_days"], e["observations"]) for e in got) == [(3, 2), (30, 1), (30, 1)]


def test_ranking_by_severity_then_keys():
    series = [
        entry(0, 40.0, coin="b"),  # 0.5
        entry(0, 40.0, coin="a"),  # 0.5, same severity: a first
        entry(0, 80.0, coin="c"),  # 4.5: first
        entry(0, 40.0, coin="a", signal="market_cap_score"),  # 0.5 (its floor 1 is below the iqr), name first
    ]
    got = episodes_of(series)
    assert [(e["coin_id"], e["signal"]) for e in got] == [
        ("c", "volatility_index"),
        ("a", "market_cap_score"),
        ("a", "volatility_index"),
        ("b", "volatility_index"),
    ]


def test_nothing_flagged_or_nothing_at_all_gives_an_empty_frame_with_the_columns():
    for entries in ([entry(h, 15.0) for h in range(3)],):
        got = build_episodes(frame(entries), LOOKBACK, SCALE)
        assert got.empty and list(got.columns) == list(EPISODE_COLUMNS)
    empty = build_episodes(frame([entry(0, 1.0)]).iloc[:0], LOOKBACK, SCALE)
    assert empty.empty and list(empty.columns) == list(EPISODE_COLUMNS)


# --- random data against the reference --------------------------------------------------------

#: The two scales the random tests run on, each beside the reference's plain settings saying the same.
SCALES = {"default": (SCALE, DEFAULTS), "none": (NO_FLOORS, Rules(relative_floor=0.0, floors={}))}

values = st.sampled_from([-40.0, -20.0, -5.0, 0.0, 15.0, 35.0, 36.0, 50.0, 51.5, 80.0])
quartiles = st.sampled_from([(10.0, 20.0), (5.0, 5.0), (0.0, 4.0), (12.5, 13.0)])
random_entry = st.builds(
    lambda coin, signal, period, hour, value, q, insufficient: entry(
        hour, value, q1=q[0], q3=q[1], coin=coin, signal=signal, period=period, insufficient=insufficient
    ),
    coin=st.sampled_from(["a", "b", "c"]),
    signal=st.sampled_from(["volume", "latest_price", "volatility_index", "market_cap_score"]),
    period=st.sampled_from([3, 30]),
    hour=st.sampled_from([0, 1, 2, 3, 5, 8, 12, 20, 26, 27, 30, 50, 51, 75]),
    value=values,
    q=quartiles,
    insufficient=st.sampled_from([False, False, False, False, True]),
)


@settings(max_examples=examples(300), deadline=None)
@given(
    entries=st.lists(random_entry, min_size=1, max_size=60),
    lookback=st.sampled_from([1, 3, 24]),
    floors=st.sampled_from(["default", "none"]),
)
def test_random_entries_give_the_reference_episodes(entries, lookback, floors):
    # given: random entries with ties, gaps, flat windows, insufficient windows, on either scale's floors
    scale, rules = SCALES[floors]
    # when
    got = episodes_of(entries, lookback, scale)
    # then
    assert_same_episodes(got, reference_episodes(entries, lookback, rules))


@settings(max_examples=examples(200), deadline=None)
@given(entries=st.lists(random_entry, min_size=1, max_size=40), floors=st.sampled_from(["default", "none"]))
def test_random_entries_classify_as_the_reference(entries, floors):
    scale, rules = SCALES[floors]
    classes = classify(frame(entries), scale)
    assert list(classes["direction"]) == [direction_of(e) for e in entries]
    assert list(classes["flat_window"]) == [is_flat(e) for e in entries]
    for mine, e in zip(classes["severity"], entries, strict=True):
        expected = severity_of(e, rules)
        assert (math.isnan(mine) and expected is None) or mine == pytest.approx(expected)


# --- real data ------------------------------------------------------------------------------


def test_real_hourly_volume_episodes_match_the_reference(real_candles):
    # given: real hourly volume (REAL_CANDLES_CSV, e.g. SOL/USDT) judged against trailing 3- and 7-day windows
    # (plain numpy per window)
    candles = real_candles
    stamps = candles["timestamp"].dt.to_pydatetime()
    volume = candles["Volume"].to_numpy(dtype=float)
    entries = []
    for period in (3, 7):
        for i, stamp in enumerate(stamps):
            window = volume[(stamps > stamp - timedelta(days=period)) & (stamps <= stamp)]
            if len(window) < 4:
                continue
            q1, q3 = np.percentile(window, [25, 75])
            e = entry(0, float(volume[i]), q1=float(q1), q3=float(q3), coin="solana", signal="volume", period=period)
            e["timestamp"] = stamp
            entries.append(e)
    # when
    got = episodes_of(entries)
    expected = reference_episodes(entries, LOOKBACK)
    # then: real bursts make several multi-hour episodes, all as the reference builds them
    assert any(e["observations"] > 1 for e in expected)
    assert_same_episodes(got, expected)
