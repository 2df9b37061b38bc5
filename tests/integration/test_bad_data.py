"""Junk in the scores collection (contract §2): the run succeeds, junk is counted, flags match numpy.

The store is seeded with every kind of junk contract §2 names (absent,
null, NaN, ±inf, booleans, strings and other non-numbers as signal values;
documents without a usable ``coin_id`` or ``timestamp``; duplicate
timestamps; timestamps stored as strings) next to usable values of every
numeric type, then the handler runs in both modes and every written entry is
compared with the independent numpy reference of ``tests/fakes/reference.py``.

What the driver can return is limited by the one query (string ids above
``""``, dates in the window), so junk documents reach the model only when
MongoDB's array matching lets them through (an id or a timestamp stored as
an array) or a read backend returns more than asked; the second is exercised
with a reader that adds junk documents.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import bson
import numpy as np
import pytest
from bson import Binary, Int64, MaxKey, MinKey, ObjectId, Regex
from bson.decimal128 import Decimal128

import handler
from libs.helpers import mongodb_helper
from libs.tools.local.lambda_context import LocalContext
from tests.fakes.reference import expected_entry, usable_number
from tests.fakes.sqs import sqs_event

END = datetime(2024, 11, 1)
SIGNALS = (
    "latest_price",
    "market_cap_score",
    "liquidity_risk_score",
    "volatility_risk_score",
    "volume",
    "market_cap",
    "volatility_index",
)
PERIODS = (3, 7, 30)
K = 1.5
MIN_OBSERVATIONS = 4
ABSENT = object()

#: Signal values contract §2 calls missing: every one must take no part in any statistic.
JUNK_VALUES: list[Any] = [
    ABSENT,
    None,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    "1.5",
    "",
    "NaN",
    "1e300",
    [1.0],
    {"value": 1.0},
    END,
    b"1",
    ObjectId("0123456789ab0123456789ab"),
    Binary(b"\x01"),
    Regex("^1$"),
    MinKey(),
    MaxKey(),
    Decimal128("NaN"),
    Decimal128("-NaN"),
    Decimal128("sNaN"),
    Decimal128("Infinity"),
    Decimal128("-Infinity"),
    Decimal128("1E+6000"),
    Decimal128("-1E+6000"),
]


def _usable_value(rng: np.random.Generator, scale: float) -> Any:
    """A number of one of the types contract §2 accepts: float, int, Int64, Decimal128."""
    value = scale * rng.lognormal(0, 0.2)
    kind = rng.integers(6)
    if kind == 0:
        return int(round(value))
    if kind == 1:
        return Int64(int(round(value)))
    if kind == 2:
        return Decimal128(f"{value:.6f}")
    if kind == 3 and rng.random() < 0.1:
        return Decimal128("1E-6000")  # a number that rounds to 0.0 as a float
    return float(value)


def _signal_values(rng: np.random.Generator) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for position, signal in enumerate(SIGNALS):
        value = (
            JUNK_VALUES[rng.integers(len(JUNK_VALUES))] if rng.random() < 0.3 else _usable_value(rng, 10.0**position)
        )
        if value is not ABSENT:
            values[signal] = value
    return values


def junk_store_documents(seed: int = 5) -> tuple[list[dict[str, Any]], int]:
    """Four coins over 35 days with junk everywhere, and how many documents the query returns unusable.

    Besides junk signal values: documents without ``coin_id`` or with a non-string
    or empty one, without ``timestamp`` or with one stored as a string, a number or
    null, duplicate timestamps (two at the newest instant of a coin), and ids and
    timestamps stored as arrays (which MongoDB's array matching returns).
    """
    rng = np.random.default_rng(seed)
    documents: list[dict[str, Any]] = []
    for coin in range(4):
        coin_id = f"coin-{coin}"
        for step in range(35 * 6):
            stamp = END - timedelta(hours=4 * step)
            documents.append({"coin_id": coin_id, "timestamp": stamp, **_signal_values(rng)})
        # duplicate timestamps: two more observations at the coin's newest instant, one in the middle
        documents.append({"coin_id": coin_id, "timestamp": END, **_signal_values(rng)})
        documents.append({"coin_id": coin_id, "timestamp": END - timedelta(days=2), **_signal_values(rng)})
        for bad_time in (ABSENT, None, (END - timedelta(hours=1)).isoformat() + "Z", 1730419200000, "2024-10-31"):
            doc = {"coin_id": coin_id, **_signal_values(rng)}
            if bad_time is not ABSENT:
                doc["timestamp"] = bad_time
            documents.append(doc)
    for bad_id in (ABSENT, None, "", 42, 4.2, True, {"$ne": None}):
        doc = {"timestamp": END - timedelta(hours=2), **_signal_values(rng)}
        if bad_id is not ABSENT:
            doc["coin_id"] = bad_id
        documents.append(doc)
    returned_unusable = [
        {"coin_id": ["coin-0"], "timestamp": END - timedelta(hours=3), **_signal_values(rng)},
        {"coin_id": "coin-1", "timestamp": [END - timedelta(hours=3)], **_signal_values(rng)},
    ]
    documents.extend(returned_unusable)
    for i, doc in enumerate(documents):
        doc["_id"] = i
    return documents, len(returned_unusable)


def usable(doc: dict[str, Any]) -> bool:
    coin_id = doc.get("coin_id")
    return type(coin_id) is str and coin_id != "" and isinstance(doc.get("timestamp"), datetime)


def expected_judged(documents: list[dict[str, Any]], as_of: datetime, since: datetime | None) -> set[Any]:
    """The _ids contract §3 says are judged, computed straight from the documents."""
    candidates = [d for d in documents if usable(d) and d["timestamp"] <= as_of]
    if since is not None:
        return {d["_id"] for d in candidates if d["timestamp"] >= since}
    recent = [d for d in candidates if d["timestamp"] > as_of - timedelta(hours=24)]
    newest = {}
    for d in recent:
        newest[d["coin_id"]] = max(newest.get(d["coin_id"], d["timestamp"]), d["timestamp"])
    return {d["_id"] for d in recent if d["timestamp"] == newest[d["coin_id"]]}


def assert_written_matches_reference(store, documents: list[dict[str, Any]], judged: set[Any]) -> None:
    written = {doc["_id"]: doc for doc in store.find({"anomalies": {"$exists": True}})}
    assert set(written) == judged
    for doc_id in judged:
        doc = written[doc_id]
        anomalies = doc["anomalies"]
        assert isinstance(anomalies.pop("evaluated_at"), datetime)
        for signal in SIGNALS:
            value = usable_number(doc.get(signal))
            if value is None:
                assert signal not in anomalies, f"{doc_id}: {signal}={doc.get(signal)!r} is missing yet was judged"
                continue
            for period in PERIODS:
                expected = expected_entry(
                    documents, doc["coin_id"], doc["timestamp"], value, signal, period, K, MIN_OBSERVATIONS
                )
                assert anomalies[signal][f"{period}d"] == expected, (doc_id, signal, period)


def assert_valid_bson_without_nan(store) -> None:
    """Every written document encodes as BSON and its flags hold no NaN (null stands for 'none')."""
    for doc in store.find({"anomalies": {"$exists": True}}):
        assert bson.decode(bson.encode(doc["anomalies"])) == doc["anomalies"]
        for signal, periods in doc["anomalies"].items():
            if signal == "evaluated_at":
                continue
            for entry in periods.values():
                assert not any(isinstance(v, float) and math.isnan(v) for v in entry.values()), entry
                assert (entry["is_anomaly"] is None) == (entry["q1"] is None) == (entry["n"] < MIN_OBSERVATIONS)


def summary_line(json_logs) -> dict[str, Any]:
    lines = [line for line in json_logs.lines() if line["message"] == "message processed"]
    assert len(lines) == 1
    return lines[0]


@pytest.fixture
def junk_store(store):
    documents, returned_unusable = junk_store_documents()
    store.insert_many(documents)
    return store, documents, returned_unusable


@pytest.mark.parametrize("since", [None, END - timedelta(days=2)], ids=["latest", "range"])
def test_junk_in_the_store_is_skipped_counted_and_never_judged(junk_store, since, json_logs):
    # given a store where about a third of all signal values and many documents are junk
    store, documents, returned_unusable = junk_store
    body: dict[str, Any] = {"as_of": END.isoformat()}
    if since is not None:
        body["since"] = since.isoformat()

    # when the handler runs the request
    response = handler.handler(sqs_event(body), LocalContext())

    # then the run succeeds and wrote exactly the judged documents, each flag equal to numpy's on the usable values
    assert response == {"batchItemFailures": []}
    judged = expected_judged(documents, END, since)
    assert_written_matches_reference(store, documents, judged)
    assert_valid_bson_without_nan(store)
    # and the summary counts what the query returned: every usable document of the window, plus the
    # junk that array matching lets through, which is skipped and counted (string timestamps never come back)
    history_start = (since or END - timedelta(hours=24)) - timedelta(days=max(PERIODS))
    in_window = sum(1 for d in documents if usable(d) and history_start < d["timestamp"] <= END)
    summary = summary_line(json_logs)
    assert summary["documents_skipped"] == returned_unusable
    assert summary["documents_read"] == in_window + returned_unusable
    assert summary["observations_judged"] == summary["documents_written"] == len(judged)


def test_documents_with_strings_for_timestamps_are_left_untouched(junk_store):
    store, documents, _ = junk_store
    before = {d["_id"]: d for d in store.find({"timestamp": {"$not": {"$type": "date"}}})}

    assert handler.handler(sqs_event({"as_of": END.isoformat()}), LocalContext()) == {"batchItemFailures": []}

    after = {d["_id"]: d for d in store.find({"_id": {"$in": list(before)}})}
    assert after == before and len(before) >= 20


class JunkAddingReader:
    """A read backend that returns what the query matches plus documents it should not have (contract §2: skip and count)."""

    JUNK = [
        {"timestamp": END},
        {"coin_id": None, "timestamp": END},
        {"coin_id": "", "timestamp": END},
        {"coin_id": 42, "timestamp": END},
        {"coin_id": b"coin-0", "timestamp": END},
        {"coin_id": ["coin-0"], "timestamp": END},
        {"coin_id": "coin-0"},
        {"coin_id": "coin-0", "timestamp": None},
        {"coin_id": "coin-0", "timestamp": "2024-11-01T00:00:00Z"},
        {"coin_id": "coin-0", "timestamp": 1730419200000},
        {"coin_id": "coin-0", "timestamp": END.date()},
        {"coin_id": "coin-0", "timestamp": [END]},
        {"coin_id": "coin-0", "timestamp": {"$date": "2024-11-01T00:00:00Z"}},
    ]

    def __init__(self, collection) -> None:
        self._collection = collection

    def find(self, query, projection):
        junk = [{"_id": f"junk-{i}", **doc, "volume": 1e9, "latest_price": 1e9} for i, doc in enumerate(self.JUNK)]
        return list(self._collection.find(query, projection)) + junk


def test_documents_a_backend_returns_without_a_usable_id_or_time_are_skipped_and_counted(
    junk_store, monkeypatch, json_logs
):
    # given a read backend that returns every kind of unusable document besides the real ones
    store, documents, returned_unusable = junk_store
    monkeypatch.setitem(
        mongodb_helper.READERS, "driver", lambda settings: JunkAddingReader(mongodb_helper.get_collection(settings))
    )

    # when the handler runs a range request
    since = END - timedelta(days=1)
    response = handler.handler(sqs_event({"as_of": END.isoformat(), "since": since.isoformat()}), LocalContext())

    # then it succeeds, the summary log line counts every unusable document, and the flags are unaffected by them
    assert response == {"batchItemFailures": []}
    assert summary_line(json_logs)["documents_skipped"] == len(JunkAddingReader.JUNK) + returned_unusable
    assert_written_matches_reference(store, documents, expected_judged(documents, END, since))


# --------------------------------------------------------------------------- magnitudes

FLOAT_MAX = np.finfo(np.float64).max


def extreme_documents() -> list[dict[str, Any]]:
    """Coins whose values live at the ends of float64 and of BSON's number types."""
    rng = np.random.default_rng(23)
    stamps = [END - timedelta(hours=6 * i) for i in range(4 * 10)]
    generators = {
        # 1e300-scale values: fences stay finite
        "huge": lambda: float(1e300 * rng.lognormal(0, 0.3)),
        # both signs near the float64 limit: q3 − q1 and the fences overflow to ±inf
        "edge": lambda: float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0) * FLOAT_MAX),
        # the same sign near the limit: q3 + k·iqr overflows to inf, the lower fence does not
        "top": lambda: float(rng.uniform(0.2, 1.0) * FLOAT_MAX),
        # subnormal values down to the smallest positive double (5e-324)
        "tiny": lambda: float(int(rng.integers(1, 9)) * 5e-324),
        # BSON's widest integers and Decimal128 beyond float64's reach on both ends
        "wide": lambda: [
            Int64(2**63 - 1),
            Int64(-(2**63)),
            Decimal128("9.999E+307"),
            Decimal128("1E-400"),
            int(rng.integers(-(2**62), 2**62)),
        ][int(rng.integers(5))],
    }
    documents = []
    for coin, draw in generators.items():
        for stamp in stamps:
            documents.append(
                {
                    "_id": f"{coin}-{stamp:%d%H}",
                    "coin_id": coin,
                    "timestamp": stamp,
                    "volume": draw(),
                    "market_cap": draw(),
                }
            )
    return documents


