"""Episode starts judged from the data (contract §9), against the plain reference of tests/fakes.

Documents go through the loader and the model as in the function; every
expectation comes from ``tests/fakes/alerts_reference.py`` (documents in,
starts out, one window at a time) or is written down by hand.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.models.history import documents_to_history
from libs.models.model import ModelParams, judge, select_latest
from libs.models.starts import START_COLUMNS, starting_flags
from tests.fakes.alerts_reference import reference_starts
from tests.fakes.examples import examples
from tests.fakes.series import T0, calm, doc, histories, series

SIGNALS = ("volume", "latest_price")


#: What a test does not say: two windows, a day's lookback, Tukey's k, four observations, two signals.
DEFAULTS: dict[str, Any] = {"periods": (1, 2), "lookback": 24, "k": 1.5, "min_observations": 4, "signals": SIGNALS}


def starts_of(documents: list[dict[str, Any]], as_of_hour: float, **options: Any) -> pd.DataFrame:
    """What the function computes: load, select latest, judge, then the starts."""
    o = {**DEFAULTS, **options}
    frame = documents_to_history(documents, o["signals"]).frame
    judged = select_latest(frame, T0 + timedelta(hours=as_of_hour), o["lookback"])
    params = ModelParams(o["signals"], o["periods"], o["k"], o["min_observations"])
    starts = starting_flags(frame, params, judge(frame, judged, params), o["lookback"])
    assert list(starts.columns) == list(START_COLUMNS)
    return starts


def expected(documents: list[dict[str, Any]], as_of_hour: float, **options: Any) -> list[dict[str, Any]]:
    """What the plain reference says, for the same options."""
    o = {**DEFAULTS, **options}
    return reference_starts(
        documents,
        as_of=T0 + timedelta(hours=as_of_hour),
        lookback_hours=o["lookback"],
        signals=o["signals"],
        periods=o["periods"],
        k=o["k"],
        min_observations=o["min_observations"],
    )


def keys(starts: pd.DataFrame | list[dict[str, Any]]) -> list[tuple]:
    """(coin, signal, period, hour, direction) of each start, sorted."""
    rows = starts.to_dict("records") if isinstance(starts, pd.DataFrame) else starts
    return sorted(
        (
            r["coin_id"],
            r["signal"],
            int(r["period_days"]),
            (pd.Timestamp(r["timestamp"]) - pd.Timestamp(T0)) / pd.Timedelta(hours=1),
            r["direction"],
        )
        for r in rows
    )


def numbers(starts: pd.DataFrame | list[dict[str, Any]]) -> list[tuple]:
    """Each start's keys and numbers (NaN as None), sorted, for exact comparison."""
    rows = starts.to_dict("records") if isinstance(starts, pd.DataFrame) else starts

    def plain(x: Any) -> Any:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return sorted(
        (
            r["coin_id"],
            r["signal"],
            int(r["period_days"]),
            pd.Timestamp(r["timestamp"]).to_pydatetime(),
            r["direction"],
            *(plain(r[name]) for name in ("value", "q1", "q3", "lower", "upper", "n", "k", "severity")),
            bool(r["flat_window"]),
        )
        for r in rows
    )


# --- hand-made series ------------------------------------------------------------------------


def test_a_single_spike_starts_an_episode():
    # given: a calm day, then a spike at the newest hour
    documents = series("a", calm(range(30)) + [(30, 100.0)])
    # when
    starts = starts_of(documents, 30, signals=("volume",))
    # then: it starts an episode in both windows, as the reference says
    assert keys(starts) == [("a", "volume", 1, 30.0, "spike"), ("a", "volume", 2, 30.0, "spike")]
    assert numbers(starts) == numbers(expected(documents, 30, signals=("volume",)))
    assert (starts["severity"] > 0).all() and not starts["flat_window"].any()


