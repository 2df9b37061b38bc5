"""Publishing alerts to SNS (contract §10): ``PublishBatch`` calls of at most ten.

The only module that talks to SNS. boto3 is imported, and the client created,
on the first publish of the container, so with ``ALERT_TOPIC_ARN`` empty the
function never loads boto3 (tests/integration/test_cold_start.py). The client
takes the standard endpoint settings (``AWS_ENDPOINT_URL_SNS``,
``AWS_ENDPOINT_URL``): tests and the demo point it at moto's server on
loopback with no code here.

Entries SNS reports as failed are sent once more; if any still fails, or a
call fails as a whole, :class:`~libs.errors.AlertPublishFailed` fails the
message, and SQS delivers it again. Redelivery publishes the same alert ids
(consumers deduplicate by ``alert_id``; a FIFO topic does it for them within
its five-minute window, ``MessageDeduplicationId`` being the alert id).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Any

from libs.alerts.build import Alert
from libs.deadline import NO_DEADLINE, Deadline
from libs.errors import AlertPublishFailed

#: SNS takes at most ten entries per PublishBatch call.
BATCH_SIZE = 10
#: Client timeouts: a call that hangs must fail the message well before the Lambda deadline. SNS answers a
#: PublishBatch in tens of milliseconds; one that has not connected in 1 s or answered in 2 s is failing.
CONNECT_TIMEOUT_S = 1
READ_TIMEOUT_S = 2
#: One attempt per call (botocore's ``total_max_attempts``): a transient failure fails the message, SQS
#: delivers it again and the same alert ids are published again, which costs less than botocore's backoff
#: (up to 6 s a retry) counted against every message's start margin.
MAX_ATTEMPTS = 1
#: Longest one call can take (what :func:`publish_alerts` needs left to start one).
CALL_BUDGET_S = MAX_ATTEMPTS * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S)


def worst_case_s(max_per_message: int) -> float:
    """The longest the alerts step of one message can take: every batch of ten called, then called again
    for its failed entries, each call at its longest (30 s for the default 50 alerts)."""
    return 2 * math.ceil(max_per_message / BATCH_SIZE) * CALL_BUDGET_S


_client: Any = None


def region_of(topic_arn: str) -> str:
    """The region in ``arn:<partition>:sns:<region>:<account>:<name>``."""
    return topic_arn.split(":")[3]


def sns_client(topic_arn: str) -> Any:
    """The container's SNS client, created (and boto3 imported) on first use, in the topic's region."""
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        )
        # a session of its own: the default one caches credentials for every later boto3.client of the process
        _client = boto3.session.Session().client("sns", region_name=region_of(topic_arn), config=config)
    return _client


def reset_sns_client() -> None:
    """Forget the cached client (tests, and local runs that move the endpoint)."""
    global _client
    _client = None


def entry(alert: Alert, entry_id: str, fifo: bool) -> dict[str, Any]:
    """One ``PublishBatchRequestEntries`` item; a FIFO topic also gets the dedup id and the coin's group."""
    item: dict[str, Any] = {
        "Id": entry_id,
        "Message": alert.message(),
        "Subject": alert.subject,
        "MessageAttributes": alert.attributes(),
    }
    if fifo:
        item["MessageDeduplicationId"] = alert.alert_id
        item["MessageGroupId"] = message_group_id(alert.coin_id)
    return item


#: What SNS accepts as a FIFO MessageGroupId: 1 to 128 of ASCII letters, digits and punctuation.
_GROUP_ID = re.compile(r"[!-~]{1,128}")


def message_group_id(coin_id: str) -> str:
    """The coin's FIFO group: its id (contract §10), or a digest of it where SNS would refuse the id.

    A request may name coins of up to 256 characters of any kind; SNS would
    refuse such a group id on every delivery and send the message to the DLQ,
    so such a coin gets ``sha256:<hex>`` of its id instead: still one group
    per coin, so its alerts stay in order.
    """
    if _GROUP_ID.fullmatch(coin_id):
        return coin_id
    return "sha256:" + hashlib.sha256(coin_id.encode("utf-8", "surrogatepass")).hexdigest()


def publish_alerts(alerts: Sequence[Alert], topic_arn: str, client: Any, *, deadline: Deadline = NO_DEADLINE) -> int:
    """Publish ``alerts`` in order, ten a call; returns how many SNS took (all of them, or it raises).

    ``deadline`` is when the message must be done: a call is not started
    unless :data:`CALL_BUDGET_S` remain, so a slow SNS fails the message
    instead of the invocation. Entries SNS reports as failed are sent again
    together, in one more call.
    """
    fifo = topic_arn.endswith(".fifo")
    published = 0
    for start in range(0, len(alerts), BATCH_SIZE):
        batch = {str(i): entry(alert, str(i), fifo) for i, alert in enumerate(alerts[start : start + BATCH_SIZE])}
        failed = _publish_batch(client, topic_arn, list(batch.values()), deadline)
        if failed:
            failed = _publish_batch(client, topic_arn, [batch[item["Id"]] for item in failed], deadline)
        if failed:
            first = failed[0]
            raise AlertPublishFailed(
                f"SNS rejected {len(failed)} of {len(batch)} alerts after a retry"
                f" ({first.get('Code', '?')}: {str(first.get('Message', ''))[:200]})"
            )
        published += len(batch)
    return published


def _publish_batch(
    client: Any, topic_arn: str, entries: list[dict[str, Any]], deadline: Deadline
) -> list[dict[str, Any]]:
    """One PublishBatch call; returns the entries SNS reports as failed."""
    left = deadline.remaining_s()
    if left is not None and left < CALL_BUDGET_S:
        raise AlertPublishFailed(f"too little time left to publish alerts (a call may take {CALL_BUDGET_S} s)")
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response = client.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
    except (BotoCoreError, ClientError) as exc:
        raise AlertPublishFailed(f"publishing alerts failed: {type(exc).__name__}: {exc}") from None
    return list(response.get("Failed", []))