def exact_percentile(values: list[float], percent: int) -> float:
    """Linear-interpolation percentile in exact rational arithmetic, rounded once to float64."""
    ordered = sorted(Fraction(v) for v in values)
    virtual = Fraction(len(ordered) - 1) * percent / 100
    below = math.floor(virtual)
    above = min(below + 1, len(ordered) - 1)
    return float(ordered[below] + (ordered[above] - ordered[below]) * (virtual - below))


def test_enormous_and_tiny_magnitudes_give_finite_quartiles_and_float64_fences(store, json_logs):
    # given coins at 1e300, near ±1.8e308, at 5e-324, and at the limits of Int64 and Decimal128
    documents = extreme_documents()
    store.insert_many(documents)
    since = END - timedelta(days=2)
    body = {"as_of": END.isoformat(), "since": since.isoformat(), "signals": ["volume", "market_cap"]}

    # when the handler runs a backfill over them
    with np.errstate(over="ignore", invalid="ignore"):
        response = handler.handler(sqs_event(body), LocalContext())

    # then it succeeds, and every entry is what float64 gives for the exact quartiles
    assert response == {"batchItemFailures": []}
    judged = expected_judged(documents, END, since)
    written = {doc["_id"]: doc for doc in store.find({"anomalies": {"$exists": True}})}
    assert set(written) == judged
    for doc in written.values():
        for signal in ("volume", "market_cap"):
            value = usable_number(doc[signal])
            for period in PERIODS:
                entry = doc["anomalies"][signal][f"{period}d"]
                start = doc["timestamp"] - timedelta(days=period)
                window = [
                    number
                    for d in documents
                    if d["coin_id"] == doc["coin_id"]
                    and start < d["timestamp"] <= doc["timestamp"]
                    and (number := usable_number(d[signal])) is not None
                ]
                assert entry["n"] == len(window) >= MIN_OBSERVATIONS and entry["value"] == value
                # the quartiles of finite values are finite, within one part in 10^12 of the exact ones
                for name, percent in (("q1", 25), ("q3", 75)):
                    assert math.isfinite(entry[name]), (doc["_id"], signal, period, entry)
                    tolerance = max(1e-323, 4e-16 * max(abs(v) for v in window))  # a few units in the last place
                    assert entry[name] == pytest.approx(exact_percentile(window, percent), rel=1e-12, abs=tolerance)
                # the fences are float64 arithmetic on those quartiles, ±inf where it overflows
                with np.errstate(over="ignore"):
                    iqr = np.float64(entry["q3"]) - np.float64(entry["q1"])
                    lower = float(np.float64(entry["q1"]) - K * iqr)
                    upper = float(np.float64(entry["q3"]) + K * iqr)
                assert (entry["lower"], entry["upper"]) == (lower, upper)
                assert entry["is_anomaly"] == (value < lower or value > upper)
    assert_valid_bson_without_nan(store)
    fences = [
        entry[bound]
        for doc in written.values()
        for periods in doc["anomalies"].values()
        if isinstance(periods, dict)
        for entry in periods.values()
        for bound in ("lower", "upper")
    ]
    assert math.inf in fences and -math.inf in fences  # the overflow cases were really reached


