"""The producer: risk requests onto the queue, the way an upstream team should send them.

The coin universe is split into messages of at most ``coins_per_message``
coins (each message is one handler call's worth of work, so this bounds a
message's time and memory), the messages go out with ``send_message_batch``
(ten per call and at most 256 KiB of bodies per call, SQS's limits), and the
entries SQS reports as failed through no fault of the sender are sent again
with a growing pause. Entries SQS rejects as the sender's fault are not
retried: they are returned, with SQS's reason, so nothing is lost silently.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

SQS_MAX_ENTRIES_PER_BATCH = 10
SQS_MAX_BATCH_BYTES = 256 * 1024


def split_coins(coins: Iterable[str], coins_per_message: int) -> list[list[str]]:
    """The coins, each once and in their first order, in chunks of at most ``coins_per_message``."""
    if coins_per_message < 1:
        raise ValueError(f"coins_per_message must be at least 1, got {coins_per_message}")
    unique = list(dict.fromkeys(coins))
    return [unique[i : i + coins_per_message] for i in range(0, len(unique), coins_per_message)]


def request_bodies(coins: Iterable[str], coins_per_message: int, request: Mapping[str, Any]) -> list[str]:
    """One JSON body per chunk of coins: ``request``'s keys plus that chunk as ``coin_ids``."""
    return [json.dumps({**request, "coin_ids": chunk}) for chunk in split_coins(coins, coins_per_message)]


@dataclass
class SendReport:
    """What ``send_bodies`` did: ids of the messages SQS accepted, and the bodies it refused."""

    message_ids: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    retried: int = 0

    @property
    def sent(self) -> int:
        return len(self.message_ids)


def _batches(bodies: Sequence[str]) -> list[list[int]]:
    """Indexes of ``bodies`` grouped into calls of at most ten entries and 256 KiB."""
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, body in enumerate(bodies):
        length = len(body.encode())
        if current and (len(current) == SQS_MAX_ENTRIES_PER_BATCH or size + length > SQS_MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(index)
        size += length
    if current:
        batches.append(current)
    return batches


def send_bodies(
    client: Any, queue_url: str, bodies: Sequence[str], *, max_attempts: int = 5, pause_seconds: float = 0.2
) -> SendReport:
    """Send every body once; entries failing on SQS's side are retried up to ``max_attempts`` times.

    A call that fails as a whole (the endpoint gone, the queue deleted) raises when nothing was sent
    yet; after that, the bodies not sent are returned as rejected with its reason, so the report says
    how far it got.
    """
    report = SendReport()
    batches = _batches(bodies)
    for number, batch in enumerate(batches):
        pending = batch
        for attempt in range(1, max_attempts + 1):
            entries = [{"Id": str(index), "MessageBody": bodies[index]} for index in pending]
            try:
                response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except (BotoCoreError, ClientError) as exc:
                if not report.message_ids:
                    raise
                reason = f"{type(exc).__name__}: {exc}"
                unsent = [*pending, *(index for later in batches[number + 1 :] for index in later)]
                report.rejected.extend((bodies[index], reason) for index in unsent)
                return report
            report.message_ids.extend(entry["MessageId"] for entry in response.get("Successful", []))
            retry: list[int] = []
            for failure in response.get("Failed", []):
                index = int(failure["Id"])
                reason = f"{failure.get('Code', '')}: {failure.get('Message', '')}"
                if failure.get("SenderFault") or attempt == max_attempts:
                    report.rejected.append((bodies[index], reason))
                else:
                    retry.append(index)
            if not retry:
                break
            report.retried += len(retry)
            pending = retry
            time.sleep(pause_seconds * 2 ** (attempt - 1))
    return report
