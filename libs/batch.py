"""SQS batch processing with partial batch responses (SPEC section 6).

Built on Powertools' ``BatchProcessor``, with the three gaps the contract
needs closed here: an event that is not an SQS batch raises
:class:`~libs.errors.NotAnSqsEvent`; ``{"Records": []}`` answers with an
empty failure list; and a batch in which every record failed still answers
(``raise_on_entire_batch_failure=False``) instead of raising.

Every failure is logged here, once, with the messageId, a ``failure`` kind
(``invalid``, ``time_budget``, ``store``, ``error``) and the reason; a
message whose turn comes when less than ``ANOMALY_TIME_MARGIN_MS`` remains is
not started and is listed, so SQS delivers it again. Every line written while
a record is processed carries its messageId, and the invocation's
``MessagesProcessed`` and ``MessagesFailed`` metrics are counted here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from libs.errors import InvalidRequest, NotAnSqsEvent, StoreUnavailable, TimeBudgetExhausted
from libs.helpers.store_budget import STORE_RESERVE_S, store_budget
from libs.observability import logger, message_context, metrics

PartialBatchResponse = dict[str, list[dict[str, str]]]
RecordHandler = Callable[[SQSRecord], Any]


def check_sqs_event(event: Any) -> list[dict[str, Any]]:
    """The event's records, or :class:`NotAnSqsEvent` saying what is wrong with it."""
    if not isinstance(event, dict):
        raise NotAnSqsEvent(f"expected an SQS event (an object with Records), got {type(event).__name__}")
    records = event.get("Records")
    if not isinstance(records, list):
        raise NotAnSqsEvent("expected an SQS event: the event has no Records list")
    for position, record in enumerate(records):
        if not isinstance(record, dict) or record.get("eventSource") != "aws:sqs":
            source = record.get("eventSource") if isinstance(record, dict) else type(record).__name__
            raise NotAnSqsEvent(f"expected an SQS event: record {position} has eventSource {source!r}, not 'aws:sqs'")
        if not isinstance(record.get("messageId"), str) or not record["messageId"]:
            raise NotAnSqsEvent(f"expected an SQS event: record {position} has no messageId")
    return records


def _remaining_ms(context: Any) -> float | None:
    getter = getattr(context, "get_remaining_time_in_millis", None)
    return float(getter()) if callable(getter) else None


def process_sqs_batch(
    event: Any, context: Any, record_handler: RecordHandler, *, time_margin_ms: int
) -> PartialBatchResponse:
    """Run ``record_handler`` on every record; answer with the partial batch response."""
    try:
        records = check_sqs_event(event)
    except NotAnSqsEvent:
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise
    if not records:
        _count_messages(processed=0, failed=0)
        return {"batchItemFailures": []}

    def guarded(record: SQSRecord) -> Any:
        with message_context(record.message_id):
            remaining = _remaining_ms(context)
            try:
                if remaining is not None and remaining < time_margin_ms:
                    raise TimeBudgetExhausted(
                        f"not started: {remaining:.0f} ms left, below ANOMALY_TIME_MARGIN_MS={time_margin_ms}"
                    )
                # Every store operation of the message ends before the deadline, less a reserve to answer in.
                with store_budget(None if remaining is None else remaining / 1000 - STORE_RESERVE_S):
                    return record_handler(record)
            except Exception as exc:
                _log_failure(record.message_id, exc)
                raise

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(event=event, record_handler=guarded, processor=processor, context=context)
    failed = len(response["batchItemFailures"])
    _count_messages(processed=len(records) - failed, failed=failed)
    return response


def _count_messages(*, processed: int, failed: int) -> None:
    metrics.add_metric(name="MessagesProcessed", unit=MetricUnit.Count, value=processed)
    metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=failed)


#: The ``failure`` field of a failure's log line, by error class; anything else is ``error``.
FAILURE_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (InvalidRequest, "invalid"),
    (TimeBudgetExhausted, "time_budget"),
    (StoreUnavailable, "store"),
)


def _failure_kind(exc: Exception) -> str:
    return next((kind for error, kind in FAILURE_KINDS if isinstance(exc, error)), "error")


def _log_failure(message_id: str, exc: Exception) -> None:
    failure = {"message_id": message_id, "failure": _failure_kind(exc)}
    if isinstance(exc, InvalidRequest):
        logger.error("message rejected", extra={**failure, "reason": str(exc), "key": exc.key})
    elif isinstance(exc, TimeBudgetExhausted):
        logger.warning("message left for retry", extra={**failure, "reason": str(exc)})
    else:
        logger.error(
            "message failed",
            extra={**failure, "reason": f"{type(exc).__name__}: {exc}"},
            exc_info=type(exc).__module__ != "libs.errors",
        )
