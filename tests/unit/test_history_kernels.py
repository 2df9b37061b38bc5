"""The loader's fast paths: junk classification, Decimal128, chunked streaming, ids kept only where judged."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest
from bson import ObjectId
from bson.decimal128 import Decimal128
from bson.int64 import Int64

from libs.models import history
from libs.models.history import decimal128_to_float, documents_to_history
from tests.fakes.reference import usable_number

T0 = datetime(2024, 11, 1)

EVERY_KIND = [
    1.5,
    -0.0,
    0.0,
    1.0,
    7,
    0,
    1,
    Int64(3),
    10**400,
    True,
    False,
    None,
    float("nan"),
    float("inf"),
    float("-inf"),
    "1.5",
    "n/a",
    "",
    {"$numberDouble": "1"},
    [1.0],
    b"\x01",
    T0,
    ObjectId(),
    Decimal128("2.5"),
    Decimal128("NaN"),
    Decimal128("-Infinity"),
    Decimal128("1E+6000"),
    Decimal128("-0.1"),
    np.float64(2.25),
]


def _expected(value):
    number = usable_number(value)
    return math.nan if number is None else number


def test_every_kind_of_value_is_classified_as_the_reference_does():
    # given one document per kind of value, in every position of a chunk
    values = EVERY_KIND * 3
    docs = [
        {"_id": i, "coin_id": "c", "timestamp": T0 + timedelta(seconds=i), "volume": v} for i, v in enumerate(values)
    ]

    frame = documents_to_history(docs, ["volume"]).frame

    expected = np.array([_expected(v) for v in values])
    assert np.array_equal(frame["volume"].to_numpy(), expected, equal_nan=True)


def test_decimal128_converts_exactly_like_float_of_to_decimal():
    rng = random.Random(4)
    cases = [
        "0",
        "-0",
        "0.1",
        "1E-400",
        "4.9406564584124654E-324",
        "1.7976931348623157E+308",
        "1.7976931348623159E+308",
        "9.999999999999999999999999999999999E+6144",
        "-1E-6176",
        "sNaN",
    ]
    cases += [
        f"{'-' if rng.random() < 0.5 else ''}{rng.randint(0, 10 ** rng.randint(1, 34) - 1)}E{rng.randint(-60, 60)}"
        for _ in range(3000)
    ]
    for text in cases:
        value = Decimal128(text)
        try:
            expected = float(value.to_decimal())
        except (ValueError, OverflowError):
            expected = math.nan
        got = decimal128_to_float(value)
        if math.isfinite(expected):
            assert got == expected and math.copysign(1, got) == math.copysign(1, expected), text
        else:
            assert math.isnan(got), text
    assert decimal128_to_float(Decimal128(Decimal("-2.5"))) == -2.5


def test_a_cursor_read_in_small_chunks_gives_the_same_frame_as_a_list(monkeypatch):
    # given documents out of order, with unusable ones and aware timestamps among them
    rng = np.random.default_rng(1)
    docs = [
        {
            "_id": ObjectId(),
            "coin_id": f"c{int(rng.integers(4))}",
            "timestamp": T0 + timedelta(minutes=int(rng.integers(10_000))),
            "volume": float(rng.normal()),
        }
        for _ in range(500)
    ]
    docs[3]["coin_id"] = {"not": "hashable"}
    docs[7]["timestamp"] = "2024-11-01"
    docs[9]["timestamp"] = docs[9]["timestamp"].replace(tzinfo=timezone(timedelta(hours=2)))
    whole = documents_to_history(list(docs), ["volume"])

    # when the same documents come as an iterator, 37 at a time
    monkeypatch.setattr(history, "CHUNK_SIZE", 37)
    streamed = documents_to_history(iter(docs), ["volume"])

    # then the frames are equal, sorted by coin and time, and the junk is counted
    assert streamed.frame.equals(whole.frame) and (streamed.read, streamed.skipped) == (500, 2)
    frame = streamed.frame
    assert list(frame["coin_id"]) == sorted(frame["coin_id"])
    assert all(g["timestamp"].is_monotonic_increasing for _, g in frame.groupby("coin_id"))
    aware = frame[frame["_id"] == docs[9]["_id"]]
    assert aware["timestamp"].iloc[0] == docs[9]["timestamp"].astimezone(UTC).replace(tzinfo=None)


def test_ids_are_kept_only_from_ids_since():
    docs = [{"_id": ObjectId(), "coin_id": "c", "timestamp": T0 - timedelta(hours=h), "volume": 1.0} for h in range(48)]

    frame = documents_to_history(docs, ["volume"], ids_since=T0 - timedelta(hours=24)).frame

    recent = frame["timestamp"] >= T0 - timedelta(hours=24)
    assert frame["_id"][~recent].isna().all()
    assert set(frame["_id"][recent]) == {d["_id"] for d in docs if d["timestamp"] >= T0 - timedelta(hours=24)}


@pytest.mark.parametrize("documents", [[], [{"coin_id": None, "timestamp": T0}]])
def test_nothing_usable_gives_an_empty_frame(documents):
    result = documents_to_history(documents, ["volume"])
    assert result.frame.empty and list(result.frame.columns) == ["_id", "coin_id", "timestamp", "volume"]
    assert result.skipped == len(documents)
