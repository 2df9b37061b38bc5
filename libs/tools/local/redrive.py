"""Put a request queue's dead-lettered messages back on it, each once (contract §8, ``redrive``).

After a fix, ops want the DLQ's requests processed again. AWS has a native
move (``aws sqs start-message-move-task``), but moto 5.2.5 does not implement
it, and this command must run against the local pipeline too, so it uses only
ReceiveMessage, SendMessageBatch and DeleteMessageBatch:

- the DLQ is the one the request queue's ``RedrivePolicy`` names, so the
  command cannot move messages between unrelated queues;
- a message is deleted from the DLQ only after SQS accepted its copy on the
  request queue, so a failure midway loses nothing (at worst a message is
  moved twice by two runs, and the function writes the same flags twice);
- each message is moved at most once per run: a copy we sent that fails again
  and lands back in the DLQ during the run carries the id SQS gave it when we
  sent it, and is left there;
- the body and the message attributes travel unchanged; the copy is a new
  message, so it gets the full ``maxReceiveCount`` again.

A dry run receives every waiting message once (which adds one to its receive
count, as any look at an SQS message does), lists it, and makes it visible
again at the end; nothing is moved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from libs.errors import AnomalyServiceError

#: How long a received DLQ message stays hidden while it is copied (or, in a dry run, listed).
HIDE_SECONDS = 120
#: The part of a body a dry run shows (contract §8).
PREVIEW_CHARACTERS = 200
#: SQS's largest batch.
BATCH = 10


class RedriveError(AnomalyServiceError):
    """The queue has no dead-letter queue to redrive from, or it cannot be found."""


@dataclass(frozen=True)
class DeadLetter:
    """One message waiting in the DLQ, as a dry run lists it."""

    message_id: str
    receive_count: int
    body: str

    @property
    def preview(self) -> str:
        """The body's first 200 characters on one line (line breaks shown as ``\\n``)."""
        return self.body[:PREVIEW_CHARACTERS].replace("\r", "\\r").replace("\n", "\\n")


@dataclass
class RedriveReport:
    """What a run did: how many moved, what a dry run saw, and what could not be moved."""

    queue_url: str
    dlq_url: str
    dry_run: bool
    moved: int = 0
    listed: list[DeadLetter] = field(default_factory=list)
    #: (DLQ message id, reason) of messages left in the DLQ: SQS refused the copy.
    not_sent: list[tuple[str, str]] = field(default_factory=list)
    #: (DLQ message id, reason) of messages copied but not deleted: a later run would move them again.
    not_deleted: list[tuple[str, str]] = field(default_factory=list)
    #: Copies sent by this run that failed again and were back in the DLQ before it ended (left there).
    returned: int = 0

    @property
    def complete(self) -> bool:
        return not self.not_sent and not self.not_deleted


