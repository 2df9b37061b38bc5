"""Unit tests of the anomaly model (contract §4) against an independent reference.

The reference below builds every window explicitly with a plain filter over the
frame (same coin, ``t − P days < ts ≤ t``, value not missing) and takes
``np.percentile(window, [25, 75])``. The model claims bit-exact equality with
numpy, so every float is compared with ``==`` (NaN matching NaN), never with a
tolerance.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.models import model
from libs.models.model import (
    RESULT_COLUMNS,
    ModelParams,
    judge,
    judged_mask,
    select_latest,
    select_range,
    window_quartiles,
)
from tests.fakes.examples import examples
from tests.fakes.market import MARKET_SIGNALS, market_slice

T0 = datetime(2024, 3, 1)
DAY = timedelta(days=1)
FLOAT_COLUMNS = ("value", "q1", "q3", "lower", "upper", "k")


# --------------------------------------------------------------------------- helpers


def params(signals=("latest_price",), periods=(3,), deviation_limit=1.5, min_observations=4) -> ModelParams:
    return ModelParams(
        signals=tuple(signals),
        periods_days=tuple(periods),
        deviation_limit=deviation_limit,
        min_observations=min_observations,
    )


def frame_of(observations, signals=("latest_price",), unit="ms") -> pd.DataFrame:
    """A model frame from ``(coin_id, timestamp, value_or_values)`` tuples, in the given order."""
    columns = {
        "coin_id": np.array([coin for coin, _, _ in observations], dtype=object),
        "timestamp": np.array([stamp for _, stamp, _ in observations], dtype=f"datetime64[{unit}]"),
    }
    for position, signal in enumerate(signals):
        columns[signal] = np.array(
            [values if np.ndim(values) == 0 else values[position] for _, _, values in observations],
            dtype=np.float64,
        )
    return pd.DataFrame(columns)


def random_frame(
    rng: np.random.Generator,
    rows: int,
    coins=("btc", "eth", "sol"),
    days=40,
    signals=("latest_price", "volume"),
    missing=0.15,
    unit="ms",
) -> pd.DataFrame:
    """Interleaved coins, hour-grid timestamps (so ties and exact window edges occur), some NaN."""
    hours = rng.integers(0, days * 24, size=rows)
    frame = pd.DataFrame(
        {
            "coin_id": rng.choice(np.array(coins, dtype=object), size=rows),
            "timestamp": (np.datetime64(T0, unit) + hours.astype("timedelta64[h]")).astype(f"datetime64[{unit}]"),
        }
    )
    for signal in signals:
        values = np.round(rng.lognormal(3.0, 0.6, size=rows), 1)  # rounding makes value ties
        values[rng.random(rows) < 0.05] *= 20  # a few outliers
        values[rng.random(rows) < missing] = np.nan
        frame[signal] = values
    return frame


def reference_judge(frame: pd.DataFrame, judged: np.ndarray, p: ModelParams) -> pd.DataFrame:
    """contract §4 by the letter: one explicit window per judged row, signal and period."""
    coins = frame["coin_id"].to_numpy(dtype=object)
    stamps = frame["timestamp"].to_numpy().astype("datetime64[ns]")
    k = p.deviation_limit
    columns = {signal: frame[signal].to_numpy(dtype=np.float64) for signal in p.signals}
    records = []
    for row in np.flatnonzero(judged):
        t = stamps[row]
        for signal in p.signals:
            values = columns[signal]
            value = values[row]
            if np.isnan(value):
                continue
            for period in p.periods_days:
                in_window = (
                    (coins == coins[row])
                    & (stamps > t - np.timedelta64(period, "D"))
                    & (stamps <= t)
                    & ~np.isnan(values)
                )
                window = values[in_window]
                n = len(window)
                if n < p.min_observations:
                    q1 = q3 = lower = upper = np.nan
                    flag = None
                else:
                    q1, q3 = np.percentile(window, [25, 75])
                    iqr = q3 - q1
                    lower = q1 - k * iqr
                    upper = q3 + k * iqr
                    flag = bool(value < lower or value > upper)
                records.append(
                    {
                        "row": int(row),
                        "signal": signal,
                        "period_days": int(period),
                        "value": value,
                        "n": n,
                        "q1": q1,
                        "q3": q3,
                        "lower": lower,
                        "upper": upper,
                        "is_anomaly": flag,
                        "k": k,
                    }
                )
    return pd.DataFrame(records, columns=list(RESULT_COLUMNS))


def _sorted(results: pd.DataFrame) -> pd.DataFrame:
    order = np.lexsort(
        (results["period_days"].to_numpy(), results["signal"].to_numpy(dtype=str), results["row"].to_numpy())
    )
    return results.iloc[order].reset_index(drop=True)


def flags_of(results: pd.DataFrame) -> list:
    return [None if pd.isna(flag) else bool(flag) for flag in results["is_anomaly"]]


def assert_same_results(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Exact equality, row for row, of two result frames (NaN equals NaN, NA equals None)."""
    assert list(actual.columns) == list(RESULT_COLUMNS)
    actual, expected = _sorted(actual), _sorted(expected)
    assert (
        actual[["row", "signal", "period_days"]].values.tolist()
        == expected[["row", "signal", "period_days"]].values.tolist()
    )
    assert actual["n"].astype(np.int64).tolist() == expected["n"].astype(np.int64).tolist()
    for column in FLOAT_COLUMNS:
        np.testing.assert_array_equal(
            actual[column].to_numpy(dtype=np.float64),
            expected[column].to_numpy(dtype=np.float64),
            err_msg=f"column {column}",
        )
    assert flags_of(actual) == flags_of(expected)