def test_a_spike_that_persists_starts_nothing_at_its_second_step():
    # given: the spike at hour 30 is still there at hour 31 (the previous step is flagged, 1 h before)
    documents = series("a", calm(range(30)) + [(30, 100.0), (31, 100.0)])
    # when / then
    assert starts_of(documents, 31, signals=("volume",)).empty
    assert expected(documents, 31, signals=("volume",)) == []


def test_a_gap_longer_than_the_lookback_starts_again_and_exactly_the_lookback_continues():
    # given: spikes 25 h apart (coin a) and exactly 24 h apart (coin b), nothing observed between
    a = series("a", calm(range(30)) + [(30, 100.0), (55, 100.0)])
    b = series("b", calm(range(31)) + [(31, 100.0), (55, 100.0)])
    # when
    starts = starts_of(a + b, 55, periods=(2,), signals=("volume",))
    # then: a's spike starts an episode again, b's continues its episode
    assert keys(starts) == [("a", "volume", 2, 55.0, "spike")]
    assert numbers(starts) == numbers(expected(a + b, 55, periods=(2,), signals=("volume",)))


def test_a_dip_starts_an_episode_and_a_dip_that_persists_does_not():
    a = series("a", calm(range(30)) + [(30, -50.0)])
    b = series("b", calm(range(30)) + [(29.5, -50.0), (30, -60.0)])
    starts = starts_of(a + b, 30, signals=("volume",))
    assert keys(starts) == [("a", "volume", 1, 30.0, "dip"), ("a", "volume", 2, 30.0, "dip")]


def test_a_spike_after_a_dip_starts_an_episode():
    documents = series("a", calm(range(30)) + [(30, -50.0), (31, 100.0)])
    starts = starts_of(documents, 31, signals=("volume",))
    assert set(starts["direction"]) == {"spike"}
    assert numbers(starts) == numbers(expected(documents, 31, signals=("volume",)))


def test_a_flat_window_broken_starts_an_episode_without_a_severity():
    # given: the same value all day, then a slightly higher one
    documents = series("a", [(hour, 5.0) for hour in range(30)] + [(30, 6.0)])
    # when
    starts = starts_of(documents, 30, signals=("volume",))
    # then
    assert len(starts) == 2
    assert starts["flat_window"].all() and starts["severity"].isna().all()
    assert numbers(starts) == numbers(expected(documents, 30, signals=("volume",)))


def test_ties_at_the_previous_step_flag_it_when_any_observation_there_is_flagged():
    # given: two observations at hour 30 (one spike, one calm), a spike again at 31
    documents = series("a", calm(range(30)) + [(30, 11.0), (30, 100.0), (31, 100.0)])
    # when / then: the previous step is flagged through its second observation: no start
    assert starts_of(documents, 31, signals=("volume",)).empty
    assert expected(documents, 31, signals=("volume",)) == []


def test_ties_at_the_newest_step_each_flag_and_share_the_decision():
    # given: two spikes and a calm value at the newest hour
    documents = series("a", calm(range(30)) + [(30, 100.0), (30, 200.0), (30, 12.0)])
    # when
    starts = starts_of(documents, 30, signals=("volume",))
    # then: both spikes start, in each window
    assert sorted(starts["value"]) == [100.0, 100.0, 200.0, 200.0]
    assert numbers(starts) == numbers(expected(documents, 30, signals=("volume",)))


def test_the_previous_step_is_the_nearest_earlier_timestamp_with_a_value_of_the_signal():
    # given: at hour 30 the volume is absent (only the price is there); the spike at 29 is the previous step
    documents = series("a", calm(range(29)) + [(29, 100.0)]) + [doc("a", 30, latest_price=1.0)]
    documents += series("a", [(31, 100.0)])
    # when / then: the spike at 31 continues the one at 29 (2 h before, within the lookback)
    assert starts_of(documents, 31, signals=("volume",)).empty
    # and with a 1 h lookback it starts again
    starts = starts_of(documents, 31, lookback=1, signals=("volume",))
    assert keys(starts) == [("a", "volume", 1, 31.0, "spike"), ("a", "volume", 2, 31.0, "spike")]


