"""A plain-Python reference of contract §9 and §10 in latest mode: documents in, alerts out.

Deliberately naive and independent of the code it checks: judged observations
and every window come straight from the documents (``tests/fakes/reference.py``,
one ``np.percentile`` per window), severities, levels and raises from
``tests/fakes/episodes_reference.py`` (one step at a time), and alerts are
grouped, ranked and capped with dicts and ``sorted``. The only things shared
with the implementation are the choices docs/alerts.md writes down (the id's
digest, the lead window's tie rule).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.episodes_reference import DEFAULTS, Rules, reference_raises
from tests.fakes.reference import expected_entry, usable_number


def usable_document(doc: dict[str, Any]) -> bool:
    """A document with a non-empty string coin_id and a date timestamp (contract §2)."""
    return isinstance(doc.get("coin_id"), str) and doc["coin_id"] != "" and isinstance(doc.get("timestamp"), datetime)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reference_latest_raises(
    documents: list[dict[str, Any]],
    *,
    as_of: datetime,
    signals: tuple[str, ...],
    periods: tuple[int, ...],
    k: float,
    min_observations: int,
    rules: Rules = DEFAULTS,
    coin_ids: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """The entries a latest-mode message at ``as_of`` finds raising: each coin's newest observation in
    ``(as_of − lookback, as_of]``, every step of its memory judged from its own window."""
    lookback, memory = timedelta(hours=rules.lookback_hours), timedelta(hours=rules.memory_hours)
    docs = [doc for doc in documents if usable_document(doc)]
    by_coin: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_coin.setdefault(doc["coin_id"], []).append(doc)
    raises = []
    for coin, own in sorted(by_coin.items()):
        if coin_ids is not None and coin not in coin_ids:
            continue
        candidates = [doc for doc in own if as_of - lookback < doc["timestamp"] <= as_of]
        if not candidates:
            continue
        newest = max(doc["timestamp"] for doc in candidates)
        for signal in signals:
            for period in periods:
                entries = []
                for doc in own:
                    value = usable_number(doc.get(signal))
                    if value is not None and newest - memory <= doc["timestamp"] <= newest:
                        entry = expected_entry(docs, coin, doc["timestamp"], value, signal, period, k, min_observations)
                        entries.append(
                            {
                                **entry,
                                "coin_id": coin,
                                "signal": signal,
                                "period_days": period,
                                "timestamp": doc["timestamp"],
                            }
                        )
                raises += [r for r in reference_raises(entries, rules) if r["timestamp"] == newest]
    return raises


def reference_alerts(raises: list[dict[str, Any]], request_id: str | None) -> list[dict[str, Any]]:
    """The alert bodies of contract §10 for these raises, ranked (severity descending, then the keys, dip first)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for entry in raises:
        key = (entry["coin_id"], entry["signal"], entry["timestamp"], entry["direction"])
        groups.setdefault(key, []).append(entry)
    alerts = []
    for (coin, signal, moment, direction), windows in groups.items():
        windows = sorted(windows, key=lambda e: e["period_days"])
        top = max(w["severity"] for w in windows)
        lead = next(w for w in windows if w["severity"] == top)
        timestamp = iso(moment)
        digest = json.dumps([coin, signal, timestamp, direction], ensure_ascii=False, separators=(",", ":"))
        alerts.append(
            {
                "alert_id": hashlib.sha256(digest.encode("utf-8")).hexdigest(),
                "coin_id": coin,
                "signal": signal,
                "timestamp": timestamp,
                "direction": direction,
                "value": lead["value"],
                "severity": top,
                "level": max(w["level"] for w in windows),
                "flat_window": all(w["flat_window"] for w in windows),
                "windows": [
                    {
                        "period_days": w["period_days"],
                        "q1": w["q1"],
                        "q3": w["q3"],
                        "lower": w["lower"],
                        "upper": w["upper"],
                        "n": w["n"],
                        "k": w["k"],
                        "severity": w["severity"],
                        "level": w["level"],
                    }
                    for w in windows
                ],
                "request_id": request_id,
                "_lead_period": lead["period_days"],
            }
        )
    return sorted(alerts, key=lambda a: (-a["severity"], a["coin_id"], a["signal"], a["timestamp"], a["direction"]))


def assert_same_alerts(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Alert bodies equal to the reference's: same keys in the same order, floats to 9 digits."""
    import pytest

    assert [(a["coin_id"], a["signal"], a["timestamp"], a["direction"]) for a in got] == [
        (a["coin_id"], a["signal"], a["timestamp"], a["direction"]) for a in expected
    ]
    for mine, theirs in zip(got, expected, strict=True):
        theirs = {key: value for key, value in theirs.items() if not key.startswith("_")}
        assert list(mine) == list(theirs)
        for key, value in theirs.items():
            if key == "windows":
                assert [list(w) for w in mine[key]] == [list(w) for w in value]
                for window, reference in zip(mine[key], value, strict=True):
                    for name, number in reference.items():
                        assert window[name] == (
                            pytest.approx(number, rel=1e-9) if isinstance(number, float) else number
                        )
            elif isinstance(value, float):
                assert mine[key] == pytest.approx(value, rel=1e-9), key
            else:
                assert mine[key] == value, key