def assert_matches_reference(frame: pd.DataFrame, judged: np.ndarray, p: ModelParams) -> pd.DataFrame:
    results = judge(frame, judged, p)
    assert results["is_anomaly"].dtype == "boolean"
    assert_same_results(results, reference_judge(frame, judged, p))
    return results


def everything(frame: pd.DataFrame) -> np.ndarray:
    return np.ones(len(frame), dtype=bool)


def result_for(results: pd.DataFrame, row: int, period: int = 3, signal: str = "latest_price") -> pd.Series:
    hit = results[(results["row"] == row) & (results["period_days"] == period) & (results["signal"] == signal)]
    assert len(hit) == 1
    return hit.iloc[0]


# --------------------------------------------------------------------------- judge vs the reference


def test_random_frame_with_missing_values_matches_numpy_reference():
    # Given three interleaved coins over 40 days, with ties, outliers and missing values
    frame = random_frame(np.random.default_rng(7), rows=600)
    p = params(signals=("latest_price", "volume"), periods=(3, 7, 30))

    # When every row is judged
    results = assert_matches_reference(frame, everything(frame), p)

    # Then (besides matching the reference) the run exercised every kind of outcome
    assert results["is_anomaly"].isna().any()
    assert results["is_anomaly"].fillna(False).any()
    assert (~results["is_anomaly"].fillna(True)).any()
    present = frame[["latest_price", "volume"]].notna().to_numpy().sum()
    assert len(results) == present * 3  # one result per present value and period, none for missing ones


def test_missing_values_take_no_part_and_are_not_judged():
    # Given a coin whose window holds three NaN among its values
    stamps = [T0 + timedelta(hours=h) for h in range(8)]
    values = [1.0, np.nan, 2.0, np.nan, 3.0, 4.0, np.nan, 5.0]
    frame = frame_of([("btc", t, v) for t, v in zip(stamps, values)])

    # When all rows are judged
    results = assert_matches_reference(frame, everything(frame), params())

    # Then the NaN rows have no result and the last window counts only the five numbers
    assert sorted(results["row"]) == [0, 2, 4, 5, 7]
    last = result_for(results, 7)
    assert last["n"] == 5
    assert (last["q1"], last["q3"]) == (2.0, 4.0)


def test_window_edges_exclude_t_minus_period_and_include_t():
    # Given observations exactly P days before t, just after that, at t, and just after t
    t = T0 + 5 * DAY
    ms = timedelta(milliseconds=1)
    frame = frame_of(
        [
            ("btc", t - 3 * DAY, 1000.0),  # exactly t − 3 days: outside the 3-day window
            ("btc", t - 3 * DAY + ms, 1.0),  # one millisecond later: inside
            ("btc", t - DAY, 2.0),
            ("btc", t - ms, 3.0),
            ("btc", t, 4.0),  # the judged row: inside its own window
            ("btc", t + ms, -1000.0),  # later: outside
        ]
    )
    judged = np.array([False, False, False, False, True, False])

    # When the row at t is judged over 3 and 7 days
    results = assert_matches_reference(frame, judged, params(periods=(3, 7)))

    # Then the 3-day window is exactly {1, 2, 3, 4} and the 7-day one adds the edge value only
    three = result_for(results, 4, period=3)
    assert three["n"] == 4
    assert (three["q1"], three["q3"]) == (1.75, 3.25)
    assert not three["is_anomaly"]
    seven = result_for(results, 4, period=7)
    assert seven["n"] == 5
    assert (seven["q1"], seven["q3"]) == (2.0, 4.0)


