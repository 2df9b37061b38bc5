"""Raises judged from the data (contract §9): hand-made markets and random ones, against the plain reference.

Documents go through the loader and the model as in the function; every
expectation comes from ``tests/fakes/alerts_reference.py`` and
``tests/fakes/episodes_reference.py`` (documents in, raises out, one window and
one step at a time), and the hand-made markets also say in words what a risk
desk expects of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.models.history import documents_to_history
from libs.models.model import ModelParams, concat_results, select_latest, signal_judges, sort_rows
from libs.models.raises import RAISE_COLUMNS, message_raises, range_raises
from libs.models.severity import RaiseRules, SeverityScale
from tests.fakes.alerts_reference import reference_latest_raises
from tests.fakes.episodes_reference import Rules
from tests.fakes.examples import examples
from tests.fakes.series import T0, doc, histories, series

#: What a test does not say: two windows (in days), Tukey's k, four observations, the price.
OPTIONS: dict[str, Any] = {"periods": (1, 2), "k": 1.5, "min_observations": 4, "signals": ("latest_price",)}


def rules_pair(**settings: Any) -> tuple[SeverityScale, RaiseRules, Rules]:
    """The code's scale and rules and the reference's plain settings, from one set of values."""
    rules = Rules(**settings)
    scale = SeverityScale(rules.relative_floor, tuple(rules.floors.items()))
    return scale, RaiseRules(rules.min_severity, rules.factor, rules.memory_hours, rules.lookback_hours), rules


def raises_at(documents: list[dict[str, Any]], as_of_hour: float, rules: Rules | None = None, **options: Any):
    """(what the function finds, what the reference finds) for a latest-mode message at ``as_of_hour``."""
    o = {**OPTIONS, **options}
    scale, raise_rules, plain = rules_pair(**vars(rules or Rules()))
    frame = documents_to_history(documents, o["signals"]).frame
    as_of = T0 + timedelta(hours=as_of_hour)
    judged = select_latest(frame, as_of, plain.lookback_hours)
    params = ModelParams(o["signals"], o["periods"], o["k"], o["min_observations"])
    rows = sort_rows(frame, judged, params.periods_days)
    results = concat_results(judge_one() for _, judge_one in signal_judges(frame, rows, params))
    got = message_raises(frame, rows, params, results, scale, raise_rules)
    assert list(got.columns) == list(RAISE_COLUMNS)
    expected = reference_latest_raises(
        documents,
        as_of=as_of,
        signals=o["signals"],
        periods=o["periods"],
        k=o["k"],
        min_observations=o["min_observations"],
        rules=plain,
    )
    return got, expected


def rows_of(raises: pd.DataFrame | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each raise's keys, numbers (NaN as None), severity and level, sorted by its keys."""
    records = raises.to_dict("records") if isinstance(raises, pd.DataFrame) else raises

    def plain(x: Any) -> Any:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    rows = [
        {
            "key": (
                r["coin_id"],
                r["signal"],
                int(r["period_days"]),
                (pd.Timestamp(r["timestamp"]) - pd.Timestamp(T0)) / pd.Timedelta(hours=1),
                r["direction"],
            ),
            "numbers": tuple(plain(r[name]) for name in ("value", "q1", "q3", "lower", "upper", "n", "k")),
            "severity": plain(r["severity"]),
            "level": int(r["level"]),
            "flat_window": bool(r["flat_window"]),
        }
        for r in records
    ]
    return sorted(rows, key=lambda r: r["key"])


