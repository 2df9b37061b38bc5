"""Alerts from episode starts (contract §10): bodies, ranking, threshold and cap, Subject, attributes.

Expectations come from the plain reference of ``tests/fakes/alerts_reference.py``
(documents in, alert bodies out) or are written down by hand.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.alerts.build import (
    MAX_SUBJECT_CHARS,
    Alert,
    alert_id,
    alert_table,
    alerts_at,
    plan_alerts,
    subject,
)
from libs.models.episodes import iso_utc_ms
from libs.models.starts import empty_starts
from tests.fakes.alerts_reference import reference_alerts, reference_selection
from tests.fakes.examples import examples
from tests.fakes.series import calm, doc, histories, series
from tests.unit.test_starts import expected, starts_of

REQUEST_ID = "req-1"


def all_alerts(starts: pd.DataFrame) -> list[Alert]:
    table, windows = alert_table(starts)
    return alerts_at(table, windows, np.arange(len(table)), REQUEST_ID)


def assert_same_body(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    theirs = {key: value for key, value in theirs.items() if not key.startswith("_")}
    assert list(mine) == list(theirs)
    for key in theirs:
        if key == "windows":
            assert len(mine[key]) == len(theirs[key])
            for a, b in zip(mine[key], theirs[key], strict=True):
                assert list(a) == list(b)
                for name in b:
                    assert (
                        a[name] == pytest.approx(b[name], rel=1e-12, abs=0) if b[name] is not None else a[name] is None
                    )
        elif key in ("value", "severity") and theirs[key] is not None:
            assert mine[key] == pytest.approx(theirs[key], rel=1e-12)
        else:
            assert mine[key] == theirs[key], key


def expected_alerts(documents: list[dict[str, Any]], as_of_hour: float, **options: Any) -> list[dict[str, Any]]:
    return reference_alerts(expected(documents, as_of_hour, **options), REQUEST_ID)


# --- one alert per (coin, signal, timestamp, direction) ---------------------------------------


def test_a_spike_is_one_alert_listing_each_starting_window_with_its_own_severity():
    # given: a spike starting an episode in the 1- and 2-day windows
    documents = series("bitcoin", calm(range(30)) + [(30, 100.0)])
    # when
    (alert,) = all_alerts(starts_of(documents, 30, signals=("volume",)))
    # then
    body = alert.body()
    (expected,) = expected_alerts(documents, 30, signals=("volume",))
    assert_same_body(body, expected)
    assert body["timestamp"] == "2024-10-02T06:00:00.000Z"
    assert [w["period_days"] for w in body["windows"]] == [1, 2]
    assert body["severity"] == max(w["severity"] for w in body["windows"])
    assert body["flat_window"] is False and body["direction"] == "spike" and body["value"] == 100.0


def test_several_observations_at_the_timestamp_give_the_values_of_the_most_severe_one():
    documents = series("a", calm(range(30)) + [(30, 100.0), (30, 200.0), (30, 12.0)])
    (alert,) = all_alerts(starts_of(documents, 30, signals=("volume",)))
    assert alert.value == 200.0
    assert_same_body(alert.body(), expected_alerts(documents, 30, signals=("volume",))[0])


def test_a_spike_and_a_dip_at_one_timestamp_are_two_alerts():
    documents = series("a", calm(range(30)) + [(30, 100.0), (30, -60.0)])
    alerts = all_alerts(starts_of(documents, 30, signals=("volume",)))
    assert sorted(a.direction for a in alerts) == ["dip", "spike"]
    assert len({a.alert_id for a in alerts}) == 2


def test_a_flat_window_broken_alerts_with_a_null_severity():
    documents = series("a", [(hour, 5.0) for hour in range(30)] + [(30, 6.0)])
    (alert,) = all_alerts(starts_of(documents, 30, signals=("volume",)))
    body = json.loads(alert.message())
    assert body["severity"] is None and body["flat_window"] is True
    assert all(w["severity"] is None for w in body["windows"])
    assert "severity" not in alert.attributes()
    assert alert.subject == "a volume spike: flat 1-day window broken"


def test_a_flat_window_beside_a_finite_one_keeps_the_finite_severity():
    # given: flat for 28 hours after a calm stretch: the 1-day window is flat, the 2-day one is not
    documents = series("a", calm(range(20)) + [(hour, 5.0) for hour in range(20, 48)] + [(48, 100.0)])
    (alert,) = all_alerts(starts_of(documents, 48, signals=("volume",)))
    flats = [w["severity"] is None for w in alert.windows]
    assert flats == [True, False]
    assert alert.flat_window is False and alert.severity == alert.windows[1]["severity"]
    assert_same_body(alert.body(), expected_alerts(documents, 48, signals=("volume",))[0])


# --- threshold and cap ------------------------------------------------------------------------


def three_coins() -> pd.DataFrame:
    """Spikes of growing severity on coins a, b, c; a flat window broken on coin f."""
    documents = []
    for coin, spike in (("a", 17.0), ("b", 40.0), ("c", 100.0)):
        documents += series(coin, calm(range(30)) + [(30, spike)])
    documents += series("f", [(hour, 5.0) for hour in range(30)] + [(30, 5.5)])
    return starts_of(documents, 30, periods=(1,), signals=("volume",))


def test_alerts_below_the_threshold_are_not_published_unless_a_window_is_flat():
    # given: severities 0.2 (a), 10.5 (b), 37.2 (c) and a flat window broken (f)
    starts = three_coins()
    # when
    plan = plan_alerts(starts, REQUEST_ID, min_severity=1.5, max_per_message=50)
    # then: a is below 1.5; f alerts whatever its severity, and ranks last
    assert [a.coin_id for a in plan.alerts] == ["c", "b", "f"]
    assert (plan.starts, plan.below_min_severity, plan.withheld) == (4, 1, 0)


def test_zero_publishes_every_start():
    plan = plan_alerts(three_coins(), REQUEST_ID, min_severity=0.0, max_per_message=50)
    assert [a.coin_id for a in plan.alerts] == ["c", "b", "a", "f"]
    assert plan.below_min_severity == 0


def test_the_cap_keeps_the_most_severe_and_counts_the_rest_withheld():
    plan = plan_alerts(three_coins(), REQUEST_ID, min_severity=0.0, max_per_message=2)
    assert [a.coin_id for a in plan.alerts] == ["c", "b"]
    assert plan.withheld == 2


def test_ties_rank_by_coin_signal_and_timestamp():
    documents = []
    for coin in ("b", "a"):
        documents += series(coin, calm(range(30)) + [(30, 100.0)])
        documents += series(coin, calm(range(30)) + [(30, 100.0)], signal="latest_price")
    plan = plan_alerts(starts_of(documents, 30, periods=(1,)), REQUEST_ID, 0.0, 50)
    assert [(a.coin_id, a.signal) for a in plan.alerts] == [
        ("a", "latest_price"),
        ("a", "volume"),
        ("b", "latest_price"),
        ("b", "volume"),
    ]


def test_no_starts_plan_nothing():
    plan = plan_alerts(empty_starts(), REQUEST_ID, 1.5, 50)
    assert plan.alerts == () and (plan.starts, plan.below_min_severity, plan.withheld) == (0, 0, 0)


# --- the message: id, Subject, attributes -------------------------------------------------------


def test_the_alert_id_is_a_digest_of_coin_signal_timestamp_and_direction():
    one = alert_id("bitcoin", "volume", "2024-11-01T12:00:00.000Z", "spike")
    assert one == alert_id("bitcoin", "volume", "2024-11-01T12:00:00.000Z", "spike")
    assert len(one) == 64 and int(one, 16) >= 0
    others = {
        alert_id("bitcoin", "volume", "2024-11-01T12:00:00.000Z", "dip"),
        alert_id("bitcoin", "market_cap", "2024-11-01T12:00:00.000Z", "spike"),
        alert_id("bitcoin", "volume", "2024-11-01T12:00:00.001Z", "spike"),
        alert_id("bitcoin2", "volume", "2024-11-01T12:00:00.000Z", "spike"),
        alert_id('bitcoin","volume', "", "2024-11-01T12:00:00.000Z", "spike"),
    }
    assert one not in others and len(others) == 5


def test_the_subject_reads_as_one_line():
    assert subject("bitcoin", "volume", "spike", 4.2, 7) == "bitcoin volume spike: 4.2 IQR above the 7-day fence"
    assert subject("eth", "latest_price", "dip", 12.345, 3) == "eth latest_price dip: 12.3 IQR below the 3-day fence"
    assert subject("x", "volume", "spike", 3.0e7, 30) == "x volume spike: 3.00e+07 IQR above the 30-day fence"


@given(
    coin=st.text(min_size=1, max_size=256),
    severity=st.one_of(st.none(), st.floats(min_value=1e-9, max_value=1.7e308)),
    period=st.integers(1, 365),
    signal=st.sampled_from(["volatility_risk_score", "volume"]),
)
def test_the_subject_is_at_most_99_printable_characters_for_any_coin(coin, severity, period, signal):
    line = subject(coin, signal, "spike", severity, period)
    assert 0 < len(line) <= MAX_SUBJECT_CHARS
    assert line.isprintable()
    assert line.endswith("window broken" if severity is None else f"the {period}-day fence")


def test_the_attributes_carry_the_filter_fields_and_a_rounded_capped_severity():
    base = {
        "alert_id": "x",
        "coin_id": "bit\x00coin",
        "signal": "volume",
        "timestamp": "2024-11-01T12:00:00.000Z",
        "direction": "dip",
        "value": 1.0,
        "flat_window": False,
        "windows": (),
        "request_id": "r",
        "subject": "s",
    }
    attributes = Alert(**base, severity=4.123456789).attributes()
    assert attributes == {
        "coin_id": {"DataType": "String", "StringValue": "bit\ufffdcoin"},
        "signal": {"DataType": "String", "StringValue": "volume"},
        "direction": {"DataType": "String", "StringValue": "dip"},
        "severity": {"DataType": "Number", "StringValue": "4.12346"},
    }
    assert Alert(**base, severity=1e300).attributes()["severity"]["StringValue"] == "1000000000.00000"


def test_the_body_never_writes_nan_or_infinity():
    alert = Alert("x", "c", "volume", "t", "dip", 1.0, 2.0, False, ({"lower": None, "upper": 3.0},), "r", "s")
    assert json.loads(alert.message())["windows"][0]["lower"] is None


def test_timestamps_are_iso_utc_with_milliseconds_and_z():
    stamps = np.array(["2024-11-01T12:00:00.123", "1999-12-31T23:59:59"], dtype="datetime64[ms]")
    assert iso_utc_ms(stamps) == ["2024-11-01T12:00:00.123Z", "1999-12-31T23:59:59.000Z"]


# --- random data against the reference ----------------------------------------------------------


@settings(max_examples=examples(200), deadline=None)
@given(
    history=histories(),
    periods=st.sampled_from([(1,), (2,), (1, 2)]),
    lookback=st.sampled_from([1, 3, 24]),
    k=st.sampled_from([0.0, 0.5, 1.5]),
    min_severity=st.sampled_from([0.0, 0.5, 1.5, 10.0]),
    cap=st.sampled_from([1, 2, 50]),
)
def test_random_histories_give_the_reference_alerts_and_selection(history, periods, lookback, k, min_severity, cap):
    # given
    documents, as_of_hour = history
    options = {"periods": periods, "lookback": lookback, "k": k}
    starts = starts_of(documents, as_of_hour, **options)
    expected = expected_alerts(documents, as_of_hour, **options)
    # when
    mine = all_alerts(starts)
    plan = plan_alerts(starts, REQUEST_ID, min_severity, cap)
    # then: the same alerts, and the same ones go out in the same order
    assert len(mine) == len(expected)
    for alert, theirs in zip(mine, expected, strict=True):
        assert_same_body(alert.body(), theirs)
        assert alert.subject == subject(
            theirs["coin_id"], theirs["signal"], theirs["direction"], theirs["severity"], theirs["_lead_period"]
        )
        assert json.loads(alert.message()) == json.loads(json.dumps(alert.body()))
    published, below, withheld = reference_selection(expected, min_severity, cap)
    assert [a.alert_id for a in plan.alerts] == [a["alert_id"] for a in published]
    assert (plan.below_min_severity, plan.withheld, plan.starts) == (below, withheld, len(expected))
    assert all(not math.isnan(a.severity) for a in plan.alerts if a.severity is not None)


def test_a_coin_id_with_odd_characters_still_gives_a_valid_message():
    documents = series("coin \u00e9\u4e2d\n\U0001f600", calm(range(30)) + [(30, 100.0)])
    (alert,) = all_alerts(starts_of(documents, 30, periods=(1,), signals=("volume",)))
    assert json.loads(alert.message())["coin_id"] == "coin \u00e9\u4e2d\n\U0001f600"
    assert alert.subject == "coin \u00e9\u4e2d?\U0001f600 volume spike: 37.2 IQR above the 1-day fence"


def test_documents_of_other_coins_do_not_change_an_alert():
    spike = series("a", calm(range(30)) + [(30, 100.0)])
    alone = all_alerts(starts_of(spike, 30))
    crowd = all_alerts(starts_of(spike + series("b", calm(range(31))) + [doc("c", 30, volume=1.0)], 30))
    assert [a.body() for a in alone] == [a.body() for a in crowd]