def test_observations_sharing_a_timestamp_are_all_in_each_others_windows():
    # Given four observations of one coin stamped identically, the outlier read first
    frame = frame_of([("btc", T0, v) for v in (100.0, 1.0, 2.0, 3.0)] + [("btc", T0 - DAY, 2.5)])

    # When all rows are judged
    results = assert_matches_reference(frame, everything(frame), params())

    # Then each tied row sees the whole tie, later rows included (pandas rolling("3D") would give n = 2, 3, 4, 5)
    assert [result_for(results, row)["n"] for row in range(4)] == [5, 5, 5, 5]
    assert result_for(results, 4)["n"] == 1
    assert flags_of(results.sort_values("row")) == [True, False, False, False, None]


def test_pandas_rolling_differs_from_the_model_on_ties():
    # Given a tie: the reason the model does not use pandas' time-based rolling windows
    frame = frame_of([("btc", T0, v) for v in (1.0, 2.0, 3.0, 4.0)])
    rolling_n = frame.set_index("timestamp")["latest_price"].rolling("3D").count().tolist()

    # When the model judges the tie
    results = judge(frame, everything(frame), params())

    # Then pandas counts only the rows up to each one, the model counts all four
    assert rolling_n == [1.0, 2.0, 3.0, 4.0]
    assert _sorted(results)["n"].tolist() == [4, 4, 4, 4]


def test_insufficient_window_has_null_flag_and_nan_fences():
    # Given three observations (five with the missing ones) and min_observations 4
    frame = frame_of([("btc", T0 + timedelta(hours=h), v) for h, v in enumerate([1.0, np.nan, 50.0, np.nan, 2.0])])

    # When the last row is judged
    judged = np.array([False, False, False, False, True])
    results = assert_matches_reference(frame, judged, params(periods=(3, 7)))

    # Then it is insufficient for every period: n = 3, fences NaN, flag NA, value still reported
    assert len(results) == 2
    assert results["n"].tolist() == [3, 3]
    assert results["is_anomaly"].isna().all()
    assert results[["q1", "q3", "lower", "upper"]].isna().all().all()
    assert results["value"].tolist() == [2.0, 2.0]


def test_min_observations_boundary_is_inclusive():
    # Given exactly min_observations values
    frame = frame_of([("btc", T0 + timedelta(hours=h), float(h)) for h in range(4)])

    # When the last row is judged with min_observations 4 and 5
    judged = np.array([False, False, False, True])
    with_four = assert_matches_reference(frame, judged, params(min_observations=4))
    with_five = assert_matches_reference(frame, judged, params(min_observations=5))

    # Then four values suffice for 4, not for 5
    assert flags_of(with_four) == [False]
    assert flags_of(with_five) == [None]


def test_constant_series_flags_any_different_value_and_no_equal_one():
    # Given a constant series, then one equal and one slightly different observation (another coin)
    constant = [("btc", T0 + timedelta(hours=h), 5.0) for h in range(6)]
    different = [("eth", T0 + timedelta(hours=h), 5.0) for h in range(6)] + [
        ("eth", T0 + 6 * timedelta(hours=1), 5.0 + 1e-9)
    ]
    frame = frame_of(constant + different)

    # When every row is judged
    results = assert_matches_reference(frame, everything(frame), params())

    # Then iqr is 0: equal values are normal, the different one is an anomaly
    sufficient = results[results["is_anomaly"].notna()]
    assert (sufficient["q1"] == sufficient["q3"]).all()
    flags = dict(zip(results["row"], flags_of(results)))
    assert [flags[row] for row in range(6)] == [None, None, None, False, False, False]
    assert [flags[row] for row in range(6, 13)] == [None, None, None, False, False, False, True]


def test_value_exactly_on_a_bound_is_normal():
    # Given values 1, 2, 3, 0, 4: row 3 sees {0, 1, 2, 3} (q1 0.75, q3 2.25), row 4 sees {0..4} (q1 1, q3 3)
    frame = frame_of([("btc", T0 + timedelta(hours=h), float(v)) for h, v in enumerate([1, 2, 3, 0, 4])])
    judged = np.array([False, False, False, True, True])

    # When judged with k = 0.5 (row 3 on its lower fence 0, row 4 on its upper fence 4) and with k = 0.49
    on_bound = _sorted(assert_matches_reference(frame, judged, params(deviation_limit=0.5)))
    beyond = _sorted(assert_matches_reference(frame, judged, params(deviation_limit=0.49)))

    # Then a value on a fence is normal, and just beyond it is an anomaly
    assert on_bound.loc[0, "lower"] == 0.0 and on_bound.loc[0, "value"] == 0.0
    assert on_bound.loc[1, "upper"] == 4.0 and on_bound.loc[1, "value"] == 4.0
    assert flags_of(on_bound) == [False, False]
    assert flags_of(beyond) == [True, True]
    assert (on_bound["k"] == 0.5).all()