def assert_same(got: pd.DataFrame, expected: list[dict[str, Any]]) -> None:
    mine, theirs = rows_of(got), rows_of(expected)
    assert [r["key"] for r in mine] == [r["key"] for r in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert a["numbers"] == b["numbers"] and a["level"] == b["level"] and a["flat_window"] == b["flat_window"]
        assert a["severity"] == pytest.approx(b["severity"], rel=1e-9)


def raises_over(documents: list[dict[str, Any]], hours: Iterable[int], rules: Rules | None = None, **options: Any):
    """Latest-mode messages at each hour: every raise found, checked against the reference on the way."""
    found = []
    for hour in hours:
        got, expected = raises_at(documents, hour, rules, **options)
        assert_same(got, expected)
        found += rows_of(got)
    return found


def market(hours: range, level: float = 100.0, wiggle: float = 0.004) -> list[tuple[float, float]]:
    """An ordinary hourly price: ``level`` times a small repeating wiggle (±0.4 %)."""
    steps = (1.0, 1.0 + wiggle, 1.0 - wiggle, 1.0 + wiggle / 2)
    return [(hour, level * steps[hour % 4]) for hour in hours]


CALM_DAYS = 72  # three days of calm hours: every window judges


# --- hand-made markets ------------------------------------------------------------------------


def test_a_crash_that_starts_mild_raises_when_it_deepens_then_again_at_each_level_and_is_quiet_while_it_holds():
    # given: three calm days, then a fall that starts mild (1 %, 2 %, ...) and deepens for hours, then holds
    falls = [0.99, 0.98, 0.965, 0.94, 0.9, 0.85, 0.78, 0.7, 0.6, 0.5]
    crash = [(CALM_DAYS + i, 100.0 * f) for i, f in enumerate(falls)]
    hold = [(CALM_DAYS + len(falls) + i, 50.0 * (1 + 0.001 * (i % 2))) for i in range(8)]
    documents = series("luna", market(range(CALM_DAYS)) + crash + hold, signal="latest_price")
    # when: a latest-mode message runs every hour through the crash and the hold (each checked on the reference)
    found = raises_over(documents, range(CALM_DAYS, CALM_DAYS + len(falls) + len(hold)))
    # then: the first steps were flagged but mild (below the minimum): nothing raised there
    day_window = [r for r in found if r["key"][2] == 1]
    first = min(r["key"][3] for r in day_window)
    assert first > CALM_DAYS
    # each raise of the 1-day window is a higher level than the one before, and they all came while it deepened
    levels = [r["level"] for r in sorted(day_window, key=lambda r: r["key"][3])]
    assert levels == sorted(set(levels)) and len(levels) >= 3
    assert max(r["key"][3] for r in found) < CALM_DAYS + len(falls)


def test_the_memory_lets_an_episode_that_held_long_enough_raise_its_old_level_again():
    # given: a month of calm, then a dip to level 3 that holds at level 1 for 30 hours, then dips to level 3 again
    calm = 24 * 31
    dip = [(calm, 80.0)] + [(calm + i, 93.0) for i in range(1, 31)] + [(calm + 31, 80.0)]
    documents = series("coin", market(range(calm)) + dip, signal="latest_price")
    options = {"periods": (30,)}
    hours = [calm, calm + 1, calm + 12, calm + 30, calm + 31]
    # when: a day's memory, then two days' memory
    short = raises_over(documents, hours, Rules(memory_hours=24, lookback_hours=24), **options)
    long = raises_over(documents, hours, Rules(memory_hours=48, lookback_hours=24), **options)
    # then: with a day's memory the return to level 3 raises again (the level-3 step is 31 h back); with two
    # days' memory it is remembered and stays quiet; the hold at level 1 never raises
    assert [(r["key"][3] - calm, r["level"]) for r in short] == [(0, 3), (31, 3)]
    assert [(r["key"][3] - calm, r["level"]) for r in long] == [(0, 3)]


def test_stablecoin_tick_noise_stays_below_the_minimum_while_a_five_percent_depeg_raises():
    # given: a coin at its peg with ticks of a few hundredths of a percent, then one tick out, then a 5 % depeg
    peg = [(h, 1.0 + 0.0002 * ((h * 7) % 5 - 2)) for h in range(CALM_DAYS)]
    documents = series("usd-coin", [*peg, (CALM_DAYS, 1.002), (CALM_DAYS + 3, 0.95)], signal="latest_price")
    # when
    tick, tick_expected = raises_at(documents, CALM_DAYS)
    depeg, depeg_expected = raises_at(documents, CALM_DAYS + 3)
    # then: the tick is flagged by the fences but measured against a 1 % floor: far below level 1
    assert tick.empty and tick_expected == []
    assert_same(depeg, depeg_expected)
    assert set(depeg["direction"]) == {"dip"} and depeg["level"].min() >= 1


def test_a_fall_of_99_9_percent_gets_a_large_severity():
    # given: a price that loses 99.9 % in an hour after calm days
    documents = series("terra-luna", [*market(range(CALM_DAYS)), (CALM_DAYS, 0.1)], signal="latest_price")
    # when
    got, expected = raises_at(documents, CALM_DAYS)
    # then: on the log scale a fall to a thousandth is ln(~100/0.1) over a spread of ~1 %: hundreds
    assert_same(got, expected)
    assert got["severity"].min() > 300 and got["level"].min() >= 7


def test_a_ratio_window_reaching_zero_or_below_has_no_severity_and_raises_nothing():
    # given: volume whose window holds zeros and negatives (q1 <= 0), then a huge spike
    values = [(h, float(h % 4 - 1)) for h in range(CALM_DAYS)] + [(CALM_DAYS, 1e6)]
    documents = series("coin", values, signal="volume")
    # when
    got, expected = raises_at(documents, CALM_DAYS, signals=("volume",))
    # then: flagged, but without a log scale its severity is null: level 0, no raise
    assert got.empty and expected == []


def test_several_observations_at_one_timestamp_raise_once_with_the_most_severe():
    # given: three observations at the newest hour: a deep dip, a shallow dip and a normal value
    newest = [doc("coin", CALM_DAYS, latest_price=60.0), doc("coin", CALM_DAYS, latest_price=85.0)]
    newest.append(doc("coin", CALM_DAYS, latest_price=100.0))
    documents = series("coin", market(range(CALM_DAYS)), signal="latest_price") + newest
    # when
    got, expected = raises_at(documents, CALM_DAYS)
    # then: one raise per window, carrying the deepest dip's value
    assert_same(got, expected)
    assert sorted(got["period_days"]) == [1, 2] and set(got["value"]) == {60.0}


def test_escalation_factors_at_most_one_make_every_raise_level_one():
    documents = series("coin", [*market(range(CALM_DAYS)), (CALM_DAYS, 10.0), (CALM_DAYS + 1, 1.0)], "latest_price")
    found = raises_over(documents, range(CALM_DAYS, CALM_DAYS + 2), Rules(factor=1.0))
    assert [r["level"] for r in found] == [1, 1]  # the deeper second step raises nothing: level 1 again


def test_no_level_gives_an_empty_frame_with_the_columns():
    got, expected = raises_at(series("a", market(range(CALM_DAYS)), signal="latest_price"), CALM_DAYS - 1)
    assert got.empty and list(got.columns) == list(RAISE_COLUMNS) and expected == []


# --- random markets against the reference ----------------------------------------------------


def hours_between(since: datetime, as_of: datetime) -> list[datetime]:
    """Every whole hour from ``since`` to ``as_of``, both included (the random histories are hourly)."""
    return [since + timedelta(hours=h) for h in range(int((as_of - since) / timedelta(hours=1)) + 1)]


random_rules = st.builds(
    Rules,
    relative_floor=st.sampled_from([0.0, 0.01, 0.2]),
    min_severity=st.sampled_from([0.5, 3.0]),
    factor=st.sampled_from([0.5, 1.5, 2.0]),
    memory_hours=st.sampled_from([0.0, 3.0, 24.0]),
    lookback_hours=st.sampled_from([1.0, 3.0, 24.0]),
)


@settings(max_examples=examples(250), deadline=None)
@given(
    history=histories(),
    periods=st.sampled_from([(1,), (2,), (1, 2)]),
    k=st.sampled_from([0.0, 0.5, 1.5]),
    min_observations=st.sampled_from([1, 2, 4]),
    rules=random_rules,
)
def test_random_histories_give_the_reference_raises(history, periods, k, min_observations, rules):
    # given: random coins with ties, gaps, junk values, flat stretches and odd values near the as-of hour
    documents, as_of_hour = history
    options = {"periods": periods, "k": k, "min_observations": min_observations, "signals": ("volume", "latest_price")}
    # when
    got, expected = raises_at(documents, as_of_hour, rules, **options)
    # then
    assert_same(got, expected)


@settings(max_examples=examples(100), deadline=None)
@given(history=histories(), periods=st.sampled_from([(1,), (1, 2)]), rules=random_rules)
def test_the_range_engine_finds_what_latest_mode_messages_at_every_hour_find(history, periods, rules):
    # given: random coins, and a period ending at the as-of hour
    documents, as_of_hour = history
    signals = ("volume", "latest_price")
    scale, raise_rules, _ = rules_pair(**vars(rules))
    frame = documents_to_history(documents, signals).frame
    params = ModelParams(signals, periods, 1.5, 4)
    since, as_of = T0 + timedelta(hours=as_of_hour - 12), T0 + timedelta(hours=as_of_hour)
    # when: the backtest's engine over the period, and a latest-mode message at every hour of it
    ranged = range_raises(frame, params, since, as_of, scale, raise_rules)
    stamps = sorted({pd.Timestamp(s).to_pydatetime() for s in frame["timestamp"]} & set(hours_between(since, as_of)))
    latest = []
    for stamp in stamps:
        judged = select_latest(frame, stamp, 0.001)  # only the observations stamped exactly then
        rows = sort_rows(frame, judged, periods)
        results = concat_results(judge_one() for _, judge_one in signal_judges(frame, rows, params))
        latest.append(message_raises(frame, rows, params, results, scale, raise_rules))
    # then: the same raises, numbers and levels
    together = pd.concat([ranged.iloc[:0], *latest], ignore_index=True)
    assert rows_of(ranged) == rows_of(together)


# --- real markets (the repository's CoinGecko daily data) --------------------------------------


def _documents_of(coins: tuple[str, ...], since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The repository's rows of ``coins`` as score documents (a missing cell is an absent field)."""
    from tests.fakes.market import MARKET_SIGNALS, csv_module_rows

    return [
        {"coin_id": row["coin_id"], "timestamp": row["timestamp"]}
        | {signal: row[signal] for signal in MARKET_SIGNALS if not math.isnan(row[signal])}
        for row in csv_module_rows()
        if row["coin_id"] in coins and since <= row["timestamp"] <= until
    ]


def test_lunas_collapse_raises_at_each_deeper_level_as_the_reference_finds_day_by_day():
    # given: LUNA and USDC from the repository's real daily data, March to May 2022 (read with the csv module)
    documents = _documents_of(("terra-luna", "usd-coin"), datetime(2022, 3, 1), datetime(2022, 5, 31))
    days = [(datetime(2022, 5, day) - T0) / timedelta(hours=1) for day in range(6, 17)]
    options = {"periods": (7, 30), "signals": ("latest_price", "market_cap")}
    # when: a latest-mode message runs every day of the collapse (each checked against the reference)
    found = raises_over(documents, days, **options)
    # then: LUNA's price raises once at each level from 2 to 5 as it falls, on four consecutive days, never twice
    price = [r for r in found if r["key"][:2] == ("terra-luna", "latest_price") and r["key"][2] == 30]
    assert [r["level"] for r in price] == [2, 3, 4, 5]
    assert [T0 + timedelta(hours=r["key"][3]) for r in price] == [datetime(2022, 5, d) for d in (10, 11, 12, 13)]
    # and the stablecoin, whose ticks the 1 % floor measures, raises nothing in those weeks
    assert not [r for r in found if r["key"][0] == "usd-coin"]


def test_the_usdc_depeg_raises_its_price_at_level_1_on_the_real_data():
    # given: USDC's real daily prices through March 2023 (0.9656 on the 12th)
    documents = _documents_of(("usd-coin",), datetime(2023, 1, 1), datetime(2023, 3, 31))
    day = (datetime(2023, 3, 12) - T0) / timedelta(hours=1)
    # when
    got, expected = raises_at(documents, day, periods=(7, 30), signals=("latest_price",))
    # then: a dip of 3.4 % against a peg held within ticks: level 1, as the reference says
    assert_same(got, expected)
    assert set(got["direction"]) == {"dip"} and set(got["level"]) == {1}
