"""Unit tests of the document -> history frame conversion (contract §2).

Expected values are written down independently: each generated signal value
carries the float it must become (or NaN when contract §2 calls it missing),
and the expected frame order comes from Python's stable ``sorted``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId

from libs.models.history import History, as_number, documents_to_history

SIGNALS = (
    "latest_price",
    "market_cap_score",
    "liquidity_risk_score",
    "volatility_risk_score",
    "volume",
    "market_cap",
    "volatility_index",
)
T0 = datetime(2024, 5, 1, 12, 0, 0)
ABSENT = object()  # marks a field left out of the document
NAN = math.nan

#: (label, stored value, what it must become). NaN means missing.
VALUE_KINDS = [
    ("absent", ABSENT, NAN),
    ("None", None, NAN),
    ("NaN", math.nan, NAN),
    ("+inf", math.inf, NAN),
    ("-inf", -math.inf, NAN),
    ("True", True, NAN),
    ("False", False, NAN),
    ("numeric string", "1.5", NAN),
    ("empty string", "", NAN),
    ("dict", {"$numberDouble": "1.5"}, NAN),
    ("list", [1.0], NAN),
    ("datetime", T0, NAN),
    ("bytes", b"1", NAN),
    ("Decimal128 NaN", Decimal128("NaN"), NAN),
    ("Decimal128 sNaN", Decimal128("sNaN"), NAN),
    ("Decimal128 Infinity", Decimal128("Infinity"), NAN),
    ("Decimal128 -Infinity", Decimal128("-Infinity"), NAN),
    ("Decimal128 beyond float", Decimal128("1E+6000"), NAN),
    ("int 10**400", 10**400, NAN),
    ("int -10**400", -(10**400), NAN),
    ("float", 2.5, 2.5),
    ("negative float", -0.125, -0.125),
    ("float zero", 0.0, 0.0),
    ("int", 3, 3.0),
    ("int zero", 0, 0.0),
    ("large int", 2**60 + 1, float(2**60)),
    ("Int64", Int64(-7), -7.0),
    ("Decimal128", Decimal128("1.25"), 1.25),
    ("Decimal128 long", Decimal128("123456.789"), 123456.789),
    ("Decimal128 tiny", Decimal128("1E-300"), 1e-300),
]


def _same(actual: float, expected: float) -> bool:
    return (math.isnan(actual) and math.isnan(expected)) or actual == expected


def document(coin_id=ABSENT, timestamp=ABSENT, **signals) -> dict:
    doc = {"_id": ObjectId()}
    if coin_id is not ABSENT:
        doc["coin_id"] = coin_id
    if timestamp is not ABSENT:
        doc["timestamp"] = timestamp
    doc.update({name: value for name, value in signals.items() if value is not ABSENT})
    return doc


# --------------------------------------------------------------------------- junk classification


@pytest.mark.parametrize("label, stored, expected", VALUE_KINDS, ids=[kind[0] for kind in VALUE_KINDS])
def test_each_kind_of_value_is_classified_as_the_contract_says(label, stored, expected):
    # Given one document whose signal holds this kind of value
    doc = document("btc", T0, latest_price=stored, volume=1.0)

    # When converted
    history = documents_to_history([doc], ["latest_price", "volume"])

    # Then numbers become their float and everything else NaN (missing), in the frame and in as_number
    value = history.frame.loc[0, "latest_price"]
    assert _same(value, expected), f"{label}: {value!r} != {expected!r}"
    assert history.frame.loc[0, "volume"] == 1.0
    if stored is not ABSENT:
        assert _same(as_number(stored), expected)


def test_random_documents_with_every_kind_of_value_become_the_expected_frame():
    # Given 600 documents, 5 coins, tied timestamps, each signal drawn from every kind of value
    rng = np.random.default_rng(53)
    docs, expected_rows = [], []
    for position in range(600):
        coin = f"coin-{int(rng.integers(5))}"
        stamp = T0 + timedelta(minutes=30 * int(rng.integers(40)))
        values, expected = {}, {}
        for signal in SIGNALS:
            if rng.random() < 0.5:
                number = float(np.round(rng.normal(100, 30), 3))
                stored, want = [(number, number), (Decimal128(repr(number)), number)][int(rng.integers(2))]
            else:
                _, stored, want = VALUE_KINDS[int(rng.integers(len(VALUE_KINDS)))]
            values[signal] = stored
            expected[signal] = want
        doc = document(coin, stamp, **values)
        docs.append(doc)
        expected_rows.append({"_id": doc["_id"], "coin_id": coin, "timestamp": stamp, **expected, "read": position})

    # When converted
    history = documents_to_history(iter(docs), SIGNALS)

    # Then the frame is every document, sorted by coin then timestamp (ties in read order), values classified
    expected_rows.sort(key=lambda row: (row["coin_id"], row["timestamp"]))  # stable: ties keep read order
    frame = history.frame
    assert (history.read, history.skipped) == (600, 0)
    assert list(frame.columns) == ["_id", "coin_id", "timestamp", *SIGNALS]
    assert frame["_id"].tolist() == [row["_id"] for row in expected_rows]
    assert frame["coin_id"].tolist() == [row["coin_id"] for row in expected_rows]
    assert frame["timestamp"].tolist() == [pd.Timestamp(row["timestamp"]) for row in expected_rows]
    for signal in SIGNALS:
        np.testing.assert_array_equal(
            frame[signal].to_numpy(),
            np.array([row[signal] for row in expected_rows], dtype=np.float64),
            err_msg=signal,
        )
    assert frame[list(SIGNALS)].isna().to_numpy().any() and frame[list(SIGNALS)].notna().to_numpy().any()


# --------------------------------------------------------------------------- skipped documents


UNUSABLE = [
    ("coin_id missing", dict(timestamp=T0)),
    ("coin_id None", dict(coin_id=None, timestamp=T0)),
    ("coin_id empty", dict(coin_id="", timestamp=T0)),
    ("coin_id int", dict(coin_id=42, timestamp=T0)),
    ("coin_id list", dict(coin_id=["btc"], timestamp=T0)),
    ("timestamp missing", dict(coin_id="btc")),
    ("timestamp None", dict(coin_id="btc", timestamp=None)),
    ("timestamp empty", dict(coin_id="btc", timestamp="")),
    ("timestamp int", dict(coin_id="btc", timestamp=42)),
    ("timestamp string", dict(coin_id="btc", timestamp="2024-05-01T12:00:00Z")),
    ("both missing", dict()),
]


@pytest.mark.parametrize("label, fields", UNUSABLE, ids=[case[0] for case in UNUSABLE])
def test_a_document_without_usable_coin_id_or_timestamp_is_skipped(label, fields):
    # Given one unusable document between two usable ones
    docs = [
        document("btc", T0, latest_price=1.0),
        document(**fields, latest_price=2.0),
        document("eth", T0, latest_price=3.0),
    ]

    # When converted
    history = documents_to_history(docs, ["latest_price"])

    # Then it is counted as read and skipped, and left out of the frame
    assert (history.read, history.skipped) == (3, 1)
    assert history.frame["latest_price"].tolist() == [1.0, 3.0]
    assert history.frame["_id"].tolist() == [docs[0]["_id"], docs[2]["_id"]]


def test_skipped_counts_with_many_unusable_documents():
    # Given usable documents mixed with every kind of unusable one, twice over
    usable = [document(f"c{i % 3}", T0 + timedelta(hours=i), volume=float(i)) for i in range(10)]
    unusable = [document(**fields, volume=99.0) for _, fields in UNUSABLE] * 2
    docs = usable[:5] + unusable + usable[5:]

    # When converted
    history = documents_to_history(docs, ["volume"])

    # Then everything was read, exactly the unusable ones skipped
    assert isinstance(history, History)
    assert (history.read, history.skipped) == (len(docs), len(unusable))
    assert sorted(history.frame["volume"].tolist()) == [float(i) for i in range(10)]


def test_only_unusable_documents_give_an_empty_frame_and_counts():
    docs = [document(**fields) for _, fields in UNUSABLE]
    history = documents_to_history(docs, ["volume", "market_cap"])
    assert (history.read, history.skipped) == (len(docs), len(docs))
    assert len(history.frame) == 0
    assert list(history.frame.columns) == ["_id", "coin_id", "timestamp", "volume", "market_cap"]


# --------------------------------------------------------------------------- timestamps and order


def test_tz_aware_timestamps_become_naive_utc_and_sort_by_utc_time():
    # Given one naive (UTC) timestamp and aware ones in other zones
    plus_two = timezone(timedelta(hours=2))
    minus_five = timezone(timedelta(hours=-5))
    docs = [
        document("btc", datetime(2024, 5, 1, 12, 0, tzinfo=plus_two), volume=1.0),  # 10:00 UTC
        document("btc", datetime(2024, 5, 1, 11, 0), volume=2.0),  # 11:00 UTC
        document("btc", datetime(2024, 5, 1, 4, 30, tzinfo=minus_five), volume=3.0),  # 09:30 UTC
        document("btc", datetime(2024, 5, 1, 11, 0, tzinfo=UTC), volume=4.0),  # ties with the naive one
    ]

    # When converted
    frame = documents_to_history(docs, ["volume"]).frame

    # Then the timestamps are naive UTC, ordered by instant, the tie kept in read order
    assert frame["timestamp"].dt.tz is None
    assert frame["timestamp"].tolist() == [
        pd.Timestamp("2024-05-01 09:30"),
        pd.Timestamp("2024-05-01 10:00"),
        pd.Timestamp("2024-05-01 11:00"),
        pd.Timestamp("2024-05-01 11:00"),
    ]
    assert frame["volume"].tolist() == [3.0, 1.0, 2.0, 4.0]


def test_all_aware_timestamps_are_converted():
    tokyo = timezone(timedelta(hours=9))
    docs = [document("btc", datetime(2024, 5, 2, 1, 0, 0, 123000, tzinfo=tokyo), volume=1.0)]
    frame = documents_to_history(docs, ["volume"]).frame
    assert frame["timestamp"].tolist() == [pd.Timestamp("2024-05-01 16:00:00.123")]


def test_output_is_sorted_by_coin_then_timestamp_with_ties_in_read_order():
    # Given documents read out of order, with equal timestamps within a coin
    docs = [
        document("eth", T0 + timedelta(hours=1), volume=1.0),
        document("btc", T0 + timedelta(hours=2), volume=2.0),
        document("eth", T0, volume=3.0),
        document("btc", T0 + timedelta(hours=2), volume=4.0),
        document("ada", T0 + timedelta(hours=5), volume=5.0),
        document("btc", T0, volume=6.0),
        document("btc", T0 + timedelta(hours=2), volume=7.0),
        document("eth", T0 + timedelta(hours=1), volume=8.0),
    ]

    # When converted
    frame = documents_to_history(docs, ["volume"]).frame

    # Then coin, then time, ties in the order read
    assert frame["coin_id"].tolist() == ["ada", "btc", "btc", "btc", "btc", "eth", "eth", "eth"]
    assert frame["volume"].tolist() == [5.0, 6.0, 2.0, 4.0, 7.0, 3.0, 1.0, 8.0]
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.tolist() == list(range(8))


def test_column_dtypes():
    # Given documents whose signal values are ints, Decimal128 and junk only
    docs = [
        document("btc", T0, latest_price=1, volume=Decimal128("2.5"), market_cap="x"),
        document("btc", T0 + timedelta(seconds=1), latest_price=Int64(2), volume=None),
    ]

    # When converted
    frame = documents_to_history(docs, ["latest_price", "volume", "market_cap"]).frame

    # Then timestamps are datetime64[ms] and every signal float64
    assert str(frame["timestamp"].dtype) == "datetime64[ms]"
    assert all(frame[signal].dtype == np.float64 for signal in ("latest_price", "volume", "market_cap"))
    assert frame["latest_price"].tolist() == [1.0, 2.0]
    assert frame["market_cap"].isna().all()


def test_documents_without_id_get_none():
    doc = {"coin_id": "btc", "timestamp": T0, "volume": 1.0}
    frame = documents_to_history([doc], ["volume"]).frame
    assert frame["_id"].tolist() == [None]


@pytest.mark.parametrize("documents", [[], iter([])], ids=["list", "iterator"])
def test_empty_input(documents):
    # Given no documents
    # When converted
    history = documents_to_history(documents, ["latest_price", "volume"])

    # Then the frame is empty with the right columns and dtypes, and nothing was read or skipped
    assert (history.read, history.skipped) == (0, 0)
    frame = history.frame
    assert len(frame) == 0
    assert list(frame.columns) == ["_id", "coin_id", "timestamp", "latest_price", "volume"]
    assert str(frame["timestamp"].dtype) == "datetime64[ms]"
    assert frame["latest_price"].dtype == np.float64 and frame["volume"].dtype == np.float64


def test_only_requested_signals_become_columns():
    doc = document("btc", T0, latest_price=1.0, volume=2.0, market_cap=3.0)
    frame = documents_to_history([doc], ["volume"]).frame
    assert list(frame.columns) == ["_id", "coin_id", "timestamp", "volume"]
    assert frame["volume"].tolist() == [2.0]
