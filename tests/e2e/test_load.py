"""Load with conservation: two thousand messages over moto's SQS server, with faults, and nothing lost.

The producer sends 2,000+ messages to the queue pair serverless.yml declares:
valid single-coin requests (latest mode and short backfills), invalid bodies,
messages whose first attempt meets a database error (read or half-done write)
and a few whose every attempt does. ``poll --until-empty`` drains the queue.
Then: sent = succeeded + dead-lettered, exactly; the DLQ holds exactly the
invalid and the permanently failing messages; and every flag in the store
equals the numpy reference. Throughput is printed, never asserted.

moto's SQS scans every message of a queue on each call (2,000 queued messages
make one receive take about a second), so the producer runs beside the poller
and keeps at most about a hundred messages queued, as a real producer and
event source mapping would overlap.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

import handler
from libs import processor
from libs.helpers.constants_helper import SIGNALS
from libs.helpers.mongodb_helper import DriverReader
from libs.processor import process_message
from libs.tools.local.poller import Poller
from libs.tools.local.producer import send_bodies
from libs.tools.local.sqs_endpoint import peek_messages, queue_counts, sqs_client
from libs.tools.synthetic import synthetic_documents
from tests.fakes.faults import HalfWriting, Unreachable
from tests.fakes.reference import expected_written

END = datetime(2024, 11, 1)
COINS = [f"coin-{i:04d}" for i in range(20)]
VALID, INVALID, TRANSIENT, PERMANENT = 1_800, 150, 120, 30
SIGNAL_CHOICES = (["volume"], ["latest_price", "market_cap"], ["volatility_index"], None)
MOST_QUEUED = 60


def _bodies(rng: random.Random) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = defaultdict(list)
    for n in range(VALID + TRANSIENT + PERMANENT):
        kind = "valid" if n < VALID else "transient" if n < VALID + TRANSIENT else "permanent"
        day = END - timedelta(days=rng.randrange(0, 2))
        body = {"request_id": f"{kind}-{n}", "coin_ids": [rng.choice(COINS)], "periods": [3, 7]}
        if rng.random() < 0.5:
            body.update(since=(day - timedelta(days=1)).isoformat(), as_of=day.isoformat())
        else:
            body.update(as_of=day.isoformat())
        signals = rng.choice(SIGNAL_CHOICES)
        if signals:
            body["signals"] = signals
        kinds[kind].append(json.dumps(body))
    bad = ["not json", {"periods": [0]}, {"coin_ids": [{"$ne": None}]}, {"as_of": "yesterday"}, {"k": 1}]
    for n in range(INVALID):
        choice = bad[n % len(bad)]
        kinds["invalid"].append(choice if isinstance(choice, str) else json.dumps({**choice, "request_id": f"bad-{n}"}))
    return kinds


class ThrottledProducer(threading.Thread):
    """Sends the bodies in chunks of fifty, waiting while more than MOST_QUEUED are queued or in flight."""

    def __init__(self, endpoint_url: str, queue_url: str, bodies: list[str]) -> None:
        super().__init__(daemon=True)
        self._client = sqs_client(endpoint_url)  # a client of its own: one per thread
        self._queue_url, self._bodies = queue_url, bodies
        self.message_ids: list[str] = []
        self.rejected: list = []

    def run(self) -> None:
        for start in range(0, len(self._bodies), 50):
            while _queued(self._client, self._queue_url) > MOST_QUEUED:
                time.sleep(0.05)
            sent = send_bodies(self._client, self._queue_url, self._bodies[start : start + 50])
            self.message_ids += sent.message_ids
            self.rejected += sent.rejected


def _queued(client, queue_url: str) -> int:
    attributes = client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


class Faults:
    """Stands in for ``process_message``: transient faults fail the first attempt, permanent ones every one."""

    def __init__(self, store) -> None:
        self._store = store
        self.attempts: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()

    def __call__(self, body, message_id, settings, **kwargs):
        self.attempts[message_id] += 1
        kind = body.split('"request_id": "', 1)[-1].split("-", 1)[0]
        if kind == "permanent" or (kind == "transient" and self.attempts[message_id] == 1):
            if self.attempts[message_id] % 2:
                kwargs["reader"] = DriverReader(Unreachable())
            else:
                kwargs["collection"] = HalfWriting(self._store)
        summary = process_message(body, message_id, settings, **kwargs)
        self.successes[message_id] += 1
        return summary


@pytest.mark.slow
def test_two_thousand_messages_with_faults_are_all_accounted_for(
    store, sqs, sqs_endpoint, queues, queue_settings, monkeypatch, capsys
):
    # given a small store (so the embedded store's scans stay cheap) and 2,100 messages of every kind
    documents, _ = synthetic_documents(coins=len(COINS), days=9, per_day=2, end=END, seed=21)
    store.insert_many(documents)
    kinds = _bodies(random.Random(5))
    bodies = [body for group in kinds.values() for body in group]
    random.Random(6).shuffle(bodies)
    faults = Faults(store)
    monkeypatch.setattr(processor, "process_message", faults)

    # when the producer sends them while the poller feeds the handler, until both are done and the queue drained
    started = time.monotonic()
    sent = ThrottledProducer(sqs_endpoint.url, queues.url, bodies)
    sent.start()
    poller = Poller(
        sqs,
        queues.url,
        handler=handler.handler,
        batch_size=queue_settings.batch_size,
        function_timeout_ms=queue_settings.function_timeout_ms,
    )
    while True:
        stats = poller.run(until_empty=True, max_seconds=max(1.0, 480 - (time.monotonic() - started)))
        if not sent.is_alive() or stats.stopped != "queue drained":
            break
    sent.join(timeout=60)
    stats = poller.run(until_empty=True, max_seconds=max(1.0, 480 - (time.monotonic() - started)))
    elapsed = time.monotonic() - started

    # then sent = succeeded + dead-lettered, with no message in both and none missing
    assert stats.stopped == "queue drained" and len(bodies) >= 2_000
    sent_ids = set(sent.message_ids)
    assert len(sent_ids) == len(bodies) and not sent.rejected
    deleted = set(stats.deleted_message_ids)
    dead = {m["MessageId"]: m["Body"] for m in peek_messages(sqs, queues.dlq_url)}
    assert len(deleted) == len(stats.deleted_message_ids)  # each deleted once
    assert deleted.isdisjoint(dead) and deleted | set(dead) == sent_ids
    assert queue_counts(sqs, queues.url).drained
    # and the DLQ holds exactly the invalid and the permanently failing messages, after maxReceiveCount tries
    assert Counter(dead.values()) == Counter(kinds["invalid"] + kinds["permanent"])
    assert {faults.attempts[m] for m in dead} == {queue_settings.max_receive_count}
    # and every succeeded message succeeded once; transient faults cost exactly one retry
    assert all(faults.successes[m] == 1 for m in deleted)
    assert Counter(faults.attempts[m] for m in deleted) == Counter({1: VALID, 2: TRANSIENT})

    # and every flag in the store equals the numpy reference (whichever message wrote it last)
    by_coin: dict[str, list] = defaultdict(list)
    for doc in store.find({}):
        by_coin[doc["coin_id"]].append(doc)
    checked = 0
    for coin_documents in by_coin.values():
        for doc in (d for d in coin_documents if "anomalies" in d):
            for signal in SIGNALS:
                for period in (3, 7):
                    written = doc["anomalies"].get(signal, {}).get(f"{period}d")
                    if written is not None:
                        assert written == expected_written(coin_documents, doc, signal, period, 1.5, 4)
                        checked += 1
    assert checked > 1_000

    with capsys.disabled():
        print(
            f"\nload: {len(bodies)} messages, {stats.received} deliveries in {elapsed:.1f} s "
            f"= {len(bodies) / elapsed:.0f} messages/s ({len(deleted)} succeeded, {len(dead)} dead-lettered)"
        )
