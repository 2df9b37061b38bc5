"""A plain-Python reference of the backtest (contract §12): documents and alert bodies in, its numbers out.

Deliberately naive and independent of :mod:`libs.tools.backtest`: the alerts
are what latest-mode messages at every observation's time publish according to
the reference of ``tests/fakes/alerts_reference.py`` (one message, one window,
one step at a time), each kept once; the summary's counts are dicts,
``Counter`` and ``sorted`` over those bodies and the observations.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.alerts_reference import iso, reference_alerts, reference_latest_raises, usable_document
from tests.fakes.episodes_reference import DEFAULTS, Rules


def reference_backtest_alerts(
    documents: list[dict[str, Any]],
    *,
    since: datetime,
    as_of: datetime,
    signals: tuple[str, ...],
    periods: tuple[int, ...],
    k: float,
    min_observations: int,
    rules: Rules = DEFAULTS,
    coin_ids: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """The alert bodies a latest-mode message at the time of every observation in ``[since, as_of]`` publishes,
    each once, those stamped in the period, sorted by timestamp, coin_id, signal, direction."""
    moments = sorted(
        {
            doc["timestamp"]
            for doc in documents
            if usable_document(doc)
            and since <= doc["timestamp"] <= as_of
            and (coin_ids is None or doc["coin_id"] in coin_ids)
        }
    )
    first = iso(since)
    found: dict[str, dict[str, Any]] = {}
    for moment in moments:
        raises = reference_latest_raises(
            documents,
            as_of=moment,
            signals=signals,
            periods=periods,
            k=k,
            min_observations=min_observations,
            rules=rules,
            coin_ids=coin_ids,
        )
        for alert in reference_alerts(raises, None):
            if alert["timestamp"] >= first:  # a coin's newest observation may lie before the period
                found[alert["alert_id"]] = {key: value for key, value in alert.items() if not key.startswith("_")}
    return sorted(found.values(), key=lambda a: (a["timestamp"], a["coin_id"], a["signal"], a["direction"]))


def reference_period_counts(rows: list[tuple[str, datetime]], since: datetime, as_of: datetime) -> dict[str, Any]:
    """coins, coin_days and observations of ``(coin_id, timestamp)`` rows, those stamped in ``[since, as_of]``."""
    inside = [(coin, moment) for coin, moment in rows if since <= moment <= as_of]
    by_coin: dict[str, list[datetime]] = {}
    for coin, moment in inside:
        by_coin.setdefault(coin, []).append(moment)
    coin_days = sum((max(times) - min(times)) / timedelta(days=1) for times in by_coin.values())
    return {"coins": len(by_coin), "coin_days": coin_days, "observations": len(inside)}


def reference_busiest_days(bodies: list[dict[str, Any]], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` days (UTC, from the ISO timestamps) with most alerts, most first, then by date."""
    per_day = Counter(body["timestamp"][:10] for body in bodies)
    ranked = sorted(per_day.items(), key=lambda item: (-item[1], item[0]))
    return [{"date": day, "alerts": count} for day, count in ranked[:top]]


def reference_counts(bodies: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """by_signal and by_level of the summary: non-zero counts only, level keys as strings."""
    signals = Counter(body["signal"] for body in bodies)
    levels = Counter(str(body["level"]) for body in bodies)
    return {"by_signal": dict(signals), "by_level": dict(levels)}


def parse_iso(text: str) -> datetime:
    """``2022-05-08T00:00:00.000Z`` as a naive UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def reference_events(bodies: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event (``name``, ``coin_ids``, ``onset`` datetime, ``hours``) against the alert bodies."""
    outcomes = []
    for event in events:
        end = event["onset"] + timedelta(hours=event["hours"])
        inside = [
            parse_iso(body["timestamp"])
            for body in bodies
            if body["coin_id"] in event["coin_ids"] and event["onset"] <= parse_iso(body["timestamp"]) <= end
        ]
        first = min(inside) if inside else None
        outcomes.append(
            {
                "name": event["name"],
                "coin_ids": list(event["coin_ids"]),
                "onset": iso(event["onset"]),
                "hours": event["hours"],
                "caught": bool(inside),
                "first_alert": iso(first) if first else None,
                "lag_hours": (first - event["onset"]) / timedelta(hours=1) if first else None,
            }
        )
    return outcomes
