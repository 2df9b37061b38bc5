"""Alerts from raises (contract §10): bodies, levels, ranking and cap, Subject, attributes.

Expectations come from the plain reference of ``tests/fakes/alerts_reference.py``
(documents in, alert bodies out) or are written down by hand.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.alerts.build import MAX_SUBJECT_CHARS, Alert, alert_id, plan_alerts, subject
from libs.models.episodes import iso_utc_ms
from libs.models.raises import empty_raises
from tests.fakes.alerts_reference import assert_same_alerts, reference_alerts
from tests.fakes.episodes_reference import Rules
from tests.fakes.examples import examples
from tests.fakes.series import T0, doc, histories, series
from tests.unit.test_raises import CALM_DAYS, market, raises_at, random_rules

REQUEST_ID = "req-1"


def alerts_at(
    documents: list[dict[str, Any]],
    as_of_hour: float,
    rules: Rules | None = None,
    cap: int | None = None,
    **options: Any,
):
    """(the plan the function makes, the reference's alert bodies) for a latest-mode message at ``as_of_hour``."""
    got, expected = raises_at(documents, as_of_hour, rules, **options)
    return plan_alerts(got, REQUEST_ID, cap), reference_alerts(expected, REQUEST_ID)


def crash(coin: str, depth: float, hour: int = CALM_DAYS) -> list[dict[str, Any]]:
    """Calm days of one coin's price, then one hour at ``depth`` times its level."""
    return series(coin, [*market(range(CALM_DAYS)), (hour, 100.0 * depth)], signal="latest_price")


# --- one alert per (coin, signal, timestamp, direction) ---------------------------------------


def test_a_raise_is_one_alert_listing_each_raising_window_with_its_own_severity_and_level():
    # given: a price falling 30 % in an hour after calm days, judged on 1- and 2-day windows
    plan, expected = alerts_at(crash("luna", 0.7), CALM_DAYS)
    # then: one alert, both windows listed by period with their own numbers; the alert's level is the highest
    (alert,) = plan.alerts
    assert_same_alerts([alert.body()], expected)
    body = alert.body()
    assert [w["period_days"] for w in body["windows"]] == [1, 2]
    assert body["level"] == max(w["level"] for w in body["windows"]) >= 1
    assert body["severity"] == max(w["severity"] for w in body["windows"])
    assert body["direction"] == "dip" and body["value"] == pytest.approx(70.0)
    assert alert.attributes()["level"] == {"DataType": "Number", "StringValue": str(body["level"])}


def test_the_cap_keeps_the_most_severe_and_counts_the_rest_withheld():
    # given: three coins crashing by different depths at the same hour
    documents = crash("a", 0.8) + crash("b", 0.3) + crash("c", 0.6)
    # when
    plan, expected = alerts_at(documents, CALM_DAYS, cap=2)
    # then: the deepest two go out, most severe first; one is withheld
    assert [a.coin_id for a in plan.alerts] == ["b", "c"] == [a["coin_id"] for a in expected[:2]]
    assert plan.withheld == 1


def test_equal_severities_rank_by_coin_then_signal_then_time_then_dip_before_spike():
    # given: two coins with the very same crash, and a coin whose price and volume move the same way
    same = crash("b", 0.5) + crash("a", 0.5)
    both = [doc("c", h, latest_price=p, volume=p) for h, p in [*market(range(CALM_DAYS)), (CALM_DAYS, 50.0)]]
    plan, expected = alerts_at(same + both, CALM_DAYS, signals=("latest_price", "volume"))
    keys = [(a.coin_id, a.signal) for a in plan.alerts]
    # then
    assert keys == [("a", "latest_price"), ("b", "latest_price"), ("c", "latest_price"), ("c", "volume")]
    assert keys == [(a["coin_id"], a["signal"]) for a in expected]


def test_no_raises_plan_nothing():
    plan = plan_alerts(empty_raises(), REQUEST_ID, 50)
    assert plan.alerts == () and plan.withheld == 0


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


# --- what SNS carries -------------------------------------------------------------------------


def test_the_subject_reads_at_a_glance():
    assert (
        subject("terra-luna", "latest_price", "dip", 3, 13.54, 30)
        == "terra-luna latest_price dip, level 3: severity 13.5 beyond the 30-day fence"
    )
    assert (
        subject("x", "volume", "spike", 20, 3.0e7, 7)
        == "x volume spike, level 20: severity 3.00e+07 beyond the 7-day fence"
    )


@given(
    coin=st.text(min_size=1, max_size=256),
    severity=st.floats(min_value=1e-9, max_value=1.7e308),
    level=st.integers(1, 1100),
    period=st.integers(1, 365),
    signal=st.sampled_from(["volatility_risk_score", "volume"]),
)
def test_the_subject_is_ascii_under_100_characters_and_names_the_coin_for_any_coin(
    coin, severity, level, period, signal
):
    line = subject(coin, signal, "spike", level, severity, period)
    # then: what SNS accepts: ASCII, no control character, begins with a letter, digit or punctuation, < 100
    assert 0 < len(line) <= MAX_SUBJECT_CHARS < 100
    assert line.isascii() and line.isprintable() and not line[0].isspace()
    assert line.endswith(f"the {period}-day fence") and f"level {level}" in line
    head = line[: line.rindex(f" {signal} spike, level ")]
    printable = coin.strip()
    if printable and coin.isascii() and coin.isprintable():  # named as it is, or cut with "..."
        assert head == printable or (head.endswith("...") and printable.startswith(head[:-3]))


def test_a_coin_id_sns_would_refuse_is_escaped_in_the_subject_and_exact_in_the_body():
    documents = crash("coin \u00e9\u4e2d\n\U0001f600", 0.5)
    plan, _ = alerts_at(documents, CALM_DAYS, periods=(1,))
    (alert,) = plan.alerts
    assert json.loads(alert.message())["coin_id"] == "coin \u00e9\u4e2d\n\U0001f600"
    assert alert.subject.startswith("coin \\xe9\\u4e2d\\x0a\\U0001f600 latest_price dip, level ")


def test_the_attributes_carry_the_filter_fields_and_a_rounded_capped_severity():
    base = {
        "alert_id": "x",
        "coin_id": "bit\x00coin",
        "signal": "volume",
        "timestamp": "2024-11-01T12:00:00.000Z",
        "direction": "dip",
        "value": 1.0,
        "level": 2,
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
        "level": {"DataType": "Number", "StringValue": "2"},
        "severity": {"DataType": "Number", "StringValue": "4.12346"},
    }
    assert Alert(**base, severity=1e300).attributes()["severity"]["StringValue"] == "1000000000.00000"


def test_the_body_never_writes_nan_or_infinity():
    window = {"lower": None, "upper": 3.0}
    alert = Alert("x", "c", "volume", "t", "dip", 1.0, 2.0, 1, False, (window,), "r", "s")
    assert json.loads(alert.message())["windows"][0]["lower"] is None


def test_timestamps_are_iso_utc_with_milliseconds_and_z_up_to_the_year_9999():
    stamps = np.array(
        ["2024-11-01T12:00:00.123", "1999-12-31T23:59:59", "2300-01-01", "9999-12-31T23:59:59.999"],
        dtype="datetime64[ms]",
    )
    assert iso_utc_ms(stamps) == [
        "2024-11-01T12:00:00.123Z",
        "1999-12-31T23:59:59.000Z",
        "2300-01-01T00:00:00.000Z",
        "9999-12-31T23:59:59.999Z",
    ]


def test_an_observation_after_2262_keeps_its_own_time_and_id():
    # given: calm days and a crash in the year 2300, past the end of nanosecond time
    start = datetime(2300, 1, 1)
    documents = [
        {"coin_id": "far", "timestamp": start + timedelta(hours=h), "latest_price": p}
        for h, p in [*market(range(CALM_DAYS)), (CALM_DAYS, 40.0)]
    ]
    offset = (start - T0) / timedelta(hours=1)
    plan, expected = alerts_at(documents, offset + CALM_DAYS)
    # then: the alert's time (and so its id) is its own
    (alert,) = plan.alerts
    assert alert.timestamp == "2300-01-04T00:00:00.000Z"
    assert alert.alert_id == alert_id("far", "latest_price", "2300-01-04T00:00:00.000Z", "dip")
    assert_same_alerts([alert.body()], expected)


# --- random data against the reference ----------------------------------------------------------


@settings(max_examples=examples(200), deadline=None)
@given(
    history=histories(),
    periods=st.sampled_from([(1,), (2,), (1, 2)]),
    k=st.sampled_from([0.0, 0.5, 1.5]),
    rules=random_rules,
    cap=st.sampled_from([1, 2, 50, None]),
)
def test_random_histories_give_the_reference_alerts_in_order_and_capped(history, periods, k, rules, cap):
    # given
    documents, as_of_hour = history
    options = {"periods": periods, "k": k, "signals": ("volume", "latest_price")}
    # when
    plan, expected = alerts_at(documents, as_of_hour, rules, cap, **options)
    # then: the same alerts go out in the same order, the rest are counted withheld
    shown = expected if cap is None else expected[:cap]
    assert_same_alerts([a.body() for a in plan.alerts], shown)
    assert plan.withheld == len(expected) - len(shown)
    for alert, theirs in zip(plan.alerts, shown, strict=True):
        assert alert.subject == subject(
            theirs["coin_id"],
            theirs["signal"],
            theirs["direction"],
            theirs["level"],
            theirs["severity"],
            theirs["_lead_period"],
        )
        assert json.loads(alert.message()) == json.loads(json.dumps(alert.body()))


def test_documents_of_other_coins_do_not_change_an_alert():
    alone, _ = alerts_at(crash("a", 0.5), CALM_DAYS)
    crowd, _ = alerts_at(crash("a", 0.5) + crash("b", 1.0) + [doc("c", CALM_DAYS, latest_price=1.0)], CALM_DAYS)
    assert [a.body() for a in alone.alerts] == [a.body() for a in crowd.alerts if a.coin_id == "a"]