def test_ties_in_values_match_the_reference():
    # Given values drawn from three levels only
    rng = np.random.default_rng(11)
    frame = random_frame(rng, rows=300, coins=("btc",), days=10)
    frame["latest_price"] = rng.choice([1.0, 2.0, 2.0, 7.0], size=len(frame))

    # When every row is judged, Then the model matches the reference
    results = assert_matches_reference(frame, everything(frame), params(signals=("latest_price",), periods=(1, 3)))
    assert (results["q1"] == results["q3"]).any()  # zero-width fences occurred


@pytest.mark.parametrize("deviation_limit", [0.25, 1.5, 3.0, 10.0])
def test_deviation_limit_override(deviation_limit):
    # Given random data
    frame = random_frame(np.random.default_rng(3), rows=200)

    # When judged with a non-default deviation limit
    p = params(signals=("latest_price", "volume"), periods=(3, 7), deviation_limit=deviation_limit)
    results = assert_matches_reference(frame, everything(frame), p)

    # Then the limit is carried into every result
    assert (results["k"] == deviation_limit).all()


def test_deviation_limit_changes_the_flags():
    # Given one data set judged with a narrow and a wide limit
    frame = random_frame(np.random.default_rng(5), rows=400)
    narrow = judge(frame, everything(frame), params(periods=(7,), deviation_limit=0.1))
    wide = judge(frame, everything(frame), params(periods=(7,), deviation_limit=100.0))

    # Then the narrow one flags strictly more
    assert narrow["is_anomaly"].fillna(False).sum() > wide["is_anomaly"].fillna(False).sum()


def test_several_periods_are_judged_independently():
    # Given daily observations for 10 days
    frame = frame_of([("btc", T0 + d * DAY, float(d % 3)) for d in range(10)])
    judged = np.zeros(len(frame), dtype=bool)
    judged[-1] = True

    # When the last day is judged over 1, 3, 7 and 30 days
    results = assert_matches_reference(frame, judged, params(periods=(1, 3, 7, 30), min_observations=3))

    # Then each period has its own window size (day edges excluded) and sufficiency
    by_period = results.set_index("period_days")
    assert by_period["n"].to_dict() == {1: 1, 3: 3, 7: 7, 30: 10}
    assert by_period["is_anomaly"].isna().to_dict() == {1: True, 3: False, 7: False, 30: False}


def test_unsorted_interleaved_frame_with_foreign_index_reports_positions():
    # Given a random frame shuffled, with an index that is neither sorted nor positional
    rng = np.random.default_rng(17)
    ordered = random_frame(rng, rows=300, coins=("a", "b", "c", "d"))
    permutation = rng.permutation(len(ordered))
    shuffled = ordered.iloc[permutation].copy()
    shuffled.index = rng.permutation(10_000)[: len(shuffled)]
    p = params(signals=("latest_price", "volume"), periods=(3, 7))

    # When both are judged in full
    results = assert_matches_reference(shuffled.reset_index(drop=True), everything(shuffled), p)
    on_foreign_index = judge(shuffled, everything(shuffled), p)

    # Then rows are positions in the given frame and map back to the same results on the ordered frame
    assert_same_results(on_foreign_index, results)
    from_ordered = assert_matches_reference(ordered, everything(ordered), p)
    remapped = results.assign(row=permutation[results["row"].to_numpy()])
    assert_same_results(remapped, from_ordered)


@pytest.mark.parametrize("unit", ["ms", "us", "ns"])
def test_timestamp_resolution_does_not_change_results(unit):
    # Given the same data with timestamps in ms, µs or ns, including edge hits at 1 ms
    rng = np.random.default_rng(23)
    frame = random_frame(rng, rows=250, unit="ms")
    edge = frame.iloc[:20].copy()
    edge["timestamp"] = edge["timestamp"] - np.timedelta64(3, "D")  # exactly P before: excluded
    frame = pd.concat([frame, edge], ignore_index=True)
    frame["timestamp"] = frame["timestamp"].astype(f"datetime64[{unit}]")
    assert str(frame["timestamp"].dtype) == f"datetime64[{unit}]"
    p = params(signals=("latest_price", "volume"), periods=(3, 7, 30))

    # When judged
    results = assert_matches_reference(frame, everything(frame), p)

    # Then the results equal those computed on the millisecond frame
    as_ms = frame.assign(timestamp=frame["timestamp"].astype("datetime64[ms]"))
    assert_same_results(results, reference_judge(as_ms, everything(as_ms), p))


