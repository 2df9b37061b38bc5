"""Processing one risk request: validate, load, judge, write.

This is the "process one request" function the handler calls for each SQS
record. It knows nothing of SQS: it takes a body and an id and either
returns a :class:`MessageSummary` or raises one of :mod:`libs.errors`.
It also says what a message did, to ops: its X-Ray subsegments and their
annotations, its summary log line and its metrics (:func:`report`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from aws_lambda_powertools.metrics import MetricUnit
from pymongo.collection import Collection

from libs.helpers.constants_helper import Settings
from libs.helpers.mongodb_helper import Reader, build_updates, get_collection, load_history, write_updates
from libs.models.model import ModelParams, empty_results, judge_signal, judged_mask, sort_rows
from libs.observability import annotate, logger, metrics, service_name, signal_metrics, tag_request, traced
from libs.request import RiskRequest, parse_request


@dataclass
class MessageSummary:
    """What one message did: its summary log line and its metrics."""

    message_id: str
    request_id: str = ""
    mode: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    coins_judged: int = 0
    stale_coins: list[str] = field(default_factory=list)
    documents_read: int = 0
    documents_skipped: int = 0
    observations_judged: int = 0
    documents_written: int = 0
    alerts_published: int = 0
    alerts_withheld: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)
    signal_observations: dict[str, int] = field(default_factory=dict)
    signal_anomalies: dict[str, int] = field(default_factory=dict)
    signal_ms: dict[str, float] = field(default_factory=dict)

    @property
    def anomalies_total(self) -> int:
        return sum(self.anomalies.values())

    def as_log(self) -> dict[str, Any]:
        """The summary line's fields. ``anomalies`` counts flags by ``<signal>.<P>d``."""
        return {
            "message_id": self.message_id,
            "request_id": self.request_id,
            "mode": self.mode,
            "request": self.request,
            "coins_judged": self.coins_judged,
            "stale_coins": len(self.stale_coins),
            "stale_coin_ids": self.stale_coins[:50],
            "documents_read": self.documents_read,
            "documents_skipped": self.documents_skipped,
            "observations_judged": self.observations_judged,
            "documents_written": self.documents_written,
            "alerts_published": self.alerts_published,
            "alerts_withheld": self.alerts_withheld,
            "anomalies_total": self.anomalies_total,
            "anomalies": self.anomalies,
            "anomalies_by_signal": self.signal_anomalies,
            "observations_by_signal": self.signal_observations,
            "stage_ms": _rounded(self.stage_ms),
            "signal_ms": _rounded(self.signal_ms),
        }


def _rounded(milliseconds: dict[str, float]) -> dict[str, float]:
    return {name: round(ms, 3) for name, ms in milliseconds.items()}


@contextmanager
def _stage(summary: MessageSummary, name: str, **annotations: str) -> Iterator[Any]:
    """Times a stage into the summary and wraps it in an annotated ``## <stage>`` subsegment."""
    started = time.perf_counter()
    try:
        with traced(f"## {name}") as subsegment:
            annotate(subsegment, **annotations)
            yield subsegment
    finally:
        summary.stage_ms[name] = (time.perf_counter() - started) * 1000


def utc_now() -> datetime:
    """Naive UTC now at millisecond precision, as MongoDB stores dates."""
    now = datetime.now(UTC).replace(tzinfo=None)
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
    """Validate, load, judge and write one message. Raises a :mod:`libs.errors` error on failure.

    Traced as a ``## message`` subsegment holding one subsegment per stage,
    and inside ``## model`` one per signal; MongoDB commands nest under
    ``## load`` and ``## write``.
    """
    now = now or utc_now()
    summary = MessageSummary(message_id=message_id)
    with traced("## message") as message_segment:
        annotate(message_segment, message_id=message_id)
        with _stage(summary, "validate", message_id=message_id) as validate_segment:
            request = parse_request(body, message_id=message_id, settings=settings, now=now)
            labels = {"request_id": request.request_id, "mode": request.mode}
            annotate(validate_segment, **labels)
        summary.request_id, summary.mode, summary.request = request.request_id, request.mode, request.describe()
        tag_request(request.request_id)
        annotate(message_segment, **labels)
        message_segment.put_metadata("request", summary.request, service_name())
        _judge_and_write(request, settings, summary, labels, now, reader, collection)
        annotate(
            message_segment,
            coins=summary.coins_judged,
            observations=summary.observations_judged,
            anomalies=summary.anomalies_total,
        )
    return summary