@pytest.mark.parametrize("coin", ["huge", "top", "tiny", "wide"])
def test_where_float64_does_not_overflow_extreme_values_match_numpy_exactly(store, coin):
    # given one coin of extreme but non-overflowing magnitudes
    documents = [d for d in extreme_documents() if d["coin_id"] == coin]
    store.insert_many(documents)
    since = END - timedelta(days=2)
    body = {"as_of": END.isoformat(), "since": since.isoformat(), "signals": ["volume", "market_cap"]}

    # when judged
    assert handler.handler(sqs_event(body), LocalContext()) == {"batchItemFailures": []}

    # then every entry equals the numpy reference bit for bit (an upper fence may overflow to inf in both)
    for doc in store.find({"anomalies": {"$exists": True}}):
        for signal in ("volume", "market_cap"):
            for period in PERIODS:
                with np.errstate(over="ignore"):
                    expected = expected_entry(
                        documents,
                        coin,
                        doc["timestamp"],
                        usable_number(doc[signal]),
                        signal,
                        period,
                        K,
                        MIN_OBSERVATIONS,
                    )
                assert doc["anomalies"][signal][f"{period}d"] == expected


HUGE_INTEGERS = {3: 10**400, 4: -(10**400)}


def test_integers_beyond_float64_and_aware_timestamps_from_a_backend(store, monkeypatch):
    # given a backend that returns an integer of 400 digits (BSON cannot hold it, a Data API could) and
    # timestamps with an offset for the same instants
    documents = [
        {"_id": i, "coin_id": "c", "timestamp": END - timedelta(hours=i), "volume": float(i % 7)} for i in range(12)
    ]
    store.insert_many(documents)

    class OddReader:
        def find(self, query, projection):
            found = list(store.find(query, projection))
            for doc in found:
                doc["timestamp"] = (
                    doc["timestamp"].replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=5, minutes=30)))
                )
                doc["volume"] = HUGE_INTEGERS.get(doc["_id"], doc["volume"])
            return found

    monkeypatch.setitem(mongodb_helper.READERS, "driver", lambda settings: OddReader())

    # when a backfill over the last six hours runs
    body = {"as_of": END.isoformat(), "since": (END - timedelta(hours=6)).isoformat(), "signals": ["volume"]}
    assert handler.handler(sqs_event(body), LocalContext()) == {"batchItemFailures": []}

    # then the huge integers are missing (float64 cannot hold them) and the rest is judged in UTC
    seen = [dict(d, volume=HUGE_INTEGERS.get(d["_id"], d["volume"])) for d in documents]
    for doc in store.find({"anomalies": {"$exists": True}}):
        value = usable_number(HUGE_INTEGERS.get(doc["_id"], doc["volume"]))
        if value is None:
            assert "volume" not in doc["anomalies"]
            continue
        for period in PERIODS:
            assert doc["anomalies"]["volume"][f"{period}d"] == expected_entry(
                seen, "c", doc["timestamp"], value, "volume", period, K, MIN_OBSERVATIONS
            )
    assert store.count_documents({"anomalies": {"$exists": True}}) == 7
