"""Lambda entry point: an SQS batch in, a partial batch response out.

Thin on purpose: configuration is read once here at cold start (a bad value
stops the function with an error naming the variable), observability is
wired around the handler (JSON logs with the Lambda context, an X-Ray
subsegment, EMF metrics), each record is handed to
:func:`libs.processor.process_and_report` within its time budget, and the
answer lists exactly the messages that were not fully processed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from libs.batch import PartialBatchResponse, process_sqs_batch
from libs.context_adapter import accepts_any_context
from libs.deadline import Deadline
from libs.errors import StoreUnreachable
from libs.helpers.constants_helper import get_settings
from libs.observability import configure, logger, publish_metrics, tracer
from libs.processor import alerts_reserve_s, process_and_report
from libs.summary import MessageSummary

settings = get_settings()
configure(settings)


def _process_record(record: SQSRecord, deadline: Deadline, outage: StoreUnreachable | None) -> MessageSummary:
    return process_and_report(record.body, record.message_id, get_settings(), deadline, outage)


@accepts_any_context
@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@publish_metrics
def handler(event: dict[str, Any], context: Any) -> PartialBatchResponse:
    """Process an SQS batch; see contract §6 for the answer's contract."""
    settings = get_settings()
    start_margin_ms = settings.time_margin_ms + 1000 * alerts_reserve_s(settings)
    return process_sqs_batch(event, context, _process_record, start_margin_ms=start_margin_ms)