def dead_letter_queue_url(client: Any, queue_url: str) -> str:
    """The URL of the DLQ named by ``queue_url``'s RedrivePolicy."""
    try:
        attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]).get(
            "Attributes", {}
        )
    except ClientError as exc:
        raise RedriveError(f"cannot read the queue {queue_url}: {exc.response['Error'].get('Message', exc)}") from None
    policy = attributes.get("RedrivePolicy")
    if not policy:
        raise RedriveError(f"{queue_url} has no RedrivePolicy: it names no dead-letter queue to redrive from")
    arn = json.loads(policy)["deadLetterTargetArn"]
    # arn:aws:sqs:<region>:<account>:<name>
    *_, account, name = arn.split(":")
    try:
        return str(client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
    except ClientError as exc:
        raise RedriveError(
            f"the dead-letter queue {arn} cannot be found: {exc.response['Error'].get('Message', exc)}"
        ) from None


def redrive(client: Any, queue_url: str, *, dry_run: bool = False) -> RedriveReport:
    """Move every message waiting in ``queue_url``'s DLQ back to ``queue_url`` (or, dry, list them)."""
    report = RedriveReport(queue_url=queue_url, dlq_url=dead_letter_queue_url(client, queue_url), dry_run=dry_run)
    if dry_run:
        _list(client, report)
        return report
    sent_ids: set[str] = set()  # the ids SQS gave our copies: one seen in the DLQ is a copy that failed again
    for batch in _receive_all(client, report.dlq_url):
        fresh = [message for message in batch if message["MessageId"] not in sent_ids]
        report.returned += len(batch) - len(fresh)
        if fresh:
            _move(client, report, fresh, sent_ids)
    return report


def _receive_all(client: Any, queue_url: str) -> Iterator[list[dict[str, Any]]]:
    """Batches of the queue's waiting messages, each hidden for HIDE_SECONDS, until a receive finds none."""
    while True:
        batch = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=BATCH,
            VisibilityTimeout=HIDE_SECONDS,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return
        yield batch


def _list(client: Any, report: RedriveReport) -> None:
    received: list[dict[str, Any]] = []
    for batch in _receive_all(client, report.dlq_url):
        received.extend(batch)
        report.listed.extend(
            DeadLetter(
                message_id=m["MessageId"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
                body=m["Body"],
            )
            for m in batch
        )
    # visible again, as they were (only their receive counts moved)
    for start in range(0, len(received), BATCH):
        chunk = received[start : start + BATCH]
        client.change_message_visibility_batch(
            QueueUrl=report.dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
            ],
        )


def _copy(message: dict[str, Any]) -> dict[str, Any]:
    """The SendMessageBatch entry that re-creates ``message``: body and message attributes unchanged."""
    entry: dict[str, Any] = {"MessageBody": message["Body"]}
    attributes = {
        name: {key: value for key, value in attribute.items() if key in ("DataType", "StringValue", "BinaryValue")}
        for name, attribute in message.get("MessageAttributes", {}).items()
    }
    if attributes:
        entry["MessageAttributes"] = attributes
    system = message.get("Attributes", {})
    if "MessageGroupId" in system:  # a FIFO pair: keep the group, deduplicate on the original message
        entry["MessageGroupId"] = system["MessageGroupId"]
        entry["MessageDeduplicationId"] = system.get("MessageDeduplicationId") or message["MessageId"]
    return entry


def _move(client: Any, report: RedriveReport, batch: list[dict[str, Any]], sent_ids: set[str]) -> None:
    """Send copies of ``batch`` to the request queue, then delete from the DLQ exactly those SQS accepted."""
    by_entry = {str(i): message for i, message in enumerate(batch)}
    try:
        answer = client.send_message_batch(
            QueueUrl=report.queue_url, Entries=[{"Id": i, **_copy(m)} for i, m in by_entry.items()]
        )
    except ClientError as exc:
        # the whole request was refused (too long, or one entry SQS will not take): try each alone,
        # so one bad message keeps only itself in the DLQ
        if len(batch) > 1:
            for message in batch:
                _move(client, report, [message], sent_ids)
        else:
            report.not_sent.append((batch[0]["MessageId"], exc.response["Error"].get("Message", str(exc))))
        return
    for failure in answer.get("Failed", []):
        report.not_sent.append((by_entry[failure["Id"]]["MessageId"], failure.get("Message", failure["Code"])))
    accepted = answer.get("Successful", [])
    sent_ids.update(item["MessageId"] for item in accepted)
    if not accepted:
        return
    deleted = client.delete_message_batch(
        QueueUrl=report.dlq_url,
        Entries=[{"Id": item["Id"], "ReceiptHandle": by_entry[item["Id"]]["ReceiptHandle"]} for item in accepted],
    )
    report.moved += len(accepted)
    for failure in deleted.get("Failed", []):
        report.not_deleted.append((by_entry[failure["Id"]]["MessageId"], failure.get("Message", failure["Code"])))