def test_an_insufficient_previous_window_is_not_flagged():
    # given: 10, 11, 100 an hour apart, k = 0.1: 11 is a spike in a window of two, 100 in a window of three
    documents = series("a", [(0, 10.0), (1, 11.0), (2, 100.0)])
    options = {"periods": (1,), "k": 0.1, "signals": ("volume",)}
    # when
    two_suffice = starts_of(documents, 2, min_observations=2, **options)
    three_needed = starts_of(documents, 2, min_observations=3, **options)
    # then: with two observations enough, hour 1 is flagged and 100 continues its episode;
    # with three needed, hour 1 is insufficient (not flagged) and 100 starts one
    assert two_suffice.empty
    assert keys(three_needed) == [("a", "volume", 1, 2.0, "spike")]
    assert numbers(three_needed) == numbers(expected(documents, 2, min_observations=3, **options))


def test_each_window_judges_its_own_previous_step():
    # given: a long calm history with a level shift 30 hours ago; the 1-day window has adapted to it,
    # the 2-day one has not: the previous step is flagged for 2 days only
    documents = series("a", calm(range(48)) + calm(range(48, 70), base=40.0) + [(70, 60.0)])
    starts = starts_of(documents, 70, signals=("volume",))
    assert numbers(starts) == numbers(expected(documents, 70, signals=("volume",)))


def test_coins_and_signals_are_judged_independently():
    a = series("a", calm(range(30)) + [(30, 100.0), (31, 100.0)])  # persists: no start
    b = series("b", calm(range(31)) + [(31, 100.0)])  # starts
    c = series("c", calm(range(31)) + [(31, 100.0)], signal="latest_price") + series("c", calm(range(32)))
    starts = starts_of(a + b + c, 31)
    assert numbers(starts) == numbers(expected(a + b + c, 31))
    assert {(coin, signal) for coin, signal, *_ in keys(starts)} == {("b", "volume"), ("c", "latest_price")}


def test_no_flags_give_an_empty_frame_with_the_columns():
    starts = starts_of(series("a", calm(range(30))), 29)
    assert starts.empty and list(starts.columns) == list(START_COLUMNS)


def test_a_frame_not_in_coin_then_time_order_is_refused():
    # given: the loader's frame, shuffled
    documents = series("a", calm(range(30)) + [(30, 100.0)]) + series("b", calm(range(31)))
    frame = documents_to_history(documents, ("volume",)).frame
    params = ModelParams(("volume",), (1,), 1.5, 4)
    results = judge(frame, select_latest(frame, T0 + timedelta(hours=30), 24), params)
    shuffled = frame.iloc[np.random.default_rng(0).permutation(len(frame))].reset_index(drop=True)
    moved = results.assign(row=np.argsort(np.random.default_rng(0).permutation(len(frame)))[results["row"]])
    # when / then
    with pytest.raises(ValueError, match="sorted by coin_id"):
        starting_flags(shuffled, params, moved, 24)


# --- random data against the reference -------------------------------------------------------


@settings(max_examples=examples(250), deadline=None)
@given(
    history=histories(),
    periods=st.sampled_from([(1,), (2,), (1, 2)]),
    lookback=st.sampled_from([1, 3, 24]),
    k=st.sampled_from([0.0, 0.5, 1.5]),
    min_observations=st.sampled_from([1, 2, 4]),
)
def test_random_histories_give_the_reference_starts(history, periods, lookback, k, min_observations):
    # given: random coins with ties, gaps, junk values and flat stretches
    documents, as_of_hour = history
    options = {"periods": periods, "lookback": lookback, "k": k, "min_observations": min_observations}
    # when
    starts = starts_of(documents, as_of_hour, **options)
    # then
    assert numbers(starts) == numbers(expected(documents, as_of_hour, **options))
