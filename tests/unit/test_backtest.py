"""The backtest's computations (contract §12) against the plain reference of tests/fakes/backtest_reference.py.

The alerts are checked against latest-mode messages at every observation's
time, as the plain reference publishes them; the summary's numbers (coins,
coin-days, observations, by signal and level, the busiest days, the events)
against dicts and ``Counter`` over the same bodies and rows. Nothing expected
comes from :mod:`libs.tools.backtest` itself.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.errors import AnomalyServiceError
from libs.helpers.constants_helper import Settings, load_settings
from libs.models.history import documents_to_history
from libs.tools.backtest.build import backtest, busiest_days, event_outcomes, period_counts
from libs.tools.backtest.page import PageView, _axis_top, chart_buckets, render_page
from libs.tools.backtest.scope import BacktestScope, backtest_scope
from libs.tools.market_data import MarketEvent
from tests.fakes.alerts_reference import assert_same_alerts, iso
from tests.fakes.backtest_reference import (
    reference_backtest_alerts,
    reference_busiest_days,
    reference_counts,
    reference_events,
    reference_period_counts,
)
from tests.fakes.episodes_reference import Rules
from tests.fakes.examples import examples
from tests.fakes.series import T0, doc, histories, markets, series

SIGNALS = ("volume", "latest_price")


def settings_of(rules: Rules, k: float = 1.5, min_observations: int = 4) -> Settings:
    """The code's settings from the reference's plain values (as a deployment would set them)."""
    return load_settings(
        {
            "MONGODB_URI": "mongomock://",
            "QUANTILE_DEVIATION_LIMIT": repr(k),
            "ANOMALY_MIN_OBSERVATIONS": str(min_observations),
            "ANOMALY_LATEST_LOOKBACK_HOURS": str(int(rules.lookback_hours)),
            "SEVERITY_RELATIVE_FLOOR": repr(rules.relative_floor),
            "ALERT_MIN_SEVERITY": repr(rules.min_severity),
            "ALERT_ESCALATION_FACTOR": repr(rules.factor),
            "ALERT_MEMORY_HOURS": repr(rules.memory_hours),
        }
    )


def frame_of(documents: list[dict[str, Any]], signals: tuple[str, ...] = SIGNALS) -> pd.DataFrame:
    return documents_to_history(documents, signals).frame.drop(columns="_id")


def scope_of(since: datetime, as_of: datetime, periods: tuple[int, ...], coin_ids=None) -> BacktestScope:
    return BacktestScope(since=since, as_of=as_of, coin_ids=coin_ids, signals=SIGNALS, periods_days=periods)


random_rules = st.builds(
    Rules,
    relative_floor=st.sampled_from([0.0, 0.01, 0.2]),
    min_severity=st.sampled_from([0.1, 0.5, 3.0]),
    factor=st.sampled_from([0.5, 2.0]),
    memory_hours=st.sampled_from([0.0, 3.0, 24.0]),
    lookback_hours=st.sampled_from([1.0, 24.0]),
)


# --- the alerts -------------------------------------------------------------------------------


@settings(max_examples=examples(60), deadline=None)
@given(
    history=st.one_of(histories(), markets()),
    periods=st.sampled_from([(1,), (1, 2)]),
    rules=random_rules,
    hours_back=st.integers(0, 30),
    only=st.sampled_from([None, ("a",), ("b", "c")]),
)
def test_random_histories_give_the_alerts_of_latest_mode_messages_at_every_observation(
    history, periods, rules, hours_back, only
):
    # given: random coins with ties, gaps, junk values and odd values near the end, and a period ending there
    documents, as_of_hour = history
    since, as_of = T0 + timedelta(hours=as_of_hour - hours_back), T0 + timedelta(hours=as_of_hour)
    options = {"signals": SIGNALS, "periods": periods, "k": 1.5, "min_observations": 4, "rules": rules}
    # when: the backtest over the period
    result = backtest(frame_of(documents), scope_of(since, as_of, periods, only), settings_of(rules))
    # then: the alerts are those the reference's messages publish at every observation's time, each once
    bodies = result.alert_bodies()
    expected = reference_backtest_alerts(documents, since=since, as_of=as_of, coin_ids=only, **options)
    assert_same_alerts(bodies, expected)
    # and the summary counts them as the reference does
    summary = result.summary()
    counted = reference_counts(expected)
    assert summary["alerts"] == len(expected)
    assert summary["by_signal"] == counted["by_signal"] and summary["by_level"] == counted["by_level"]
    assert summary["busiest_days"] == reference_busiest_days(expected)
    rows = [
        (d["coin_id"], d["timestamp"]) for d in documents if only is None or d["coin_id"] in only
    ]  # every document of the histories has a usable coin and time
    counts = reference_period_counts(rows, since, as_of)
    assert (summary["coins"], summary["observations"]) == (counts["coins"], counts["observations"])
    assert summary["coin_days"] == pytest.approx(counts["coin_days"], rel=1e-12)
    rate = len(expected) / counts["coin_days"] if counts["coin_days"] else 0.0
    assert summary["alerts_per_coin_day"] == pytest.approx(rate, rel=1e-12)


def test_a_crash_raises_once_per_level_and_the_summary_says_so():
    # given: three calm days of an hourly price, then a fall that deepens over five hours
    calm = [(h, 100.0 * (1, 1.004, 0.996, 1.002)[h % 4]) for h in range(72)]
    crash = [(72 + i, 100.0 * f) for i, f in enumerate((0.9, 0.7, 0.4, 0.1, 0.01))]
    documents = series("luna", calm + crash, signal="latest_price")
    rules = Rules()
    since, as_of = T0 + timedelta(hours=48), T0 + timedelta(hours=80)
    # when
    result = backtest(frame_of(documents), scope_of(since, as_of, (1, 2)), settings_of(rules))
    # then: the reference's alerts, each deeper than the one before, all dips of the price
    bodies = result.alert_bodies()
    expected = reference_backtest_alerts(
        documents, since=since, as_of=as_of, signals=SIGNALS, periods=(1, 2), k=1.5, min_observations=4
    )
    assert_same_alerts(bodies, expected)
    assert len(bodies) >= 3 and {b["direction"] for b in bodies} == {"dip"}
    assert [b["level"] for b in bodies] == sorted({b["level"] for b in bodies})
    assert result.summary()["by_signal"] == {"latest_price": len(bodies)}
    assert all(b["request_id"] is None for b in bodies)


def test_the_memory_before_since_decides_whether_the_first_step_of_the_period_raises():
    # given: a dip to a high level an hour before the period, held (same level) into it
    calm = [(h, 100.0 * (1, 1.004, 0.996, 1.002)[h % 4]) for h in range(72)]
    documents = series("coin", [*calm, (72, 20.0), (73, 20.0), (74, 20.0)], signal="latest_price")
    rules = Rules()
    # when: the period starts at the second step of the dip
    result = backtest(
        frame_of(documents), scope_of(T0 + timedelta(hours=73), T0 + timedelta(hours=74), (2,)), settings_of(rules)
    )
    # then: it raised before the period; holding its level there raises nothing (as a message at 73 h finds)
    assert result.alert_bodies() == []
    assert (
        reference_backtest_alerts(
            documents,
            since=T0 + timedelta(hours=73),
            as_of=T0 + timedelta(hours=74),
            signals=SIGNALS,
            periods=(2,),
            k=1.5,
            min_observations=4,
        )
        == []
    )
    # and the period from the dip's first step has its one alert
    earlier = backtest(
        frame_of(documents), scope_of(T0 + timedelta(hours=72), T0 + timedelta(hours=74), (2,)), settings_of(rules)
    )
    assert [b["timestamp"] for b in earlier.alert_bodies()] == [iso(T0 + timedelta(hours=72))]


# --- the summary's numbers --------------------------------------------------------------------


@settings(max_examples=examples(100), deadline=None)
@given(
    stamps=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "é"]), st.integers(-50, 400)), max_size=60),
    window=st.tuples(st.integers(0, 200), st.integers(0, 300)),
    only=st.sampled_from([None, ("a",), ("b", "é")]),
)
def test_coins_coin_days_and_observations_count_the_rows_in_the_period(stamps, window, only):
    # given: observations at random minutes (ties included) of a few coins, some outside the period
    rows = [(coin, T0 + timedelta(minutes=7 * m)) for coin, m in stamps]
    frame = frame_of([doc(coin, moment.timestamp() / 3600 - T0.timestamp() / 3600) for coin, moment in rows])
    since, as_of = T0 + timedelta(minutes=7 * window[0]), T0 + timedelta(minutes=7 * window[1])
    # when
    counts = period_counts(frame, since, as_of, only)
    # then
    expected = reference_period_counts([r for r in rows if only is None or r[0] in only], since, as_of)
    assert (counts.coins, counts.observations) == (expected["coins"], expected["observations"])
    assert counts.coin_days == pytest.approx(expected["coin_days"], rel=1e-12, abs=1e-12)


def test_a_coin_seen_once_has_no_coin_days_and_the_rate_is_then_zero():
    documents = [doc("a", 5, latest_price=1.0), doc("b", 6, latest_price=2.0)]
    result = backtest(frame_of(documents), scope_of(T0, T0 + timedelta(days=1), (1,)), settings_of(Rules()))
    summary = result.summary()
    assert (summary["coins"], summary["coin_days"], summary["observations"]) == (2, 0.0, 2)
    assert summary["alerts_per_coin_day"] == 0 and summary["busiest_days"] == []
    assert summary["by_signal"] == {} and summary["by_level"] == {}


@settings(max_examples=examples(100), deadline=None)
@given(days=st.lists(st.integers(0, 40), max_size=200), top=st.sampled_from([1, 3, 10]))
def test_the_busiest_days_are_the_most_alerted_then_the_earliest(days, top):
    # given: alerts on random days, with many ties
    dates = np.array([f"{datetime(2022, 5, 1) + timedelta(days=d):%Y-%m-%d}" for d in days])
    bodies = [{"timestamp": f"{date}T00:00:00.000Z"} for date in dates.tolist()]
    # then
    assert busiest_days(dates, top) == reference_busiest_days(bodies, top)


alert_bodies = st.lists(
    st.fixed_dictionaries(
        {
            "coin_id": st.sampled_from(["terra-luna", "bitcoin", "ethereum", "usd-coin"]),
            "timestamp": st.integers(0, 24 * 20).map(lambda h: iso(datetime(2022, 5, 1) + timedelta(hours=h))),
        }
    ),
    max_size=40,
)
event_rows = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["crash", "depeg", "freeze"]),
            "coin_ids": st.lists(
                st.sampled_from(["terra-luna", "bitcoin", "usd-coin", "dai"]), min_size=1, max_size=3, unique=True
            ),
            "onset": st.integers(0, 24 * 20).map(lambda h: datetime(2022, 5, 1) + timedelta(hours=h)),
            "hours": st.sampled_from([0, 1, 24, 72.5]),
        }
    ),
    max_size=5,
)


@settings(max_examples=examples(100), deadline=None)
@given(bodies=alert_bodies, events=event_rows)
def test_an_event_is_caught_by_the_first_alert_of_its_coins_in_its_span(bodies, events):
    # given: alerts at random hours, and events whose spans may hold some of them (bounds included)
    table = pd.DataFrame(bodies, columns=["coin_id", "timestamp"])
    markets = [MarketEvent(e["name"], tuple(e["coin_ids"]), e["onset"], float(e["hours"])) for e in events]
    # when
    outcomes = event_outcomes(table, markets, datetime(2022, 5, 1), datetime(2022, 6, 1))
    # then
    assert [o.as_json() for o in outcomes] == reference_events(bodies, events)


def test_an_event_outside_the_period_is_not_caught_and_says_so():
    event = MarketEvent("COVID crash", ("bitcoin",), datetime(2020, 3, 12), 24.0)
    outcome = event_outcomes(
        pd.DataFrame(columns=["coin_id", "timestamp"]), [event], datetime(2022, 1, 1), datetime(2022, 2, 1)
    )[0]
    assert outcome.as_json() == {
        "name": "COVID crash",
        "coin_ids": ["bitcoin"],
        "onset": "2020-03-12T00:00:00.000Z",
        "hours": 24,
        "caught": False,
        "first_alert": None,
        "lag_hours": None,
    }
    assert not outcome.in_period


def test_the_summary_holds_the_keys_of_the_contract_in_order_and_the_settings_used():
    documents = series("luna", [(h, 100.0 + h % 4) for h in range(72)] + [(72, 1.0)], signal="latest_price")
    event = MarketEvent("crash", ("luna",), T0 + timedelta(hours=72), 24.0)
    result = backtest(
        frame_of(documents), scope_of(T0, T0 + timedelta(hours=72), (1, 2)), settings_of(Rules()), [event]
    )
    summary = result.summary()
    assert list(summary) == [
        "since",
        "as_of",
        "coins",
        "coin_days",
        "observations",
        "alerts",
        "alerts_per_coin_day",
        "by_signal",
        "by_level",
        "busiest_days",
        "events",
        "settings",
    ]
    assert (summary["since"], summary["as_of"]) == ("2024-10-01T00:00:00.000Z", "2024-10-04T00:00:00.000Z")
    assert summary["events"][0]["caught"] and summary["events"][0]["lag_hours"] == 0.0
    assert summary["settings"]["ANOMALY_PERIODS"] == [1, 2] and summary["settings"]["ALERT_MIN_SEVERITY"] == 3.0
    line = result.summary_line()
    assert "\n" not in line and line.startswith(
        f"{summary['alerts']:,} alerts from 2024-10-01 00:00 to 2024-10-04 00:00"
    )
    assert line.endswith("events caught: 1 of 1")


# --- the scope --------------------------------------------------------------------------------


NOW = datetime(2024, 11, 1, 12, 30, 15, 250000)


def test_by_default_the_backtest_covers_the_30_days_to_now_with_the_configured_windows():
    scope = backtest_scope(now=NOW, default_periods=(3, 7, 30))
    assert (scope.since, scope.as_of) == (NOW - timedelta(days=30), NOW)
    assert scope.periods_days == (3, 7, 30) and scope.coin_ids is None and len(scope.signals) == 7


def test_dates_mean_the_start_and_the_end_of_their_days_and_any_length_is_allowed():
    scope = backtest_scope(
        now=NOW, default_periods=(3,), since="2020-01-01", as_of="2023-05-25", periods="30,7", signals=["volume"]
    )
    assert (scope.since, scope.as_of) == (datetime(2020, 1, 1), datetime(2023, 5, 25, 23, 59, 59, 999000))
    assert scope.periods_days == (7, 30) and scope.signals == ("volume",) and scope.signals_given
    only_as_of = backtest_scope(now=NOW, default_periods=(3,), as_of="20241101T000000Z")
    assert only_as_of.since == datetime(2024, 10, 2)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"since": "last week"}, "--since is not an ISO-8601 date or datetime"),
        ({"since": "2024-11-02", "as_of": "2024-11-01"}, "--since must not be after --as-of"),
        ({"signals": ["price"]}, "--signals: entry 0 ('price') is not one of"),
        ({"periods": "0"}, "--periods"),
        ({"periods": "3.0"}, "--periods"),
        ({"coin_ids": []}, "no coin ids given"),
    ],
)
def test_a_bad_argument_is_refused_naming_it(arguments, message):
    with pytest.raises(AnomalyServiceError, match=re.escape(message)):
        backtest_scope(now=NOW, default_periods=(3,), **arguments)


# --- the page ---------------------------------------------------------------------------------


@pytest.mark.parametrize("days, unit", [(10, "day"), (120, "day"), (121, "week"), (1_300, "week"), (3_000, "month")])
def test_the_chart_has_a_bar_a_day_a_week_or_a_month_and_counts_every_alert_once(days, unit):
    # given: alerts on days spread over a period of that many days, of every level
    since = datetime(2020, 1, 1)
    as_of = since + timedelta(days=days - 1, hours=23)
    rng = np.random.default_rng(days)
    offsets = np.sort(rng.integers(0, days * 24, 300))
    ranked = pd.DataFrame(
        {
            "timestamp": [iso(since + timedelta(hours=int(h))) for h in offsets],
            "level": rng.integers(1, 7, len(offsets)),
        }
    )
    result = _result(since, as_of, ranked)
    # when
    buckets = chart_buckets(result)
    # then: the unit, every alert counted once in the bucket holding its day, levels 4+ together
    assert buckets.unit == unit
    assert int(buckets.by_level.sum()) == len(offsets)
    days_of = np.array([np.datetime64(since + timedelta(hours=int(h)), "D") for h in offsets])
    for i in range(len(buckets.starts)):
        inside = (days_of >= buckets.starts[i]) & (days_of <= buckets.ends[i])
        levels = np.minimum(ranked["level"].to_numpy()[inside], 4)
        assert buckets.by_level[i].tolist() == [int((levels == lv).sum()) for lv in (1, 2, 3, 4)]
    assert len(buckets.starts) <= 200


def test_the_page_escapes_coin_ids_and_needs_nothing_from_the_network():
    # given: a coin id that is HTML
    documents = series("<b>x</b>&", [(h, 100.0 + h % 4) for h in range(72)] + [(72, 1.0)], signal="latest_price")
    event = MarketEvent("<i>crash</i>", ("<b>x</b>&",), T0 + timedelta(hours=72), 24.0)
    result = backtest(
        frame_of(documents), scope_of(T0, T0 + timedelta(hours=72), (1, 2)), settings_of(Rules()), [event]
    )
    assert result.alerts
    # when
    html = render_page(PageView(result=result, source="file x.csv", generated_at=NOW))
    # then
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;&amp;" in html and "&lt;i&gt;crash&lt;/i&gt;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "<script" not in html
    assert "@import" not in html and "url(" not in html


def _result(since: datetime, as_of: datetime, ranked: pd.DataFrame):
    from libs.tools.backtest.build import BacktestResult, PeriodCounts

    return BacktestResult(
        scope=scope_of(since, as_of, (1,)),
        signals=SIGNALS,
        counts=PeriodCounts(coins=1, coin_days=math.nan, observations=1),
        ranked=ranked,
        windows=pd.DataFrame(),
        events=None,
    )


@settings(max_examples=examples(200), deadline=None)
@given(most=st.integers(0, 10**7))
def test_the_chart_axis_covers_the_tallest_bar_with_whole_gridlines_and_little_room(most):
    top = _axis_top(most)
    assert top >= most and top % 4 == 0 and top <= 2 * most + 4
