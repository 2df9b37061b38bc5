"""Builders for SQS events in the exact shape Lambda delivers them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:crypto-risk-anomaly-requests"


def sqs_record(body: Any, message_id: str) -> dict[str, Any]:
    """One SQS record; ``body`` is sent as is when it is a string, else as JSON."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {
        "messageId": message_id,
        "receiptHandle": f"receipt-{message_id}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1730419200000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1730419200001",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def sqs_event(*bodies: Any) -> dict[str, Any]:
    """An SQS event with one record per body; message ids are ``msg-0``, ``msg-1``, …"""
    return {"Records": [sqs_record(body, f"msg-{i}") for i, body in enumerate(bodies)]}


def failed_ids(response: dict[str, Any]) -> list[str]:
    """The messageIds a partial batch response lists."""
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]
