"""What one message did, and how ops hear of it: timed steps, the summary line, the metrics.

The processor reads as validate → load → judge → write; this module is what
wraps those steps (:func:`step`: an X-Ray subsegment and a timing per step)
and what reports the message when it is done (:func:`report`: one summary
log line and its EMF metrics, per message and per signal).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from libs.observability import annotate, logger, metrics, signal_metrics, traced


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
    anomalies: dict[str, int] = field(default_factory=dict)
    alerts_published: int = 0
    alerts_withheld: int = 0
    stage_ms: dict[str, float] = field(default_factory=dict)
    signal_observations: dict[str, int] = field(default_factory=dict)
    signal_anomalies: dict[str, int] = field(default_factory=dict)
    signal_ms: dict[str, float] = field(default_factory=dict)

    @property
    def anomalies_total(self) -> int:
        return sum(self.anomalies.values())

    @property
    def labels(self) -> dict[str, str]:
        """The annotations every step of this message carries once the request is known."""
        if not self.request_id:
            return {"message_id": self.message_id}
        return {"request_id": self.request_id, "mode": self.mode}

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
            "anomalies_total": self.anomalies_total,
            "anomalies": self.anomalies,
            "anomalies_by_signal": self.signal_anomalies,
            "observations_by_signal": self.signal_observations,
            "alerts_published": self.alerts_published,
            "alerts_withheld": self.alerts_withheld,
            "stage_ms": _rounded(self.stage_ms),
            "signal_ms": _rounded(self.signal_ms),
        }


def _rounded(milliseconds: dict[str, float]) -> dict[str, float]:
    return {name: round(ms, 3) for name, ms in milliseconds.items()}


@contextmanager
def step(summary: MessageSummary, name: str) -> Iterator[Any]:
    """A ``## <name>`` subsegment annotated with the message's labels, timed into ``summary.stage_ms``.

    Yields the subsegment, for the step's own annotations.
    """
    started = time.perf_counter()
    try:
        with traced(f"## {name}") as subsegment:
            annotate(subsegment, **summary.labels)
            yield subsegment
    finally:
        summary.stage_ms[name] = (time.perf_counter() - started) * 1000


@contextmanager
def signal_step(summary: MessageSummary, signal: str) -> Iterator[Any]:
    """A ``## <signal>`` subsegment inside the model step, timed into ``summary.signal_ms``."""
    started = time.perf_counter()
    try:
        with traced(f"## {signal}") as subsegment:
            annotate(subsegment, **summary.labels, signal=signal)
            yield subsegment
    finally:
        summary.signal_ms[signal] = (time.perf_counter() - started) * 1000


#: The per-message counters published as metrics, by metric name.
_COUNTERS = (
    ("ObservationsJudged", "observations_judged"),
    ("AnomaliesDetected", "anomalies_total"),
    ("DocumentsRead", "documents_read"),
    ("DocumentsSkipped", "documents_skipped"),
    ("DocumentsWritten", "documents_written"),
    ("AlertsPublished", "alerts_published"),
    ("AlertsWithheld", "alerts_withheld"),
)


def report(summary: MessageSummary) -> None:
    """The message's summary log line and its metrics (per message, and per signal)."""
    logger.info("message processed", extra=summary.as_log())
    for name, attribute in _COUNTERS:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=getattr(summary, attribute))
    for stage, ms in summary.stage_ms.items():
        metrics.add_metric(name=f"{stage.capitalize()}Ms", unit=MetricUnit.Milliseconds, value=ms)
    for signal, ms in summary.signal_ms.items():
        signal_metrics.add(signal, "ObservationsJudged", MetricUnit.Count, summary.signal_observations[signal])
        signal_metrics.add(signal, "AnomaliesDetected", MetricUnit.Count, summary.signal_anomalies[signal])
        signal_metrics.add(signal, "ModelMs", MetricUnit.Milliseconds, ms)
