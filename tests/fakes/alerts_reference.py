"""A plain-Python reference of contract §9 and §10 in latest mode: documents in, alerts out.

Deliberately naive and independent of the code it checks: judged observations
and their windows come straight from the documents (``tests/fakes/reference.py``),
directions and severities from ``tests/fakes/episodes_reference.py``, the
previous step is found by scanning the coin's documents, and alerts are
grouped, ranked and capped with dicts and ``sorted``. The only things shared
with the implementation are the choices docs/alerts.md writes down (the id's
digest, the lead window's tie rule).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.episodes_reference import direction_of, is_flat, severity_of
from tests.fakes.reference import expected_entry, usable_number


def _usable(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("coin_id"), str) and doc["coin_id"] != "" and isinstance(doc.get("timestamp"), datetime)


def _beyond(entry: dict[str, Any]) -> float:
    if direction_of(entry) == "spike":
        return entry["value"] - entry["upper"]
    return entry["lower"] - entry["value"]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def reference_starts(
    documents: list[dict[str, Any]],
    *,
    as_of: datetime,
    lookback_hours: int,
    signals: tuple[str, ...],
    periods: tuple[int, ...],
    k: float,
    min_observations: int,
    coin_ids: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """Every judged entry that starts an episode: dicts with the entry's numbers, its keys and its class."""
    lookback = timedelta(hours=lookback_hours)
    docs = [doc for doc in documents if _usable(doc)]
    by_coin: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_coin.setdefault(doc["coin_id"], []).append(doc)
    starts = []
    for coin, own in sorted(by_coin.items()):
        if coin_ids is not None and coin not in coin_ids:
            continue
        candidates = [doc for doc in own if as_of - lookback < doc["timestamp"] <= as_of]
        if not candidates:
            continue
        newest = max(doc["timestamp"] for doc in candidates)
        for doc in (d for d in candidates if d["timestamp"] == newest):
            for signal in signals:
                value = usable_number(doc.get(signal))
                if value is None:
                    continue
                for period in periods:
                    entry = expected_entry(docs, coin, newest, value, signal, period, k, min_observations)
                    direction = direction_of(entry)
                    if direction is None:
                        continue
                    if _starts(docs, own, coin, newest, signal, period, direction, lookback, k, min_observations):
                        starts.append(
                            {
                                **entry,
                                "coin_id": coin,
                                "signal": signal,
                                "period_days": period,
                                "timestamp": newest,
                                "direction": direction,
                                "severity": severity_of(entry),
                                "flat_window": is_flat(entry),
                            }
                        )
    return starts


def _starts(docs, own, coin, moment, signal, period, direction, lookback, k, min_observations) -> bool:
    earlier = [d["timestamp"] for d in own if d["timestamp"] < moment and usable_number(d.get(signal)) is not None]
    if not earlier:
        return True
    previous = max(earlier)
    if moment - previous > lookback:
        return True
    for doc in own:
        value = usable_number(doc.get(signal))
        if doc["timestamp"] == previous and value is not None:
            entry = expected_entry(docs, coin, previous, value, signal, period, k, min_observations)
            if direction_of(entry) == direction:
                return False
    return True


def reference_alerts(starts: list[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    """The alert bodies of contract §10 for these starts, unfiltered, sorted by their keys."""
    groups: dict[tuple, dict[int, list[dict[str, Any]]]] = {}
    for start in starts:
        key = (start["coin_id"], start["signal"], start["timestamp"], start["direction"])
        groups.setdefault(key, {}).setdefault(start["period_days"], []).append(start)
    alerts = []
    for (coin, signal, moment, direction), by_period in sorted(groups.items()):
        chosen = []
        for period in sorted(by_period):
            entries = by_period[period]
            finite = [e for e in entries if e["severity"] is not None]
            pool = finite if finite else entries
            best = max(pool, key=lambda e: (e["severity"] if finite else 0.0, _beyond(e)))
            chosen.append(best)
        severities = [e["severity"] for e in chosen if e["severity"] is not None]
        if severities:
            lead = next(e for e in chosen if e["severity"] == max(severities))
        else:
            lead = next(e for e in chosen if _beyond(e) == max(_beyond(c) for c in chosen))
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
                "severity": max(severities) if severities else None,
                "flat_window": not severities,
                "windows": [
                    {
                        "period_days": e["period_days"],
                        "q1": e["q1"],
                        "q3": e["q3"],
                        "lower": e["lower"],
                        "upper": e["upper"],
                        "n": e["n"],
                        "k": e["k"],
                        "severity": e["severity"],
                    }
                    for e in chosen
                ],
                "request_id": request_id,
                "_lead_period": lead["period_days"],
            }
        )
    return alerts


def reference_selection(
    alerts: list[dict[str, Any]], min_severity: float, max_per_message: int
) -> tuple[list[dict[str, Any]], int, int]:
    """(published in order, below the threshold, withheld by the cap) as contract §10 says."""
    passing = [
        a
        for a in alerts
        if any(w["severity"] is None for w in a["windows"])
        or (a["severity"] is not None and a["severity"] >= min_severity)
    ]
    ranked = sorted(
        passing,
        key=lambda a: (
            a["flat_window"],
            -(a["severity"] or 0.0),
            a["coin_id"],
            a["signal"],
            a["timestamp"],
            a["direction"],
        ),
    )
    return ranked[:max_per_message], len(alerts) - len(passing), len(passing) - len(ranked[:max_per_message])