def _judge_and_write(
    request: RiskRequest,
    settings: Settings,
    summary: MessageSummary,
    labels: dict[str, str],
    now: datetime,
    reader: Reader | None,
    collection: Collection | None,
) -> None:
    with _stage(summary, "load", **labels) as load_segment:
        history = load_history(request, settings, reader)
        annotate(load_segment, documents_read=history.read, documents_skipped=history.skipped)
    summary.documents_read, summary.documents_skipped = history.read, history.skipped
    frame = history.frame
    with _stage(summary, "model", **labels) as model_segment:
        judged = judged_mask(
            frame,
            as_of=request.as_of,
            since=request.since,
            lookback_hours=settings.latest_lookback_hours,
            coin_ids=request.coin_ids,
        )
        params = ModelParams(request.signals, request.periods_days, request.deviation_limit, settings.min_observations)
        results = judge_each_signal(frame, judged, params, summary, labels)
        judged_rows = np.flatnonzero(judged)
        annotate(model_segment, observations=len(judged_rows), anomalies=sum(summary.signal_anomalies.values()))
    judged_coins = frame["coin_id"].to_numpy()[judged_rows]
    summary.observations_judged = len(judged_rows)
    summary.coins_judged = len(set(judged_coins.tolist()))
    summary.stale_coins = stale_coins(request, judged_coins)
    flagged = results[results["is_anomaly"].fillna(False).astype(bool)]
    counts = Counter(zip(flagged["signal"], flagged["period_days"]))
    summary.anomalies = {f"{signal}.{period}d": count for (signal, period), count in sorted(counts.items())}
    with _stage(summary, "write", **labels) as write_segment:
        updates = build_updates(frame, judged_rows, results, evaluated_at=now)
        target = collection if collection is not None else get_collection(settings)
        summary.documents_written = write_updates(target, updates)
        annotate(write_segment, documents_written=summary.documents_written)
    if settings.alerts_enabled and request.mode == "latest":
        from libs.alerts import publish_alerts_for  # alerts off: nothing of theirs is imported (SPEC section 10)

        with _stage(summary, "alerts", **labels) as alerts_segment:
            alerts = publish_alerts_for(frame, params, results, request, settings)
            annotate(alerts_segment, alerts_published=alerts.published, alerts_withheld=alerts.withheld)
        summary.alerts_published, summary.alerts_withheld = alerts.published, alerts.withheld


def judge_each_signal(
    frame: pd.DataFrame,
    judged: np.ndarray,
    params: ModelParams,
    summary: MessageSummary,
    labels: dict[str, str],
) -> pd.DataFrame:
    """The model's results, computed one signal at a time so each is timed and traced on its own.

    Ops asked for processing time per signal; the model judges signals
    independently, so splitting the call changes no result, and the rows are
    sorted once for all of them (:func:`~libs.models.model.sort_rows`). Each signal gets a ``## <signal>`` subsegment annotated
    with its judged observations and anomaly flags.
    """
    rows = sort_rows(frame, judged, params.periods_days)  # once for all signals
    blocks = []
    for signal in params.signals:
        started = time.perf_counter()
        with traced(f"## {signal}") as signal_segment:
            block = judge_signal(frame, rows, signal, params) if rows is not None else empty_results()
            observations = int(np.count_nonzero(judged & frame[signal].notna().to_numpy()))
            anomalies = int(block["is_anomaly"].fillna(False).sum())
            annotate(signal_segment, **labels, signal=signal, observations=observations, anomalies=anomalies)
        summary.signal_ms[signal] = (time.perf_counter() - started) * 1000
        summary.signal_observations[signal] = observations
        summary.signal_anomalies[signal] = anomalies
        blocks.append(block)
    non_empty = [block for block in blocks if len(block)]
    if not non_empty:
        return empty_results()
    return non_empty[0] if len(non_empty) == 1 else pd.concat(non_empty, ignore_index=True)


def report(summary: MessageSummary) -> None:
    """The message's summary log line and its metrics (per message, and per signal)."""
    logger.info("message processed", extra=summary.as_log())
    for name, value in (
        ("ObservationsJudged", summary.observations_judged),
        ("AnomaliesDetected", summary.anomalies_total),
        ("DocumentsRead", summary.documents_read),
        ("DocumentsSkipped", summary.documents_skipped),
        ("DocumentsWritten", summary.documents_written),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if "alerts" in summary.stage_ms:
        metrics.add_metric(name="AlertsPublished", unit=MetricUnit.Count, value=summary.alerts_published)
        metrics.add_metric(name="AlertsWithheld", unit=MetricUnit.Count, value=summary.alerts_withheld)
    for stage, ms in summary.stage_ms.items():
        metrics.add_metric(name=f"{stage.capitalize()}Ms", unit=MetricUnit.Milliseconds, value=ms)
    for signal, ms in summary.signal_ms.items():
        signal_metrics.add(signal, "ObservationsJudged", MetricUnit.Count, summary.signal_observations[signal])
        signal_metrics.add(signal, "AnomaliesDetected", MetricUnit.Count, summary.signal_anomalies[signal])
        signal_metrics.add(signal, "ModelMs", MetricUnit.Milliseconds, ms)


def process_and_report(body: Any, message_id: str, settings: Settings) -> MessageSummary:
    """:func:`process_message`, then its summary line and metrics: what the handler runs per record."""
    summary = process_message(body, message_id, settings)
    report(summary)
    return summary
