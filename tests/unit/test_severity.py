"""Severity and levels (contract §9): the formulas by hand, the edges of float64, and random entries
against the plain reference of ``tests/fakes/episodes_reference.py``."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.models.severity import RaiseRules, SeverityScale, levels, severity
from tests.fakes.episodes_reference import Rules, level_of, severity_of
from tests.fakes.examples import examples

SCALE = SeverityScale()


def one(signal: str, value: float, q1: float, q3: float, k: float = 1.5, scale: SeverityScale = SCALE) -> float:
    """The severity of one entry judged with fences at ``k`` (NaN: none)."""
    lower, upper = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    direction = "spike" if value > upper else "dip" if value < lower else None
    arrays = (np.array([x], dtype=float) for x in (value, q1, q3, lower, upper))
    return float(severity(signal, *arrays, np.array([direction], dtype=object), scale)[0])


# --- the two scales, by hand ------------------------------------------------------------------


def test_a_ratio_spike_is_the_log_of_value_over_fence_in_units_of_the_windows_log_spread():
    # given: volume with q1 100, q3 200 (upper 350), at 700
    # then: ln(700 / 350) / ln(200 / 100) = 1
    assert one("volume", 700.0, 100.0, 200.0) == pytest.approx(1.0)


def test_a_ratio_dip_is_the_log_of_fence_over_value():
    # given: price with q1 100, q3 110 (lower 85), at 8.5: a tenth of the fence
    # then: ln(85 / 8.5) / ln(1.1)
    assert one("latest_price", 8.5, 100.0, 110.0) == pytest.approx(math.log(10) / math.log(1.1))


def test_a_near_flat_ratio_window_is_measured_against_the_relative_floor():
    # given: a stablecoin window 1.0000 to 1.0001 (log spread 1e-4, under ln(1.01))
    got = one("latest_price", 0.95, 1.0, 1.0001)
    lower = 1.0 - 1.5 * 0.0001
    # then: the floor ln(1.01) is the unit, not the window's own near-zero spread
    assert got == pytest.approx(math.log(lower / 0.95) / math.log(1.01))


@pytest.mark.parametrize(("q1", "value"), [(0.0, 5.0), (-3.0, 50.0), (10.0, 0.0), (10.0, -4.0)])
def test_a_ratio_window_or_value_at_or_below_zero_has_no_severity(q1, value):
    assert math.isnan(one("volume", value, q1, 12.0, k=0.0) if value > 0 else one("volume", value, q1, 12.0))


def test_a_level_signal_is_linear_in_units_of_its_iqr_or_its_floor():
    # given: volatility_index (floor 2) with iqr 10 and with iqr 1
    wide = one("volatility_index", 50.0, 10.0, 20.0)  # upper 35
    narrow = one("volatility_index", 10.0, 5.0, 6.0)  # upper 7.5
    # then: (50 - 35) / 10, and (10 - 7.5) / max(1, 2)
    assert wide == pytest.approx(1.5) and narrow == pytest.approx(1.25)


def test_a_signal_not_named_in_the_floors_has_floor_zero_so_a_flat_window_has_no_severity():
    scale = SeverityScale(absolute_floors=(("volatility_index", 2.0),))
    assert math.isnan(one("market_cap_score", 6.0, 5.0, 5.0, scale=scale))
    assert one("volatility_index", 6.0, 5.0, 5.0, scale=scale) == pytest.approx(0.5)


def test_with_no_floor_a_flat_ratio_window_has_no_severity():
    assert math.isnan(one("volume", 6.0, 5.0, 5.0, scale=SeverityScale(relative_floor=0.0)))


def test_unflagged_entries_have_no_severity():
    assert math.isnan(one("volume", 150.0, 100.0, 200.0))


# --- float64 edges ------------------------------------------------------------------------------


def test_a_value_a_hair_beyond_the_fence_still_has_a_severity_above_zero():
    # given: a price one ulp above its upper fence
    upper = 1.75
    value = np.nextafter(upper, 3.0)
    lower = upper - 3.0  # fences set by hand: only the spike side matters here
    got = severity(
        "latest_price",
        np.array([value]),
        np.array([1.0]),
        np.array([1.5]),
        np.array([lower]),
        np.array([upper]),
        np.array(["spike"], dtype=object),
        SCALE,
    )
    # then: a tiny positive severity, as the contract says every finite one is: ln(1 + ulp / upper) / ln(1.5)
    assert got[0] > 0 and got[0] == pytest.approx((value - upper) / upper / math.log(1.5), rel=1e-12)


def test_a_quotient_beyond_float64_keeps_a_finite_log():
    # given: volume of 1e308 over a fence of 1e-300 (the quotient overflows, its log does not)
    got = severity(
        "volume",
        np.array([1e308]),
        np.array([1e-301]),
        np.array([1e-300]),
        np.array([1e-302]),
        np.array([1e-300]),
        np.array(["spike"], dtype=object),
        SCALE,
    )
    assert got[0] == pytest.approx((math.log(1e308) - math.log(1e-300)) / math.log(10.0))


def test_a_linear_severity_beyond_float64_is_the_largest_float():
    scale = SeverityScale(absolute_floors=())
    assert one("market_cap_score", 1e300, 0.0, 1e-300, scale=scale) == sys.float_info.max


# --- levels ---------------------------------------------------------------------------------------


def test_levels_start_at_the_minimum_and_double_by_default():
    got = levels(np.array([np.nan, 0.1, 2.999, 3.0, 5.99, 6.0, 11.9, 12.0, 24.0, 1e300]), RaiseRules())
    assert got.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 4, level_of(1e300)]


def test_a_factor_at_most_one_puts_every_severity_over_the_minimum_at_level_one():
    rules = RaiseRules(min_severity=2.0, escalation_factor=1.0)
    assert levels(np.array([1.0, 2.0, 200.0, 1e308]), rules).tolist() == [0, 1, 1, 1]


def test_a_severity_exactly_on_a_threshold_gets_that_level():
    # given: thresholds m·f^j that logarithms land a hair off (0.1 · 3^j is not exact in binary)
    rules = RaiseRules(min_severity=0.1, escalation_factor=3.0)
    thresholds = np.array([0.1 * 3.0**j for j in range(40)])
    # then: each threshold is its own level, and the float just below it the level before
    assert levels(thresholds, rules).tolist() == list(range(1, 41))
    assert levels(np.nextafter(thresholds, 0), rules).tolist() == list(range(40))


# --- random entries against the reference -----------------------------------------------------

numbers = st.one_of(
    st.sampled_from([0.0, -1.0, 1e-300, 1.0, 1.0001, 2.0, 10.0, 1e6, 1e300]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)


@settings(max_examples=examples(400), deadline=None)
@given(
    signal=st.sampled_from(["volume", "latest_price", "market_cap", "volatility_index", "liquidity_risk_score"]),
    value=numbers,
    q1=numbers,
    spread=st.one_of(st.just(0.0), st.floats(min_value=1e-9, max_value=1e4)),
    k=st.sampled_from([0.0, 1.5, 3.0]),
    floors=st.sampled_from([(0.0, {}), (0.01, {"volatility_index": 2.0}), (0.5, {"liquidity_risk_score": 0.5})]),
)
def test_random_entries_have_the_reference_severity_and_level(signal, value, q1, spread, k, floors):
    # given
    q3 = q1 + spread
    relative, absolute = floors
    scale = SeverityScale(relative, tuple(absolute.items()))
    reference = Rules(relative_floor=relative, floors=absolute)
    lower, upper = q1 - k * (q3 - q1), q3 + k * (q3 - q1)
    entry = {"signal": signal, "value": value, "q1": q1, "q3": q3, "lower": lower, "upper": upper}
    entry["is_anomaly"] = value < lower or value > upper
    # when
    got = one(signal, value, q1, q3, k, scale)
    expected = severity_of(entry, reference)
    # then: the formulas agree (the reference's naive ln(a / b) may round a hair-thin move to 0)
    if expected is None:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12) and got > 0
        assert levels(np.array([got]), RaiseRules()).tolist() == [level_of(got)]
