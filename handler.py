"""Lambda entry point: an SQS batch in, a partial batch response out.

Thin on purpose: configuration is read once here at cold start (a bad value
stops the function with an error naming the variable), each record is handed
to :func:`libs.processor.process_message`, and the answer lists exactly the
messages that were not fully processed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from libs.batch import PartialBatchResponse, process_sqs_batch
from libs.helpers.constants_helper import get_settings
from libs.observability import logger, tracer
from libs.processor import process_message

settings = get_settings()


def _process_record(record: SQSRecord) -> None:
    summary = process_message(record.body, record.message_id, get_settings())
    logger.info("message processed", extra=summary.as_log())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: Any) -> PartialBatchResponse:
    """Process an SQS batch; see SPEC section 6 for the answer's contract."""
    return process_sqs_batch(event, context, _process_record, time_margin_ms=get_settings().time_margin_ms)