def test_only_masked_rows_are_judged_but_all_rows_form_windows():
    # Given random data and a mask selecting every fifth row
    frame = random_frame(np.random.default_rng(29), rows=400)
    judged = np.zeros(len(frame), dtype=bool)
    judged[::5] = True
    p = params(signals=("latest_price", "volume"), periods=(3, 7))

    # When judged
    results = assert_matches_reference(frame, judged, p)

    # Then only masked rows appear, and their windows still count unjudged rows
    assert set(results["row"]) <= set(np.flatnonzero(judged))
    assert results["n"].max() > judged.sum() / 3


def test_results_and_dtypes_for_a_simple_case():
    # Given a plain series
    frame = frame_of([("btc", T0 + timedelta(hours=h), float(v)) for h, v in enumerate([10, 11, 12, 13, 40])])

    # When the last row is judged
    results = judge(frame, np.array([0, 0, 0, 0, 1], dtype=bool), params())

    # Then the numbers are np.percentile's and the result frame has the documented columns and dtypes
    q1, q3 = np.percentile([10.0, 11.0, 12.0, 13.0, 40.0], [25, 75])
    assert results.to_dict("records") == [
        {
            "row": 4,
            "signal": "latest_price",
            "period_days": 3,
            "value": 40.0,
            "n": 5,
            "q1": q1,
            "q3": q3,
            "lower": q1 - 1.5 * (q3 - q1),
            "upper": q3 + 1.5 * (q3 - q1),
            "is_anomaly": True,
            "k": 1.5,
        }
    ]
    assert results["is_anomaly"].dtype == "boolean"
    assert np.issubdtype(results["row"].dtype, np.integer)
    assert np.issubdtype(results["n"].dtype, np.integer)


def _assert_empty_results(results: pd.DataFrame) -> None:
    assert list(results.columns) == list(RESULT_COLUMNS)
    assert len(results) == 0
    assert results["is_anomaly"].dtype == "boolean"
    assert all(results[column].dtype == np.float64 for column in ("value", "q1", "q3", "lower", "upper", "k"))


def test_empty_frame_gives_empty_results_with_the_right_columns():
    # Given a frame with no rows
    frame = frame_of([], signals=("latest_price", "volume"))

    # When judged
    results = judge(frame, np.zeros(0, dtype=bool), params(signals=("latest_price", "volume")))

    # Then the results are empty with every column
    _assert_empty_results(results)


def test_nothing_judged_gives_empty_results():
    # Given data but a mask that selects nothing, or selects only rows whose value is missing
    frame = frame_of([("btc", T0 + timedelta(hours=h), v) for h, v in enumerate([1.0, 2.0, np.nan])])

    # When judged
    nothing = judge(frame, np.zeros(3, dtype=bool), params())
    only_missing = judge(frame, np.array([False, False, True]), params())

    # Then both are empty result frames
    _assert_empty_results(nothing)
    _assert_empty_results(only_missing)


def test_a_mask_of_the_wrong_length_is_rejected():
    frame = frame_of([("btc", T0, 1.0)])
    with pytest.raises(ValueError):
        judge(frame, np.array([True, True]), params())


# --------------------------------------------------------------------------- property test


@st.composite
def small_cases(draw):
    rows = draw(st.integers(min_value=0, max_value=30))
    coins = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=rows, max_size=rows))
    # 12-hour grid: a 1-day window edge is two steps back, ties are frequent
    steps = draw(st.lists(st.integers(min_value=0, max_value=16), min_size=rows, max_size=rows))
    level = st.sampled_from([0.0, 1.0, 1.0, 2.5, 3.0, 10.0, -4.0, np.nan])
    values = draw(st.lists(st.tuples(level, level), min_size=rows, max_size=rows))
    judged = draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
    periods = draw(st.lists(st.sampled_from([1, 2, 3, 7]), min_size=1, max_size=3, unique=True))
    p = params(
        signals=("latest_price", "volume"),
        periods=periods,
        deviation_limit=draw(st.sampled_from([0.0, 0.5, 1.5, 3.0])),
        min_observations=draw(st.integers(min_value=1, max_value=5)),
    )
    unit = draw(st.sampled_from(["ms", "us", "ns"]))
    observations = [(c, T0 + timedelta(hours=12 * s), v) for c, s, v in zip(coins, steps, values)]
    frame = frame_of(observations, signals=("latest_price", "volume"), unit=unit)
    return frame, np.array(judged, dtype=bool), p


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_cases())
def test_property_model_equals_numpy_reference(case):
    frame, judged, p = case
    assert_matches_reference(frame, judged, p)


# --------------------------------------------------------------------------- window_quartiles


def _reference_quartiles(values, lo, hi):
    pairs = [np.percentile(values[a:b], [25, 75]) for a, b in zip(lo, hi)]
    return np.array([q for q, _ in pairs]), np.array([q for _, q in pairs])


