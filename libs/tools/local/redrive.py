"""Put a request queue's dead-lettered messages back on it, each once (contract §8, ``redrive``).

After a fix, ops want the DLQ's requests processed again. AWS has a native
move (``aws sqs start-message-move-task``), but moto 5.2.5 does not implement
it, and this command must run against the local pipeline too, so it uses only
ReceiveMessage, SendMessageBatch, DeleteMessageBatch, ChangeMessageVisibilityBatch
and GetQueueAttributes:

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

**When to stop.** AWS answers a short poll (``WaitTimeSeconds=0``) from a
sample of its servers, so an empty answer does not mean an empty queue. Every
receive here is a long poll (:data:`WAIT_SECONDS`), which asks all of them, and
an empty one ends the move only when the DLQ's own count
(``ApproximateNumberOfMessages`` + ``…NotVisible`` + ``…Delayed``) holds no
more than the messages this run itself keeps there (copies that came back,
messages SQS refused). While the count says more, the move polls again, up to
:data:`EMPTY_POLLS` empty answers in a row; then it stops and reports how many
the DLQ still holds (in flight with another reader, or a count not yet
settled: SQS's counts are approximate), and the command exits 1.

**FIFO pairs.** A copy needs a ``MessageDeduplicationId``, and SQS silently
drops a send whose id it has seen on the queue in the last five minutes while
answering success; the DLQ message would then be deleted: lost. The copy's id
is therefore never the original's (which the producer, or the body's hash,
chose, and which SQS may still remember): it is :func:`deduplication_id`,
``redrive:`` + the DLQ messageId, unique to that DLQ message and the same for
every send of it. So a send SQS drops as a duplicate is one whose earlier copy
of the very same DLQ message it accepted (a second run after a failed delete):
deleting the DLQ message then loses nothing, and the request queue holds one
copy, not two. The message group is kept.

**A dry run** lists without moving. It says how many messages the DLQ reports
waiting (``ApproximateNumberOfMessages``), then receives each message it can
see once, keeping the ones it holds hidden while it lists (for a lease that
grows with the count, :func:`listing_lease_seconds`, renewed when a listing
outlasts half of it), and makes them all visible again at the end, also when it
is interrupted. It ends when it has seen as many as were reported, when a
long poll finds nothing more, or when a receive brings back only messages it
has already listed (a renewal SQS refused); each message is listed once,
however long the listing takes. On a FIFO queue a message group's later
messages stay hidden while an earlier one is held, so only the first of each
group can be seen without moving it: the report says so. Each look adds one to
a message's receive count, as any look at an SQS message does.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from libs.errors import AnomalyServiceError
from libs.tools.local.sqs_endpoint import queue_counts

#: How long a received DLQ message stays hidden while it is copied.
HIDE_SECONDS = 120
#: The long-poll wait of every receive: any wait makes SQS ask all its servers, not a sample.
WAIT_SECONDS = 1
#: Empty long polls in a row, while the DLQ's count says more messages wait, before a move gives up.
EMPTY_POLLS = 5
#: A dry run's lease: at least this long, and this much longer per message reported waiting.
LIST_LEASE_MIN_SECONDS = 120
LIST_LEASE_PER_MESSAGE_SECONDS = 0.05
#: SQS's longest visibility timeout.
MAX_VISIBILITY_SECONDS = 43_200
#: The part of a body a dry run shows (contract §8).
PREVIEW_CHARACTERS = 200
#: SQS's largest batch.
BATCH = 10
#: What SQS accepts as a MessageDeduplicationId: 1 to 128 printable ASCII characters.
_DEDUPLICATION_ID = re.compile(r"[!-~]{1,128}")


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
    #: the DLQ's ApproximateNumberOfMessages when the run began
    reported: int = 0
    #: the DLQ is a FIFO queue (a dry run sees only the first message of each group)
    fifo: bool = False
    moved: int = 0
    listed: list[DeadLetter] = field(default_factory=list)
    #: why a dry run's listing ended
    stopped: str = ""
    #: (DLQ message id, reason) of messages left in the DLQ: SQS refused the copy.
    not_sent: list[tuple[str, str]] = field(default_factory=list)
    #: (DLQ message id, reason) of messages copied but not deleted: a later run would move them again.
    not_deleted: list[tuple[str, str]] = field(default_factory=list)
    #: Copies sent by this run that failed again and were back in the DLQ before it ended (left there).
    returned: int = 0
    #: Messages the DLQ still counted at the end beyond those this run left there on purpose.
    left: int = 0
    #: A dry run's messages it could not make visible again (they come back when their lease ends).
    not_restored: int = 0

    @property
    def complete(self) -> bool:
        return not self.not_sent and not self.not_deleted and not self.left


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


def deduplication_id(message: dict[str, Any]) -> str:
    """The MessageDeduplicationId of a DLQ message's copy: ``redrive:`` + its messageId.

    Never the original's (SQS may remember that one for five minutes and drop the copy), unique to
    the DLQ message, and the same for every send of it, so SQS keeps at most one copy per DLQ message.
    """
    candidate = f"redrive:{message['MessageId']}"
    if _DEDUPLICATION_ID.fullmatch(candidate):
        return candidate
    import hashlib

    return "redrive:sha256:" + hashlib.sha256(message["MessageId"].encode("utf-8", "surrogatepass")).hexdigest()


def listing_lease_seconds(reported: int) -> int:
    """How long a dry run hides what it has listed: 2 minutes, and 50 ms more per message reported.

    That is about twice as long as listing takes at 20 messages a second; a slower listing renews the lease.
    """
    wanted = max(LIST_LEASE_MIN_SECONDS, math.ceil(reported * LIST_LEASE_PER_MESSAGE_SECONDS))
    return min(wanted, MAX_VISIBILITY_SECONDS)


def redrive(
    client: Any,
    queue_url: str,
    *,
    dry_run: bool = False,
    wait_seconds: int = WAIT_SECONDS,
    lease_seconds: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RedriveReport:
    """Move every message waiting in ``queue_url``'s DLQ back to ``queue_url`` (or, dry, list them).

    ``lease_seconds`` replaces a dry run's :func:`listing_lease_seconds` (tests).
    """
    dlq_url = dead_letter_queue_url(client, queue_url)
    attributes = client.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages", "FifoQueue"]
    ).get("Attributes", {})
    report = RedriveReport(
        queue_url=queue_url,
        dlq_url=dlq_url,
        dry_run=dry_run,
        reported=int(attributes.get("ApproximateNumberOfMessages", 0)),
        fifo=attributes.get("FifoQueue") == "true" or dlq_url.endswith(".fifo"),
    )
    if dry_run:
        lease = lease_seconds if lease_seconds is not None else listing_lease_seconds(report.reported)
        _Listing(client, report, wait_seconds=wait_seconds, lease_seconds=lease, clock=clock).run()
    else:
        _move_all(client, report, wait_seconds=wait_seconds)
    return report


def _receive(client: Any, queue_url: str, *, hide_seconds: int, wait_seconds: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=BATCH,
        VisibilityTimeout=hide_seconds,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    return messages


# --- the move -----------------------------------------------------------------------------------------


def _move_all(client: Any, report: RedriveReport, *, wait_seconds: int) -> None:
    sent_ids: set[str] = set()  # the ids SQS gave our copies: one seen in the DLQ is a copy that failed again
    copied: set[str] = set()  # DLQ messages whose copy SQS accepted
    kept: set[str] = set()  # DLQ messages this run leaves there: copies back again, refused ones, failed deletes
    empty_polls = 0
    while True:
        batch = _receive(client, report.dlq_url, hide_seconds=HIDE_SECONDS, wait_seconds=wait_seconds)
        if batch:
            empty_polls = 0
            fresh = []
            for message in batch:
                message_id = message["MessageId"]
                if message_id in sent_ids:
                    report.returned += message_id not in kept
                    kept.add(message_id)
                elif message_id in copied:  # copied already (a delete that failed, or SQS delivering twice)
                    if _delete_again(client, report, message):
                        kept.discard(message_id)
                elif message_id not in kept:
                    fresh.append(message)
            if fresh:
                refused, undeleted = len(report.not_sent), len(report.not_deleted)
                _move(client, report, fresh, sent_ids, copied)
                kept.update(message_id for message_id, _ in report.not_sent[refused:])
                kept.update(message_id for message_id, _ in report.not_deleted[undeleted:])
            continue
        counts = queue_counts(client, report.dlq_url)
        beyond = counts.visible + counts.in_flight + counts.delayed - len(kept)
        if beyond <= 0:
            report.left = 0
            return
        empty_polls += 1
        if empty_polls >= EMPTY_POLLS:
            report.left = beyond
            return


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
    if "MessageGroupId" in system:  # a FIFO pair: keep the group; never the original's deduplication id
        entry["MessageGroupId"] = system["MessageGroupId"]
        entry["MessageDeduplicationId"] = deduplication_id(message)
    return entry


def _move(
    client: Any, report: RedriveReport, batch: list[dict[str, Any]], sent_ids: set[str], copied: set[str]
) -> None:
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
                _move(client, report, [message], sent_ids, copied)
        else:
            report.not_sent.append((batch[0]["MessageId"], exc.response["Error"].get("Message", str(exc))))
        return
    for failure in answer.get("Failed", []):
        report.not_sent.append((by_entry[failure["Id"]]["MessageId"], failure.get("Message", failure["Code"])))
    accepted = answer.get("Successful", [])
    sent_ids.update(item["MessageId"] for item in accepted)
    copied.update(by_entry[item["Id"]]["MessageId"] for item in accepted)
    if not accepted:
        return
    deleted = client.delete_message_batch(
        QueueUrl=report.dlq_url,
        Entries=[{"Id": item["Id"], "ReceiptHandle": by_entry[item["Id"]]["ReceiptHandle"]} for item in accepted],
    )
    report.moved += len(accepted)
    for failure in deleted.get("Failed", []):
        report.not_deleted.append((by_entry[failure["Id"]]["MessageId"], failure.get("Message", failure["Code"])))


def _delete_again(client: Any, report: RedriveReport, message: dict[str, Any]) -> bool:
    """Delete a DLQ message whose copy was already accepted, with the receipt handle it came back with."""
    answer = client.delete_message_batch(
        QueueUrl=report.dlq_url, Entries=[{"Id": "0", "ReceiptHandle": message["ReceiptHandle"]}]
    )
    if not answer.get("Successful"):
        return False
    report.not_deleted = [item for item in report.not_deleted if item[0] != message["MessageId"]]
    return True


# --- the dry run ----------------------------------------------------------------------------------------


@dataclass
class _Held:
    """A message a dry run holds hidden: its newest receipt handle and when its lease was last set."""

    receipt_handle: str
    leased_at: float


class _Listing:
    """A dry run's listing: each message once, hidden while the listing lasts, visible again at the end."""

    def __init__(
        self, client: Any, report: RedriveReport, *, wait_seconds: int, lease_seconds: int, clock: Callable[[], float]
    ) -> None:
        self._client = client
        self._report = report
        self._wait_seconds = wait_seconds
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._held: dict[str, _Held] = {}
        #: (when leased, message id), oldest first: renewing is a look at the left end, however many are held
        self._by_lease: deque[tuple[float, str]] = deque()

    def run(self) -> None:
        try:
            self._list()
        finally:
            self._restore()

    def _list(self) -> None:
        report = self._report
        while True:
            if report.reported and len(report.listed) >= report.reported:
                report.stopped = "every message the DLQ reported was listed"
                return
            self._renew()
            try:
                batch = _receive(
                    self._client, report.dlq_url, hide_seconds=self._lease_seconds, wait_seconds=self._wait_seconds
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("OverLimit", "AWS.SimpleQueueService.OverLimit"):
                    raise
                report.stopped = "SQS holds at most 120,000 messages in flight: the rest could not be seen"
                return
            if not batch:
                report.stopped = "no more messages could be seen"
                return
            now = self._clock()
            new = 0
            for message in batch:
                message_id = message["MessageId"]
                if message_id not in self._held:
                    new += 1
                    report.listed.append(
                        DeadLetter(
                            message_id=message_id,
                            receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
                            body=message["Body"],
                        )
                    )
                # a message seen again is held by its newest receipt handle (the only one SQS still takes)
                self._held[message_id] = _Held(message["ReceiptHandle"], now)
                self._by_lease.append((now, message_id))
            if not new:
                report.stopped = "messages already listed came back into view (their lease could not be renewed)"
                return

    def _renew(self) -> None:
        """Extend the lease of every held message past half of it, so none comes back while the listing runs."""
        now = self._clock()
        due: list[tuple[str, _Held]] = []
        while self._by_lease and now - self._by_lease[0][0] >= self._lease_seconds / 2:
            leased_at, message_id = self._by_lease.popleft()
            held = self._held[message_id]
            if held.leased_at == leased_at:  # else it was received or renewed again since: a later entry has it
                due.append((message_id, held))
        for start in range(0, len(due), BATCH):
            chunk = due[start : start + BATCH]
            answer = self._client.change_message_visibility_batch(
                QueueUrl=self._report.dlq_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": held.receipt_handle, "VisibilityTimeout": self._lease_seconds}
                    for n, (_, held) in enumerate(chunk)
                ],
            )
            for done in answer.get("Successful", []):
                message_id, held = chunk[int(done["Id"])]
                held.leased_at = now
                self._by_lease.append((now, message_id))
            # a renewal SQS refused: the message comes back into view, is received again and not listed twice

    def _restore(self) -> None:
        """Make every held message visible again at once (as it was, only its receive count moved)."""
        held = list(self._held.values())
        for start in range(0, len(held), BATCH):
            chunk = held[start : start + BATCH]
            try:
                answer = self._client.change_message_visibility_batch(
                    QueueUrl=self._report.dlq_url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": h.receipt_handle, "VisibilityTimeout": 0}
                        for n, h in enumerate(chunk)
                    ],
                )
            except (BotoCoreError, ClientError):
                self._report.not_restored += len(chunk)
                continue
            self._report.not_restored += len(answer.get("Failed", []))
