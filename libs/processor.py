"""Processing one risk request: validate, load, judge, write.

This is the "process one request" function the handler calls for each SQS
record. It knows nothing of SQS: it takes a body and an id and either
returns a :class:`MessageSummary` or raises one of :mod:`libs.errors`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from pymongo.collection import Collection

from libs.helpers.constants_helper import Settings
from libs.helpers.mongodb_helper import Reader, build_updates, get_collection, load_history, write_updates
from libs.models.model import ModelParams, judge, judged_mask
from libs.observability import tracer
from libs.request import RiskRequest, parse_request


@dataclass
class MessageSummary:
    """What one message did; logged as its summary line."""

    message_id: str
    request_id: str = ""
    mode: str = ""
    coins_judged: int = 0
    stale_coins: list[str] = field(default_factory=list)
    documents_read: int = 0
    documents_skipped: int = 0
    observations_judged: int = 0
    documents_written: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def anomalies_total(self) -> int:
        return sum(self.anomalies.values())

    def as_log(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "request_id": self.request_id,
            "mode": self.mode,
            "coins_judged": self.coins_judged,
            "stale_coins": len(self.stale_coins),
            "stale_coin_ids": self.stale_coins[:50],
            "documents_read": self.documents_read,
            "documents_skipped": self.documents_skipped,
            "observations_judged": self.observations_judged,
            "documents_written": self.documents_written,
            "anomalies_total": self.anomalies_total,
            "anomalies": self.anomalies,
            "stage_ms": {stage: round(ms, 3) for stage, ms in self.stage_ms.items()},
        }


class _Stage:
    """Times a stage into the summary and wraps it in an X-Ray subsegment."""

    def __init__(self, summary: MessageSummary, name: str) -> None:
        self._summary, self._name = summary, name

    def __enter__(self) -> Any:
        self._started = time.perf_counter()
        self._segment_cm = tracer.provider.in_subsegment(f"## {self._name}")
        return self._segment_cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._segment_cm.__exit__(*exc)
        self._summary.stage_ms[self._name] = (time.perf_counter() - self._started) * 1000


def utc_now() -> datetime:
    """Naive UTC now at millisecond precision, as MongoDB stores dates."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def stale_coins(request: RiskRequest, judged_coins: np.ndarray) -> list[str]:
    """Requested coins with no observation to judge (latest mode only)."""
    if request.mode != "latest" or request.coin_ids is None:
        return []
    found = set(judged_coins.tolist())
    return [coin for coin in request.coin_ids if coin not in found]


def process_message(
    body: Any,
    message_id: str,
    settings: Settings,
    *,
    now: datetime | None = None,
    reader: Reader | None = None,
    collection: Collection | None = None,
) -> MessageSummary:
    """Validate, load, judge and write one message. Raises a :mod:`libs.errors` error on failure."""
    now = now or utc_now()
    summary = MessageSummary(message_id=message_id)
    with _Stage(summary, "validate"):
        request = parse_request(body, message_id=message_id, settings=settings, now=now)
    summary.request_id, summary.mode = request.request_id, request.mode
    with _Stage(summary, "load"):
        history = load_history(request, settings, reader)
    summary.documents_read, summary.documents_skipped = history.read, history.skipped
    frame = history.frame
    with _Stage(summary, "model"):
        judged = judged_mask(
            frame,
            as_of=request.as_of,
            since=request.since,
            lookback_hours=settings.latest_lookback_hours,
            coin_ids=request.coin_ids,
        )
        params = ModelParams(request.signals, request.periods_days, request.deviation_limit, settings.min_observations)
        results = judge(frame, judged, params)
    judged_rows = np.flatnonzero(judged)
    judged_coins = frame["coin_id"].to_numpy()[judged_rows]
    summary.observations_judged = len(judged_rows)
    summary.coins_judged = len(set(judged_coins.tolist()))
    summary.stale_coins = stale_coins(request, judged_coins)
    flagged = results[results["is_anomaly"].fillna(False).astype(bool)]
    counts = Counter(zip(flagged["signal"], flagged["period_days"]))
    summary.anomalies = {f"{signal}.{period}d": count for (signal, period), count in sorted(counts.items())}
    with _Stage(summary, "write"):
        updates = build_updates(frame, judged_rows, results, evaluated_at=now)
        target = collection if collection is not None else get_collection(settings)
        summary.documents_written = write_updates(target, updates)
    return summary