def _random_slices(rng, size, count, max_length):
    lengths = rng.integers(1, max_length + 1, size=count)
    lo = rng.integers(0, size - lengths + 1)
    return lo.astype(np.intp), (lo + lengths).astype(np.intp)


def test_window_quartiles_equal_np_percentile_on_random_slices():
    # Given random values (with ties) and slices of every length, 1 and 2 included
    rng = np.random.default_rng(31)
    values = np.round(rng.normal(size=500), 1)
    lo, hi = _random_slices(rng, len(values), 2000, 60)
    lo = np.concatenate([lo, [0, 10, 499, 3, 3]]).astype(np.intp)
    hi = np.concatenate([hi, [1, 12, 500, 5, 500]]).astype(np.intp)
    assert {1, 2} <= set((hi - lo).tolist())

    # When the quartiles are taken, Then they equal np.percentile to the bit
    q1, q3 = window_quartiles(values, lo, hi)
    expected_q1, expected_q3 = _reference_quartiles(values, lo, hi)
    np.testing.assert_array_equal(q1, expected_q1)
    np.testing.assert_array_equal(q3, expected_q3)


def test_window_quartiles_of_no_slices_are_empty():
    q1, q3 = window_quartiles(np.arange(3.0), np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
    assert q1.shape == q3.shape == (0,)


@pytest.mark.parametrize("max_cells", [1, 7, 64])
def test_window_quartiles_in_small_chunks(monkeypatch, max_cells):
    # Given a cell budget far smaller than the slices (so every chunk is cut)
    monkeypatch.setattr(model, "MAX_WINDOW_CELLS", max_cells)
    rng = np.random.default_rng(37)
    values = rng.choice([1.0, 2.0, 3.5, 8.0], size=300)
    lo, hi = _random_slices(rng, len(values), 400, 120)

    # When the quartiles are taken, Then they equal np.percentile to the bit
    q1, q3 = window_quartiles(values, lo, hi)
    expected_q1, expected_q3 = _reference_quartiles(values, lo, hi)
    np.testing.assert_array_equal(q1, expected_q1)
    np.testing.assert_array_equal(q3, expected_q3)


def test_window_quartiles_beyond_the_default_cell_budget():
    # Given slices whose total cells exceed MAX_WINDOW_CELLS
    rng = np.random.default_rng(41)
    values = rng.normal(size=6000)
    lo, hi = _random_slices(rng, len(values), 1200, 6000)
    hi[:800] = lo[:800] + np.minimum(5000, len(values) - lo[:800])
    assert (hi - lo).sum() > model.MAX_WINDOW_CELLS

    # When the quartiles are taken, Then they equal np.percentile to the bit
    q1, q3 = window_quartiles(values, lo, hi)
    expected_q1, expected_q3 = _reference_quartiles(values, lo, hi)
    np.testing.assert_array_equal(q1, expected_q1)
    np.testing.assert_array_equal(q3, expected_q3)


def test_judge_in_small_chunks_matches_reference(monkeypatch):
    # Given the cell budget shrunk so judge's windows are split into many chunks
    monkeypatch.setattr(model, "MAX_WINDOW_CELLS", 50)
    frame = random_frame(np.random.default_rng(43), rows=400)

    # When judged, Then the results still match the reference
    assert_matches_reference(frame, everything(frame), params(signals=("latest_price", "volume"), periods=(3, 30)))


# --------------------------------------------------------------------------- selecting judged rows


def _selection_frame() -> pd.DataFrame:
    as_of = T0 + 10 * DAY
    return frame_of(
        [
            ("btc", as_of - timedelta(hours=30), 1.0),  # 0: outside a 24 h lookback
            ("btc", as_of - timedelta(hours=5), 1.0),  # 1: btc's newest, tied with 2
            ("eth", as_of + timedelta(hours=1), 1.0),  # 2: after as_of: never judged
            ("btc", as_of - timedelta(hours=5), 1.0),  # 3: btc's newest, tied with 1
            ("btc", as_of - timedelta(hours=6), 1.0),  # 4: older than btc's newest
            ("eth", as_of, 1.0),  # 5: exactly as_of: eth's newest
            ("sol", as_of - timedelta(hours=24), 1.0),  # 6: exactly as_of − lookback: excluded
            ("ada", as_of - timedelta(hours=40), 1.0),  # 7: stale
            ("xrp", as_of - timedelta(hours=24) + timedelta(milliseconds=1), 1.0),  # 8: just inside
        ]
    )


def test_select_latest_judges_each_coins_newest_observation_in_the_lookback():
    # Given observations around as_of
    frame = _selection_frame()
    as_of = T0 + 10 * DAY

    # When the latest rows are selected with a 24 h lookback
    judged = select_latest(frame, as_of, 24)

    # Then each coin's newest in (as_of − 24 h, as_of] is judged, ties all judged, stale coins none
    assert judged.dtype == bool
    assert np.flatnonzero(judged).tolist() == [1, 3, 5, 8]


def test_select_latest_filters_coins_and_widens_with_the_lookback():
    frame = _selection_frame()
    as_of = T0 + 10 * DAY

    assert np.flatnonzero(select_latest(frame, as_of, 24, coin_ids=["btc", "sol", "nope"])).tolist() == [1, 3]
    assert np.flatnonzero(select_latest(frame, as_of, 24, coin_ids=[])).tolist() == []
    assert np.flatnonzero(select_latest(frame, as_of, 48)).tolist() == [1, 3, 5, 6, 7, 8]
    # An earlier as_of makes an earlier observation the newest; the as_of end is inclusive
    assert np.flatnonzero(select_latest(frame, as_of - timedelta(hours=6), 24)).tolist() == [4, 6, 8]


def test_select_latest_on_an_empty_frame():
    frame = frame_of([])
    assert select_latest(frame, T0, 24).tolist() == []


def test_select_range_is_inclusive_at_both_ends():
    # Given observations at, between and just outside since and as_of
    since, as_of = T0, T0 + 2 * DAY
    ms = timedelta(milliseconds=1)
    frame = frame_of(
        [
            ("btc", since - ms, 1.0),
            ("btc", since, 1.0),
            ("eth", T0 + DAY, 1.0),
            ("btc", as_of, 1.0),
            ("eth", as_of + ms, 1.0),
            ("eth", since, 1.0),
        ]
    )

    # When selected in range mode, with and without a coin filter
    judged = select_range(frame, since, as_of)
    only_eth = select_range(frame, since, as_of, coin_ids=["eth"])

    # Then since ≤ t ≤ as_of
    assert np.flatnonzero(judged).tolist() == [1, 2, 3, 5]
    assert np.flatnonzero(only_eth).tolist() == [2, 5]


def test_selection_bounds_hold_for_an_as_of_finer_than_milliseconds():
    # Given millisecond timestamps around an as_of carrying microseconds (the processing time)
    as_of = T0 + timedelta(microseconds=500)
    ms = timedelta(milliseconds=1)
    frame = frame_of(
        [
            ("btc", T0, 1.0),
            ("btc", T0 + ms, 1.0),  # ≤ as_of, > as_of
            ("eth", T0 - timedelta(hours=24), 1.0),
            ("eth", T0 - timedelta(hours=24) + ms, 1.0),
        ]
    )

    # When selected, Then nothing is rounded across a bound
    assert np.flatnonzero(select_latest(frame, as_of, 24)).tolist() == [0, 3]
    assert np.flatnonzero(select_range(frame, as_of - timedelta(hours=24), as_of)).tolist() == [0, 3]


def test_judged_mask_dispatches_on_since():
    frame = _selection_frame()
    as_of = T0 + 10 * DAY
    latest = judged_mask(frame, as_of=as_of, since=None, lookback_hours=24, coin_ids=None)
    ranged = judged_mask(frame, as_of=as_of, since=as_of - timedelta(hours=30), lookback_hours=24, coin_ids=None)
    assert np.flatnonzero(latest).tolist() == [1, 3, 5, 8]
    assert np.flatnonzero(ranged).tolist() == [0, 1, 3, 4, 5, 6, 8]


def test_same_flags_whichever_mode_judged_the_observation():
    # Given random data, every row judged in range mode
    rng = np.random.default_rng(47)
    frame = random_frame(rng, rows=300, days=20)
    p = params(signals=("latest_price", "volume"), periods=(3, 7))
    since, as_of = T0, T0 + 20 * DAY
    in_range = judge(frame, judged_mask(frame, as_of=as_of, since=since, lookback_hours=24, coin_ids=None), p)
    assert_same_results(in_range, reference_judge(frame, everything(frame), p))

    # When sampled observations are judged in latest mode with as_of = their timestamp
    for row in rng.choice(len(frame), size=25, replace=False):
        coin, stamp = frame.at[row, "coin_id"], frame.at[row, "timestamp"].to_pydatetime()
        latest_mask = judged_mask(frame, as_of=stamp, since=None, lookback_hours=24, coin_ids=[coin])
        latest = judge(frame, latest_mask, p)

        # Then latest mode judged exactly that coin's rows at that timestamp, with range mode's results
        same_stamp = np.flatnonzero((frame["coin_id"] == coin).to_numpy() & (frame["timestamp"] == stamp).to_numpy())
        assert np.flatnonzero(latest_mask).tolist() == same_stamp.tolist()
        assert_same_results(latest, in_range[in_range["row"].isin(same_stamp)])


# --------------------------------------------------------------------------- real data


def test_real_hourly_candles_match_the_reference(real_candles):
    # Given real hourly candles (REAL_CANDLES_CSV, e.g. 1,000 of SOL/USDT) mapped onto three signals
    candles = real_candles
    frame = pd.DataFrame(
        {
            "coin_id": "solana",
            "timestamp": candles["timestamp"].astype("datetime64[ms]"),
            "latest_price": candles["Close"].astype(np.float64),
            "volume": candles["Volume"].astype(np.float64),
            "volatility_index": (candles["High"] - candles["Low"]) / candles["Close"] * 100,
        }
    )
    as_of = frame["timestamp"].max().to_pydatetime()
    since = as_of - timedelta(days=10)
    p = params(signals=("latest_price", "volume", "volatility_index"), periods=(3, 7, 30))

    # When the last ten days are judged in range mode
    judged = judged_mask(frame, as_of=as_of, since=since, lookback_hours=24, coin_ids=["solana"])
    results = assert_matches_reference(frame, judged, p)

    # Then every judged hour has full windows (P·24 hourly candles, t − P excluded) and some are flagged
    assert judged.sum() == 10 * 24 + 1
    assert results.groupby("period_days")["n"].unique().map(list).to_dict() == {3: [72], 7: [168], 30: [720]}
    assert results["is_anomaly"].notna().all()
    assert results["is_anomaly"].sum() > 0
    assert frame["latest_price"].duplicated().any()  # real prices tie


def test_real_daily_market_history_of_2022_matches_the_reference():
    # Given a year of real daily history (data/, CoinGecko) for bitcoin and terra-luna, and the month before it
    frame = market_slice(("bitcoin", "terra-luna"), datetime(2021, 12, 1), datetime(2022, 12, 31))
    p = params(signals=MARKET_SIGNALS, periods=(3, 7, 30))

    # When every observation of 2022 is judged in range mode
    judged = judged_mask(
        frame, as_of=datetime(2022, 12, 31), since=datetime(2022, 1, 1), lookback_hours=24, coin_ids=None
    )
    results = assert_matches_reference(frame, judged, p)

    # Then both coins' 365 days are judged; with one value a day a 3-day window holds 3 (< 4: insufficient)
    # and the 7- and 30-day windows judge with 7 and 30 values wherever the signal is never missing
    assert judged.sum() == 2 * 365
    by_period = results.groupby("period_days")
    assert by_period["is_anomaly"].apply(lambda flags: flags.isna().all()).to_dict() == {3: True, 7: False, 30: False}
    complete = results[results["signal"] != "market_cap"]
    assert complete.groupby("period_days")["n"].unique().map(list).to_dict() == {3: [3], 7: [7], 30: [30]}
    # and terra-luna's missing market caps (2022-06-12 to 2022-09-06, empty in the file) are not judged
    coins = frame["coin_id"].to_numpy()[results["row"]]
    stamps = frame["timestamp"].to_numpy()[results["row"]]
    signals, periods = results["signal"].to_numpy(), results["period_days"].to_numpy()
    luna_30d = (coins == "terra-luna") & (periods == 30)
    cap_days = stamps[luna_30d & (signals == "market_cap")]
    assert len(cap_days) == 365 - 87
    assert not ((cap_days >= np.datetime64("2022-06-12")) & (cap_days <= np.datetime64("2022-09-06"))).any()
    # and the 30-day window flags LUNA's price as a dip on every day of its collapse (2022-05-08 to 05-14)
    collapse = (stamps >= np.datetime64("2022-05-08")) & (stamps <= np.datetime64("2022-05-14"))
    luna = results[luna_30d & collapse & (signals == "latest_price")]
    assert len(luna) == 7 and luna["is_anomaly"].all() and (luna["value"] < luna["lower"]).all()


# --------------------------------------------------------------------------- one signal at a time


def test_judging_signal_by_signal_over_shared_sorted_rows_matches_the_reference():
    # Given an unsorted frame and rows sorted once for all signals (what the processor does)
    from libs.models.model import judge_signal, sort_rows

    frame = random_frame(np.random.default_rng(23), rows=400)
    judged = np.random.default_rng(24).random(len(frame)) < 0.4
    p = params(signals=("latest_price", "volume"), periods=(3, 7))
    rows = sort_rows(frame, judged, p.periods_days)

    # When each signal is judged on its own
    blocks = [judge_signal(frame, rows, signal, p) for signal in p.signals]

    # Then together they are exactly the numpy reference, and nothing judged means no sorted rows
    assert rows is not None and not rows.presorted
    assert_same_results(pd.concat(blocks, ignore_index=True), reference_judge(frame, judged, p))
    assert sort_rows(frame, np.zeros(len(frame), dtype=bool), p.periods_days) is None
