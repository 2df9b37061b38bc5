"""A local event source mapping: what Lambda does between an SQS queue and the function.

It long-polls the queue for up to ``batch_size`` messages (gathering for at
most the batching window when the batch size is above ten), builds the event
exactly as Lambda delivers it, invokes the handler with a fresh context whose
remaining time counts down from the function timeout, deletes the successes
with ``delete_message_batch`` (one call per ten, SQS's limit), and leaves the
failures alone: they stay invisible until the queue's visibility timeout ends,
come back with a higher ``ApproximateReceiveCount``, and after
``maxReceiveCount`` receives the queue's redrive policy moves them to the DLQ.

The partial batch response is read with Lambda's rules (ReportBatchItemFailures):
no answer, no list or an empty list is a full success; an identifier that is
missing, empty or not in the batch, or a handler that raises, fails the whole
batch.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libs.tools.local.function import load_handler
from libs.tools.local.lambda_context import LocalContext
from libs.tools.local.sqs_endpoint import queue_arn, queue_counts

Handler = Callable[[dict[str, Any], Any], Any]
#: The system attributes Lambda copies into a record's ``attributes``.
LAMBDA_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)
SQS_MAX_MESSAGES_PER_CALL = 10
SQS_MAX_WAIT_SECONDS = 20


@dataclass
class PollStats:
    """What the poller did so far; a message delivered three times counts three receives."""

    batches: int = 0
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    delete_errors: int = 0
    deleted_message_ids: list[str] = field(default_factory=list)
    invocation_errors: list[str] = field(default_factory=list)
    stopped: str = ""


def lambda_record(message: dict[str, Any], source_arn: str, region: str) -> dict[str, Any]:
    """One SQS message as a record of the event Lambda sends."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {name: attributes[name] for name in LAMBDA_RECORD_ATTRIBUTES if name in attributes},
        "messageAttributes": {
            name: _message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    }


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    converted.update(stringListValues=[], binaryListValues=[], dataType=value["DataType"])
    return converted


def failed_message_ids(response: Any, batch_ids: list[str]) -> set[str]:
    """The messages Lambda would leave on the queue for this response (all of them if it is malformed)."""
    if response is None or response == {}:
        return set()
    if not isinstance(response, dict):
        return set(batch_ids)
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return set(batch_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in batch_ids:
            return set(batch_ids)
        failed.add(identifier)
    return failed


class Poller:
    """Feeds one queue's messages to a handler in batches, as Lambda's event source mapping does."""

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        handler: Handler | None = None,
        batch_size: int = 10,
        batching_window_seconds: int = 0,
        wait_seconds: int = 1,
        function_timeout_ms: int = 120_000,
        on_batch: Callable[[PollStats], None] | None = None,
    ) -> None:
        if handler is None:
            handler = load_handler()  # the deployed entry point; importing it is the cold start
        self._client = client
        self._queue_url = queue_url
        self._handler = handler
        self._batch_size = batch_size
        self._window_seconds = batching_window_seconds
        self._wait_seconds = min(wait_seconds, SQS_MAX_WAIT_SECONDS)
        self._timeout_ms = function_timeout_ms
        self._on_batch = on_batch
        self._source_arn = queue_arn(client, queue_url)
        self._region = client.meta.region_name
        self.stats = PollStats()

    def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        return self._client.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=min(count, SQS_MAX_MESSAGES_PER_CALL),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _gather(self) -> list[dict[str, Any]]:
        messages = {m["MessageId"]: m for m in self._receive(self._batch_size, self._wait_seconds)}
        deadline = time.monotonic() + self._window_seconds
        while messages and len(messages) < self._batch_size and (left := deadline - time.monotonic()) > 0:
            more = self._receive(self._batch_size - len(messages), min(SQS_MAX_WAIT_SECONDS, max(1, int(left))))
            messages.update((m["MessageId"], m) for m in more)  # a redelivery keeps its newest receipt handle
        return list(messages.values())

    def poll_once(self) -> int:
        """Receive one batch, invoke the handler, delete the successes; returns how many were received."""
        messages = self._gather()
        if not messages:
            return 0
        event = {"Records": [lambda_record(m, self._source_arn, self._region) for m in messages]}
        batch_ids = [m["MessageId"] for m in messages]
        try:
            response = self._handler(event, LocalContext(timeout_ms=self._timeout_ms))
        except Exception as exc:  # a function error: Lambda retries the whole batch
            self.stats.invocation_errors.append(f"{type(exc).__name__}: {exc}")
            failed = set(batch_ids)
        else:
            failed = failed_message_ids(response, batch_ids)
        self._delete([m for m in messages if m["MessageId"] not in failed])
        self.stats.batches += 1
        self.stats.received += len(messages)
        self.stats.failed += len(failed)
        if self._on_batch is not None:
            self._on_batch(self.stats)
        return len(messages)

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_MESSAGES_PER_CALL):
            chunk = messages[start : start + SQS_MAX_MESSAGES_PER_CALL]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            response = self._client.delete_message_batch(QueueUrl=self._queue_url, Entries=entries)
            for done in response.get("Successful", []):
                self.stats.deleted_message_ids.append(chunk[int(done["Id"])]["MessageId"])
            self.stats.succeeded += len(response.get("Successful", []))
            self.stats.delete_errors += len(response.get("Failed", []))

    def run(self, *, until_empty: bool = False, max_seconds: float | None = None) -> PollStats:
        """Poll until the queue and its in-flight messages are drained (``until_empty``) or time is up.

        Without either it polls until interrupted.
        """
        started = time.monotonic()
        while True:
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                self.stats.stopped = f"time limit of {max_seconds:g} s reached"
                return self.stats
            if self.poll_once():
                continue
            if until_empty and queue_counts(self._client, self._queue_url).drained:
                self.stats.stopped = "queue drained"
                return self.stats
