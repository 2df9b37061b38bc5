"""SQS batch processing with partial batch responses (contract §6).

Built on Powertools' ``BatchProcessor`` through its documented extension
points: the record handler takes ``lambda_context`` (the time budget is read
from it) and :meth:`MessageBatchProcessor.failure_handler` is the one place a
failure is logged. What the contract adds to Powertools is closed here:

- an event that is not an SQS batch raises :class:`~libs.errors.NotAnSqsEvent`;
  ``{"Records": []}`` answers with an empty failure list; a batch in which
  every record failed still answers (``raise_on_entire_batch_failure=False``);
- a message whose turn comes when less than its start margin remains
  (``ANOMALY_TIME_MARGIN_MS``, plus the alerts step's worst case with alerts
  on) is not started (:class:`~libs.errors.TimeBudgetExhausted`), and a
  started one gets a :class:`~libs.deadline.Deadline` that ends a second
  before the invocation's, so a slow store fails that message and the answer
  still comes back in time;
- once a message finds the database unreachable, the batch's remaining
  messages are listed at once (they are handed the outage: they are
  validated, then fail before touching the store) instead of each waiting
  its own selection timeout.

Every failure is logged once, with the messageId, the error's own ``kind``
and level (:mod:`libs.errors`) and the reason; every line written while a
record is processed carries its messageId; the invocation's
``MessagesProcessed`` and ``MessagesFailed`` metrics are counted here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from libs.deadline import Deadline, remaining_ms
from libs.errors import AnomalyServiceError, NotAnSqsEvent, StoreUnreachable, TimeBudgetExhausted
from libs.observability import logger, metrics, tag_message, untag_message

PartialBatchResponse = PartialItemFailureResponse
#: Processes one message by its deadline, told of an outage an earlier message found (None: none); raises a
#: :mod:`libs.errors` error (or anything) on failure.
MessageHandler = Callable[[SQSRecord, Deadline, StoreUnreachable | None], Any]


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


class MessageBatchProcessor(BatchProcessor):
    """Powertools' SQS batch processor with this service's budget, outage rule and failure log.

    One per invocation (it remembers an outage for the rest of its batch).
    """

    def __init__(self, handle_message: MessageHandler, *, start_margin_ms: float) -> None:
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._handle_message = handle_message
        self._start_margin_ms = start_margin_ms
        self._outage: StoreUnreachable | None = None

    def record_handler(self, record: SQSRecord, lambda_context: Any = None) -> Any:
        """Start one message if time allows, with its deadline and the outage found so far.

        The message's log keys stay on until :meth:`success_handler` or
        :meth:`failure_handler` is done, so the failure line carries the
        ``request_id`` the message had reached.
        """
        tag_message(record.message_id)
        remaining = remaining_ms(lambda_context)
        if remaining is not None and remaining < self._start_margin_ms:
            raise TimeBudgetExhausted(
                f"not started: {remaining:.0f} ms left, below the start margin of {self._start_margin_ms:.0f} ms"
                " (ANOMALY_TIME_MARGIN_MS, plus the alerts step's worst case with alerts on)"
            )
        return self._handle_message(record, Deadline.for_message(remaining), self._outage)

    def success_handler(self, record: Any, result: Any) -> Any:
        untag_message()
        return super().success_handler(record, result)

    def failure_handler(self, record: Any, exception: Any) -> Any:
        """The one failure log line of a message (and the outage it may reveal)."""
        error = exception[1]
        if isinstance(error, StoreUnreachable) and self._outage is None:
            self._outage = error
        log_failure(_message_id(record), error)
        untag_message()
        return super().failure_handler(record, exception)


def _message_id(record: Any) -> str:
    """The messageId of what Powertools hands the failure handler: an ``SQSRecord`` (or the raw dict)."""
    if isinstance(record, dict):
        return str(record.get("messageId", ""))
    return str(getattr(record, "message_id", ""))


def log_failure(message_id: str, error: BaseException) -> None:
    """One line: messageId, the failure's kind and reason, at the error's own level."""
    if isinstance(error, AnomalyServiceError):
        kind, level, message, reason = error.kind, error.log_level, error.log_message, error.describe()
        with_traceback = error.traceback
    else:  # a bug or a library's surprise: ops need the traceback
        kind, level, message, reason = "error", logging.ERROR, "message failed", f"{type(error).__name__}: {error}"
        with_traceback = True
    extra: dict[str, Any] = {"message_id": message_id, "failure": kind, "reason": reason}
    key = getattr(error, "key", None)
    if key is not None:
        extra["key"] = key
    exc_info = (type(error), error, error.__traceback__) if with_traceback else None
    emit = logger.warning if level == logging.WARNING else logger.error
    emit(message, extra=extra, exc_info=exc_info)


def process_sqs_batch(
    event: Any, context: Any, handle_message: MessageHandler, *, start_margin_ms: float
) -> PartialBatchResponse:
    """Run ``handle_message`` on every record; answer with the partial batch response."""
    try:
        records = check_sqs_event(event)
    except NotAnSqsEvent:
        metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
        raise
    if not records:
        _count_messages(processed=0, failed=0)
        return {"batchItemFailures": []}
    processor = MessageBatchProcessor(handle_message, start_margin_ms=start_margin_ms)
    response = process_partial_response(
        event=event, record_handler=processor.record_handler, processor=processor, context=context
    )
    failed = len(response["batchItemFailures"])
    _count_messages(processed=len(records) - failed, failed=failed)
    return response


def _count_messages(*, processed: int, failed: int) -> None:
    metrics.add_metric(name="MessagesProcessed", unit=MetricUnit.Count, value=processed)
    metrics.add_metric(name="MessagesFailed", unit=MetricUnit.Count, value=failed)
